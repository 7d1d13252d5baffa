using Vigie.Archive.Index;
using Vigie.Archive.Storage;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

/// <summary>The repository contract, run on SQLite and on PostgreSQL.</summary>
public sealed class IndexContractTests
{
    private static ObjectId FakeObject(int seed)
    {
        var bytes = new byte[ObjectId.Size];
        new Random(seed).NextBytes(bytes);
        return new ObjectId(bytes);
    }

    private static async Task<IndexWriteResult> StoreAsync(ArchiveHarness archive, InstanceIndexEntry entry, ObjectId objectId, long length = 1000,
        bool commit = true)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var transaction = await archive.Database.BeginWriteAsync(connection, ct);
        var result = await archive.Index.StoreInstanceAsync(connection, transaction, entry with { ObjectId = objectId, ObjectLength = length }, ct);
        if (commit)
        {
            await transaction.CommitAsync(ct);
        }
        else
        {
            await transaction.RollbackAsync(ct);
        }

        return result;
    }

    /// <summary>3 patients × 2 studies × 2 series × 3 instances, study dates in 2024-01, 2024-02 and 2023-12.</summary>
    private static async Task SeedAsync(ArchiveHarness archive)
    {
        var n = 0;
        for (var p = 0; p < 3; p++)
        {
            for (var s = 1; s <= 2; s++)
            {
                for (var se = 1; se <= 2; se++)
                {
                    for (var i = 1; i <= 3; i++)
                    {
                        var date = (p, s) switch
                        {
                            (0, 1) => "20240115",
                            (0, 2) => "20240220",
                            (1, 1) => "20231231",
                            _ => "2024020" + (p + s),
                        };
                        await StoreAsync(archive, Samples.Entry(p, s, se, i, date, se == 1 ? "CT" : "SR"), FakeObject(++n));
                    }
                }
            }
        }
    }

    private static Task<QueryResult> QueryAsync(ArchiveHarness archive, QueryLevel level, params QueryKey[] keys) =>
        archive.Index.QueryAsync(new ArchiveQuery(level, keys) { IncludeCounts = true }, TestContext.Current.CancellationToken).AsTask();

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Storing_builds_the_hierarchy_and_is_idempotent(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var first = await StoreAsync(archive, Samples.Entry(1, 1, 1, 1), FakeObject(1));
        var second = await StoreAsync(archive, Samples.Entry(1, 1, 1, 2), FakeObject(2));
        var again = await StoreAsync(archive, Samples.Entry(1, 1, 1, 1), FakeObject(1));

        Assert.Equal(IndexOutcome.NewInstance, first.Outcome);
        Assert.Equal(1, first.Version);
        Assert.Equal(IndexOutcome.NewInstance, second.Outcome);
        Assert.Equal((first.PatientRowId, first.StudyRowId, first.SeriesRowId), (second.PatientRowId, second.StudyRowId, second.SeriesRowId));
        Assert.Equal(IndexOutcome.AlreadyStored, again.Outcome);
        Assert.Equal(first.InstanceRowId, again.InstanceRowId);
        Assert.Equal(HierarchyConflict.None, again.Conflicts);

        var stats = await archive.Index.GetStatsAsync(ct);
        Assert.Equal(new ArchiveStats(1, 1, 1, 2, 2, 2, 2000, 0), stats);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task New_content_for_a_known_instance_is_a_new_version_and_the_old_one_stays(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await StoreAsync(archive, Samples.Entry(1, 1, 1, 1), FakeObject(1), 100);
        var corrected = await StoreAsync(archive, Samples.Entry(1, 1, 1, 1), FakeObject(2), 200);
        var back = await StoreAsync(archive, Samples.Entry(1, 1, 1, 1), FakeObject(1), 100);

        Assert.Equal(IndexOutcome.NewVersion, corrected.Outcome);
        Assert.Equal(2, corrected.Version);
        Assert.Equal(3, back.Version);
        var versions = await archive.Index.GetVersionsAsync(Samples.SopUid(1, 1, 1, 1), ct);
        Assert.Equal([1, 2, 3], versions.Select(v => v.Version));
        Assert.Equal([FakeObject(1), FakeObject(2), FakeObject(1)], versions.Select(v => v.ObjectId));
        Assert.NotNull(versions[0].SupersededAt);
        Assert.Null(versions[2].SupersededAt);

        var location = await archive.Index.FindInstanceAsync(Samples.SopUid(1, 1, 1, 1) + "\0", ct);
        Assert.NotNull(location);
        Assert.Equal((3, FakeObject(1), 100L), (location.Version, location.ObjectId, location.Length));
        Assert.Null(await archive.Index.FindInstanceAsync("1.2.3.4", ct));
        var stored = await archive.Index.FindStoredInstancesAsync([Samples.SopUid(1, 1, 1, 1), "1.2.3.4"], ct);
        Assert.Equal(new StoredInstance(Samples.Entry(1, 1, 1, 1).Instance.SopClassUid, FakeObject(1), 100L),
            Assert.Single(stored, c => c.Key == Samples.SopUid(1, 1, 1, 1)).Value);
        Assert.False(stored.ContainsKey("1.2.3.4"));
        Assert.Equal(2, (await archive.Index.GetStatsAsync(ct)).Objects);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Writes_join_the_callers_transaction_and_a_rollback_leaves_nothing(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await StoreAsync(archive, Samples.Entry(1, 1, 1, 1), FakeObject(1), commit: false);
        Assert.Equal(new ArchiveStats(0, 0, 0, 0, 0, 0, 0, 0), await archive.Index.GetStatsAsync(ct));
        Assert.Empty((await QueryAsync(archive, QueryLevel.Patient)).Matches);
    }

    /// <summary>
    /// Regression: objects without a Patient ID (Type 2: unidentified or emergency patients) were all filed under one
    /// patient, keyed on the empty ID; a study was then answered under another person's name, and a search by that name
    /// found both. Each study without an ID now has a patient of its own.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_patients_without_a_patient_id_were_merged_into_one(DatabaseProvider provider)
    {
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        static InstanceIndexEntry Unidentified(int patient, string name, string birth) => Samples.Entry(patient, 1, 1, 1) with
        {
            Patient = new PatientEntry("", null, AttributeSet.From((DicomTags.PatientName, name), (DicomTags.PatientBirthDate, birth))),
        };

        Assert.Equal(HierarchyConflict.None, (await StoreAsync(archive, Unidentified(1, "ZZNOIDONE^ALICE", "19500101"), FakeObject(1))).Conflicts);
        Assert.Equal(HierarchyConflict.None, (await StoreAsync(archive, Unidentified(2, "ZZNOIDTWO^BOB", "19600202"), FakeObject(2))).Conflicts);
        // A second image of the first study joins its patient.
        var second = Unidentified(1, "ZZNOIDONE^ALICE", "19500101") with { Instance = Samples.Entry(1, 1, 1, 2).Instance };
        Assert.Equal(HierarchyConflict.None, await archive.Index.FindHierarchyConflictsAsync(second, TestContext.Current.CancellationToken));
        Assert.Equal(HierarchyConflict.None, (await StoreAsync(archive, second, FakeObject(3))).Conflicts);

        Assert.Equal(2, (await QueryAsync(archive, QueryLevel.Patient)).Matches.Count);
        var alice = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyInstanceUid, Samples.StudyUid(1, 1)), new QueryKey(DicomTags.PatientName, ""));
        Assert.Equal("ZZNOIDONE^ALICE", Assert.Single(alice.Matches).Attributes.First(DicomTags.PatientName));
        Assert.Single((await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.PatientName, "ZZNOIDTWO*"))).Matches);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Hierarchy_conflicts_keep_the_existing_links_and_are_reported(DatabaseProvider provider)
    {
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await StoreAsync(archive, Samples.Entry(1, 1, 1, 1), FakeObject(1));
        // The same study UID arrives under another patient.
        var moved = Samples.Entry(2, 1, 1, 2) with { Study = Samples.Entry(1, 1, 1, 1).Study, Series = Samples.Entry(1, 1, 1, 1).Series };
        var result = await StoreAsync(archive, moved, FakeObject(2));
        Assert.True(result.Conflicts.HasFlag(HierarchyConflict.StudyUnderOtherPatient));
        var studies = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyInstanceUid, Samples.StudyUid(1, 1)),
            new QueryKey(DicomTags.PatientId, ""));
        Assert.Equal(Samples.PatientId(1), Assert.Single(studies.Matches).Attributes.First(DicomTags.PatientId));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Patient_level_queries_by_id_exact_name_prefix_wildcard_and_birth_date(DatabaseProvider provider)
    {
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await SeedAsync(archive);

        var byId = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientId, Samples.PatientId(1)));
        var match = Assert.Single(byId.Matches);
        Assert.Equal("DURAND^MARIE", match.Attributes.First(DicomTags.PatientName));
        Assert.Equal(new RelatedCounts(2, 4, 12), match.Counts);
        Assert.Equal(1, byId.CandidatesScanned);

        // The common DUPONT* form narrows on a keyed prefix hash: only DUPONT^JEAN is a candidate.
        var prefix = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientName, "dupont*"));
        Assert.Equal("DUPONT^JEAN", Assert.Single(prefix.Matches).Attributes.First(DicomTags.PatientName));
        Assert.Equal(1, prefix.CandidatesScanned);

        var exact = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientName, "Durand^Marie"));
        Assert.Equal(Samples.PatientId(1), Assert.Single(exact.Matches).Attributes.First(DicomTags.PatientId));

        // Accents do not matter; "MARTIN^ÉLODIE" is found as MARTIN^ELODIE.
        var accent = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientName, "MARTIN^ELO*"));
        Assert.Equal("MARTIN^ÉLODIE", Assert.Single(accent.Matches).Attributes.First(DicomTags.PatientName));

        // Leading wildcards cannot use a hash: decrypt and filter every candidate.
        var suffix = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientName, "*MARIE"));
        Assert.Single(suffix.Matches);
        Assert.Equal(3, suffix.CandidatesScanned);

        var birth = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientBirthDate, "19510215"));
        Assert.Equal(Samples.PatientId(1), Assert.Single(birth.Matches).Attributes.First(DicomTags.PatientId));

        Assert.Equal(3, (await QueryAsync(archive, QueryLevel.Patient)).Matches.Count);
        Assert.Empty((await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientId, "NOBODY"))).Matches);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Study_level_queries_by_date_range_accession_uid_list_and_modality(DatabaseProvider provider)
    {
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await SeedAsync(archive);

        var january = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyDate, "20240101-20240131"),
            new QueryKey(DicomTags.PatientName, ""));
        var only = Assert.Single(january.Matches);
        Assert.Equal(Samples.StudyUid(0, 1), only.Attributes.First(DicomTags.StudyInstanceUid));
        Assert.Equal("DUPONT^JEAN", only.Attributes.First(DicomTags.PatientName));
        Assert.Equal(new RelatedCounts(1, 2, 6), only.Counts);

        var from = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyDate, "20240201-"));
        Assert.Equal(4, from.Matches.Count);
        var until = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyDate, "-20231231"));
        Assert.Equal(Samples.StudyUid(1, 1), Assert.Single(until.Matches).Attributes.First(DicomTags.StudyInstanceUid));

        var accession = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.AccessionNumber, Samples.Accession(2, 2)));
        Assert.Equal(Samples.StudyUid(2, 2), Assert.Single(accession.Matches).Attributes.First(DicomTags.StudyInstanceUid));

        var list = await QueryAsync(archive, QueryLevel.Study,
            new QueryKey(DicomTags.StudyInstanceUid, $"{Samples.StudyUid(0, 2)}\\{Samples.StudyUid(2, 1)}\\1.2.3.999"));
        Assert.Equal([Samples.StudyUid(0, 2), Samples.StudyUid(2, 1)],
            list.Matches.Select(m => m.Attributes.First(DicomTags.StudyInstanceUid)).Order(StringComparer.Ordinal));
        Assert.Equal(2, list.CandidatesScanned);

        var modalities = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.PatientId, Samples.PatientId(0)),
            new QueryKey(DicomTags.ModalitiesInStudy, "SR"));
        Assert.Equal(2, modalities.Matches.Count);
        Assert.All(modalities.Matches, m => Assert.Equal(["CT", "SR"], m.Attributes[DicomTags.ModalitiesInStudy]));
        var description = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyDescription, "*THORAX 2"));
        Assert.Equal(2, description.Matches.Count);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Open_ended_date_range_finds_a_study_dated_years_ahead(DatabaseProvider provider)
    {
        // "A-" narrowed its candidates to the months from A to a year after today, so a study dated later was never read.
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await SeedAsync(archive);
        await StoreAsync(archive, Samples.Entry(3, 1, 1, 1, "20990301"), FakeObject(100));

        var from = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyDate, "20240201-"));
        Assert.Equal(5, from.Matches.Count);
        Assert.Contains(Samples.StudyUid(3, 1), from.Matches.Select(m => m.Attributes.First(DicomTags.StudyInstanceUid)));
        var until = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyDate, "-20240115"));
        Assert.Equal(2, until.Matches.Count);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Multi_valued_keys_match_any_of_their_values(DatabaseProvider provider)
    {
        // PS3.4 C.2.2.2.8: CT\MR matched nothing, as one value "CT\MR".
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await SeedAsync(archive);
        await StoreAsync(archive, Samples.Entry(3, 1, 1, 1, "20250101", "MR"), FakeObject(100));

        var modalities = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.ModalitiesInStudy, "MR\\PT"));
        Assert.Equal(Samples.StudyUid(3, 1), Assert.Single(modalities.Matches).Attributes.First(DicomTags.StudyInstanceUid));
        Assert.Equal(7, (await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.ModalitiesInStudy, "SR\\MR"))).Matches.Count);

        var ids = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientId, $"{Samples.PatientId(0)}\\{Samples.PatientId(2)}\\NOBODY"));
        Assert.Equal([Samples.PatientId(0), Samples.PatientId(2)], ids.Matches.Select(m => m.Attributes.First(DicomTags.PatientId)).Order(StringComparer.Ordinal));
        Assert.Equal(2, ids.CandidatesScanned);

        var dates = await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.StudyDate, "20240115\\20231201-20231231"));
        Assert.Equal([Samples.StudyUid(0, 1), Samples.StudyUid(1, 1)],
            dates.Matches.Select(m => m.Attributes.First(DicomTags.StudyInstanceUid)).Order(StringComparer.Ordinal));

        var names = await QueryAsync(archive, QueryLevel.Patient, new QueryKey(DicomTags.PatientName, "DURAND*\\MARTIN^ELODIE"));
        Assert.Equal(2, names.Matches.Count);
        Assert.Equal(2, (await QueryAsync(archive, QueryLevel.Study, new QueryKey(DicomTags.AccessionNumber, $"{Samples.Accession(2, 2)}\\{Samples.Accession(0, 1)}")))
            .Matches.Count);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Counts_of_a_matchs_parents_are_the_parents_own(DatabaseProvider provider)
    {
        // Number of Patient Related Studies at STUDY level gave the study's own numbers (1 study).
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await SeedAsync(archive);
        var studies = await archive.Index.QueryAsync(new ArchiveQuery(QueryLevel.Study, [new QueryKey(DicomTags.PatientId, Samples.PatientId(0))])
            {
                IncludeCounts = true,
                ParentCounts = [QueryLevel.Patient, QueryLevel.Series],
            },
            TestContext.Current.CancellationToken);
        Assert.Equal(2, studies.Matches.Count);
        Assert.All(studies.Matches, m =>
        {
            Assert.Equal(new RelatedCounts(2, 4, 12), m.CountsOf(QueryLevel.Patient));
            Assert.Equal(new RelatedCounts(1, 2, 6), m.CountsOf(QueryLevel.Study));
            Assert.Null(m.CountsOf(QueryLevel.Series));
        });

        var series = await archive.Index.QueryAsync(new ArchiveQuery(QueryLevel.Series, [new QueryKey(DicomTags.StudyInstanceUid, Samples.StudyUid(1, 2))])
            {
                ParentCounts = [QueryLevel.Patient, QueryLevel.Study],
            },
            TestContext.Current.CancellationToken);
        Assert.Equal(2, series.Matches.Count);
        Assert.All(series.Matches, m =>
        {
            Assert.Null(m.Counts);
            Assert.Equal(new RelatedCounts(2, 4, 12), m.CountsOf(QueryLevel.Patient));
            Assert.Equal(new RelatedCounts(1, 2, 6), m.CountsOf(QueryLevel.Study));
        });
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Series_and_instance_level_queries_return_objects(DatabaseProvider provider)
    {
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await SeedAsync(archive);

        var series = await QueryAsync(archive, QueryLevel.Series, new QueryKey(DicomTags.StudyInstanceUid, Samples.StudyUid(1, 2)),
            new QueryKey(DicomTags.Modality, "CT"));
        var ct = Assert.Single(series.Matches);
        Assert.Equal(Samples.SeriesUid(1, 2, 1), ct.Attributes.First(DicomTags.SeriesInstanceUid));
        Assert.Equal(3, ct.Counts!.Instances);

        var instances = await QueryAsync(archive, QueryLevel.Instance, new QueryKey(DicomTags.SeriesInstanceUid, Samples.SeriesUid(2, 1, 2)));
        Assert.Equal(3, instances.Matches.Count);
        Assert.All(instances.Matches, m =>
        {
            Assert.NotNull(m.ObjectId);
            Assert.Equal(1000, m.ObjectLength);
            Assert.Equal(1, m.Version);
            Assert.Equal(Samples.CtImageStorage, m.Attributes.First(DicomTags.SopClassUid));
            Assert.Equal(Samples.StudyUid(2, 1), m.Attributes.First(DicomTags.StudyInstanceUid));
        });

        var sops = await QueryAsync(archive, QueryLevel.Instance,
            new QueryKey(DicomTags.SopInstanceUid, $"{Samples.SopUid(0, 1, 1, 1)}\\{Samples.SopUid(2, 2, 2, 3)}"));
        Assert.Equal(2, sops.Matches.Count);
        var number = await QueryAsync(archive, QueryLevel.Instance, new QueryKey(DicomTags.SeriesInstanceUid, Samples.SeriesUid(0, 1, 1)),
            new QueryKey(DicomTags.InstanceNumber, "2"));
        Assert.Equal(Samples.SopUid(0, 1, 1, 2), Assert.Single(number.Matches).Attributes.First(DicomTags.SopInstanceUid));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Query_limits_are_reported_as_incomplete(DatabaseProvider provider)
    {
        await using var archive = await ArchiveHarness.CreateAsync(provider, o =>
        {
            o.QueryBatchSize = 4;
            o.QueryMaxCandidates = 8;
        });
        await SeedAsync(archive);
        var limited = await archive.Index.QueryAsync(new ArchiveQuery(QueryLevel.Instance, []) { Limit = 5 }, TestContext.Current.CancellationToken);
        Assert.Equal(5, limited.Matches.Count);
        Assert.True(limited.Incomplete);
        var scan = await QueryAsync(archive, QueryLevel.Instance, new QueryKey(DicomTags.InstanceNumber, "9"));
        Assert.Empty(scan.Matches);
        Assert.True(scan.Incomplete);
        Assert.Equal(8, scan.CandidatesScanned);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task The_recovery_floor_only_moves_down_until_cleared(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var first = DateTimeOffset.FromUnixTimeMilliseconds(1_790_000_000_000);
        Assert.Null(await archive.Index.RecoveryFloorAsync(ct));

        await archive.Index.LowerRecoveryFloorAsync(first, ct);
        Assert.Equal(first, await archive.Index.RecoveryFloorAsync(ct));
        await archive.Index.LowerRecoveryFloorAsync(first.AddHours(1), ct);
        Assert.Equal(first, await archive.Index.RecoveryFloorAsync(ct));
        await archive.Index.LowerRecoveryFloorAsync(first.AddHours(-1), ct);
        Assert.Equal(first.AddHours(-1), await archive.Index.RecoveryFloorAsync(ct));

        await archive.Index.ClearRecoveryFloorAsync(ct);
        Assert.Null(await archive.Index.RecoveryFloorAsync(ct));
        await archive.Index.LowerRecoveryFloorAsync(first.AddHours(1), ct);
        Assert.Equal(first.AddHours(1), await archive.Index.RecoveryFloorAsync(ct));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Quarantine_records_are_sealed_and_listed(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        await using (var connection = await archive.Database.OpenConnectionAsync(ct))
        await using (var transaction = await archive.Database.BeginWriteAsync(connection, ct))
        {
            await archive.Index.AddQuarantineAsync(connection, transaction, new QuarantineEntry(Guid.NewGuid().ToString("N"), FakeObject(1), 42,
                "ELF polyglot in preamble", DateTimeOffset.UnixEpoch.AddDays(20000),
                AttributeSet.From((0x0000_0902, "rule dicom.preamble.elf"), (DicomTags.PatientId, "VIGPID00009X"))), ct);
            await transaction.CommitAsync(ct);
        }

        var record = Assert.Single(await archive.Index.ListQuarantineAsync(0, 10, ct));
        var found = await archive.Index.FindQuarantineAsync(record.QuarantineId, ct);
        Assert.Equal((record.RowId, record.Reason, "VIGPID00009X"), (found!.RowId, found.Reason, found.Details.First(DicomTags.PatientId)));
        Assert.Null(await archive.Index.FindQuarantineAsync("0123456789abcdef0123456789abcdef", ct));
        Assert.Equal("ELF polyglot in preamble", record.Reason);
        Assert.Equal("VIGPID00009X", record.Details.First(DicomTags.PatientId));
        Assert.Equal(42, record.Length);
        Assert.Equal(1, (await archive.Index.GetStatsAsync(ct)).Quarantined);
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Concurrent_writers_of_one_new_study_share_its_rows(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(provider);
        var results = await Task.WhenAll(Enumerable.Range(1, 8).Select(i => Task.Run(() => StoreAsync(archive, Samples.Entry(4, 1, 1, i), FakeObject(i)), ct)));
        Assert.Single(results.Select(r => r.StudyRowId).Distinct());
        Assert.Single(results.Select(r => r.SeriesRowId).Distinct());
        var stats = await archive.Index.GetStatsAsync(ct);
        Assert.Equal((1, 1, 1, 8), (stats.Patients, stats.Studies, stats.Series, stats.Instances));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Hostile_index_entries_fail_with_a_typed_error(DatabaseProvider provider)
    {
        await using var archive = await ArchiveHarness.CreateAsync(provider, o => o.MaxIndexAttributesBytes = 2048);
        var huge = Samples.Entry(1, 1, 1, 1) with
        {
            Study = new StudyEntry(Samples.StudyUid(1, 1), AttributeSet.From((DicomTags.StudyDescription, new string('A', 5000)))),
        };
        await Assert.ThrowsAsync<IndexLimitException>(async () => await StoreAsync(archive, huge, FakeObject(1)));
        var noUid = Samples.Entry(1, 1, 1, 1) with { Instance = new InstanceEntry("  ", Samples.CtImageStorage, AttributeSet.Empty) };
        await Assert.ThrowsAsync<IndexLimitException>(async () => await StoreAsync(archive, noUid, FakeObject(1)));
        var longUid = Samples.Entry(1, 1, 1, 1) with { Series = new SeriesEntry("1." + new string('2', 80), AttributeSet.Empty) };
        await Assert.ThrowsAsync<IndexLimitException>(async () => await StoreAsync(archive, longUid, FakeObject(1)));
    }
}
