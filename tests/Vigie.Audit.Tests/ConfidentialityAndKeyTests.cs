using System.Text;
using Microsoft.Extensions.Options;
using Vigie.Audit.Signing;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

public sealed class ConfidentialityAndKeyTests
{
    [Fact]
    public async Task No_patient_name_id_or_uid_reaches_the_database_files()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 50));
        for (var i = 50; i < 60; i++)
        {
            await h.Log.AppendAsync(Samples.Record(i), ct);
        }

        await h.Log.SignTreeHeadAsync(ct);
        var secrets = new[] { "DUPONT", "JEANNE", Samples.PatientId, Samples.StudyUid, Samples.SopClassUid, "1.2.840.10008", "ACC1", "PatientName=" };
        var directory = Path.GetDirectoryName(h.Db.SqlitePath)!;
        var files = Directory.GetFiles(directory);
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            var bytes = await File.ReadAllBytesAsync(file, ct);
            foreach (var secret in secrets)
            {
                Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(secret)) < 0, $"{secret} found in {Path.GetFileName(file)}");
                Assert.True(bytes.AsSpan().IndexOf(Encoding.Unicode.GetBytes(secret)) < 0, $"{secret} (UTF-16) found in {Path.GetFileName(file)}");
            }
        }

        // The authorised reader still gets the details back.
        var entry = await h.Log.GetAsync(0, unseal: true, ct);
        Assert.Equal(Samples.PatientName, entry!.Details!.Objects[0].Name);
    }

    [Fact]
    public async Task Details_without_a_sealer_are_refused()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        var options = Options.Create(h.Options);
        var keys = new FileSigningKeyProvider(options, h.Store);
        var signal = new AuditSignal();
        await using var log = new AuditLog(h.Store, new TreeHeadSigner(h.Store, keys, signal, new AuditSigningStatus(), options, TimeProvider.System), keys, signal, options,
            TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<AuditLog>.Instance);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await log.AppendAsync(Samples.Record(1), ct));
        Assert.Equal(0, await log.AppendAsync(Samples.Record(3), ct)); // a login carries no details
    }

    [Fact]
    public async Task Nodes_starting_together_share_one_signing_key()
    {
        // Regression: a node that lost the race to create the key file could read it before the winner had written the
        // key, and failed to start.
        var ct = TestContext.Current.CancellationToken;
        for (var round = 0; round < 12; round++)
        {
            using var dir = new TempDirectory();
            var path = dir.Combine("keys", "audit.pem");
            using var go = new ManualResetEventSlim();
            var starts = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
            {
                go.Wait(ct);
                return await FileSigningKeyProvider.LoadOrCreateAsync(path, ct);
            }, ct)).ToList();
            go.Set();
            var signers = await Task.WhenAll(starts);
            Assert.Single(signers.Select(s => Convert.ToHexString(s.PublicKey)).Distinct());
            foreach (var signer in signers)
            {
                signer.Dispose();
            }
        }
    }

    [Fact]
    public async Task Regression_a_missing_signing_key_was_replaced_silently_under_signed_tree_heads()
    {
        // verify and serve both made a new key: every earlier head then failed as untrusted, and two signers mixed.
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.Log.AppendAsync(Samples.Record(3), ct);
        var head = await h.Log.SignTreeHeadAsync(ct);
        Assert.NotNull(head);

        File.Delete(h.Options.SigningKeyPath!);
        await h.ReopenAsync();
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await h.Log.GetPublicKeyAsync(ct));
        // The key id only, as found in the database: the key to trust comes from outside it (review 19).
        Assert.Contains(head.KeyId, refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToBase64String(head.PublicKey), refused.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(h.Options.SigningKeyPath));

        // Lost for good: trusting its public key lets a new one be made, and the earlier head still verifies.
        h.Options.TrustedPublicKeys.Add(Convert.ToBase64String(head.PublicKey));
        await h.ReopenAsync();
        Assert.NotEqual(head.PublicKey, (await h.Log.GetPublicKeyAsync(ct)).PublicKey);
        await h.Log.AppendAsync(Samples.Record(3), ct);
        Assert.NotNull(await h.Log.SignTreeHeadAsync(ct));
        Assert.True((await h.Log.VerifyAsync(null, ct)).IsValid);
    }

    /// <summary>
    /// Regression (a review of a running node): a signing key file replaced by another key (a wrong backup) was taken at
    /// the next start without a word, and every earlier head then failed verification as untrusted; while the node ran,
    /// /health said the key file was in place.
    /// </summary>
    [Fact]
    public async Task Regression_a_signing_key_file_replaced_by_another_key_was_taken_silently()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.Log.AppendAsync(Samples.Record(3), ct);
        var head = await h.Log.SignTreeHeadAsync(ct);
        Assert.NotNull(head);
        var keys = new FileSigningKeyProvider(Microsoft.Extensions.Options.Options.Create(h.Options), h.Store);
        await keys.GetSignerAsync(ct);
        Assert.Null(keys.FindCustodyProblem());

        using var other = new TempDirectory("vigie-audit-other-key");
        using (await FileSigningKeyProvider.LoadOrCreateAsync(other.Combine("audit.pem"), ct))
        {
        }

        File.Copy(other.Combine("audit.pem"), h.KeyPath, overwrite: true);
        Assert.Contains("no longer holds the key in use", keys.FindCustodyProblem(), StringComparison.Ordinal);
        await h.ReopenAsync();
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(async () => await h.Log.GetPublicKeyAsync(ct));
        Assert.Contains("restore the right key file", refused.Message, StringComparison.Ordinal);
        // The key id only, as found in the database: the key to trust comes from outside it (review 19).
        Assert.Contains(head.KeyId, refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Convert.ToBase64String(head.PublicKey), refused.Message, StringComparison.Ordinal);

        // Changed on purpose: trusting the earlier key lets the new one sign, and the earlier head still verifies.
        h.Options.TrustedPublicKeys.Add(Convert.ToBase64String(head.PublicKey));
        await h.ReopenAsync();
        await h.Log.AppendAsync(Samples.Record(3), ct);
        Assert.NotNull(await h.Log.SignTreeHeadAsync(ct));
        Assert.True((await h.Log.VerifyAsync(null, ct)).IsValid);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task The_signing_key_file_is_created_0600_and_reloaded()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDirectory();
        var path = dir.Combine("keys", "audit.pem");
        using var first = await FileSigningKeyProvider.LoadOrCreateAsync(path, ct);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", await File.ReadAllTextAsync(path, ct), StringComparison.Ordinal);
        using var again = await FileSigningKeyProvider.LoadOrCreateAsync(path, ct);
        Assert.Equal(first.PublicKey, again.PublicKey);
        Assert.Equal(AuditPublicKey.KeyIdOf(first.PublicKey), again.KeyId);
        var signature = again.Sign("hello"u8);
        Assert.True(AuditPublicKey.FromRaw(first.PublicKey).Verify("hello"u8, signature));
        Assert.False(AuditPublicKey.FromRaw(first.PublicKey).Verify("hellp"u8, signature));

        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        await Assert.ThrowsAsync<UnauthorizedAccessException>(async () => await FileSigningKeyProvider.LoadOrCreateAsync(path, ct));

        var garbage = dir.Combine("garbage.pem");
        await File.WriteAllTextAsync(garbage, "not a key", ct);
        File.SetUnixFileMode(garbage, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        await Assert.ThrowsAsync<InvalidDataException>(async () => await FileSigningKeyProvider.LoadOrCreateAsync(garbage, ct));
    }
}
