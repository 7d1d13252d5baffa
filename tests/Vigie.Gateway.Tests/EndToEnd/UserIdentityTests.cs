using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>User Identity Negotiation (PS3.7 D.3.3.7) with dcmtk's storescu, against an AE that requires a user.</summary>
public sealed class UserIdentityTests
{
    /// <summary>
    /// Regression: a wrong password was rejected with reason 1 and a missing identity with reason 3, so a caller could
    /// tell that the title exists and needs a user, and that its password was what was wrong. Both are now reason 3,
    /// as for an unknown caller.
    /// </summary>
    [Fact]
    public async Task Regression_a_wrong_password_was_told_apart_from_an_unknown_caller()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__Access__DicomNodes__0__AETitle"] = "MODALITY",
            ["VIGIE__Access__DicomNodes__0__Networks__0"] = "127.0.0.1/32",
            ["VIGIE__Access__DicomNodes__0__Rights"] = "Store",
            ["VIGIE__Access__DicomNodes__0__RequireUser"] = "true",
            ["VIGIE__Access__DicomUsers__0__Name"] = "alice",
            // vigie access hash-password, of "s3cret-pass" (a test account).
            ["VIGIE__Access__DicomUsers__0__PasswordHash"] = "pbkdf2-sha256$210000$Py9jr/suPMo6j8T7rrMw/Q==$EQxGTlacrt13FXfKazmg1f+1aqtGaHoYFcSIN0omBRw=",
        }, cancellationToken: ct);
        var file = Peers.CtCorpusFiles()[0];

        async Task<ProcessResult> StoreAsync(params string[] options) =>
            await Peers.RunAsync(Peers.Require("storescu", "dcmtk"), ["-aet", "MODALITY", "-aec", "VIGIE", .. options, "127.0.0.1", node.DicomPortText, file],
                TimeSpan.FromMinutes(1), cancellationToken: ct);

        var stored = await StoreAsync("-usr", "alice", "-pwd", "s3cret-pass");
        Assert.True(stored.ExitCode == 0, stored.ToString());
        foreach (var refused in new[] { await StoreAsync("-usr", "alice", "-pwd", "wrong"), await StoreAsync(), await StoreAsync("-usr", "mallory", "-pwd", "x") })
        {
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains("Calling AE Title Not Recognized", refused.StandardError + refused.StandardOutput, StringComparison.OrdinalIgnoreCase);
        }
    }
}
