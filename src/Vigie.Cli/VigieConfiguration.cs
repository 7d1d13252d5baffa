using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Vigie.Access;
using Vigie.Archive;
using Vigie.Audit;
using Vigie.Core.Data;
using Vigie.Dicom;
using Vigie.Dicom.Network;
using Vigie.Gateway;
using Vigie.Inspection;
using Vigie.Inspection.Signatures;

namespace Vigie.Cli;

/// <summary>How the settings name the DICOM allow-list: as written (entries, or no key at all), emptied, or emptied in one source beside entries of another.</summary>
internal enum AccessListShape
{
    AsWritten,
    Emptied,
    EmptiedBesideEntries,
}

/// <summary>
/// What the command line says about where data and settings live; everything else comes from configuration.
/// <paramref name="DataFolder"/> is --data when given, null when not (then Archive:DataFolder or the default decides).
/// </summary>
internal sealed record HostSettings(string? DataFolder, string? ConfigFile, IReadOnlyDictionary<string, string?> Overrides);

/// <summary>The one data folder of a run, where it was named, and an Archive:DataFolder it overrules (said at start).</summary>
internal sealed record DataFolderChoice(string Folder, string Source, string? Overruled);

/// <summary>
/// The settings file a run read (null: none), and a vigie.json in the data folder that was not read because --config
/// named another (said on standard error and in the log: it may have been planted).
/// </summary>
internal sealed record SettingsChoice(string? File, string? IgnoredInDataFolder);

/// <summary>
/// One configuration for every command: built-in defaults, then the config file (--config, else vigie.json in the
/// current folder; never one inside the data folder), then environment variables VIGIE__SECTION__KEY, then command-line flags.
/// </summary>
internal static class VigieConfiguration
{
    public const string DefaultDataFolder = "vigie-data";

    private const string DataFolderKey = "Archive:DataFolder";

    public static IConfiguration Build(HostSettings settings) => Build(settings, out _, out _);

    public static IConfiguration Build(HostSettings settings, out DataFolderChoice data) => Build(settings, out data, out _);

    /// <summary>
    /// The configuration, with one data folder for everything (objects, index, keys beside it): --data, else
    /// Archive:DataFolder from the environment, else from the settings file, else ./vigie-data. Until 2026-12-07
    /// Archive:DataFolder moved the objects and quarantine while the index and keys stayed in --data or its default.
    /// A settings file inside the data folder stops the run (<see cref="RefuseSettingsInDataFolder"/>).
    /// </summary>
    public static IConfiguration Build(HostSettings settings, out DataFolderChoice data, out SettingsChoice read)
    {
        var environment = EnvironmentDataFolder();
        var file = SettingsFile(settings);
        // Only the folder's name is taken from the file before the file's own place is checked against it.
        var fromFile = file is null ? null
            : NonEmpty(new ConfigurationBuilder().AddJsonFile(file, optional: settings.ConfigFile is null, reloadOnChange: false).Build()[DataFolderKey]);
        data = Choose(settings.DataFolder, environment, fromFile, file);
        var folder = data.Folder;
        // The folder named without the file too: a file cannot move the data folder away from itself.
        var folders = new[] { folder, Path.GetFullPath(settings.DataFolder ?? environment ?? DefaultDataFolder) }.Distinct(StringComparer.Ordinal).ToList();
        if (file is not null)
        {
            foreach (var each in folders)
            {
                RefuseSettingsInDataFolder(file, each);
            }
        }

        var left = folders.Select(each => Path.Combine(each, SettingsFileName)).FirstOrDefault(Present);
        if (left is not null && settings.ConfigFile is null)
        {
            throw new InvalidOperationException(
                $"The settings file {left} lies inside the data folder, and settings are no longer read from there (since 2026-12-07; before, "
                + "the default search read it): " + WhyNotInDataFolder + " Move it outside the data folder and give it with --config (the service "
                + "reads /etc/vigie/vigie.json); if you did not put it there, the data folder may have been tampered with.");
        }

        read = new SettingsChoice(file, left);
        var keys = Path.TrimEndingDirectorySeparator(folder) + ".keys";
        var defaults = new Dictionary<string, string?>
        {
            // Keys live beside the data folder, never inside it: a copy of the data alone is ciphertext.
            ["Archive:KeyFile"] = Path.Combine(keys, "kek.json"),
            ["Audit:SigningKeyPath"] = Path.Combine(keys, "audit-signing.key"),
            ["Database:Provider"] = nameof(DatabaseProvider.Sqlite),
            ["Database:SqlitePath"] = Path.Combine(folder, "index.db"),
        };
        var builder = new ConfigurationBuilder().AddInMemoryCollection(defaults);
        if (file is not null)
        {
            builder.AddJsonFile(file, optional: settings.ConfigFile is null, reloadOnChange: false);
        }

        builder.AddEnvironmentVariables("VIGIE__");
        builder.AddInMemoryCollection(settings.Overrides);
        // Last: every reader of the setting sees the folder chosen above, whichever source named another.
        builder.AddInMemoryCollection(new Dictionary<string, string?> { [DataFolderKey] = folder });
        return builder.Build();
    }

    /// <summary>The name of the settings file the default search looks for.</summary>
    internal const string SettingsFileName = "vigie.json";

    private const string WhyNotInDataFolder =
        "whoever can write the data folder could then choose which index the checks read (Database), which keys open the archive (Archive:KeyFile), "
        + "which audit signatures are believed (Audit:TrustedPublicKeys), what scrub counts as a finding (Archive:OrphanGrace) and who may retrieve "
        + "images (Access:DicomNodes).";

    /// <summary>
    /// Refuses a settings file that lies inside the data folder: as given or found, its folders' links resolved, or as
    /// the link it is resolved. Before 2026-12-07 a vigie.json there was read (only its audit trust anchors were refused,
    /// and a link to a file outside passed even those): a planted one pointed scrub and audit verify at a clean copy of
    /// the index, widened the orphan grace past a deleted instance, or trusted the planter's key.
    /// </summary>
    internal static void RefuseSettingsInDataFolder(string file, string folder)
    {
        if (SettingsPlacement.InsideFolder(file, folder) is { } how)
        {
            throw new InvalidOperationException(
                $"The settings file {file}{how} lies inside the data folder {folder}: settings are not read from the data folder, since "
                + WhyNotInDataFolder + " Move it outside the data folder and give it with --config (the service reads /etc/vigie/vigie.json); "
                + "a settings file you did not put there may mean the data folder was tampered with.");
        }
    }

    /// <summary>Whether a file, or a link (even one to nothing), is at <paramref name="path"/>.</summary>
    private static bool Present(string path) => File.Exists(path) || new FileInfo(path).LinkTarget is not null;

    private static DataFolderChoice Choose(string? flag, string? environment, string? file, string? fileName)
    {
        var named = new List<(string Folder, string Source)>();
        if (flag is not null)
        {
            named.Add((flag, "--data"));
        }

        if (environment is not null)
        {
            named.Add((environment, "the environment (VIGIE__Archive__DataFolder)"));
        }

        if (file is not null)
        {
            named.Add((file, $"{fileName} (Archive:DataFolder)"));
        }

        if (named.Count == 0)
        {
            return new DataFolderChoice(Path.GetFullPath(DefaultDataFolder), "the default", null);
        }

        var chosen = Path.GetFullPath(named[0].Folder);
        var other = named.Skip(1).Select(n => (Folder: Path.GetFullPath(n.Folder), n.Source))
            .FirstOrDefault(n => !string.Equals(Path.TrimEndingDirectorySeparator(n.Folder), Path.TrimEndingDirectorySeparator(chosen), StringComparison.Ordinal));
        return new DataFolderChoice(chosen, named[0].Source, other.Folder is null ? null : $"{other.Folder} from {other.Source}");
    }

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    /// <summary>VIGIE__Archive__DataFolder, when set.</summary>
    private static string? EnvironmentDataFolder() => NonEmpty(new ConfigurationBuilder().AddEnvironmentVariables("VIGIE__").Build()[DataFolderKey]);

    /// <summary>The settings file read: --config, else vigie.json in the current folder when there is one.</summary>
    public static string? SettingsFile(HostSettings settings) => settings.ConfigFile is { } given
        ? Path.GetFullPath(given)
        : SettingsFiles(settings).FirstOrDefault(File.Exists);

    /// <summary>
    /// The settings files a start looks for: --config, else vigie.json in the current folder. Since 2026-12-07 the data
    /// folder is not searched (before, its vigie.json came first).
    /// </summary>
    public static IReadOnlyList<string> SettingsFiles(HostSettings settings) =>
        [Path.GetFullPath(settings.ConfigFile ?? SettingsFileName)];

    /// <summary>
    /// Binds the inspection options only: `vigie scan` needs nothing else, and not touching the other modules' types
    /// keeps their assemblies out of a short-lived process.
    /// </summary>
    public static IServiceCollection AddInspectionConfiguration(this IServiceCollection services, IConfiguration configuration)
    {
        services.TryAddSingleton(configuration);
        services.Configure<InspectionLimits>(configuration.GetSection(InspectionLimits.Section));
        services.Configure<MailInspectionOptions>(configuration.GetSection("Inspection:Mail"));
        services.Configure<SignatureOptions>(configuration.GetSection(SignatureOptions.Section));
        return services;
    }

    /// <summary>Binds every module's options from the configuration (a section added here goes in ConfigurationKeys too).</summary>
    public static IServiceCollection AddVigieConfiguration(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddSingleton(configuration);
        services.Configure<DatabaseOptions>(configuration.GetSection(DatabaseOptions.Section));
        services.Configure<ArchiveOptions>(configuration.GetSection("Archive"));
        services.Configure<AuditOptions>(configuration.GetSection(AuditOptions.Section));
        // Sealed records waiting for the database after an outage, in the data folder (nothing in clear). Set here, not
        // as a default key: a default in the section changed how the operator's own keys under it were spelt back.
        services.PostConfigure<AuditOptions>(audit => audit.SpillFolder ??= Path.Combine(Path.GetFullPath(configuration[DataFolderKey] ?? DefaultDataFolder),
            "audit-spill"));
        services.AddInspectionConfiguration(configuration);
        services.Configure<AccessOptions>(configuration.GetSection(AccessOptions.Section));
        services.Configure<GatewayOptions>(configuration.GetSection(GatewayOptions.Section));
        services.Configure<DicomServerOptions>(configuration.GetSection(DicomServerOptions.Section));
        // An allow-list emptied on purpose ("DicomNodes": []) refuses everyone; only one never written opens the
        // loopback default. Both bound to an empty list, and until 2026-12-06 the emptied one gave every local AE every right.
        var emptied = AccessListShapeOf(configuration) == AccessListShape.Emptied;
        services.PostConfigure<AccessOptions>(access =>
        {
            if (access.DicomNodes.Count == 0 && !emptied)
            {
                // No allow-list: only callers on this machine (the node also listens on loopback by default).
                access.DicomNodes.Add(new DicomNodeRule { AETitle = "*", Networks = ["127.0.0.0/8", "::1"], Rights = DicomRights.All });
            }
        });
        return services;
    }

    /// <summary>
    /// Whether the settings name Access:DicomNodes empty: with no entry from any source (JSON's [] is kept as the key with
    /// no value), or set to an empty text (an environment variable) while another source lists entries, which stay.
    /// </summary>
    internal static AccessListShape AccessListShapeOf(IConfiguration configuration)
    {
        var section = configuration.GetSection("Access:DicomNodes");
        var entries = section.GetChildren().Any();
        // The section's value is null both for JSON's [] and for no key at all: only the listing of keys tells them apart.
        var named = configuration.AsEnumerable().Any(pair => pair.Key.Equals(section.Path, StringComparison.OrdinalIgnoreCase));
        return !entries && named && string.IsNullOrEmpty(section.Value) ? AccessListShape.Emptied
            : entries && section.Value is "" ? AccessListShape.EmptiedBesideEntries
            : AccessListShape.AsWritten;
    }

    /// <summary>
    /// Where list entries given as flags start: past any the file or the environment declare, so that a flag adds an
    /// entry. At index 0 it was merged, key by key, into the file's first one: `--allow CT1@10.1.2.3/32` over a rule
    /// for the PACS with two networks made CT1 allowed from the PACS's second network too, and dropped the PACS rule.
    /// </summary>
    private const int FlagEntriesFrom = 10_000;

    /// <summary>Flag overrides for repeated AE@CIDR allow rules.</summary>
    public static void AddAllowRules(Dictionary<string, string?> overrides, IEnumerable<string> allow)
    {
        var i = FlagEntriesFrom;
        foreach (var text in allow)
        {
            var rule = DicomNodeRule.Parse(text);
            overrides[$"Access:DicomNodes:{i}:AETitle"] = rule.AETitle;
            overrides[$"Access:DicomNodes:{i}:Networks:0"] = rule.Networks[0];
            overrides[$"Access:DicomNodes:{i}:Rights"] = rule.Rights.ToString();
            i++;
        }
    }

    /// <summary>Flag overrides for forwarding targets and move destinations (AE@host:port).</summary>
    public static void AddDestinations(Dictionary<string, string?> overrides, IEnumerable<string> forward, IEnumerable<string> destinations)
    {
        var i = FlagEntriesFrom;
        foreach (var (text, isForward) in forward.Select(f => (f, true)).Concat(destinations.Select(d => (d, false))))
        {
            var destination = DicomDestination.Parse(text, isForward);
            overrides[$"Gateway:Destinations:{i}:AETitle"] = destination.AETitle;
            overrides[$"Gateway:Destinations:{i}:Host"] = destination.Host;
            overrides[$"Gateway:Destinations:{i}:Port"] = destination.Port.ToString(CultureInfo.InvariantCulture);
            overrides[$"Gateway:Destinations:{i}:Forward"] = isForward.ToString();
            i++;
        }
    }

    /// <summary>Keeps the DICOM layer's identity in one place for messages.</summary>
    public static string Implementation => $"{DicomImplementation.VersionName} ({DicomImplementation.ClassUid})";
}
