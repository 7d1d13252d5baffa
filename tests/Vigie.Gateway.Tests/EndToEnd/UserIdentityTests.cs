using System.Text;
using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>User Identity Negotiation (PS3.7 D.3.3.7) with dcmtk's storescu, against an AE that requires a user.</summary>
public sealed class UserIdentityTests
{
    // vigie access hash-password, of "s3cret-pass" (a test account).
    private const string AliceHash = "pbkdf2-sha256$210000$Py9jr/suPMo6j8T7rrMw/Q==$EQxGTlacrt13FXfKazmg1f+1aqtGaHoYFcSIN0omBRw=";

    private static Dictionary<string, string> Rules(string aeTitle, bool requireUser) => new()
    {
        ["VIGIE__Access__DicomNodes__0__AETitle"] = aeTitle,
        ["VIGIE__Access__DicomNodes__0__Networks__0"] = "127.0.0.1/32",
        ["VIGIE__Access__DicomNodes__0__Rights"] = "Store",
        ["VIGIE__Access__DicomNodes__0__RequireUser"] = requireUser ? "true" : "false",
        ["VIGIE__Access__DicomUsers__0__Name"] = "alice",
        ["VIGIE__Access__DicomUsers__0__PasswordHash"] = AliceHash,
    };

    /// <summary>An association with a username-and-passcode identity; the rejection it gets (null when accepted).</summary>
    private static async Task<DicomAssociationRejectedException?> AssociateAsync(VigieNode node, string callingAE, byte[] name, string passcode,
        CancellationToken cancellationToken)
    {
        try
        {
            await using var client = await DicomClient.ConnectAsync(new DicomClientOptions
            {
                Host = "127.0.0.1", Port = node.DicomPort, CallingAE = callingAE, CalledAE = "VIGIE",
                UserIdentity = new UserIdentity(UserIdentityType.UsernameAndPasscode, false, name, Encoding.UTF8.GetBytes(passcode)),
            }, DicomClient.Propose([DicomUids.Verification], DicomUids.ImplicitVRLittleEndian), cancellationToken);
            await client.ReleaseAsync(cancellationToken);
            return null;
        }
        catch (DicomAssociationRejectedException e)
        {
            return e;
        }
    }

    private static async Task<List<JsonElement>> AuditAsync(VigieNode node, params string[] filters)
    {
        var shown = await node.VigieAsync(["audit", "show", "--json", "--details", "--limit", "100", .. filters]);
        Assert.True(shown.ExitCode == 0, shown.ToString());
        return [.. JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray()];
    }

    // Fields without a value are left out of the JSON.
    private static string Outcome(JsonElement entry) =>
        entry.TryGetProperty("details", out var details) && details.ValueKind == JsonValueKind.Object && details.TryGetProperty("outcome", out var outcome) ? outcome.GetString() ?? "" : "";

    private static string? DicomUser(JsonElement participant) =>
        participant.TryGetProperty("alternative_user", out var user) ? user.GetString() : null;

    /// <summary>
    /// Regression: a user name of 300 characters, or with a control character, made the association's audit record
    /// invalid (AlternativeUserId longer than 256), which was handled as an audit-trail outage: the peer got a transient
    /// rejection (2, 3, 1) and retried for ever, /health turned Unhealthy (503) and the record went to the spill as if the
    /// database were down. Any peer that reached the port could do it, on the allow-list or not.
    /// </summary>
    [Fact]
    public async Task Regression_a_long_or_control_character_user_name_was_taken_for_an_audit_outage()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: Rules("CT01", requireUser: false), cancellationToken: ct);
        var longName = Encoding.ASCII.GetBytes(new string('A', 300));
        var controlName = "ct\u000101"u8.ToArray();
        foreach (var (caller, name) in new[] { ("STRANGER", longName), ("STRANGER", controlName), ("CT01", longName), ("CT01", controlName) })
        {
            var rejected = await AssociateAsync(node, caller, name, "guess", ct);
            Assert.NotNull(rejected);
            Assert.Equal(RejectResult.Permanent, rejected.Result);
            Assert.Equal(RejectSource.ServiceUser, rejected.RejectSource);
            Assert.Equal(RejectReasons.CallingAENotRecognized, rejected.Reason);
        }

        Assert.Equal("Healthy", (await node.HealthCheckAsync("dicom-node", ct)).Status);
        Assert.DoesNotContain("AuditRecordException", node.Output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(node.Data, "audit-spill")) && Directory.EnumerateFiles(Path.Combine(node.Data, "audit-spill"), "*.spill").Any(),
            "a refusal went to the audit spill as if the database were out of reach");

        // The unknown caller is an unknown node (the name it claimed, bounded, in the description); the listed one a refused login.
        var entries = await AuditAsync(node);
        Assert.DoesNotContain(entries, e => Outcome(e).Contains("unavailable", StringComparison.Ordinal));
        var strangers = entries.Where(e => e.GetProperty("user").GetString() == "STRANGER").ToList();
        Assert.Equal(2, strangers.Count);
        Assert.All(strangers, e => Assert.Equal("110113", e.GetProperty("event_id").GetString()));
        Assert.All(strangers, e => Assert.Contains("not in the allow-list", Outcome(e), StringComparison.Ordinal));
        var logins = entries.Where(e => e.GetProperty("user").GetString() == "CT01").ToList();
        Assert.Equal(2, logins.Count);
        Assert.All(logins, e => Assert.Equal("110114", e.GetProperty("event_id").GetString()));
        var claimed = logins.Select(e => DicomUser(e.GetProperty("participants")[0])).ToList();
        Assert.Contains(new string('A', 64) + "… (300 characters)", claimed);
        Assert.Contains("ct\uFFFD01", claimed);
    }

    /// <summary>
    /// Regression: the passcode was checked (PBKDF2, about 50 ms) before the allow-list, so a calling AE not on it that
    /// sent a user identity with a wrong passcode was audited as a failed login only: the Security Alert for an unknown
    /// node (110113) was never written, and any caller could make the node hash for 50 ms.
    /// </summary>
    [Fact]
    public async Task Regression_an_unknown_caller_with_a_user_identity_was_audited_as_a_failed_login()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: Rules("MODALITY", requireUser: true), cancellationToken: ct);
        Assert.NotNull(await AssociateAsync(node, "INTRUDER2", "alice"u8.ToArray(), "guess", ct));
        Assert.NotNull(await AssociateAsync(node, "MODALITY", "alice"u8.ToArray(), "guess", ct));
        Assert.Null(await AssociateAsync(node, "MODALITY", "alice"u8.ToArray(), "s3cret-pass", ct));

        var entries = await AuditAsync(node);
        var intruder = Assert.Single(entries, e => e.GetProperty("user").GetString() == "INTRUDER2");
        Assert.Equal("110113", intruder.GetProperty("event_id").GetString());
        Assert.Contains("calling AE 'INTRUDER2' is not in the allow-list", Outcome(intruder), StringComparison.Ordinal);
        // A claimed user is not an authenticated one: not the participant's user, only named in the description.
        Assert.Null(DicomUser(intruder.GetProperty("participants")[0]));
        // A listed caller with a wrong passcode is still a refused login.
        Assert.Contains(entries, e => e.GetProperty("user").GetString() == "MODALITY" && e.GetProperty("event_id").GetString() == "110114"
                                      && e.GetProperty("outcome").GetString() != "success" && Outcome(e).Contains("user identity 'alice' refused", StringComparison.Ordinal));
        Assert.DoesNotMatch("INTRUDER2 at \\S+ refused: its user identity", node.Output);
    }

    /// <summary>
    /// Regression: `vigie audit show` dropped the participant's AlternativeUserID, the DICOM user authenticated behind the
    /// AE title (table and JSON alike), and `--user alice` matched AE titles only: what user alice did could not be found.
    /// </summary>
    [Fact]
    public async Task Regression_the_authenticated_DICOM_user_was_invisible_in_audit_show()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: Rules("MODALITY", requireUser: true), cancellationToken: ct);
        var stored = await Peers.RunAsync(Peers.Require("storescu", "dcmtk"),
            ["-aet", "MODALITY", "-aec", "VIGIE", "-usr", "alice", "-pwd", "s3cret-pass", "127.0.0.1", node.DicomPortText, Peers.CtCorpusFiles()[0]],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(stored.ExitCode == 0, stored.ToString());

        var entries = await AuditAsync(node);
        string? RequestorUser(JsonElement e) => DicomUser(e.GetProperty("participants").EnumerateArray().First(p => p.GetProperty("requestor").GetBoolean()));
        var login = Assert.Single(entries, e => e.GetProperty("event_id").GetString() == "110114" && e.GetProperty("outcome").GetString() == "success");
        Assert.Equal("alice", RequestorUser(login));
        Assert.Equal("alice", RequestorUser(Assert.Single(entries, e => e.GetProperty("event_id").GetString() == "110104")));

        var byUser = await AuditAsync(node, "--user", "alice");
        Assert.Contains(byUser, e => e.GetProperty("event_id").GetString() == "110114");
        Assert.Contains(byUser, e => e.GetProperty("event_id").GetString() == "110104");
        Assert.All(byUser, e => Assert.Equal("alice", RequestorUser(e)));

        var table = await node.VigieAsync("audit", "show", "--user", "alice", "--event", "110104");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("MODALITY", table.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("alice", table.StandardOutput, StringComparison.Ordinal);
    }

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
            ["VIGIE__Access__DicomUsers__0__PasswordHash"] = AliceHash,
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
