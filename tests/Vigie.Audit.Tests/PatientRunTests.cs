using Microsoft.Extensions.DependencyInjection;
using Vigie.Audit.Model;
using Vigie.Audit.Storage;
using Vigie.Audit.Verification;
using Vigie.Core;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>
/// The sparse patient index: one row where the patient changes from the entry before. A patient's view must still
/// find every entry, page by page, and a run deleted or pointed at another patient must fail verification.
/// </summary>
public sealed class PatientRunTests
{
    // Bursts as the gateway writes them (a study per patient), entries without a patient between, and a patient who
    // comes back later; the singles are appended one transaction each, so a run continues across appends.
    private static readonly (string? Patient, int Count, bool Singles)[] Bursts =
    [
        ("A", 5, false), (null, 2, false), ("B", 3, true), ("A", 4, false), ("C", 1, true), ("A", 2, true), ("B", 6, false), (null, 1, true),
    ];

    private static async Task<(AuditHarness Harness, List<string?> Patients)> BurstLogAsync(DatabaseProvider provider)
    {
        var h = await AuditHarness.CreateAsync(provider);
        var patients = new List<string?>();
        foreach (var (patient, count, singles) in Bursts)
        {
            var records = Enumerable.Range(patients.Count, count)
                .Select(i => Samples.Record(i) with { PatientRef = patient is null ? null : Samples.PatientRef(patient[0]) })
                .ToList();
            if (singles)
            {
                foreach (var record in records)
                {
                    await h.AppendAsync([record]);
                }
            }
            else
            {
                await h.AppendAsync(records);
            }

            patients.AddRange(Enumerable.Repeat(patient is null ? null : Samples.PatientRef(patient[0]), count));
        }

        return (h, patients);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_patients_view_finds_every_entry_across_runs_and_pages(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (h, patients) = await BurstLogAsync(provider);
        await using var _ = h;
        foreach (var patient in new[] { "A", "B", "C" }.Select(p => Samples.PatientRef(p[0])))
        {
            var expected = patients.Select((p, i) => (p, (long)i)).Where(x => x.p == patient).Select(x => x.Item2).ToList();
            foreach (var ascending in new[] { true, false })
            {
                var seen = new List<long>();
                long? cursor = null;
                while (true)
                {
                    var page = await h.Log.QueryAsync(new AuditQuery { PatientRef = patient, Limit = 2, Cursor = cursor, Ascending = ascending }, ct);
                    seen.AddRange(page.Entries.Select(e => e.Sequence));
                    if (page.NextCursor is null)
                    {
                        break;
                    }

                    cursor = page.NextCursor;
                }

                Assert.Equal(ascending ? expected : Enumerable.Reverse(expected).ToList(), seen);
            }
        }

        Assert.Equal(Bursts.Length, Convert.ToInt32(await h.ScalarAsync("SELECT COUNT(*) FROM audit_patient_run"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.True((await h.Log.VerifyAsync(null, ct)).IsValid);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Deleting_a_patient_run_hides_entries_and_fails_verification(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (h, _) = await BurstLogAsync(provider);
        await using var __ = h;
        // Entries 7 to 9 belong to B; without their run they vanish from B's view.
        await h.ExecuteAsync("DELETE FROM audit_patient_run WHERE seq = 7");
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.False(report.IsValid);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.PatientIndexMismatch && p.Sequence == 7);
    }

    /// <summary>
    /// Regression: a node of an older release that wrote to a trail a newer one had upgraded (a downgrade, or a rolling
    /// upgrade on a shared PostgreSQL) wrote its entries without the runs: verify failed for good, the patient's view
    /// and a search by time missed them, and nothing rebuilt the derived indexes from the entries.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_entries_an_older_node_wrote_without_runs_stayed_out_of_the_indexes(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (h, patients) = await BurstLogAsync(provider);
        await using var __ = h;
        await h.ExecuteAsync("DELETE FROM audit_patient_run WHERE seq >= 7");
        await h.ExecuteAsync("DELETE FROM audit_minute_run");
        await h.ExecuteAsync("INSERT INTO audit_minute_run (seq, minute) VALUES (3, 12345)");
        var broken = await h.Log.VerifyAsync(null, ct);
        Assert.Contains(broken.Problems, p => p.Kind == AuditProblemKind.PatientIndexMismatch && p.Sequence == 7);
        Assert.Contains(broken.Problems, p => p.Kind == AuditProblemKind.TimeIndexMismatch);
        Assert.Contains("vigie audit reindex", broken.Problems.First(p => p.Kind == AuditProblemKind.PatientIndexMismatch).Reason, StringComparison.Ordinal);

        var runs = await h.Log.RebuildIndexesAsync(ct);
        Assert.True(runs >= Bursts.Length, runs.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.True(report.IsValid, string.Join("\n", report.Problems));
        var b = Samples.PatientRef('B');
        var page = await h.Log.QueryAsync(new AuditQuery { PatientRef = b, Limit = 100 }, ct);
        Assert.Equal(patients.Count(p => p == b), page.Entries.Count);
        Assert.Equal(Bursts.Length, Convert.ToInt32(await h.ScalarAsync("SELECT COUNT(*) FROM audit_patient_run"), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_patient_run_pointed_at_another_patient_fails_verification(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        var (h, _) = await BurstLogAsync(provider);
        await using var __ = h;
        await h.ExecuteAsync("UPDATE audit_patient_run SET patient_ref = @p WHERE seq = 10", ("@p", Samples.PatientRef('C')));
        var report = await h.Log.VerifyAsync(null, ct);
        Assert.False(report.IsValid);
        Assert.Contains(report.Problems, p => p.Kind == AuditProblemKind.PatientIndexMismatch && p.Sequence == 10);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Migrating_an_existing_log_builds_its_patient_runs(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var db = await TestDatabases.CreateAsync(provider, ct);
        await using var services = new ServiceCollection().AddVigieCore().BuildServiceProvider();
        var core = services.GetServices<ISchemaProvider>().ToList();
        await new SchemaMigrator(db.Database, [new FirstVersionOnly(), .. core]).MigrateAsync(ct);

        // A log written before the runs existed: only the sequence and the patient matter here.
        string?[] patients = ["p1", "p1", null, null, "p2", "p1", "p1", null, "p2"];
        await using (var connection = await db.Database.OpenConnectionAsync(ct))
        {
            for (var i = 0; i < patients.Length; i++)
            {
                await using var insert = connection.CreateCommand(null, $"""
                        INSERT INTO audit_entry ({AuditStore.EntryColumns})
                        VALUES (@s, 0, 'e', '', 'C', 0, 'u', '[]', NULL, @p, 'src', NULL, NULL, @h, @h)
                        """).With("@s", (long)i).With("@p", patients[i]).With("@h", new byte[32]);
                await insert.ExecuteNonQueryAsync(ct);
            }
        }

        await new SchemaMigrator(db.Database, [new AuditSchema(), .. core]).MigrateAsync(ct);
        var runs = new List<(long, string?)>();
        await using (var connection = await db.Database.OpenConnectionAsync(ct))
        {
            await using var select = connection.CreateCommand(null, "SELECT seq, patient_ref FROM audit_patient_run ORDER BY seq");
            await using var reader = await select.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                runs.Add((reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetString(1)));
            }
        }

        Assert.Equal([(0L, "p1"), (2L, null), (4L, "p2"), (5L, "p1"), (7L, null), (8L, "p2")], runs);
        // All at time 0: one minute run.
        await using (var connection = await db.Database.OpenConnectionAsync(ct))
        {
            await using var minutes = connection.CreateCommand(null, "SELECT COUNT(*) FROM audit_minute_run WHERE seq = 0 AND minute = 0");
            Assert.Equal(1L, Convert.ToInt64(await minutes.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.Empty(await new AuditStore(db.Database).FindRunProblemsAsync(10, ct));
    }

    private sealed class FirstVersionOnly : ISchemaProvider
    {
        public IEnumerable<SchemaMigration> Migrations { get; } = [new AuditSchema().Migrations.First()];
    }
}
