using System.Security.Cryptography;
using System.Text;
using Vigie.Archive.Index;
using Vigie.Core.Data;

namespace Vigie.Archive.Tests;

/// <summary>
/// The acceptance check: after storing synthetic studies (index in the data folder), no identifier appears anywhere
/// under the data folder, in any common encoding, and no plain hash of the content either.
/// </summary>
public sealed class NoPlaintextTests
{
    [Fact]
    public async Task No_identifier_is_found_in_any_file_under_the_data_folder()
    {
        var ct = TestContext.Current.CancellationToken;
        var secrets = new List<string>();
        var contents = new List<byte[]>();
        await using (var archive = await ArchiveHarness.CreateAsync(DatabaseProvider.Sqlite, indexInDataFolder: true))
        {
            for (var p = 0; p < 4; p++)
            {
                for (var i = 1; i <= 3; i++)
                {
                    var entry = Samples.Entry(p, 1, 1, i, sopClass: i == 3 ? "1.2.840.10008.5.1.4.1.1.88.33" : Samples.CtImageStorage) with
                    {
                        Source = AttributeSet.From((0x0002_0016, "MODALITY_AE_7"), (0x0000_0902, "from 10.0.0.7")),
                    };
                    // The object content embeds the identifiers too, as a DICOM file would.
                    var content = Encoding.ASCII.GetBytes(
                        $"DICM {entry.Patient.PatientId} {entry.Study.StudyInstanceUid} {entry.Instance.SopInstanceUid} {Samples.Names[p % Samples.Names.Length]}")
                        .Concat(Samples.Content(20_000, p * 10 + i)).ToArray();
                    contents.Add(content);
                    await archive.IngestAsync(content, entry);
                    secrets.AddRange([entry.Patient.PatientId, entry.Study.StudyInstanceUid, entry.Series.SeriesInstanceUid,
                        entry.Instance.SopInstanceUid, entry.Instance.SopClassUid, Samples.Accession(p, 1)]);
                }

                secrets.Add(Samples.Names[p % Samples.Names.Length]);
                secrets.AddRange(Samples.Names[p % Samples.Names.Length].Split('^'));
            }

            await using (var spool = await archive.SpoolAsync(Encoding.ASCII.GetBytes("DICM QUARANTINED VIGPID77777X 1.2.826.0.1.3680043.10.543.77.1")))
            {
                var quarantined = await archive.Store.QuarantineAsync(spool, "Patient VIGPID77777X: PE polyglot", ct);
                await using var connection = await archive.Database.OpenConnectionAsync(ct);
                await using var transaction = await archive.Database.BeginWriteAsync(connection, ct);
                await archive.Index.AddQuarantineAsync(connection, transaction, new QuarantineEntry(quarantined.QuarantineId, quarantined.Id,
                    quarantined.Length, "Patient VIGPID77777X: PE polyglot", quarantined.QuarantinedAt,
                    AttributeSet.From((DicomTags.PatientName, "QUARANTAINE^HENRI"))), ct);
                await transaction.CommitAsync(ct);
            }

            secrets.AddRange(["VIGPID77777X", "1.2.826.0.1.3680043.10.543.77.1", "QUARANTAINE", "HOUSE^GREGORY", "GREGORY", "SCANNER THORAX",
                "MODALITY_AE_7", "10.0.0.7", "PE polyglot"]);

            // A query decrypts fine, so the data is there, only sealed.
            var found = await archive.Index.QueryAsync(new ArchiveQuery(QueryLevel.Patient, [new QueryKey(DicomTags.PatientName, "DUP*")]), ct);
            Assert.Single(found.Matches);
            Assert.True(File.Exists(Path.Combine(archive.DataFolder, "index.db")));

            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            // Needles shorter than five characters would match schema text or random ciphertext by chance.
            var needles = secrets.Where(s => s.Length >= 5).Distinct(StringComparer.Ordinal).SelectMany(Encodings).ToList();
            foreach (var content in contents)
            {
                var sha = SHA256.HashData(content);
                needles.Add(("sha256", sha));
                needles.Add(("sha256 hex", Encoding.ASCII.GetBytes(Convert.ToHexStringLower(sha))));
                needles.Add(("content", content.AsSpan(0, 40).ToArray()));
            }

            // The needles do find identifiers where they are in plain (the content before encryption).
            Assert.Contains(needles, n => contents[0].AsSpan().IndexOf(n.Bytes) >= 0);

            var files = Directory.EnumerateFiles(archive.DataFolder, "*", SearchOption.AllDirectories).ToList();
            Assert.Contains(files, f => f.EndsWith("index.db", StringComparison.Ordinal));
            Assert.True(files.Count > 12);
            foreach (var file in files)
            {
                var bytes = await File.ReadAllBytesAsync(file, ct);
                foreach (var (label, needle) in needles)
                {
                    Assert.True(bytes.AsSpan().IndexOf(needle) < 0, $"{label} found in {Path.GetRelativePath(archive.DataFolder, file)}");
                }
            }
        }
    }

    private static IEnumerable<(string Label, byte[] Bytes)> Encodings(string secret)
    {
        yield return ($"'{secret}' (UTF-8)", Encoding.UTF8.GetBytes(secret));
        yield return ($"'{secret}' (Latin-1)", Encoding.Latin1.GetBytes(secret));
        yield return ($"'{secret}' (UTF-16LE)", Encoding.Unicode.GetBytes(secret));
        yield return ($"'{secret}' (UTF-16BE)", Encoding.BigEndianUnicode.GetBytes(secret));
        yield return ($"'{secret}' (lower case)", Encoding.UTF8.GetBytes(secret.ToLowerInvariant()));
        // Base64 at the three possible alignments: drop the groups that depend on the neighbouring bytes.
        if (secret.Length >= 8)
        {
            for (var shift = 0; shift < 3; shift++)
            {
                var encoded = Convert.ToBase64String([.. new byte[shift], .. Encoding.UTF8.GetBytes(secret)]);
                var stable = encoded[(shift == 0 ? 0 : 4)..(encoded.Length - 4)];
                yield return ($"'{secret}' (base64, shift {shift})", Encoding.ASCII.GetBytes(stable));
            }
        }

        yield return ($"'{secret}' (hex)", Encoding.ASCII.GetBytes(Convert.ToHexStringLower(Encoding.UTF8.GetBytes(secret))));
    }
}
