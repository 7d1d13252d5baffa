using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Options;
using Spectre.Console;
using Vigie.Archive;
using Vigie.Archive.Keys;
using Vigie.Core.IO;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Gateway;

namespace Vigie.Cli;

/// <summary>
/// The services of a data folder for the maintenance commands (scrub, stats, audit, keys), composed exactly as
/// `vigie serve` composes them, without the network. Refuses to create a data folder that does not exist.
/// </summary>
internal static class MaintenanceHost
{
    /// <summary>
    /// The commands that read the SQLite index through before they start (a quick check costs seconds per GB): those
    /// that walk or rewrite the archive. The others report a damaged index when they meet it, with the same remedy.
    /// </summary>
    private static readonly HashSet<string> IntegrityChecked = new(StringComparer.Ordinal) { "scrub", "audit verify", "backup", "keys rotate", "rescan" };

    public static JsonSerializerOptions Json { get; } = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        // Every key written, null when unknown: a script reading a key must find it whatever the outcome (before
        // 2026-12-08 audit verify dropped latest_verified_head exactly when tampering was found).
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Opens the data folder's services, or explains on stderr why it cannot (then returns null: exit 2).</summary>
    /// <summary>
    /// A service whose making loads what the settings name (the inspection engines and their rules): null, with the
    /// reason on standard error, when it cannot be made; an error of the run, not a crash.
    /// </summary>
    public static async Task<T?> ResolveAsync<T>(IServiceProvider services, string command, string what)
        where T : class
    {
        try
        {
            return services.GetRequiredService<T>();
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or FormatException or Microsoft.Extensions.Options.OptionsValidationException)
        {
            await Console.Error.WriteLineAsync($"vigie {command}: cannot {what}: {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// Opens the services of the data folder <paramref name="data"/> (--data; null when not given: then Archive:DataFolder
    /// from the environment or the settings file, else the default, the folder serve uses with the same settings).
    /// </summary>
    public static async Task<ServiceProvider?> OpenAsync(string? data, FileInfo? config, string command, CancellationToken cancellationToken,
        IReadOnlyDictionary<string, string?>? overrides = null)
    {
        var configuration = VigieConfiguration.Build(new HostSettings(data, config?.FullName, overrides ?? new Dictionary<string, string?>()), out var choice,
            out var read);
        var folder = choice.Folder;
        if (read.IgnoredInDataFolder is { } ignored)
        {
            await Console.Error.WriteLineAsync($"vigie {command}: {ignored} is inside the data folder and is not read (settings come from {read.File}): "
                + "if you did not put it there, the data folder may have been tampered with");
        }

        if (choice.Overruled is { } overruled)
        {
            await Console.Error.WriteLineAsync($"vigie {command}: the data folder is {folder}, from {choice.Source}; Archive:DataFolder {overruled} is ignored");
        }

        if (!Directory.Exists(folder))
        {
            await Console.Error.WriteLineAsync($"vigie {command}: no data folder at {folder}");
            return null;
        }

        // As serve says it: a misspelt key leaves a default in force (before 2026-12-06 the commands said nothing).
        foreach (var key in ConfigurationKeys.Unknown(configuration).Take(20))
        {
            await Console.Error.WriteLineAsync($"vigie {command}: configuration key {key} is not a Vigie setting and is ignored: misspelt?");
        }

        if (!await ConfigurationKeys.AllReadableAsync(configuration, $"vigie {command}: "))
        {
            return null;
        }

        // On stderr, not in --json: an operator sees which settings and which index the answer is about (a redirected
        // index made scrub and verify pass over a tampered one before 2026-12-07).
        await Console.Error.WriteLineAsync($"vigie {command}: settings from {DescribeSettings(read)}; index: {DescribeIndex(configuration)}; "
            + $"keys: {DescribeKeys(configuration)}");

        var services = new ServiceCollection();
        // Log lines go to stderr: stdout carries the command's output alone (--json must parse).
        services.AddLogging(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning)
            .AddFilter((category, level) => level >= LogLevel.Warning && category is not null));
        services.Configure<ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        services.AddVigieConfiguration(configuration);
        services.AddVigieCore();
        services.AddGateway();
        var provider = services.BuildServiceProvider();
        try
        {
            var database = provider.GetRequiredService<IOptions<DatabaseOptions>>().Value;
            if (database.Provider == DatabaseProvider.Sqlite && FileProblems.WhyUnreadable(database.SqlitePath!) is { } index)
            {
                throw new InvalidOperationException(index == FileProblems.Missing
                    ? ArchiveInitializer.IndexElsewhere(folder, database.SqlitePath!) ?? $"no index at {database.SqlitePath}: is {folder} a Vigie data folder?"
                    : $"the index {database.SqlitePath} {index}");
            }

            var keyFile = provider.GetRequiredService<IOptions<ArchiveOptions>>().Value.KeyFile;
            if (FileProblems.WhyUnreadable(keyFile!) is { } key)
            {
                throw new InvalidOperationException($"the key file {keyFile} {key}");
            }

            var migrator = provider.GetRequiredService<SchemaMigrator>();
            migrator.CheckIntegrity = IntegrityChecked.Contains(command);
            await migrator.MigrateAsync(cancellationToken);
            // As a start refuses it: a folder and another archive's index (scrub said "0 healthy, 6 in flight" and exited 0).
            await provider.GetRequiredService<ArchiveInitializer>().CheckIndexAsync(cancellationToken);
            await provider.GetRequiredService<IArchiveKeyService>().EnsureLoadedAsync(cancellationToken);
            return provider;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException or System.Data.Common.DbException)
        {
            await Console.Error.WriteLineAsync($"vigie {command}: {SqliteDatabase.DescribeDamage(e, SqliteDatabase.LastOpenedPath) ?? e.Message}");
            await provider.DisposeAsync();
            return null;
        }
    }

    /// <summary>The settings file read, or why none was.</summary>
    internal static string DescribeSettings(SettingsChoice read) => read.File ?? "no file (no --config, no vigie.json in the current folder)";

    /// <summary>Where the key-encryption key and the audit signing key are: their folder when they share one (the default, &lt;data&gt;.keys/).</summary>
    internal static string DescribeKeys(Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        var keyFile = configuration["Archive:KeyFile"] is { Length: > 0 } k ? Path.GetFullPath(k) : null;
        var signingKey = configuration["Audit:SigningKeyPath"] is { Length: > 0 } s ? Path.GetFullPath(s) : null;
        if (keyFile is not null && signingKey is not null
            && string.Equals(Path.GetDirectoryName(keyFile), Path.GetDirectoryName(signingKey), StringComparison.Ordinal))
        {
            return $"{Path.GetDirectoryName(keyFile)}{Path.DirectorySeparatorChar} ({Path.GetFileName(keyFile)}, {Path.GetFileName(signingKey)})";
        }

        return $"key file {keyFile ?? "(none: Archive:KeyFile is not set)"}, audit signing key {signingKey ?? "(none: Audit:SigningKeyPath is not set)"}";
    }

    /// <summary>The index the settings name: the SQLite file, or the PostgreSQL host, port and database (never the password).</summary>
    internal static string DescribeIndex(Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        var database = new DatabaseOptions();
        try
        {
            Microsoft.Extensions.Configuration.ConfigurationBinder.Bind(configuration.GetSection(DatabaseOptions.Section), database);
        }
        catch (InvalidOperationException)
        {
            // A value the binder cannot convert (a misspelt provider): the check of the settings names it; serve says
            // where it looks before that check.
            return "not known yet (a Database setting cannot be read)";
        }

        if (database.Provider != DatabaseProvider.Postgres)
        {
            return $"SQLite {(database.SqlitePath is { Length: > 0 } path ? Path.GetFullPath(path) : "(no path)")}";
        }

        try
        {
            var connection = new Npgsql.NpgsqlConnectionStringBuilder(database.ConnectionString);
            return $"PostgreSQL {connection.Host}:{connection.Port}, database {connection.Database ?? connection.Username}";
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            return "PostgreSQL (its connection string cannot be read)";
        }
    }

    /// <summary>Runs long work behind a spinner when a person is watching, silently otherwise.</summary>
    public static async Task<T> WithStatusAsync<T>(string what, bool quiet, Func<Task<T>> work) =>
        WatchingConsole(quiet) is { } console ? await console.Status().StartAsync(what, _ => work()) : await work();

    /// <summary>Runs long work of <paramref name="total"/> steps behind a progress bar when a person is watching, silently otherwise.</summary>
    public static async Task<T> WithProgressAsync<T>(string what, long total, bool quiet, Func<IProgress<long>?, Task<T>> work)
    {
        if (WatchingConsole(quiet) is not { } console)
        {
            return await work(null);
        }

        return await console.Progress().StartAsync(async context =>
        {
            var task = context.AddTask(what, maxValue: Math.Max(1, total));
            return await work(new Progress<long>(done => task.Value = done));
        });
    }

    /// <summary>Standard error as a live console, when a person is watching it and the output is not for a machine.</summary>
    private static IAnsiConsole? WatchingConsole(bool quiet) =>
        quiet || Console.IsErrorRedirected || !AnsiConsole.Profile.Capabilities.Interactive
            ? null
            : AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Writes <paramref name="value"/> as JSON on stdout, a value that does not apply written null, not left out.</summary>
    public static async Task WriteJsonAsync<T>(T value)
    {
        await using var stdout = Console.OpenStandardOutput();
        await JsonSerializer.SerializeAsync(stdout, value, Json);
        await stdout.WriteAsync("\n"u8.ToArray());
    }
}
