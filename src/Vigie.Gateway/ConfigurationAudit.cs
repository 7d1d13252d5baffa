using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Vigie.Archive.Keys;
using Vigie.Audit;
using Vigie.Audit.Model;
using Vigie.Core.Data;
using Vigie.Dicom.Network;

namespace Vigie.Gateway;

/// <summary>
/// Configuration changes go into the audit trail. Settings are read once, at start (file, environment, flags), so each
/// start compares every setting with what this node (AE title, machine, port) last ran with, and records which were
/// added, changed or removed: by name only, since values include tokens, passwords and connection strings. What is
/// kept between starts is a keyed hash per setting (the index key), so neither the database nor the trail holds a
/// value.
/// </summary>
public sealed class ConfigurationAudit(
    IServiceProvider services,
    IArchiveKeyService keys,
    IVigieDatabase database,
    IAuditLog audit,
    IOptionsMonitor<DicomServerOptions> server,
    TimeProvider time,
    ILogger<ConfigurationAudit> logger)
{
    /// <summary>Setting names listed in one entry; a larger change is counted, and the rest named as "and N more".</summary>
    internal const int MaxNamesListed = 200;

    private const string HashKind = "configuration";

    /// <summary>Setting names that point at a certificate, a key, a CA bundle or rules: a file's new contents are a change as well.</summary>
    private static readonly string[] SecurityFileSettings =
        ["CertificatePath", "KeyPath", "ClientCaPath", "ServerCaPath", "ClientCertificatePath", "ClientKeyPath", "TrustedCaPath", "SigningKeyPath", "RulesDirectory"];

    /// <summary>Appended to a setting's name for its file's contents ("Dicom:Tls:CertificatePath (contents)").</summary>
    internal const string ContentsSuffix = " (contents)";


    public async Task RecordAsync(CancellationToken cancellationToken)
    {
        if (services.GetService<IConfiguration>() is not { } configuration)
        {
            return;
        }

        // Nodes sharing one database compare each with its own last start (several may run on one machine).
        var node = string.Create(CultureInfo.InvariantCulture, $"{server.CurrentValue.AETitle}@{Environment.MachineName}:{server.CurrentValue.Port}");
        var current = new Dictionary<string, byte[]>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in configuration.AsEnumerable())
        {
            if (value is not null)
            {
                // Setting names are case-insensitive, and their case can follow whichever source named the section first.
                current[key] = keys.HashIdentifier(HashKind, key.ToUpperInvariant() + "\0" + value);
                if (IsSecurityFile(key) && value.Length > 0)
                {
                    // A renewed certificate or an edited rule under the same name was not recorded before 2026-12-07.
                    var contents = await FingerprintAsync(value, cancellationToken).ConfigureAwait(false);
                    current[key + ContentsSuffix] = keys.HashIdentifier(HashKind, key.ToUpperInvariant() + ContentsSuffix + "\0" + contents);
                }
            }
        }

        var previous = await ReadAsync(node, cancellationToken).ConfigureAwait(false);
        // A node moved to another port or AE title is compared with the one node this machine ran before: as a new
        // node, its first start named no change, and a rule added in the same edit went unnamed (before 2026-12-06).
        var comparedWith = previous is null ? await SoleOtherNodeOfThisMachineAsync(node, cancellationToken).ConfigureAwait(false) : null;
        if (comparedWith is not null)
        {
            previous = await ReadAsync(comparedWith, cancellationToken).ConfigureAwait(false);
        }

        var change = ConfigurationChange.Between(previous, current);
        if (change is null)
        {
            return;
        }

        await audit.AppendAsync(Record(server.CurrentValue.AETitle, change, comparedWith), cancellationToken).ConfigureAwait(false);
        try
        {
            await SaveAsync(node, current, previous?.Keys ?? Enumerable.Empty<string>(), cancellationToken).ConfigureAwait(false);
        }
        catch (System.Data.Common.DbException e)
        {
            // The change is recorded; failing to keep the new baseline only means the next start names it again.
            logger.LogWarning("Could not keep the configuration baseline of {Node}: {Error}", node, e.Message);
        }

        if (change.First)
        {
            logger.LogInformation("Configuration of {Node} recorded: {Count} settings", node, change.Count);
        }
        else
        {
            logger.LogWarning("Configuration of {Node} changed since its last start: {Summary}", node, change.Summary(MaxNamesListed));
        }
    }

    private static bool IsSecurityFile(string key)
    {
        var name = key[(key.LastIndexOf(':') + 1)..];
        return SecurityFileSettings.Contains(name, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>
    /// SHA-256 of a file, or of a rules folder's signature files by name (those the loader reads: a .git folder or a
    /// named pipe beside them is not read, nor waited for); a missing or unreadable file says so in its place.
    /// </summary>
    private async Task<string> FingerprintAsync(string path, CancellationToken cancellationToken)
    {
        if (!Directory.Exists(path))
        {
            return "file\0" + await FileHashAsync(path, cancellationToken).ConfigureAwait(false);
        }

        IReadOnlyList<string> files;
        try
        {
            files = Vigie.Inspection.Signatures.SignatureFolder.Files(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogWarning("The rules folder {Folder} cannot be listed for the configuration audit: {Error}", path, e.Message);
            return "unreadable\0" + e.GetType().Name;
        }

        var all = new System.Text.StringBuilder();
        foreach (var file in files)
        {
            // One file that cannot be read stands for itself: it hid every later edit of the folder until 2026-12-07.
            var hash = await FileHashAsync(file, cancellationToken).ConfigureAwait(false);
            if (hash.StartsWith("unreadable", StringComparison.Ordinal))
            {
                logger.LogWarning("A rules file cannot be read for the configuration audit: {File}", file);
            }

            all.Append(Path.GetRelativePath(path, file)).Append('\0').Append(hash).Append('\n');
        }

        return "folder\0" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(all.ToString())));
    }

    private static async Task<string> FileHashAsync(string path, CancellationToken cancellationToken)
    {
        try
        {
            var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
            await using (stream.ConfigureAwait(false))
            {
                return Convert.ToHexString(await System.Security.Cryptography.SHA256.HashDataAsync(stream, cancellationToken).ConfigureAwait(false));
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unreadable\0" + e.GetType().Name;
        }
    }

    /// <summary>The node name of the only other baseline kept for this machine, or null (none, or several: which one moved is unknown).</summary>
    private async Task<string?> SoleOtherNodeOfThisMachineAsync(string node, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT DISTINCT node FROM gateway_configuration");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var machine = "@" + Environment.MachineName + ":";
        var others = new List<string>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var name = reader.GetString(0);
            if (name != node && name.Contains(machine, StringComparison.Ordinal))
            {
                others.Add(name);
            }
        }

        return others.Count == 1 ? others[0] : null;
    }

    private AuditRecord Record(string aeTitle, ConfigurationChange change, string? comparedWith) => new()
    {
        Time = time.GetUtcNow(),
        EventId = AuditEventIds.SecurityAlert,
        EventTypes = change.EventTypes,
        Action = AuditAction.Execute,
        // Who edited the file is not known here; the account that started the node is.
        Participants =
        [
            AuditParticipant.LocalOperator(Environment.UserName),
            GatewayAudit.Self(aeTitle, requestor: false, AuditRoles.Application),
        ],
        Details = new AuditDetails
        {
            OutcomeDescription = change.First
                ? string.Create(CultureInfo.InvariantCulture, $"configuration recorded: {change.Count} settings")
                : (comparedWith is null ? "configuration changed since the last start: " : $"configuration changed since the last start of {comparedWith}, the node this machine ran before under another name: ")
                  + change.Summary(MaxNamesListed),
        },
    };

    private async Task<Dictionary<string, byte[]>?> ReadAsync(string node, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand(null, "SELECT setting, fingerprint FROM gateway_configuration WHERE node = @n").With("@n", node);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        Dictionary<string, byte[]>? settings = null;
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            settings ??= new Dictionary<string, byte[]>(StringComparer.OrdinalIgnoreCase);
            settings[reader.GetString(0)] = reader.GetFieldValue<byte[]>(1);
        }

        return settings;
    }

    /// <summary>Keeps <paramref name="settings"/> as the node's baseline; <paramref name="previous"/> are the stored names it replaces.</summary>
    private async Task SaveAsync(string node, Dictionary<string, byte[]> settings, IEnumerable<string> previous, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await database.BeginWriteAsync(connection, cancellationToken).ConfigureAwait(false);
        foreach (var gone in previous.Where(p => !settings.ContainsKey(p)))
        {
            await using var delete = connection.CreateCommand(transaction, "DELETE FROM gateway_configuration WHERE node = @n AND setting = @s")
                .With("@n", node).With("@s", gone);
            await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        // An upsert: a second process under the same name (a restart racing the old one's exit) cannot make the start fail.
        // Names are stored upper-cased: one row per setting whatever the case a source gives its name.
        foreach (var (setting, fingerprint) in settings)
        {
            await using var upsert = connection.CreateCommand(transaction, """
                    INSERT INTO gateway_configuration (node, setting, fingerprint) VALUES (@n, @s, @f)
                    ON CONFLICT (node, setting) DO UPDATE SET fingerprint = excluded.fingerprint
                    """)
                .With("@n", node).With("@s", setting.ToUpperInvariant()).With("@f", fingerprint);
            await upsert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>The settings added, changed and removed between two starts, and which kinds of configuration they touch.</summary>
internal sealed record ConfigurationChange(bool First, IReadOnlyList<string> Added, IReadOnlyList<string> Changed, IReadOnlyList<string> Removed, int Count)
{
    /// <summary>Null when nothing changed; <see cref="First"/> when there was nothing to compare with.</summary>
    public static ConfigurationChange? Between(IReadOnlyDictionary<string, byte[]>? previous, IReadOnlyDictionary<string, byte[]> current)
    {
        if (previous is null)
        {
            return new ConfigurationChange(true, [.. current.Keys.Order(StringComparer.OrdinalIgnoreCase)], [], [], current.Count);
        }

        var added = current.Keys.Where(k => !previous.ContainsKey(k)).Order(StringComparer.OrdinalIgnoreCase).ToList();
        var changed = current.Where(c => previous.TryGetValue(c.Key, out var before) && !before.AsSpan().SequenceEqual(c.Value))
            .Select(c => c.Key).Order(StringComparer.OrdinalIgnoreCase).ToList();
        var removed = previous.Keys.Where(k => !current.ContainsKey(k)).Order(StringComparer.OrdinalIgnoreCase).ToList();
        var count = added.Count + changed.Count + removed.Count;
        return count == 0 ? null : new ConfigurationChange(false, added, changed, removed, count);
    }

    /// <summary>
    /// PS3.15 A.5.3.11 types: security (who may connect and with what rights, TLS, keys, the audit trail and its export,
    /// inspection and its signatures), network (listeners, destinations, the database), else software.
    /// </summary>
    public IReadOnlyList<AuditCode> EventTypes
    {
        get
        {
            var names = Added.Concat(Changed).Concat(Removed).ToList();
            var types = new List<AuditCode>();
            if (First || names.Any(IsSecurity))
            {
                types.Add(AuditEventTypes.SecurityConfiguration);
            }

            if (First || names.Any(n => !IsSecurity(n) && IsNetwork(n)))
            {
                types.Add(AuditEventTypes.NetworkConfiguration);
            }

            if (First || names.Any(n => !IsSecurity(n) && !IsNetwork(n)))
            {
                types.Add(AuditEventTypes.SoftwareConfiguration);
            }

            return types;
        }
    }

    public string Summary(int maxNames)
    {
        var listed = 0;
        string Names(IReadOnlyList<string> names)
        {
            var shown = names.Take(Math.Max(0, maxNames - listed)).ToList();
            listed += shown.Count;
            return shown.Count == names.Count ? string.Join(", ", shown) : string.Join(", ", shown) + $" and {names.Count - shown.Count} more";
        }

        var parts = new List<string>();
        if (Added.Count > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{Added.Count} added ({Names(Added)})"));
        }

        if (Changed.Count > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{Changed.Count} changed ({Names(Changed)})"));
        }

        if (Removed.Count > 0)
        {
            parts.Add(string.Create(CultureInfo.InvariantCulture, $"{Removed.Count} removed ({Names(Removed)})"));
        }

        return string.Join("; ", parts);
    }

    private static bool IsSecurity(string name) =>
        name.EndsWith(ConfigurationAudit.ContentsSuffix, StringComparison.Ordinal) || StartsWith(name, "Access") || StartsWith(name, "Audit") || StartsWith(name, "Inspection")
        || name.Contains("Tls", StringComparison.OrdinalIgnoreCase) || name.Contains("Certificate", StringComparison.OrdinalIgnoreCase)
        || name.Contains("Key", StringComparison.OrdinalIgnoreCase) || name.Contains("Password", StringComparison.OrdinalIgnoreCase)
        || name.Contains("Token", StringComparison.OrdinalIgnoreCase) || name.Contains("Allow", StringComparison.OrdinalIgnoreCase);

    private static bool IsNetwork(string name) =>
        StartsWith(name, "Dicom:Server") || StartsWith(name, "Web") || StartsWith(name, "Gateway:Destinations") || StartsWith(name, "Database");

    private static bool StartsWith(string name, string section) =>
        name.StartsWith(section, StringComparison.OrdinalIgnoreCase) && (name.Length == section.Length || name[section.Length] == ':');
}
