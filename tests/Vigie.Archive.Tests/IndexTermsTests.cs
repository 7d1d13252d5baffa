using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Archive.Scrub;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>The keyed-hash search terms of patient and study rows, checked by scrub against the sealed rows. SQLite and PostgreSQL.</summary>
public sealed class IndexTermsTests
{
    /// <summary>
    /// Regression (review 22 N4): deleting a patient's archive_terms rows hid their studies from C-FIND and C-GET by
    /// Patient ID, scrub was clean, and nothing rebuilt them. Scrub now names the row; maintenance's run rewrites its terms.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_deleted_search_terms_hid_a_patient_and_scrub_was_clean(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var dupont = (await archive.IngestAsync(IndexTamperTests.Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1))).Index;
        var martin = (await archive.IngestAsync(IndexTamperTests.Dicom(Samples.SopUid(2, 1, 1, 1), 2), Samples.Entry(2, 1, 1, 1))).Index;
        Assert.Single((await InstancesOfAsync(archive, Samples.PatientId(1))).Matches);

        await ExecuteAsync(archive, $"DELETE FROM archive_terms WHERE level = 0 AND row_id = {dupont.PatientRowId}");
        // And a term planted on the other patient's study: one that is not its own.
        await ExecuteAsync(archive, $"INSERT INTO archive_terms (term, level, row_id) VALUES (@t, 1, {martin.StudyRowId})",
            ("@t", archive.Keys.HashIdentifier(IdentifierKinds.AccessionNumber, "PLANTED")));
        Assert.Empty((await InstancesOfAsync(archive, Samples.PatientId(1))).Matches);

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal(1, report.ExitCode);
        Assert.Equal(2, report.IndexTampered);
        var patient = Assert.Single(report.Findings, f => f.Location == $"index archive_patients #{dupont.PatientRowId}");
        Assert.Equal(ScrubFindingKind.IndexTampered, patient.Kind);
        Assert.DoesNotContain(Samples.PatientId(1), patient.Reason, StringComparison.Ordinal);
        Assert.Contains(report.Findings, f => f.Location == $"index archive_studies #{martin.StudyRowId}" && f.Reason.Contains("1 are not its own", StringComparison.Ordinal));

        // Maintenance's run rewrites them (reported, so the run is alerted), and the patient is found again.
        var repaired = await archive.Scrub.RunAsync(new ScrubRequest { RepairTerms = true }, ct);
        Assert.Equal(2, repaired.TermsRepaired);
        Assert.Equal(1, repaired.ExitCode);
        Assert.Single((await InstancesOfAsync(archive, Samples.PatientId(1))).Matches);
        Assert.Empty((await archive.Index.QueryAsync(new ArchiveQuery(QueryLevel.Study, [new QueryKey(DicomTags.AccessionNumber, "PLANTED")]), ct)).Matches);
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    /// <summary>
    /// Regression (review 25 F2): search terms copied onto row ids that did not exist yet (the next patient and study, an
    /// id in a gap, a level that has no terms) passed scrub, and attached to the next patient and study stored. Scrub now
    /// names every term whose owner row does not exist, maintenance's run deletes them, and a new row never inherits terms.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_planted_terms_on_rows_not_yet_made_passed_scrub_and_attached_to_the_next_patient(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await archive.IngestAsync(IndexTamperTests.Dicom(Samples.SopUid(1, 1, 1, 1), 1), Samples.Entry(1, 1, 1, 1));
        var martin = (await archive.IngestAsync(IndexTamperTests.Dicom(Samples.SopUid(2, 1, 1, 1), 2), Samples.Entry(2, 1, 1, 1))).Index;
        var maxPatient = await ScalarAsync(archive, "SELECT MAX(id) FROM archive_patients");
        var maxStudy = await ScalarAsync(archive, "SELECT MAX(id) FROM archive_studies");

        // The next ids (a sequence may skip one), an id in a gap, and a level that has no terms.
        for (var next = 1; next <= 3; next++)
        {
            await ExecuteAsync(archive, $"INSERT INTO archive_terms (term, level, row_id) SELECT term, 0, {maxPatient + next} FROM archive_terms WHERE level = 0 AND row_id = {martin.PatientRowId}");
            await ExecuteAsync(archive, $"INSERT INTO archive_terms (term, level, row_id) SELECT term, 1, {maxStudy + next} FROM archive_terms WHERE level = 1 AND row_id = {martin.StudyRowId}");
        }

        await ExecuteAsync(archive, $"INSERT INTO archive_terms (term, level, row_id) SELECT term, 0, -7 FROM archive_terms WHERE level = 0 AND row_id = {martin.PatientRowId}");
        await ExecuteAsync(archive, $"INSERT INTO archive_terms (term, level, row_id) SELECT term, 5, {martin.PatientRowId} FROM archive_terms WHERE level = 0 AND row_id = {martin.PatientRowId}");

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal(1, report.ExitCode);
        Assert.Equal(8, report.IndexTampered);
        Assert.Contains(report.Findings, f => f.Location == $"index archive_terms level 0 row #{maxPatient + 1}" && f.Kind == ScrubFindingKind.IndexTampered);
        Assert.Contains(report.Findings, f => f.Location == $"index archive_terms level 1 row #{maxStudy + 1}");
        Assert.Contains(report.Findings, f => f.Location == "index archive_terms level 0 row #-7");
        Assert.Contains(report.Findings, f => f.Location == $"index archive_terms level 5 row #{martin.PatientRowId}" && f.Reason.Contains("a level that has none", StringComparison.Ordinal));

        // A new patient and study stored before any repair do not inherit the planted terms.
        var bernard = (await archive.IngestAsync(IndexTamperTests.Dicom(Samples.SopUid(3, 1, 1, 1), 3), Samples.Entry(3, 1, 1, 1))).Index;
        Assert.InRange(bernard.PatientRowId, maxPatient + 1, maxPatient + 3);
        var afterStore = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.DoesNotContain(afterStore.Findings, f => f.Location == $"index archive_patients #{bernard.PatientRowId}" || f.Location == $"index archive_studies #{bernard.StudyRowId}");
        Assert.Equal(6, afterStore.IndexTampered);
        Assert.Single((await InstancesOfAsync(archive, Samples.PatientId(2))).Matches);
        Assert.Equal(bernard.PatientRowId, Assert.Single((await InstancesOfAsync(archive, Samples.PatientId(3))).Matches).PatientRowId);

        // Maintenance's run deletes them (reported, so the run is alerted); the next run is clean.
        var repaired = await archive.Scrub.RunAsync(new ScrubRequest { RepairTerms = true }, ct);
        Assert.Equal(1, repaired.ExitCode);
        Assert.Equal(6, repaired.TermsRepaired);
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
        Assert.Equal(0, await ScalarAsync(archive, "SELECT COUNT(*) FROM archive_terms WHERE level NOT IN (0, 1) OR row_id < 0"));
    }

    private static async Task<long> ScalarAsync(ArchiveHarness archive, string sql)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, sql);
        return Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static Task<QueryResult> InstancesOfAsync(ArchiveHarness archive, string patientId) =>
        archive.Index.QueryAsync(new ArchiveQuery(QueryLevel.Instance, [new QueryKey(DicomTags.PatientId, patientId)]), TestContext.Current.CancellationToken)
            .AsTask();

    private static async Task ExecuteAsync(ArchiveHarness archive, string sql, params (string Name, object Value)[] parameters)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand(null, sql);
        foreach (var (name, value) in parameters)
        {
            command.With(name, value);
        }

        await command.ExecuteNonQueryAsync(ct);
    }
}
