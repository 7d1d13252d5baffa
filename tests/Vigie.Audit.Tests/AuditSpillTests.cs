using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Vigie.Audit.Model;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>The spill that keeps audit records while the trail's database is out of reach.</summary>
public sealed class AuditSpillTests
{
    private static AuditRecord Refusal(string ae, string patientRef) => new()
    {
        Time = DateTimeOffset.FromUnixTimeMilliseconds(1_765_000_000_000),
        EventId = AuditEventIds.SecurityAlert,
        EventTypes = [AuditEventTypes.NodeAuthentication],
        Action = AuditAction.Execute,
        Outcome = AuditOutcome.MinorFailure,
        Participants = [new AuditParticipant { UserId = ae, IsRequestor = true, Kind = AuditParticipantKind.Application, NetworkAccessPointId = "192.0.2.7" }],
        PatientRef = patientRef,
        Details = new AuditDetails { OutcomeDescription = "refused for now: SYNTH^SPILLNAME" },
    };

    /// <summary>An append that takes the records into <paramref name="appended"/>, as the trail would.</summary>
    private static Func<IReadOnlyList<AuditRecord>, CancellationToken, ValueTask> Into(List<AuditRecord> appended) => (records, _) =>
    {
        appended.AddRange(records);
        return ValueTask.CompletedTask;
    };

    [Fact]
    public async Task Kept_records_are_sealed_and_come_back_whole_with_their_time_and_the_files_go()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-spill");
        var sealer = new TestSealer();
        using (var stopped = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = folder.Path }), NullLogger<AuditSpill>.Instance, sealer))
        {
            Assert.True(await stopped.KeepAsync(Refusal("MODALITY1", "ab12"), ct));
            Assert.True(await stopped.KeepAsync(Refusal("MODALITY2", "cd34"), ct));
        }

        // The process that kept them stopped (its file is no longer locked); the next one appends them.
        using var spill = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = folder.Path }), NullLogger<AuditSpill>.Instance, sealer);
        var file = Assert.Single(Directory.GetFiles(folder.Path));
        var bytes = await File.ReadAllBytesAsync(file, ct);
        Assert.DoesNotContain("SPILLNAME", Encoding.Latin1.GetString(bytes), StringComparison.Ordinal);
        Assert.DoesNotContain("MODALITY1", Encoding.Latin1.GetString(bytes), StringComparison.Ordinal);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        }

        var appended = new List<AuditRecord>();
        Assert.Equal(2, await spill.DrainAsync(Into(appended), ct));
        Assert.Equal(["MODALITY1", "MODALITY2"], appended.Select(r => r.Participants[0].UserId));
        Assert.Equal(Refusal("X", "ab12").Time, appended[0].Time);
        Assert.Equal("ab12", appended[0].PatientRef);
        Assert.Equal("refused for now: SYNTH^SPILLNAME", appended[0].Details!.OutcomeDescription);
        Assert.Equal(AuditEventTypes.NodeAuthentication, Assert.Single(appended[0].EventTypes));
        Assert.Empty(Directory.GetFiles(folder.Path));
    }

    [Fact]
    public async Task A_failed_append_leaves_the_file_for_the_next_round_and_a_torn_last_line_is_skipped()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-spill");
        var sealer = new TestSealer();
        using var spill = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = folder.Path }), NullLogger<AuditSpill>.Instance, sealer);
        Assert.True(await spill.KeepAsync(Refusal("MODALITY1", "ab12"), ct));

        await Assert.ThrowsAsync<InvalidOperationException>(async () =>
            await spill.DrainAsync((_, _) => throw new InvalidOperationException("database still away"), ct));
        var file = Assert.Single(Directory.GetFiles(folder.Path));
        // A crash in the middle of a write: the last line is cut (it was never synced, so never counted as kept).
        await File.AppendAllTextAsync(file, "archive-root/seal-v1 AAAA", ct);

        var appended = new List<AuditRecord>();
        Assert.Equal(1, await spill.DrainAsync(Into(appended), ct));
        Assert.Single(appended);
        Assert.Empty(Directory.GetFiles(folder.Path));
    }

    [Fact]
    public async Task A_spill_that_cannot_be_written_says_so_instead_of_throwing()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-spill");
        // A file where the folder should be: nothing can be created under it.
        var blocked = folder.Combine("audit-spill");
        await File.WriteAllTextAsync(blocked, "", ct);
        using var spill = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = blocked }), NullLogger<AuditSpill>.Instance, new TestSealer());
        Assert.False(await spill.KeepAsync(Refusal("MODALITY1", "ab12"), ct));
    }

    /// <summary>Regression: a spill folder the service may not create (EPERM) threw out of the refusal's audit.</summary>
    [Fact]
    public async Task Regression_a_spill_folder_that_may_not_be_made_threw_instead_of_saying_so()
    {
        // sysfs refuses every new directory, root included.
        Assert.SkipUnless(OperatingSystem.IsLinux() && Directory.Exists("/sys/kernel"), "needs Linux sysfs");
        using var spill = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = "/sys/kernel/vigie-audit-spill" }), NullLogger<AuditSpill>.Instance,
            new TestSealer());
        Assert.False(await spill.KeepAsync(Refusal("MODALITY1", "ab12"), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task A_file_another_process_writes_is_left_to_it_and_a_full_spill_counts_what_it_drops()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-spill");
        var sealer = new TestSealer();
        using var other = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = folder.Path }), NullLogger<AuditSpill>.Instance, sealer);
        using var spill = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = folder.Path, MaxSpilledRecords = 1 }), NullLogger<AuditSpill>.Instance,
            sealer);
        Assert.True(await other.KeepAsync(Refusal("OTHER", "ab12"), ct));
        Assert.True(await spill.KeepAsync(Refusal("MINE", "cd34"), ct));
        Assert.False(await spill.KeepAsync(Refusal("MINE2", "cd34"), ct));
        Assert.Equal(1, spill.TakeDropped());

        var appended = new List<AuditRecord>();
        Assert.Equal(1, await spill.DrainAsync(Into(appended), ct));
        Assert.Equal("MINE", Assert.Single(appended).Participants[0].UserId);
        Assert.Single(Directory.GetFiles(folder.Path));
    }

    /// <summary>
    /// Regression: each drain round closed the open spill file and reset the count, so through an outage (a round
    /// every 10 s, each failing) `Audit:MaxSpilledRecords` bounded 10 s of records, not the process's: a flood of
    /// refused associations could fill the disk. The records count until their file is appended.
    /// </summary>
    [Fact]
    public async Task Regression_the_spill_bound_was_reset_by_every_failed_drain_round()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-spill");
        using var spill = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = folder.Path, MaxSpilledRecords = 2 }), NullLogger<AuditSpill>.Instance,
            new TestSealer());
        for (var round = 0; round < 3; round++)
        {
            await spill.KeepAsync(Refusal($"MODALITY{round}", "ab12"), ct);
            await Assert.ThrowsAsync<InvalidOperationException>(async () =>
                await spill.DrainAsync((_, _) => throw new InvalidOperationException("database still away"), ct));
        }

        Assert.Equal(1, spill.TakeDropped());

        // Once appended, they no longer count.
        var appended = new List<AuditRecord>();
        Assert.Equal(2, await spill.DrainAsync(Into(appended), ct));
        Assert.True(await spill.KeepAsync(Refusal("AFTER", "ab12"), ct));
        Assert.True(await spill.KeepAsync(Refusal("AFTER2", "ab12"), ct));
        Assert.False(await spill.KeepAsync(Refusal("AFTER3", "ab12"), ct));
    }

    /// <summary>
    /// Regression: spill files were drained in name order, so a process's generation 10 came before its generation 2,
    /// and after ten rounds of an outage its records entered the trail out of order.
    /// </summary>
    [Fact]
    public async Task Regression_spill_files_were_drained_in_name_order_so_generation_10_came_before_2()
    {
        var ct = TestContext.Current.CancellationToken;
        using var folder = new TempDirectory("vigie-spill");
        using var spill = new AuditSpill(Options.Create(new AuditOptions { SpillFolder = folder.Path }), NullLogger<AuditSpill>.Instance, new TestSealer());
        for (var round = 0; round < 12; round++)
        {
            Assert.True(await spill.KeepAsync(Refusal($"MODALITY{round}", "ab12"), ct));
            await Assert.ThrowsAsync<InvalidOperationException>(async () =>
                await spill.DrainAsync((_, _) => throw new InvalidOperationException("database still away"), ct));
        }

        var appended = new List<AuditRecord>();
        Assert.Equal(12, await spill.DrainAsync(Into(appended), ct));
        Assert.Equal(Enumerable.Range(0, 12).Select(i => $"MODALITY{i}"), appended.Select(r => r.Participants[0].UserId));
    }

    /// <summary>
    /// Regression: a spilled record altered in its file (it fails authentication) was dropped with one log line and its
    /// file deleted, and the records the spill could not take were only logged: nothing entered the audit trail, and
    /// `audit verify` said intact. A Security Alert now gives the counts once the database answers, and the damaged file
    /// is kept.
    /// </summary>
    [Fact]
    public async Task Regression_a_damaged_spilled_record_vanished_with_a_log_line_and_nothing_in_the_trail()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(Vigie.Core.Data.DatabaseProvider.Sqlite);
        using var folder = new TempDirectory("vigie-spill");
        var options = Options.Create(new AuditOptions { SpillFolder = folder.Path, MaxSpilledRecords = 3 });
        using (var stopped = new AuditSpill(options, NullLogger<AuditSpill>.Instance, h.Sealer))
        {
            for (var i = 0; i < 4; i++)
            {
                await stopped.KeepAsync(Refusal($"MODALITY{i}", "ab12"), ct);
            }

            // The fourth was over the cap: counted, then the process stopped before a round could record it.
            Assert.Equal(1, stopped.TakeDropped());
        }

        var file = Assert.Single(Directory.GetFiles(folder.Path));
        var lines = await File.ReadAllLinesAsync(file, ct);
        var sealedPart = lines[1].ToCharArray();
        var at = lines[1].IndexOf(' ', StringComparison.Ordinal) + 10;
        sealedPart[at] = sealedPart[at] == 'A' ? 'B' : 'A';
        lines[1] = new string(sealedPart);
        await File.WriteAllLinesAsync(file, lines, ct);

        using var spill = new AuditSpill(options, NullLogger<AuditSpill>.Instance, h.Sealer);
        var service = new AuditSpillService(spill, h.Log, h.Store, options, TimeProvider.System, NullLogger<AuditSpillService>.Instance);
        // And a record this process could not take (its spill at the cap): lost too.
        for (var i = 4; i < 7; i++)
        {
            Assert.True(await spill.KeepAsync(Refusal($"MODALITY{i}", "ab12"), ct));
        }

        Assert.False(await spill.KeepAsync(Refusal("MODALITY7", "ab12"), ct));
        await service.DrainOnceAsync(ct);

        var refusals = await h.Log.QueryAsync(new AuditQuery { EventId = "110113", Outcome = AuditOutcome.MinorFailure, Limit = 10 }, ct);
        Assert.Equal(5, refusals.Entries.Count);
        var alert = Assert.Single((await h.Log.QueryAsync(new AuditQuery { EventId = "110113", Outcome = AuditOutcome.SeriousFailure, Limit = 10 }, ct)).Entries);
        var details = (await h.Log.GetAsync(alert.Sequence, unseal: true, ct))!.Details!.OutcomeDescription!;
        Assert.Contains(": 1 could not be kept in the spill", details, StringComparison.Ordinal);
        Assert.Contains("1 kept in it could not be read back", details, StringComparison.Ordinal);
        Assert.EndsWith(".spill.damaged", Assert.Single(Directory.GetFiles(folder.Path)), StringComparison.Ordinal);
    }
}
