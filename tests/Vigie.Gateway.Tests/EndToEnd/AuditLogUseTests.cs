using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Reading the audit trail leaves a trace in it (PS3.15 A.5.3.2 Audit Log Used): a search about a patient shows in that
/// patient's own history, without the identifier in the entry, and each verification records its result.
/// </summary>
public sealed class AuditLogUseTests
{
    [Fact]
    public async Task Listing_and_verifying_the_trail_are_audited_and_a_patients_history_shows_who_searched_it()
    {
        var ct = TestContext.Current.CancellationToken;
        var file = Peers.CtCorpusFiles().First();
        var patientId = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.PatientID)!;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync([file], ct);
        await node.StopAsync();

        var search = await node.VigieAsync("audit", "show", "--patient", patientId, "--details");
        Assert.True(search.ExitCode == 0, search.ToString());

        var history = await node.VigieAsync("audit", "show", "--json", "--details", "--patient", patientId);
        var used = JsonDocument.Parse(history.StandardOutput).RootElement.EnumerateArray().First(e => e.GetProperty("event_id").GetString() == "110101");
        Assert.Matches("^audit show: [1-9][0-9]* events listed by patient, sealed details opened$", used.GetProperty("details").GetProperty("outcome").GetString());
        Assert.Equal(Environment.UserName, used.GetProperty("user").GetString());
        Assert.Equal("read", used.GetProperty("action").GetString());
        Assert.False(string.IsNullOrEmpty(used.GetProperty("patient_ref").GetString()));
        Assert.DoesNotContain(patientId, used.ToString(), StringComparison.Ordinal);

        var verify = await node.VigieAsync("audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.ToString());
        var uses = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110101");
        var verified = JsonDocument.Parse(uses.StandardOutput).RootElement.EnumerateArray()
            .First(e => e.GetProperty("details").GetProperty("outcome").GetString()!.StartsWith("audit verify:", StringComparison.Ordinal));
        Assert.EndsWith("checked: intact", verified.GetProperty("details").GetProperty("outcome").GetString(), StringComparison.Ordinal);
        Assert.Equal("success", verified.GetProperty("outcome").GetString());

        // Regression: --limit was cut to one page (1000) without a word, 0 gave one event, and an unknown event name none.
        using var work = new TempDirectory("vigie-audit-show");
        var config = work.Combine("small-pages.json");
        await File.WriteAllTextAsync(config, """{ "Audit": { "QueryMaxPageSize": 2 } }""", ct);
        var paged = await node.VigieAsync("audit", "show", "--json", "--limit", "5", "--config", config);
        Assert.True(paged.ExitCode == 0, paged.ToString());
        var listed = JsonDocument.Parse(paged.StandardOutput).RootElement.EnumerateArray().Select(e => e.GetProperty("sequence").GetInt64()).ToList();
        Assert.Equal(5, listed.Count);
        Assert.Equal(listed.OrderDescending(), listed);
        Assert.Equal(5, listed.Distinct().Count());
        Assert.Contains("more match", paged.StandardError, StringComparison.Ordinal);
        Assert.Equal(2, (await node.VigieAsync("audit", "show", "--limit", "0")).ExitCode);
        // Regression: an empty --patient listed every patient's events, and --to before --from an empty list, both with exit 0.
        Assert.Equal(2, (await node.VigieAsync("audit", "show", "--patient", "")).ExitCode);
        Assert.Equal(2, (await node.VigieAsync("audit", "show", "--from", "2026-12-06", "--to", "2026-12-05")).ExitCode);
        var unknown = await node.VigieAsync("audit", "show", "--event", "no-such-event");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("no event is called", unknown.StandardError, StringComparison.Ordinal);
        // Regression: an event type given as --event was "no event is called" with an unrelated example, and an unknown
        // code listed nothing, exit 0.
        var type = await node.VigieAsync("audit", "show", "--event", "Node Authentication");
        Assert.Equal(2, type.ExitCode);
        Assert.Contains("'Node Authentication' (110126) is an event type, not an event", type.StandardError, StringComparison.Ordinal);
        var code = await node.VigieAsync("audit", "show", "--event", "999999");
        Assert.Equal(2, code.ExitCode);
        Assert.Contains("no event has the code 999999", code.StandardError, StringComparison.Ordinal);
        // Regression: a table of a million events was laid out whole in memory (about 8 KB an event).
        var table = await node.VigieAsync("audit", "show", "--limit", "20000");
        Assert.Equal(2, table.ExitCode);
        Assert.Contains("use --json for more", table.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Bug: a C-GET was audited without its patient (no Patient object, no patient reference): it was missing from the
    /// patient's history, the very place that should show who took their images.
    /// </summary>
    [Fact]
    public async Task A_retrieve_shows_in_the_patients_history()
    {
        var ct = TestContext.Current.CancellationToken;
        var file = Peers.CtCorpusFiles().First();
        var sample = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset;
        var patientId = sample.GetString(DicomTags.PatientID)!;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync([file], ct);
        using var got = new TempDirectory("vigie-got");
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aet", "WS1", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={sample.GetString(DicomTags.StudyInstanceUID)}", "-od", got.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1),
            cancellationToken: ct);
        Assert.True(get.ExitCode == 0, get.ToString());
        await node.StopAsync();

        var history = await node.VigieAsync("audit", "show", "--json", "--details", "--patient", patientId);
        Assert.True(history.ExitCode == 0, history.ToString());
        var retrieve = JsonDocument.Parse(history.StandardOutput).RootElement.EnumerateArray().Single(e => e.GetProperty("event_id").GetString() == "110102");
        Assert.Equal("C-GET of 1 instances to WS1", retrieve.GetProperty("details").GetProperty("outcome").GetString());
        Assert.Contains(patientId, retrieve.ToString(), StringComparison.Ordinal);
    }

    /// <summary>
    /// Bug: a C-MOVE was audited with the requestor as the Destination (PS3.15 A.5.3.3: the node that received the
    /// images is), so the trail named the viewer that asked, not the workstation that got the patient's images; and
    /// `audit show --details` left out the participants' roles and what a C-FIND searched for.
    /// </summary>
    [Fact]
    public async Task Regression_a_move_was_audited_with_the_requestor_as_destination_and_a_query_showed_no_keys()
    {
        var ct = TestContext.Current.CancellationToken;
        var file = Peers.CtCorpusFiles().First();
        var sample = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset;
        var patientId = sample.GetString(DicomTags.PatientID)!;
        using var work = new TempDirectory("vigie-move-audit");
        await using var workstation = await StoreScp.StartAsync("WORKSTATION", work.Combine("moved"));
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        await node.StoreAsync([file], ct);
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aet", "VIEWER3", "-aec", "VIGIE", "-aem", "WORKSTATION", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"StudyInstanceUID={sample.GetString(DicomTags.StudyInstanceUID)}", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(move.ExitCode == 0, move.ToString());
        var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-aet", "READER2", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"PatientID={patientId}", "-k", "StudyInstanceUID", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(find.ExitCode == 0, find.ToString());
        await node.StopAsync();

        var shown = await node.VigieAsync("audit", "show", "--json", "--details");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var entries = JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray().ToList();
        var moved = entries.Single(e => e.GetProperty("event_id").GetString() == "110102");
        var participants = moved.GetProperty("participants").EnumerateArray()
            .ToDictionary(p => p.GetProperty("user").GetString()!, p => (Requestor: p.GetProperty("requestor").GetBoolean(),
                Roles: string.Join(",", p.GetProperty("roles").EnumerateArray().Select(r => r.GetString()))));
        Assert.Equal((true, ""), participants["VIEWER3"]);
        Assert.Equal((false, "Source Role ID"), participants["VIGIE"]);
        Assert.Equal((false, "Destination Role ID"), participants["WORKSTATION"]);

        var query = entries.Single(e => e.GetProperty("event_id").GetString() == "110112");
        var keys = query.GetProperty("details").GetProperty("objects")[0].GetProperty("query");
        Assert.Equal(patientId, keys.GetProperty("PatientID").GetString());
        Assert.Equal("STUDY", keys.GetProperty("QueryRetrieveLevel").GetString());

        // Regression: a query keyed on one patient was not in that patient's history (who looked me up).
        var history = await node.VigieAsync("audit", "show", "--json", "--patient", patientId, "--event", "110112");
        Assert.True(history.ExitCode == 0, history.ToString());
        Assert.Single(JsonDocument.Parse(history.StandardOutput).RootElement.EnumerateArray());
    }

    /// <summary>
    /// Regression: a C-FIND keyed on a Patient ID without its issuer was filed under the ID alone, while the patient's
    /// stores and retrieves (which carry the issuer) were filed under ID@issuer: the patient's history missed the query.
    /// </summary>
    [Fact]
    public async Task Regression_a_query_without_the_issuer_was_missing_from_the_patients_history()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-issuer");
        var file = work.Combine("o.dcm");
        File.Copy(Peers.CtCorpusFiles()[0], file);
        var modify = await Peers.RunAsync(Peers.Require("dcmodify", "dcmtk"), ["-nb", "-m", "PatientID=ISS-1", "-i", "IssuerOfPatientID=HOSP_A", file],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(modify.ExitCode == 0, modify.ToString());
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync([file], ct);

        // The same ID under a second issuer is another patient: a query on the bare ID is in both histories (second review).
        var other = work.Combine("b.dcm");
        File.Copy(Peers.CtCorpusFiles()[1], other);
        modify = await Peers.RunAsync(Peers.Require("dcmodify", "dcmtk"), ["-nb", "-m", "PatientID=ISS-1", "-i", "IssuerOfPatientID=HOSP_B",
            "-m", "StudyInstanceUID=1.2.826.0.1.3680043.10.1338.78.1", "-m", "SeriesInstanceUID=1.2.826.0.1.3680043.10.1338.78.2", other],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(modify.ExitCode == 0, modify.ToString());
        await node.StoreAsync([other], ct);
        var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-aet", "READER2", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", "PatientID=ISS-1", "-k", "StudyInstanceUID", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(find.ExitCode == 0, find.ToString());
        await node.StopAsync();

        var history = await node.VigieAsync("audit", "show", "--json", "--patient", "ISS-1@HOSP_A");
        Assert.True(history.ExitCode == 0, history.ToString());
        var events = JsonDocument.Parse(history.StandardOutput).RootElement.EnumerateArray().Select(e => e.GetProperty("event_id").GetString()).ToList();
        Assert.Contains("110104", events);
        Assert.Contains("110112", events);
        var second = await node.VigieAsync("audit", "show", "--json", "--patient", "ISS-1@HOSP_B", "--event", "110112");
        Assert.Single(JsonDocument.Parse(second.StandardOutput).RootElement.EnumerateArray());

        // Regression (review of the officer's workflows): --patient with the bare ID listed none of the stores, which
        // carry the issuer, so the officer concluded nobody had touched the patient. It is the ID under every issuer.
        var bare = await node.VigieAsync("audit", "show", "--json", "--patient", "ISS-1", "--event", "110104");
        Assert.True(bare.ExitCode == 0, bare.ToString());
        Assert.Equal(2, JsonDocument.Parse(bare.StandardOutput).RootElement.GetArrayLength());
        var searchedFor = await node.VigieAsync("audit", "show", "--json", "--details", "--patient", "ISS-1@HOSP_B", "--event", "110101");
        Assert.True(JsonDocument.Parse(searchedFor.StandardOutput).RootElement.EnumerateArray()
            .Any(e => e.GetProperty("details").GetProperty("outcome").GetString()!.Contains("by patient, event 110104", StringComparison.Ordinal)), searchedFor.ToString());
    }

    /// <summary>
    /// Bug: `vigie audit verify` on a copy without the private signing key (an outside auditor's) failed with an
    /// exception, or, given the public key in the settings, wrote a new private key into the keys folder. Verification
    /// only needs public keys, and must not make key material.
    /// </summary>
    [Fact]
    public async Task Regression_verifying_without_the_private_signing_key_failed_or_made_a_new_key()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(2), ct);
        await node.StopAsync();
        var head = await node.VigieAsync("audit", "head", "--json");
        Assert.True(head.ExitCode == 0, head.ToString());
        var publicKey = JsonDocument.Parse(head.StandardOutput).RootElement.GetProperty("publicKey").GetString()!;
        var keyFile = Path.Combine(node.Keys, "audit-signing.key");
        File.Move(keyFile, keyFile + ".away");

        var untrusted = await node.VigieAsync("audit", "verify", "--json");
        Assert.True(untrusted.ExitCode == 1, untrusted.ToString());
        Assert.Contains("which is not trusted", untrusted.StandardOutput, StringComparison.Ordinal);
        Assert.False(File.Exists(keyFile), "verification made a signing key");

        var trusted = await node.VigieAsync("audit", "verify", "--public-key", publicKey);
        Assert.True(trusted.ExitCode == 0, trusted.ToString());
        Assert.False(File.Exists(keyFile), "verification made a signing key");
        Assert.Equal(2, (await node.VigieAsync("audit", "verify", "--public-key", "not-a-key")).ExitCode);
    }

    /// <summary>
    /// Regression: an audit trail that failed its own check while proving (an entry altered) made `audit prove` exit 2
    /// with an exception's class name, as for a usage error; an entry that does not exist was "not covered yet"; and a
    /// negative tree size was looked up rather than refused.
    /// </summary>
    [Fact]
    public async Task Regression_a_proof_over_an_altered_entry_exited_2_with_an_exception_name()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        await node.StopAsync();
        var missing = await node.VigieAsync("audit", "prove", "99999");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("There is no entry 99999", missing.StandardError, StringComparison.Ordinal);
        Assert.Equal(2, (await node.VigieAsync("audit", "prove", "0", "--tree-size", "-3")).ExitCode);

        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(node.Data, "index.db")};Pooling=false"))
        {
            await connection.OpenAsync(ct);
            await using var alter = connection.CreateCommand();
            alter.CommandText = "UPDATE audit_entry SET user_id = 'SOMEONE-ELSE' WHERE seq = 0";
            await alter.ExecuteNonQueryAsync(ct);
        }

        var altered = await node.VigieAsync("audit", "prove", "0");
        Assert.True(altered.ExitCode == 1, altered.ToString());
        Assert.Contains("failed its own check", altered.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", altered.StandardError, StringComparison.Ordinal);
    }

    /// <summary>
    /// Bug: stores and refusals carried "Dimse" as their AuditSourceID instead of the configured Audit:SourceId, so a
    /// SIEM grouping events by source saw the node as two.
    /// </summary>
    [Fact]
    public async Task Stores_carry_the_configured_audit_source()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string> { ["VIGIE__AUDIT__SOURCEID"] = "VIGIE-SITE-A" },
            cancellationToken: ct);
        await node.StoreAsync(Peers.CtCorpusFiles().Take(1), ct);
        await node.StopAsync();

        var shown = await node.VigieAsync("audit", "show", "--json");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var sources = JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray().Select(e => e.GetProperty("source").GetString()).Distinct().ToList();
        Assert.Equal(["VIGIE-SITE-A"], sources);
    }
}
