using Vigie.Audit.Model;
using Vigie.Audit.Verification;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>
/// The sparse time index: one row where the minute changes from the entry before. A search by time must still find
/// every entry in the period, including one whose clock was behind, and a run deleted or moved must fail verification.
/// </summary>
public sealed class MinuteRunTests
{
    private static readonly DateTimeOffset Start = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_040_000);

    // Five minutes of entries 20 s apart, then one stamped two minutes earlier (a late event or a clock behind), then more.
    private static readonly TimeSpan[] Offsets =
    [
        .. Enumerable.Range(0, 15).Select(i => TimeSpan.FromSeconds(20 * i)),
        TimeSpan.FromSeconds(65),
        .. Enumerable.Range(15, 6).Select(i => TimeSpan.FromSeconds(20 * i)),
    ];

    private static async Task<AuditHarness> LogAsync(DatabaseProvider provider)
    {
        var h = await AuditHarness.CreateAsync(provider);
        // Half in one transaction, the rest one at a time: a run continues across appends.
        var records = Offsets.Select((offset, i) => Samples.Record(i, Start + offset)).ToList();
        await h.AppendAsync(records[..10]);
        foreach (var record in records[10..])
        {
            await h.AppendAsync([record]);
        }

        return h;
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_search_by_time_finds_every_entry_of_the_period_even_one_out_of_order(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await LogAsync(provider);
        (TimeSpan? From, TimeSpan? To)[] periods =
        [
            (TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(120)), (TimeSpan.FromSeconds(70), null), (null, TimeSpan.FromSeconds(61)),
            (TimeSpan.FromSeconds(400), null), (TimeSpan.FromSeconds(-600), TimeSpan.FromSeconds(-60)),
        ];
        foreach (var (from, to) in periods)
        {
            var expected = Offsets.Select((o, i) => (o, (long)i)).Where(x => (from is null || x.o >= from) && (to is null || x.o < to)).Select(x => x.Item2).ToList();
            var seen = new List<long>();
            long? cursor = null;
            while (true)
            {
                var page = await h.Log.QueryAsync(new AuditQuery { From = Start + from, To = Start + to, Limit = 2, Cursor = cursor, Ascending = true }, ct);
                seen.AddRange(page.Entries.Select(e => e.Sequence));
                if (page.NextCursor is null)
                {
                    break;
                }

                cursor = page.NextCursor;
            }

            Assert.Equal(expected, seen);
        }

        // Minutes 0 to 4, the late entry's minute 1, then minutes 5 and 6.
        Assert.Equal(8, Convert.ToInt32(await h.ScalarAsync("SELECT COUNT(*) FROM audit_minute_run"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.True((await h.Log.VerifyAsync(null, ct)).IsValid);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Deleting_a_minute_run_hides_entries_and_fails_verification(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await LogAsync(provider);
        // Entry 15 is the late one; without its run it would be searched as part of minute 5.
        await h.ExecuteAsync("DELETE FROM audit_minute_run WHERE seq = 15");
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.False(report.IsValid);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TimeIndexMismatch && p.Sequence == 15);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_minute_run_moved_to_another_minute_fails_verification(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await LogAsync(provider);
        await h.ExecuteAsync("UPDATE audit_minute_run SET minute = minute + 60 WHERE seq = 0");
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.False(report.IsValid);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.TimeIndexMismatch && p.Sequence == 0);
    }
}
