using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Vigie.Audit.Export;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>
/// Regression: the NDJSON export, which holds patient identities in clear, was appended to whatever the existing file's
/// mode and owner (0644 from an installer, 0666 from another account), with no refusal and /health healthy.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ExportFileExposureTests
{
    [Fact]
    public async Task Regression_an_ndjson_export_file_readable_by_others_was_appended_to()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var dir = new TempDirectory();
        var path = dir.Combine("audit.ndjson");
        await File.WriteAllBytesAsync(path, [], ct);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        var options = new AuditSinkOptions
        {
            Name = "file", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = path, MinBackoff = TimeSpan.FromMilliseconds(20), MaxBackoff = TimeSpan.FromMilliseconds(50),
        };
        h.Options.Sinks.Add(options);
        await h.AppendAsync(Samples.Records(0, 3));
        await using var sink = new FhirNdjsonSink(options, null);

        // Refused at each attempt, the reason logged once, and shown where /health reads it.
        var logger = new ListLogger();
        var worker = new AuditExportWorker(options, sink, h.Store, h.Log.Factory, h.Signal, h.Leases, TimeProvider.System, "test-holder", logger);
        using (var stop = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            var run = worker.RunAsync(stop.Token);
            await Eventually.WaitForAsync<(long NextSeq, int Attempts, long UpdatedMs, string? LastError)?>(() => h.Store.ReadCursorStatusAsync(worker.CursorName, ct).AsTask(), c => c?.Attempts >= 3, ct, TimeSpan.FromSeconds(20));
            await stop.CancelAsync();
            try
            {
                await run;
            }
            catch (OperationCanceledException)
            {
                // A stop while the worker records a failure ends it so (as the host's stop does).
            }
        }

        Assert.Equal(0, new FileInfo(path).Length);
        Assert.Equal("644", Convert.ToString((int)File.GetUnixFileMode(path), 8));
        var reason = Assert.Single(logger.Entries, e => e.Level == LogLevel.Error).Message;
        Assert.Contains($"the NDJSON audit export {path} holds patient data in clear but is mode 644", reason, StringComparison.Ordinal);
        Assert.Contains($"chmod 600 {path}", reason, StringComparison.Ordinal);
        Assert.DoesNotContain(logger.Entries, e => e.Level == LogLevel.Warning);
        var status = Assert.Single(await new AuditExportStatus(Microsoft.Extensions.Options.Options.Create(h.Options), h.Store).GetAsync(ct));
        Assert.True(status.FailedAttempts > 0);
        Assert.Contains("group or others can read or write it", status.LastError, StringComparison.Ordinal);
        Assert.EndsWith(AuditExportFile.Refusal(path)!, reason, StringComparison.Ordinal);

        // Once the operator made it the account's alone, the entries go out.
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Assert.Null(AuditExportFile.Refusal(path));
        Assert.Equal(3, await worker.RunOnceAsync(ct));
        Assert.Equal(3, (await File.ReadAllLinesAsync(path, ct)).Count(l => l.Contains(Samples.PatientId, StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Regression_an_ndjson_export_file_owned_by_another_account_was_appended_to()
    {
        Assert.SkipUnless(Environment.UserName == "root", "only root can give a file to another account");
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var dir = new TempDirectory();
        var path = dir.Combine("audit.ndjson");
        await File.WriteAllBytesAsync(path, [], ct);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using (var chown = System.Diagnostics.Process.Start("chown", ["65534", path]))
        {
            await chown.WaitForExitAsync(ct);
            Assert.Equal(0, chown.ExitCode);
        }

        var options = new AuditSinkOptions { Name = "file", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = path };
        await h.AppendAsync(Samples.Records(0, 2));
        await using var sink = new FhirNdjsonSink(options, null);
        var refused = await Assert.ThrowsAsync<AuditExportFileExposedException>(async () => await h.ExportWorker(options, sink).RunOnceAsync(ct));
        Assert.Contains("owned by uid 65534, not by uid 0 that runs Vigie", refused.Message, StringComparison.Ordinal);
        Assert.Contains($"chown 0 {path} && chmod 600 {path}, or remove it", refused.Message, StringComparison.Ordinal);
        Assert.Equal(0, new FileInfo(path).Length);
    }

    [Fact]
    public async Task An_ndjson_export_file_the_sink_creates_is_the_accounts_alone()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var dir = new TempDirectory();
        var options = new AuditSinkOptions { Name = "file", Kind = AuditSinkKind.FhirNdjson, NdjsonPath = dir.Combine("sub", "audit.ndjson") };
        await h.AppendAsync(Samples.Records(0, 2));
        await using var sink = new FhirNdjsonSink(options, null);
        Assert.Equal(2, await h.ExportWorker(options, sink).RunOnceAsync(ct));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(options.NdjsonPath));
        Assert.Null(AuditExportFile.Refusal(options.NdjsonPath));
    }

    private sealed class ListLogger : ILogger
    {
        public ConcurrentQueue<(LogLevel Level, string Message)> Entries { get; } = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Enqueue((logLevel, formatter(state, exception)));
    }
}
