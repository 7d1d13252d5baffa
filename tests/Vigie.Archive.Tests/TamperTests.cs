using Vigie.Archive.Scrub;
using Vigie.Archive.Storage;

namespace Vigie.Archive.Tests;

/// <summary>Every kind of damage to a stored object is caught by a read and by scrub, which names the object and its index row.</summary>
public sealed class TamperTests
{
    private const int Segment = 4096;

    public enum Tamper
    {
        FlipMagic,
        FlipVersion,
        FlipSegmentSize,
        FlipNoncePrefix,
        FlipKeyId,
        FlipWrappedKey,
        FlipFirstSegment,
        FlipLastSegment,
        FlipTrailer,
        TruncateOneByte,
        TruncateOneSegment,
        TruncateToHeader,
        Extend,
        ReorderSegments,
        SwapWithOtherObject,
        ReencryptUnderUnknownKey,
        ReplaceWithRansomNote,
        Delete,
        RenameWithExtension,

        /// <summary>Bug: a FIFO in place of an object hung scrub and rescan for ever (opening it waits for a writer).</summary>
        ReplaceWithFifo,

        /// <summary>Bug: a symbolic link to an intact copy outside the data folder passed as healthy.</summary>
        ReplaceWithSymlinkToCopy,
    }

    public static TheoryData<Tamper> All => new(Enum.GetValues<Tamper>());

    [Theory]
    [MemberData(nameof(All))]
    public async Task Damage_is_detected_by_read_and_by_scrub(Tamper tamper)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var victim = Samples.Content(5 * Segment + 100, 1);
        var other = Samples.Content(5 * Segment + 100, 2);
        var (victimObject, victimIndex) = await archive.IngestAsync(victim, Samples.Entry(1, 1, 1, 1));
        var (otherObject, _) = await archive.IngestAsync(other, Samples.Entry(1, 1, 1, 2));
        await archive.IngestAsync(Samples.Content(3000, 3), Samples.Entry(2, 1, 1, 1));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);

        var path = archive.Store.Layout.ObjectPath(victimObject.Id);
        var expectedScrub = await ApplyAsync(tamper, archive, path, archive.Store.Layout.ObjectPath(otherObject.Id), victim);

        // A read of the whole object fails with a typed error.
        var error = await Assert.ThrowsAsync<ObjectFormatException>(async () => await archive.ReadAllAsync(victimObject.Id));
        Assert.Equal(victimObject.Id.ToString(), error.Location);

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.False(report.IsClean);
        Assert.Equal(1, report.ExitCode);
        var finding = Assert.Single(report.Findings, f => f.ObjectId == victimObject.Id);
        Assert.Equal(expectedScrub, finding.Kind);
        var reference = Assert.Single(finding.References);
        Assert.Equal(victimIndex.InstanceRowId, reference.InstanceRowId);
        Assert.Equal(1, reference.Version);
        Assert.Contains(victimObject.Id.ToString(), finding.ToString(), StringComparison.Ordinal);
        if (tamper != Tamper.SwapWithOtherObject)
        {
            Assert.DoesNotContain(report.Findings, f => f.ObjectId == otherObject.Id);
        }

        // Regression: sending the images again, the remedy scrub points to, was acknowledged but kept the damaged copy
        // (the new one was dropped as a duplicate). The copy that arrives now takes the damaged one's place.
        await archive.IngestAsync(victim, Samples.Entry(1, 1, 1, 1));
        await archive.IngestAsync(other, Samples.Entry(1, 1, 1, 2));
        Assert.Equal(victim, await archive.ReadAllAsync(victimObject.Id));
        var healed = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        // A renamed copy stays for the operators to remove: it is not the object's file, which is whole again.
        Assert.True(healed.IsClean || (tamper == Tamper.RenameWithExtension && healed.Findings.All(f => f.Kind == ScrubFindingKind.Foreign)),
            string.Join("\n", healed.Findings));
        Assert.Equal(tamper is Tamper.Delete or Tamper.RenameWithExtension ? 0 : 1, Directory.Exists(archive.Store.Layout.Damaged)
            ? Directory.GetFiles(archive.Store.Layout.Damaged).Count(f => Path.GetFileName(f).StartsWith(victimObject.Id.ToString(), StringComparison.Ordinal))
            : 0);
    }

    /// <summary>
    /// Regression: the header bytes outside its fields (a used slot's padding after the wrapped key, an empty slot) are
    /// authenticated by nothing, and scrub passed them altered: bytes could be hidden in an archived object. Reading the
    /// image still works (its content is whole); scrub names the object, and sending it again replaces the copy.
    /// </summary>
    [Theory]
    [InlineData(ObjectFormat.PrefixSize + ObjectFormat.SlotSize - 1)]
    [InlineData(ObjectFormat.PrefixSize + ObjectFormat.SlotSize + 10)]
    [InlineData(ObjectFormat.PrefixSize + 1)]
    public async Task Regression_bytes_hidden_in_the_header_padding_passed_scrub(int offset)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(3 * Segment + 7, 4);
        var (stored, _) = await archive.IngestAsync(content, Samples.Entry(1, 1, 1, 1));
        var path = archive.Store.Layout.ObjectPath(stored.Id);
        var bytes = await File.ReadAllBytesAsync(path, ct);
        Assert.Equal(0, bytes[offset]);
        bytes[offset] = 0x42;
        await File.WriteAllBytesAsync(path, bytes, ct);

        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        var finding = Assert.Single(report.Findings);
        Assert.Equal(ScrubFindingKind.Corrupted, finding.Kind);
        Assert.Contains("outside its fields", finding.ToString(), StringComparison.Ordinal);

        await archive.IngestAsync(content, Samples.Entry(1, 1, 1, 1));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
    }

    private static async Task<ScrubFindingKind> ApplyAsync(Tamper tamper, ArchiveHarness archive, string path, string otherPath, byte[] content)
    {
        var ct = TestContext.Current.CancellationToken;
        var bytes = await File.ReadAllBytesAsync(path, ct);
        var fullSegment = Segment + ObjectFormat.TagSize;

        async Task<ScrubFindingKind> Flip(int offset, ScrubFindingKind kind)
        {
            bytes[offset] ^= 0x10;
            await File.WriteAllBytesAsync(path, bytes, ct);
            return kind;
        }

        async Task<ScrubFindingKind> Write(byte[] replacement, ScrubFindingKind kind)
        {
            await File.WriteAllBytesAsync(path, replacement, ct);
            return kind;
        }

        switch (tamper)
        {
            case Tamper.FlipMagic:
                return await Flip(1, ScrubFindingKind.Foreign);
            case Tamper.FlipVersion:
                return await Flip(8, ScrubFindingKind.Corrupted);
            case Tamper.FlipSegmentSize:
                return await Flip(14, ScrubFindingKind.Corrupted);
            case Tamper.FlipNoncePrefix:
                return await Flip(17, ScrubFindingKind.Corrupted);
            case Tamper.FlipKeyId:
                return await Flip(ObjectFormat.PrefixSize + 10, ScrubFindingKind.Foreign);
            case Tamper.FlipWrappedKey:
                return await Flip(ObjectFormat.PrefixSize + ObjectFormat.SlotHeaderSize + 5, ScrubFindingKind.Corrupted);
            case Tamper.FlipFirstSegment:
                return await Flip(ObjectFormat.HeaderSize + 100, ScrubFindingKind.Corrupted);
            case Tamper.FlipLastSegment:
                return await Flip(bytes.Length - ObjectFormat.TrailerSize - 20, ScrubFindingKind.Corrupted);
            case Tamper.FlipTrailer:
                return await Flip(bytes.Length - 30, ScrubFindingKind.Corrupted);
            case Tamper.TruncateOneByte:
                return await Write(bytes[..^1], ScrubFindingKind.Corrupted);
            case Tamper.TruncateOneSegment:
                return await Write(bytes[..^fullSegment], ScrubFindingKind.Corrupted);
            case Tamper.TruncateToHeader:
                return await Write(bytes[..ObjectFormat.HeaderSize], ScrubFindingKind.Corrupted);
            case Tamper.Extend:
                return await Write([.. bytes, .. new byte[fullSegment]], ScrubFindingKind.Corrupted);
            case Tamper.ReorderSegments:
            {
                var first = bytes.AsSpan(ObjectFormat.HeaderSize, fullSegment).ToArray();
                bytes.AsSpan(ObjectFormat.HeaderSize + fullSegment, fullSegment).CopyTo(bytes.AsSpan(ObjectFormat.HeaderSize));
                first.CopyTo(bytes.AsSpan(ObjectFormat.HeaderSize + fullSegment));
                return await Write(bytes, ScrubFindingKind.Corrupted);
            }

            case Tamper.SwapWithOtherObject:
            {
                var other = await File.ReadAllBytesAsync(otherPath, ct);
                await File.WriteAllBytesAsync(otherPath, bytes, ct);
                return await Write(other, ScrubFindingKind.Corrupted);
            }

            case Tamper.ReencryptUnderUnknownKey:
            {
                // Same content sealed by another installation (another key file): well-formed, but not under our keys.
                await using var attacker = await ArchiveHarness.CreateAsync();
                var foreign = await attacker.PutAsync(content);
                return await Write(await File.ReadAllBytesAsync(attacker.Store.Layout.ObjectPath(foreign.Id), ct), ScrubFindingKind.Foreign);
            }

            case Tamper.ReplaceWithRansomNote:
                return await Write("YOUR FILES ARE ENCRYPTED. Send 1 BTC to recover them.\n"u8.ToArray(), ScrubFindingKind.Foreign);
            case Tamper.Delete:
                File.Delete(path);
                return ScrubFindingKind.Missing;
            case Tamper.RenameWithExtension:
                File.Move(path, path + ".locked");
                return ScrubFindingKind.Missing;
            case Tamper.ReplaceWithFifo:
                File.Delete(path);
                using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [path]))
                {
                    await mkfifo.WaitForExitAsync(ct);
                    Assert.Equal(0, mkfifo.ExitCode);
                }

                return ScrubFindingKind.Corrupted;
            case Tamper.ReplaceWithSymlinkToCopy:
                var outside = Path.Combine(Path.GetDirectoryName(archive.Store.Layout.Root)!, Path.GetFileName(path) + ".outside");
                File.Copy(path, outside);
                File.Delete(path);
                File.CreateSymbolicLink(path, outside);
                return ScrubFindingKind.Foreign;
            default:
                throw new ArgumentOutOfRangeException(nameof(tamper), tamper, null);
        }
    }

    /// <summary>
    /// Bug: with its object row and its file deleted, an instance's version row still named the object (its retrieve
    /// failed), and scrub, which read only the object rows, said the archive was clean.
    /// </summary>
    [Fact]
    public async Task A_version_row_naming_an_object_the_index_no_longer_lists_is_reported_missing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var (stored, _) = await archive.IngestAsync(Samples.Content(3000, 1), Samples.Entry(1, 1, 1, 1));
        await archive.IngestAsync(Samples.Content(3000, 2), Samples.Entry(1, 1, 1, 2));
        await using (var connection = await archive.Database.OpenConnectionAsync(ct))
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM archive_objects WHERE object_id = @o";
            var parameter = command.CreateParameter();
            parameter.ParameterName = "@o";
            parameter.Value = stored.Id.ToArray();
            command.Parameters.Add(parameter);
            Assert.Equal(1, await command.ExecuteNonQueryAsync(ct));
        }

        File.Delete(archive.Store.Layout.ObjectPath(stored.Id));
        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        var finding = Assert.Single(report.Findings);
        Assert.Equal((ScrubFindingKind.Missing, stored.Id), (finding.Kind, finding.ObjectId));
        Assert.Equal(1, report.ExitCode);
    }

    [Fact]
    public async Task A_renamed_file_is_reported_as_foreign_too()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var (stored, _) = await archive.IngestAsync(Samples.Content(1000, 1), Samples.Entry(1, 1, 1, 1));
        var path = archive.Store.Layout.ObjectPath(stored.Id);
        File.Move(path, path + ".locked");
        await File.WriteAllTextAsync(Path.Combine(archive.Store.Layout.Objects, "README-DECRYPT.txt"), "pay us", ct);

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.Equal(1, report.Missing);
        Assert.Equal(2, report.Foreign);
        Assert.Contains(report.Findings, f => f.Kind == ScrubFindingKind.Foreign && f.Location.EndsWith(".locked", StringComparison.Ordinal));
        Assert.Contains(report.Findings, f => f.Kind == ScrubFindingKind.Foreign && f.Location.EndsWith("README-DECRYPT.txt", StringComparison.Ordinal));
    }

    /// <summary>Bug: a ransom note or an encrypted copy of the index at the top of the data folder passed the scrub.</summary>
    [Fact]
    public async Task Regression_files_dropped_at_the_top_of_the_data_folder_passed_the_scrub()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(indexInDataFolder: true);
        await archive.IngestAsync(Samples.Content(1000, 1), Samples.Entry(1, 1, 1, 1));
        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
        await File.WriteAllTextAsync(Path.Combine(archive.DataFolder, "HOW-TO-RECOVER.txt"), "pay us", ct);
        await File.WriteAllBytesAsync(Path.Combine(archive.DataFolder, "index.db.locked"), new byte[4096], ct);
        Directory.CreateDirectory(Path.Combine(archive.DataFolder, "objects.bak"));

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        Assert.False(report.IsClean);
        Assert.Equal(3, report.Foreign);
        Assert.Equal(["HOW-TO-RECOVER.txt", "index.db.locked", "objects.bak"], report.Findings.Select(f => f.Location).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task A_tampered_segment_fails_a_range_read_only_where_it_is_read()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(6 * Segment, 4);
        var stored = await archive.PutAsync(content);
        var path = archive.Store.Layout.ObjectPath(stored.Id);
        var bytes = await File.ReadAllBytesAsync(path, ct);
        bytes[ObjectFormat.SegmentOffset(3, Segment) + 7] ^= 1;
        await File.WriteAllBytesAsync(path, bytes, ct);

        await using var reader = await archive.Store.OpenReadAsync(stored.Id, ct);
        var buffer = new byte[100];
        Assert.Equal(100, await reader.ReadAsync(Segment + 5, buffer, ct));
        Assert.Equal(content.AsSpan(Segment + 5, 100).ToArray(), buffer);
        var error = await Assert.ThrowsAsync<ObjectFormatException>(async () => await reader.ReadAsync(3 * Segment + 1, buffer, ct));
        Assert.Equal(ObjectProblem.SegmentAuthenticationFailed, error.Problem);
        Assert.Equal(3, error.Segment);
    }

    [Fact]
    public async Task A_quarantined_file_that_was_tampered_with_is_reported_with_its_quarantine_id()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        await using var spool = await archive.SpoolAsync(Samples.Content(9000, 5));
        var quarantined = await archive.Store.QuarantineAsync(spool, "EICAR test string in private tag", ct);
        await using (var connection = await archive.Database.OpenConnectionAsync(ct))
        await using (var transaction = await archive.Database.BeginWriteAsync(connection, ct))
        {
            await archive.Index.AddQuarantineAsync(connection, transaction,
                new Index.QuarantineEntry(quarantined.QuarantineId, quarantined.Id, quarantined.Length, "EICAR", quarantined.QuarantinedAt), ct);
            await transaction.CommitAsync(ct);
        }

        Assert.True((await archive.Scrub.RunAsync(new ScrubRequest(), ct)).IsClean);
        var path = archive.Store.Layout.QuarantinePath(quarantined.QuarantineId);
        var bytes = await File.ReadAllBytesAsync(path, ct);
        bytes[ObjectFormat.HeaderSize + 3] ^= 4;
        await File.WriteAllBytesAsync(path, bytes, ct);

        var report = await archive.Scrub.RunAsync(new ScrubRequest(), ct);
        var finding = Assert.Single(report.Findings);
        Assert.Equal(ScrubFindingKind.Corrupted, finding.Kind);
        Assert.Equal(quarantined.QuarantineId, Assert.Single(finding.References).QuarantineId);
    }
}
