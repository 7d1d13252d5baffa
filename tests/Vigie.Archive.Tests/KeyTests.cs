using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Vigie.Archive.Index;
using Vigie.Archive.Keys;
using Vigie.Testing;

namespace Vigie.Archive.Tests;

public sealed class KeyTests
{
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task First_start_creates_a_private_key_file_outside_the_data_folder_and_a_wrapped_root_key()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        var keyFile = archive.Options.KeyFile!;
        Assert.True(File.Exists(keyFile));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));
        Assert.False(keyFile.StartsWith(archive.DataFolder, StringComparison.Ordinal));
        Assert.True(File.Exists(archive.Store.Layout.RootKeyFile));
        var keys = await archive.Keks.ListAsync(TestContext.Current.CancellationToken);
        Assert.Equal(KeyEncryptionKeyState.Active, Assert.Single(keys).State);
        // The root key file holds no key material in plain: only the KEK id and a wrapped blob.
        var root = await File.ReadAllBytesAsync(archive.Store.Layout.RootKeyFile, TestContext.Current.CancellationToken);
        Assert.True(root.Length < 100);
    }

    [Fact]
    public async Task A_restart_reuses_the_keys_and_reads_what_was_stored()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        var content = Samples.Content(10_000, 1);
        var id = (await archive.PutAsync(content)).Id;
        await using var restarted = await archive.ReopenAsync();
        Assert.Equal(content, await restarted.ReadAllAsync(id));
        Assert.Equal(archive.Keys.HashIdentifier(IdentifierKinds.PatientId, "X"), restarted.Keys.HashIdentifier(IdentifierKinds.PatientId, "X"));
    }

    [Fact]
    public async Task A_key_file_inside_the_data_folder_is_refused()
    {
        using var root = new TempDirectory();
        var options = ArchiveHarness.NewOptions(root.Path);
        options.KeyFile = Path.Combine(options.DataFolder, "keys", "kek.json");
        var error = Assert.Throws<InvalidOperationException>(() => new FileKeyEncryptionKeyStore(Microsoft.Extensions.Options.Options.Create(options), TimeProvider.System));
        Assert.Contains("inside the data folder", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a key file whose path reaches the data folder through a symbolic link ($W/kl -> data/keys, KeyFile
    /// $W/kl/kek.json) was accepted, since only the path's text was compared: the key-encryption key was written beside
    /// the root key it wraps, and any backup of the data folder decrypted everything.
    /// </summary>
    [Fact]
    public void Regression_a_key_file_reaching_the_data_folder_through_a_link_was_accepted()
    {
        using var root = new TempDirectory();
        var options = ArchiveHarness.NewOptions(root.Path);
        // The link is made before the data folder exists, as on a first start: it dangles, and still counts.
        var link = Path.Combine(root.Path, "kl");
        File.CreateSymbolicLink(link, Path.GetRelativePath(root.Path, Path.Combine(options.DataFolder, "keys")));
        options.KeyFile = Path.Combine(link, "kek.json");
        var error = Assert.Throws<InvalidOperationException>(() => new FileKeyEncryptionKeyStore(Microsoft.Extensions.Options.Options.Create(options), TimeProvider.System));
        Assert.Contains("inside the data folder", error.Message, StringComparison.Ordinal);

        // A link to a folder elsewhere is no reason to refuse.
        var elsewhere = Directory.CreateDirectory(Path.Combine(root.Path, "keys-elsewhere")).FullName;
        var outside = Path.Combine(root.Path, "ko");
        File.CreateSymbolicLink(outside, elsewhere);
        options.KeyFile = Path.Combine(outside, "kek.json");
        _ = new FileKeyEncryptionKeyStore(Microsoft.Extensions.Options.Options.Create(options), TimeProvider.System);
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task A_key_file_readable_by_others_is_refused()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        File.SetUnixFileMode(archive.Options.KeyFile!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        var reopened = Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.ReopenAsync());
        Assert.Contains("open to group or others", (await reopened).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_key_file_with_existing_data_stops_instead_of_making_new_keys()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        await archive.PutAsync(Samples.Content(100, 1));
        File.Move(archive.Options.KeyFile!, archive.Options.KeyFile + ".moved");
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.ReopenAsync());
        Assert.Contains("key-encryption key file is missing", error.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(archive.Options.KeyFile));
    }

    [Fact]
    public async Task A_root_key_under_another_key_file_does_not_open()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        await using var other = await ArchiveHarness.CreateAsync();
        File.Copy(other.Options.KeyFile!, archive.Options.KeyFile!, overwrite: true);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.ReopenAsync());
        Assert.Contains("which the key file does not hold", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Seal_and_open_round_trip_bound_to_their_context()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        IArchiveKeyService keys = archive.Keys;
        var plain = Encoding.UTF8.GetBytes("audit detail: DUPONT^JEAN viewed study 1.2.3");
        var sealedBytes = keys.Seal(plain, "audit/entry/42"u8);
        Assert.Equal(plain, keys.Open(sealedBytes, "audit/entry/42"u8));
        Assert.Equal(-1, sealedBytes.AsSpan().IndexOf("DUPONT"u8));
        Assert.ThrowsAny<CryptographicException>(() => keys.Open(sealedBytes, "audit/entry/43"u8));
        sealedBytes[^1] ^= 1;
        Assert.ThrowsAny<CryptographicException>(() => keys.Open(sealedBytes, "audit/entry/42"u8));
        Assert.ThrowsAny<CryptographicException>(() => keys.Open(new byte[5], "audit/entry/42"u8));
        Assert.NotEqual(keys.Seal(plain, "c"u8), keys.Seal(plain, "c"u8));
    }

    [Fact]
    public async Task Identifier_hashes_are_deterministic_separated_by_kind_and_match_the_index()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync();
        IArchiveKeyService keys = archive.Keys;
        var a = keys.HashIdentifier(IdentifierKinds.PatientId, "VIGPID00001X");
        Assert.Equal(16, a.Length);
        Assert.Equal(a, keys.HashIdentifier(IdentifierKinds.PatientId, "VIGPID00001X"));
        Assert.NotEqual(a, keys.HashIdentifier(IdentifierKinds.AccessionNumber, "VIGPID00001X"));
        Assert.NotEqual(a, keys.HashIdentifier(IdentifierKinds.PatientId, "VIGPID00001Y"));

        // The audit trail can find the index's patient row from the same hash.
        await archive.IngestAsync(Samples.Content(10, 1), Samples.Entry(1, 1, 1, 1));
        var patientKey = keys.HashIdentifier(IdentifierKinds.Patient, "VIGIE-TEST\0" + IndexNormalizer.Identifier(Samples.PatientId(1)));
        await using var connection = await archive.Database.OpenConnectionAsync(ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM archive_patients WHERE patient_key = @k";
        var parameter = command.CreateParameter();
        parameter.ParameterName = "@k";
        parameter.Value = patientKey;
        command.Parameters.Add(parameter);
        Assert.Equal(1L, Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Nodes_starting_together_on_a_new_folder_share_one_key_file_and_one_root_key()
    {
        // Regression: the key file was written by rename and the root key moved with File.Move, so of two nodes started
        // together on a new shared folder the second could replace the first one's file, which then wrapped keys under
        // a KEK kept nowhere. Every round races four key services (as four processes would) on a new folder.
        var ct = TestContext.Current.CancellationToken;
        var sha256 = SHA256.HashData("content"u8);
        for (var round = 0; round < 12; round++)
        {
            using var root = new TempDirectory();
            var options = Microsoft.Extensions.Options.Options.Create(ArchiveHarness.NewOptions(root.Path));
            ArchiveKeyService NewNode() => new(new FileKeyEncryptionKeyStore(options, TimeProvider.System), options, NullLogger<ArchiveKeyService>.Instance);
            var nodes = Enumerable.Range(0, 4).Select(_ => NewNode()).ToList();
            using var go = new ManualResetEventSlim();
            var starts = nodes.Select(node => Task.Run(async () =>
            {
                go.Wait(ct);
                await node.EnsureLoadedAsync(ct);
            }, ct)).ToList();
            go.Set();
            await Task.WhenAll(starts);

            // A node started afterwards (a restart) reads the same keys that every racing node used.
            var restarted = NewNode();
            await restarted.EnsureLoadedAsync(ct);
            foreach (var node in nodes)
            {
                Assert.Equal(restarted.NameObject(sha256), node.NameObject(sha256));
                Assert.Equal("sealed"u8.ToArray(), restarted.Open(node.Seal("sealed"u8, "ctx"u8), "ctx"u8));
            }

            Assert.Empty(Directory.EnumerateFiles(Path.GetDirectoryName(options.Value.ResolveKeyFile())!, "*.new"));
        }
    }

    /// <summary>
    /// Regression: the key file's check time was set before its reload finished, so stores racing the reload took the
    /// fresh check time with the old keys. Right after a finished `keys rotate`, a node storing on two associations
    /// wrapped its next data keys under the key just removed from the file: acknowledged objects that nobody could
    /// read (C-GET A702, scrub "foreign"). Here, in each round, a node that checked the file before a rotation wraps on 8
    /// threads at once after it (the old code failed every run).
    /// </summary>
    /// <summary>
    /// Regression: another archive's key file put in place of the node's while it ran (a wrong backup restored) was
    /// taken at the next reload, /health said "key files in place", and every store after it was acknowledged under a
    /// key this archive does not keep: once the right file was back, those objects could not be read ("foreign").
    /// </summary>
    [Fact]
    public async Task Regression_a_key_file_replaced_by_another_archive_s_was_taken_and_stores_acknowledged_under_it()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.KeyReloadInterval = TimeSpan.FromMilliseconds(50));
        await using var other = await ArchiveHarness.CreateAsync();
        var keyFile = archive.Options.KeyFile!;
        var before = await archive.PutAsync(Samples.Content(100, 1));
        File.Copy(keyFile, keyFile + ".backup");

        File.Copy(other.Options.KeyFile!, keyFile + ".restored");
        File.Move(keyFile + ".restored", keyFile, overwrite: true);
        File.SetLastWriteTimeUtc(keyFile, DateTime.UtcNow.AddSeconds(5));
        await Task.Delay(200, ct);
        var during = await archive.PutAsync(Samples.Content(100, 2));

        var problem = Assert.Single(archive.Keys.FindCustodyProblems());
        Assert.Contains("shares no key with the keys in use", problem, StringComparison.Ordinal);
        File.Move(keyFile + ".backup", keyFile, overwrite: true);
        await using var reopened = await archive.ReopenAsync();
        Assert.Equal(Samples.Content(100, 1), await reopened.ReadAllAsync(before.Id));
        Assert.Equal(Samples.Content(100, 2), await reopened.ReadAllAsync(during.Id));
    }

    /// <summary>
    /// Regressions (a review of a running node): on an idle node a replaced key file was not reported until a store, and
    /// the report stayed once the right file was back with its own time (cp -p); a key file made readable by others,
    /// which the next start refuses, was not reported at all.
    /// </summary>
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Regression_the_key_file_health_followed_stores_not_the_file()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.KeyReloadInterval = TimeSpan.FromMilliseconds(50));
        await using var other = await ArchiveHarness.CreateAsync();
        var keyFile = archive.Options.KeyFile!;
        await archive.PutAsync(Samples.Content(100, 1));
        var written = File.GetLastWriteTimeUtc(keyFile);
        File.Copy(keyFile, keyFile + ".backup");
        File.SetLastWriteTimeUtc(keyFile + ".backup", written);

        File.Copy(other.Options.KeyFile!, keyFile, overwrite: true);
        File.SetLastWriteTimeUtc(keyFile, written.AddSeconds(5));
        await Task.Delay(200, ct);
        Assert.Contains("shares no key with the keys in use", Assert.Single(await ((IArchiveKeyService)archive.Keys).FindCustodyProblemsAsync(ct)), StringComparison.Ordinal);

        File.Copy(keyFile + ".backup", keyFile, overwrite: true);
        File.SetLastWriteTimeUtc(keyFile, written);
        await Task.Delay(200, ct);
        Assert.Empty(await ((IArchiveKeyService)archive.Keys).FindCustodyProblemsAsync(ct));

        File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        Assert.Contains("open to group or others (mode 644)", Assert.Single(await ((IArchiveKeyService)archive.Keys).FindCustodyProblemsAsync(ct)), StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: with the key file removed under a running node, every store failed (the reload threw "missing")
    /// though the node holds its keys in memory and /health said it goes on with them.
    /// </summary>
    [Fact]
    public async Task Regression_a_key_file_removed_under_a_running_node_failed_every_store()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.KeyReloadInterval = TimeSpan.FromMilliseconds(50));
        var keyFile = archive.Options.KeyFile!;
        var before = await archive.PutAsync(Samples.Content(100, 1));
        File.Move(keyFile, keyFile + ".away");
        await Task.Delay(200, ct);

        var during = await archive.PutAsync(Samples.Content(100, 2));
        Assert.Equal(Samples.Content(100, 1), await archive.ReadAllAsync(before.Id));
        Assert.Contains("is gone", Assert.Single(archive.Keys.FindCustodyProblems()), StringComparison.Ordinal);

        File.Move(keyFile + ".away", keyFile);
        await using var reopened = await archive.ReopenAsync();
        Assert.Equal(Samples.Content(100, 2), await reopened.ReadAllAsync(during.Id));
    }

    [Fact]
    public async Task Regression_stores_racing_a_key_reload_wrapped_under_the_key_a_finished_rotation_removed()
    {
        var ct = TestContext.Current.CancellationToken;
        using var root = new TempDirectory();
        var settings = ArchiveHarness.NewOptions(root.Path);
        settings.KeyReloadInterval = TimeSpan.FromMilliseconds(100);
        var options = Microsoft.Extensions.Options.Options.Create(settings);
        var node = new FileKeyEncryptionKeyStore(options, TimeProvider.System);
        await node.CreateAsync(ct);
        var rotator = new FileKeyEncryptionKeyStore(options, TimeProvider.System);
        for (var round = 0; round < 20; round++)
        {
            await node.WrapAsync(new byte[32], "ctx"u8.ToArray(), ct);
            var rotation = await rotator.BeginRotationAsync(ct);
            await rotator.CompleteRotationAsync(rotation.RetiringKeyIds, ct);
            await Task.Delay(TimeSpan.FromMilliseconds(150), ct);

            // Stores on several associations at once, as right after a rotation finished on an idle node.
            using var go = new ManualResetEventSlim();
            var wraps = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
            {
                go.Wait(ct);
                return await node.WrapAsync(new byte[32], "ctx"u8.ToArray(), ct);
            }, ct)).ToList();
            go.Set();
            Assert.All(await Task.WhenAll(wraps), w => Assert.Equal(rotation.ActiveKeyId, w.KeyId));
        }
    }

    [Fact]
    public async Task The_key_service_refuses_work_before_it_is_loaded()
    {
        using var root = new TempDirectory();
        var options = Microsoft.Extensions.Options.Options.Create(ArchiveHarness.NewOptions(root.Path));
        var keys = new ArchiveKeyService(new FileKeyEncryptionKeyStore(options, TimeProvider.System), options, NullLogger<ArchiveKeyService>.Instance);
        Assert.Throws<InvalidOperationException>(() => keys.Seal([1], []));
        await keys.EnsureLoadedAsync(TestContext.Current.CancellationToken);
        Assert.NotEmpty(keys.Seal([1], []));
    }

    [Fact]
    public async Task A_tampered_key_file_is_refused_with_a_clear_error()
    {
        await using var archive = await ArchiveHarness.CreateAsync();
        var path = archive.Options.KeyFile!;
        var json = await File.ReadAllTextAsync(path, TestContext.Current.CancellationToken);
        await File.WriteAllTextAsync(path, json.Replace("\"Active\"", "\"DecryptOnly\"", StringComparison.Ordinal), TestContext.Current.CancellationToken);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await archive.ReopenAsync());
        Assert.Contains("exactly one active key", error.Message, StringComparison.Ordinal);
    }
}
