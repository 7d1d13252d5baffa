using System.CommandLine;
using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Core.IO;
using Vigie.Gateway;
using Vigie.Web;

namespace Vigie.Cli.Commands;

/// <summary>`vigie serve`: the DICOM node, the ingest pipeline, the forwarder, the audit signer and exporters, /health and /metrics.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var data = DataOption();
        var config = new Option<FileInfo?>("--config") { Description = "Configuration file (JSON). Default: vigie.json in the current folder; never one inside the data folder." };
        var dicomPort = new Option<int?>("--dicom-port") { Description = "DICOM port (default 11112; 0: none, DICOM over TLS only, Dicom:Server:TlsPort)." };
        var httpPort = new Option<int?>("--http-port") { Description = "HTTP port for /health, /metrics and the API (default 8080)." };
        foreach (var port in new[] { dicomPort, httpPort })
        {
            // Checked before anything is created or opened (an HTTP port out of range failed after the DICOM port opened).
            port.Validators.Add(result =>
            {
                // From the token: GetValueOrDefault throws on one that is not a number (reported by the parser itself).
                // --dicom-port 0 is Dicom:Server:Port 0, off (the TLS port alone), as from the file: the start refuses it
                // when no TLS port is set (until 2026-12-07 the flag refused 0 and the file took it as a random port).
                var least = port == dicomPort ? 0 : 1;
                if (result.Tokens.Count > 0 && int.TryParse(result.Tokens[^1].Value, CultureInfo.InvariantCulture, out var value) && (value < least || value > 65535))
                {
                    result.AddError(least == 0
                        ? $"{result.Option.Name} must be between 0 (off: DICOM over TLS only, Dicom:Server:TlsPort) and 65535."
                        : $"{result.Option.Name} must be between 1 and 65535.");
                }
            });
        }
        var ae = new Option<string?>("--ae") { Description = "This node's AE title (default VIGIE)." };
        var allow = new Option<string[]>("--allow")
        {
            Description = "Allow a calling AE from an address or network, with store, query and retrieve rights: AE@CIDR (repeatable). Default: any AE from this machine.",
            AllowMultipleArgumentsPerToken = false,
        };
        var forward = new Option<string[]>("--forward") { Description = "Forward every stored object to AE@host:port (repeatable), for example a PACS." };
        var destination = new Option<string[]>("--destination") { Description = "A C-MOVE destination, or a modality that asks for storage commitment, AE@host:port (repeatable): where associations to it go." };
        var command = new Command("serve", "Run Vigie: the DICOM node (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE), inspection, the encrypted archive, the audit trail and forwarding.")
        {
            data, config, dicomPort, httpPort, ae, allow, forward, destination,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var overrides = new Dictionary<string, string?>();
            if (parse.GetValue(dicomPort) is { } p)
            {
                overrides["Dicom:Server:Port"] = p.ToString(CultureInfo.InvariantCulture);
            }

            if (parse.GetValue(ae) is { } title)
            {
                overrides["Dicom:Server:AETitle"] = title;
            }

            try
            {
                VigieConfiguration.AddAllowRules(overrides, parse.GetValue(allow) ?? []);
                VigieConfiguration.AddDestinations(overrides, parse.GetValue(forward) ?? [], parse.GetValue(destination) ?? []);
            }
            catch (FormatException e)
            {
                await Console.Error.WriteLineAsync($"vigie serve: {e.Message}");
                return ExitCodes.Error;
            }

            var settings = new HostSettings(GivenData(parse, data), parse.GetValue(config)?.FullName, overrides);
            try
            {
                return await RunAsync(settings, parse.GetValue(httpPort), cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // A stop asked for while starting (systemctl stop or restart) is a clean stop, not a failed start: it
                // exited 2 with "cancelled", which on-failure restarts and monitoring read as a crash (until 2026-12-07).
                await Console.Error.WriteLineAsync("vigie serve: stopped while starting, as asked (SIGTERM or Ctrl+C)");
                return ExitCodes.Ok;
            }
        });
        return command;
    }

    /// <summary>A Web:Urls list with each URL trimmed and without the trailing "/" of an empty path.</summary>
    internal static string TidyUrls(string urls) => string.Join(';', urls.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
        .Select(u => Uri.TryCreate(u, UriKind.Absolute, out var uri) && uri.AbsolutePath == "/" && u.EndsWith('/') ? u.TrimEnd('/') : u));

    /// <summary>Each URL of a Web:Urls list on <paramref name="port"/>; one that does not parse is left for the check to name.</summary>
    internal static string WithPort(string urls, int port) => string.Join(';', urls.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
        .Select(u => Uri.TryCreate(u, UriKind.Absolute, out var uri) ? new UriBuilder(uri) { Port = port }.Uri.GetLeftPart(UriPartial.Authority) : u));

    /// <summary>
    /// Each URL must be http on an address, or localhost: the web server cannot bind a host name and listens on
    /// every interface instead, which put /health, /metrics and the audit API on the network while the status line
    /// named the host (before 2026-12-06). "*" and "+" are refused for the same reason: 0.0.0.0 or [::] says it.
    /// </summary>
    internal static string? WebUrlsProblem(string urls)
    {
        foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var scheme = url.IndexOf("://", StringComparison.Ordinal);
            if (scheme <= 0 || url[..scheme] is not ("http" or "https"))
            {
                return $"'{url}' is not an http:// URL";
            }

            if (url[..scheme] == "https")
            {
                // Said before anything starts (the web server's own hint, for a developer, came after the DICOM node listened).
                return $"'{url}' is https: the web endpoint has no certificate setting and serves plain HTTP; "
                    + "listen on http://127.0.0.1 and put a TLS reverse proxy in front for other machines";
            }

            var rest = url[(scheme + 3)..];
            var end = rest.IndexOf('/', StringComparison.Ordinal);
            var authority = end < 0 ? rest : rest[..end];
            if (end >= 0 && rest[end..] != "/")
            {
                return $"'{url}' has a path: the web endpoint listens at the root (give a reverse proxy the path)";
            }

            string host;
            string port;
            if (authority.StartsWith('['))
            {
                var close = authority.IndexOf(']', StringComparison.Ordinal);
                host = close < 0 ? authority : authority[1..close];
                port = close < 0 || close + 1 >= authority.Length || authority[close + 1] != ':' ? "" : authority[(close + 2)..];
            }
            else
            {
                var colon = authority.LastIndexOf(':');
                host = colon < 0 ? authority : authority[..colon];
                port = colon < 0 ? "" : authority[(colon + 1)..];
            }

            if (!string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) && !Vigie.Dicom.Network.IPAddressText.TryParse(host, out _))
            {
                return $"'{url}' names the host '{host}': the web server cannot listen on a name and would listen on every interface. "
                    + "Give an address: 127.0.0.1, ::1, or 0.0.0.0 for every interface";
            }

            if (port.Length > 0 && (!int.TryParse(port, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) || number > 65535))
            {
                return $"'{url}' has the port '{port}', not 0 to 65535";
            }
        }

        if (urls.Trim().Length == 0)
        {
            return "is empty";
        }

        // Two addresses on one port where one covers the other (the same address; localhost and 127.0.0.1; 0.0.0.0 and an
        // IPv4 address): the second bind fails as "address already in use", which sends the operator after another program.
        var endpoints = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(u => Uri.TryCreate(u, UriKind.Absolute, out var uri) ? (Url: u, Host: uri.Host.Trim('[', ']').ToLowerInvariant(), uri.Port) : (Url: u, Host: "", Port: -1))
            .Where(e => e.Port > 0).ToList();
        foreach (var (a, i) in endpoints.Select((e, i) => (e, i)))
        {
            foreach (var b in endpoints.Skip(i + 1).Where(b => b.Port == a.Port && Overlap(a.Host, b.Host)))
            {
                return $"'{a.Url}' and '{b.Url}' listen on the same address and port (--http-port gives every address of Web:Urls its port)";
            }
        }

        return null;
    }

    /// <summary>Whether two hosts of Web:Urls bind a common address: localhost is both loopbacks, [::] takes IPv4 too.</summary>
    private static bool Overlap(string a, string b)
    {
        if (a == b || a == "::" || b == "::")
        {
            return true;
        }

        if (a == "localhost" || b == "localhost")
        {
            var other = a == "localhost" ? b : a;
            return other is "127.0.0.1" or "::1" or "0.0.0.0";
        }

        return (a == "0.0.0.0" && !b.Contains(':', StringComparison.Ordinal)) || (b == "0.0.0.0" && !a.Contains(':', StringComparison.Ordinal));
    }

    /// <summary>The longest path SQLite's Unix file layer opens, in bytes, terminator excluded.</summary>
    private const int MaxSqlitePath = 511;

    public static Option<DirectoryInfo> DataOption() => new("--data")
    {
        Description = "Data folder (default: Archive:DataFolder from the environment or the settings file, else ./vigie-data). Keys are kept beside it, in <data>.keys.",
    };

    /// <summary>--data as given, or null: then Archive:DataFolder or the default decides (VigieConfiguration.Build).</summary>
    public static string? GivenData(ParseResult parse, Option<DirectoryInfo> data) => parse.GetValue(data)?.FullName;

    /// <summary>
    /// What stopped the start, in one line: a port in use, an unreachable database, a key or certificate file, each with
    /// the causes its message leaves out ("Failed to connect to host:port" without "Connection refused"). Anything
    /// else is a fault of Vigie's own, and keeps its stack trace.
    /// </summary>
    internal static string StartFailure(Exception e)
    {
        if (e is not (IOException or System.Net.Sockets.SocketException or System.Data.Common.DbException or System.Security.Cryptography.CryptographicException
            or System.Security.Authentication.AuthenticationException or UnauthorizedAccessException or InvalidOperationException or ArgumentException
            or TimeoutException or FormatException or Microsoft.Extensions.Options.OptionsValidationException))
        {
            return e.ToString();
        }

        if (e is IndexDamagedException)
        {
            return e.Message;
        }

        var message = ExceptionCauses.Describe(e);
        return e is System.Data.Common.DbException || e.InnerException is System.Data.Common.DbException ? "the index database: " + message : message;
    }

    /// <summary>
    /// The Application Stop of a start that failed after recording its Application Start (a port in use, a stop asked
    /// for while starting): PS3.15 A.5.3.1 pairs them, and until 2026-12-07 the trail kept the start alone.
    /// </summary>
    private static async Task RecordStopOfFailedStartAsync(IServiceProvider services)
    {
        var hosted = services.GetServices<IHostedService>().ToList();
        if (hosted.OfType<GatewayStartup>().FirstOrDefault() is { StartRecorded: true } && hosted.OfType<GatewayStopRecorder>().FirstOrDefault() is { } recorder)
        {
            await recorder.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>
    /// After a failed start: the data folder, or the SQLite index's folder, that cannot be written, with the likely cause;
    /// or the nearest existing folder above a data folder still to create. Before 2026-12-07 a read-only or immutable
    /// data folder stopped the start with "the index database: SQLite Error 14: 'unable to open database file'" alone.
    /// </summary>
    internal static string? UnwritableFolder(string folder, DatabaseOptions database)
    {
        var folders = new List<(string Folder, string What)> { (folder, "the data folder") };
        if (database.Provider == DatabaseProvider.Sqlite && Path.GetDirectoryName(Path.GetFullPath(database.SqlitePath!)) is { } index
            && !string.Equals(Path.TrimEndingDirectorySeparator(index), Path.TrimEndingDirectorySeparator(folder), StringComparison.Ordinal))
        {
            folders.Add((index, "the folder of the index (Database:SqlitePath)"));
        }

        foreach (var (each, what) in folders)
        {
            if (Directory.Exists(each))
            {
                if (FileProblems.WhyNotWritable(each) is { } why)
                {
                    return $"{what} {each} cannot be written: {why}";
                }

                continue;
            }

            var above = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(each));
            while (above is not null && !Directory.Exists(above))
            {
                above = Path.GetDirectoryName(above);
            }

            if (above is not null && FileProblems.WhyNotWritable(above) is { } parent)
            {
                return $"{what} {each} cannot be created in {above}: {parent}";
            }
        }

        return null;
    }

    private static async Task<int> RunAsync(HostSettings settings, int? httpPort, CancellationToken cancellationToken)
    {
        var configuration = VigieConfiguration.Build(settings, out var data, out var read);
        if (!await ConfigurationKeys.AllReadableAsync(configuration, "vigie serve: cannot start: "))
        {
            return ExitCodes.Error;
        }

        var folder = data.Folder;
        if (File.Exists(folder))
        {
            // Caught here: the index would otherwise fail on it with only "the file already exists".
            await Console.Error.WriteLineAsync($"vigie serve: cannot start: the data folder {folder} is a file, not a folder (--data, Archive:DataFolder)");
            return ExitCodes.Error;
        }

        // SQLite opens no path over 512 bytes ("unable to open database file"), and the folder was made before it said so.
        if (System.Text.Encoding.UTF8.GetByteCount(Path.Combine(folder, "index.db")) > MaxSqlitePath)
        {
            await Console.Error.WriteLineAsync($"vigie serve: cannot start: the data folder's path is {System.Text.Encoding.UTF8.GetByteCount(folder)} bytes; "
                + $"its index, {Path.Combine(folder, "index.db")}, would pass the {MaxSqlitePath} bytes SQLite opens: choose a shorter --data");
            return ExitCodes.Error;
        }

        // Before the host writes its own keys (urls) through to this configuration.
        var unknownKeys = ConfigurationKeys.Unknown(configuration);
        // The content root is the application folder: the default (the current folder) may hold the data folder, and the
        // host watches its content root recursively for configuration changes.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = "vigie", ContentRootPath = AppContext.BaseDirectory });
        builder.Configuration.AddConfiguration(configuration);
        // The flag wins over the file, as --dicom-port does: on each configured address, its port (before 2026-12-07 it
        // was dropped when the file named Web:Urls).
        // A list typed with spaces ("a; b") or trailing slashes reached the web server as written, which refused it with a
        // hint about https (until 2026-12-07): each address is trimmed first.
        var urls = configuration["Web:Urls"] is { } written && TidyUrls(written) is { } configured
            ? httpPort is { } port ? WithPort(configured, port) : configured
            : $"http://127.0.0.1:{httpPort ?? 8080}";
        if (WebUrlsProblem(urls) is { } urlProblem)
        {
            await Console.Error.WriteLineAsync($"vigie serve: cannot start: Web:Urls {urlProblem}");
            return ExitCodes.Error;
        }

        builder.WebHost.UseUrls(urls);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            // UTC to the millisecond, as the audit trail and its syslog export: a line is matched with the SIEM's events
            // (before 2026-12-06 local time without a zone).
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z' ";
        });
        // Each /health probe and /metrics scrape wrote four lines ("Request starting", endpoint, "finished"...).
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // While the host starts, its "Hosting failed to start" repeats with a stack trace what the CLI names in one line below.
        var starting = new StrongBox<bool>(true);
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", level => !(starting.Value && level >= LogLevel.Error));
        builder.Services.AddVigieConfiguration(configuration);
        builder.Services.AddVigieCore();
        builder.Services.AddGateway();
        builder.Services.AddVigieWeb();
        builder.Services.AddSingleton(sp => new SettingsFileWatch(VigieConfiguration.SettingsFiles(settings),
            sp.GetRequiredService<ILogger<SettingsFileWatch>>(), TimeProvider.System));
        builder.Services.AddHostedService(sp => sp.GetRequiredService<SettingsFileWatch>());
        builder.Services.AddHealthChecks().AddCheck<SettingsFileWatch>("settings");
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));
        await using var app = builder.Build();
        app.MapVigieEndpoints();
        var logger = app.Services.GetRequiredService<ILogger<Program>>();
        switch (VigieConfiguration.AccessListShapeOf(configuration))
        {
            case AccessListShape.Emptied:
                logger.LogWarning("Access:DicomNodes is an empty list: every DICOM caller is refused (remove the key for the loopback default)");
                break;
            case AccessListShape.EmptiedBesideEntries:
                // An empty value (VIGIE__ACCESS__DICOMNODES=) does not remove a file's list: .NET merges lists by index.
                logger.LogWarning("Access:DicomNodes is set empty (an environment variable?) but another source lists entries: those entries apply");
                break;
            case AccessListShape.AsWritten:
                break;
        }

        if (read.IgnoredInDataFolder is { } ignored)
        {
            // Not read, and not a reason to stay down: but one the operator did not put there means someone wrote the data folder.
            logger.LogWarning("{Ignored} is inside the data folder and is not read (settings come from {File}): if you did not put it there, the data folder may have been tampered with",
                ignored, read.File);
        }

        if (data.Overruled is { } overruled)
        {
            // The flag wins over the environment, the environment over the file (README's order), and the start says so.
            logger.LogWarning("The data folder is {Folder}, from {Source}; Archive:DataFolder {Overruled} is ignored", folder, data.Source, overruled);
        }

        foreach (var key in unknownKeys.Take(20))
        {
            // Not an error: a key of a later version must not stop a node. But a misspelt one leaves a default in force.
            logger.LogWarning("Configuration key {Key} is not a Vigie setting and is ignored: misspelt?", key);
        }

        // As the maintenance commands say it, in the service log this time: a vigie.json picked up from the working
        // folder or a redirected index showed nowhere a start is read (before 2026-12-07).
        logger.LogInformation("Settings from {Settings}; index: {Index}; keys: {Keys}", MaintenanceHost.DescribeSettings(read),
            MaintenanceHost.DescribeIndex(configuration), MaintenanceHost.DescribeKeys(configuration));

        try
        {
            // The settings first, on their own: failing inside the host's start, each came with the host's stack trace.
            app.Services.GetService<Microsoft.Extensions.Options.IStartupValidator>()?.Validate();
        }
        catch (Exception e) when (e is Microsoft.Extensions.Options.OptionsValidationException or InvalidOperationException or AggregateException)
        {
            // Several failed settings come as one AggregateException, the same one possibly twice (checked by two
            // validators): each is said once, on the one line (it was "vigie: AggregateException: ..." until 2026-12-07).
            var causes = e is AggregateException aggregate ? aggregate.Flatten().InnerExceptions.Select(ConfigurationKeys.Explain).Distinct(StringComparer.Ordinal) : [ConfigurationKeys.Explain(e)];
            await Console.Error.WriteLineAsync($"vigie serve: cannot start: {string.Join("; ", causes)}");
            return ExitCodes.Error;
        }

        var database = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<DatabaseOptions>>().Value;
        // SQLite said only "Error 14: unable to open database file" for an index it could not open (before 2026-12-06).
        if (database.Provider == DatabaseProvider.Sqlite && FileProblems.WhyUnreadable(database.SqlitePath!, FileAccess.ReadWrite) is { } indexProblem
            && indexProblem != FileProblems.Missing)
        {
            await Console.Error.WriteLineAsync($"vigie serve: cannot start: the index {database.SqlitePath} {indexProblem}");
            return ExitCodes.Error;
        }

        try
        {
            await app.StartAsync(cancellationToken);
            starting.Value = false;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The host calls no StopAsync after a failed start: its recorded start gets its stop here.
            await RecordStopOfFailedStartAsync(app.Services);
            if (e is OperationCanceledException)
            {
                throw;
            }

            // The DICOM listener names its own address; a bare socket error comes from the web server's.
            var where = e is System.Net.Sockets.SocketException || (e is IOException && e.InnerException is System.Net.Sockets.SocketException
                && !e.Message.Contains("DICOM", StringComparison.Ordinal)) ? $"HTTP on {urls} (Web:Urls or --http-port): " : "";
            var failure = where + StartFailure(e);
            // Looked for once the start has failed, so that a start that works writes nothing more in the data folder.
            await Console.Error.WriteLineAsync($"vigie serve: cannot start: {(UnwritableFolder(folder, database) is { } unwritable ? $"{unwritable} (the start failed on: {failure})" : failure)}");
            return ExitCodes.Error;
        }

        // What the web server listens on: port 0 becomes the port it was given.
        urls = string.Join(";", app.Urls);
        logger.LogInformation("Vigie {Implementation}: data in {Data}, HTTP on {Urls}", VigieConfiguration.Implementation, folder, urls);
        await ServiceManager.NotifyAsync($"READY=1\nSTATUS=Vigie: data in {folder}, HTTP on {urls}", cancellationToken);
        // Told at the start of the shutdown, so systemd reports "deactivating" while stores in flight finish.
        using var stopping = app.Lifetime.ApplicationStopping.Register(() => _ = ServiceManager.NotifyAsync("STOPPING=1", CancellationToken.None));
        await app.WaitForShutdownAsync(cancellationToken);
        // A service that failed stopped the host: that is no clean stop, and systemd's on-failure restart must see it
        // (before 2026-12-06 such a stop exited 0, and the node stayed down).
        var failed = app.Services.GetServices<IHostedService>().OfType<BackgroundService>()
            .FirstOrDefault(service => service.ExecuteTask?.IsFaulted == true);
        if (failed is not null)
        {
            await Console.Error.WriteLineAsync($"vigie serve: stopped because {failed.GetType().Name} failed: {failed.ExecuteTask!.Exception?.GetBaseException().Message}");
            return ExitCodes.Error;
        }

        return ExitCodes.Ok;
    }
}
