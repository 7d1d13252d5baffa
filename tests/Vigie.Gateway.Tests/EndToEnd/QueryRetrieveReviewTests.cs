using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Network;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Regressions from the query/retrieve review (rights per service, issuers in retrieves, C-FIND statuses and audit).</summary>
public sealed class QueryRetrieveReviewTests
{
    private const string Root = "1.2.826.0.1.3680043.10.1338.91";

    /// <summary>
    /// Regression: the service was chosen from the command field and only the Affected SOP Class UID was compared with the
    /// context, so a caller reached C-MOVE, C-GET, C-FIND and C-STORE through any context it was granted: a query-only AE
    /// moved and stored, a store+query AE got images, a store-only AE listed patients through Verification.
    /// </summary>
    [Fact]
    public async Task Regression_a_service_was_reached_through_the_context_of_another()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", "DEST@127.0.0.1:9"], environment: new Dictionary<string, string>
        {
            ["VIGIE__ACCESS__DICOMNODES__0__AETITLE"] = "ADMIN",
            ["VIGIE__ACCESS__DICOMNODES__0__NETWORKS__0"] = "127.0.0.0/8",
            ["VIGIE__ACCESS__DICOMNODES__0__RIGHTS"] = "Store, Query, Retrieve",
            ["VIGIE__ACCESS__DICOMNODES__1__AETITLE"] = "QONLY",
            ["VIGIE__ACCESS__DICOMNODES__1__NETWORKS__0"] = "127.0.0.0/8",
            ["VIGIE__ACCESS__DICOMNODES__1__RIGHTS"] = "Query",
            ["VIGIE__ACCESS__DICOMNODES__2__AETITLE"] = "MODALITY",
            ["VIGIE__ACCESS__DICOMNODES__2__NETWORKS__0"] = "127.0.0.0/8",
            ["VIGIE__ACCESS__DICOMNODES__2__RIGHTS"] = "Store",
            ["VIGIE__ACCESS__DICOMNODES__3__AETITLE"] = "STOREQ",
            ["VIGIE__ACCESS__DICOMNODES__3__NETWORKS__0"] = "127.0.0.0/8",
            ["VIGIE__ACCESS__DICOMNODES__3__RIGHTS"] = "Store, Query",
        }, cancellationToken: ct);
        var file = Peers.CtCorpusFiles()[0];
        await using (var admin = await ConnectAsync(node, "ADMIN", [DicomUids.CTImageStorage], ct))
        {
            Assert.Equal(DimseStatus.Success, (await admin.StoreFileAsync(file, ct)).Status);
        }

        var study = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.StudyInstanceUID)!;
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
        identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, study);
        var find = DicomUids.StudyRootQueryRetrieveInformationModelFind;

        // Query right only: a C-MOVE and a C-STORE on its FIND context.
        await using (var qonly = await ConnectAsync(node, "QONLY", [find, DicomUids.Verification], ct))
        {
            var move = Request(qonly, find, DimseCommand.CMoveRequest, find);
            move.Command.SetString(DicomTags.MoveDestination, DicomVR.AE, "DEST");
            Assert.Equal([DimseStatus.UnrecognizedOperation], await ExchangeAsync(qonly, move, identifier, ct));
            var store = Request(qonly, find, DimseCommand.CStoreRequest, find);
            store.Command.SetString(DicomTags.AffectedSOPInstanceUID, DicomVR.UI, Root + ".99");
            var dataSet = new DicomDataset();
            dataSet.SetString(DicomTags.SOPClassUID, DicomVR.UI, find);
            dataSet.SetString(DicomTags.SOPInstanceUID, DicomVR.UI, Root + ".99");
            dataSet.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, study);
            dataSet.SetString(DicomTags.SeriesInstanceUID, DicomVR.UI, Root + ".98");
            Assert.Equal([DimseStatus.UnrecognizedOperation], await ExchangeAsync(qonly, store, dataSet, ct));
            var storeOnEcho = Request(qonly, DicomUids.Verification, DimseCommand.CStoreRequest, DicomUids.Verification);
            storeOnEcho.Command.SetString(DicomTags.AffectedSOPInstanceUID, DicomVR.UI, Root + ".99");
            dataSet.SetString(DicomTags.SOPClassUID, DicomVR.UI, DicomUids.Verification);
            Assert.Equal([DimseStatus.UnrecognizedOperation], await ExchangeAsync(qonly, storeOnEcho, dataSet, ct));
        }

        // Store and Query, no Retrieve: a C-GET on its FIND context.
        await using (var storeq = await ConnectAsync(node, "STOREQ", [find, DicomUids.CTImageStorage], ct,
                         [new RoleSelection(DicomUids.CTImageStorage, ScuRole: true, ScpRole: true)]))
        {
            Assert.Equal([DimseStatus.UnrecognizedOperation], await ExchangeAsync(storeq, Request(storeq, find, DimseCommand.CGetRequest, find), identifier, ct));
        }

        // Store only: a C-FIND on Verification and on a storage context.
        await using (var modality = await ConnectAsync(node, "MODALITY", [DicomUids.Verification, DicomUids.CTImageStorage], ct))
        {
            var all = new DicomDataset();
            all.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "STUDY");
            all.SetString(DicomTags.PatientID, DicomVR.LO, "*");
            Assert.Equal([DimseStatus.UnrecognizedOperation],
                await ExchangeAsync(modality, Request(modality, DicomUids.Verification, DimseCommand.CFindRequest, DicomUids.Verification), all, ct));
            Assert.Equal([DimseStatus.UnrecognizedOperation],
                await ExchangeAsync(modality, Request(modality, DicomUids.CTImageStorage, DimseCommand.CFindRequest, DicomUids.CTImageStorage), all, ct));
            Assert.Equal(DimseStatus.Success, (await modality.EchoAsync(ct)).Status);
        }

        await node.StopAsync();
        // Nothing was queried, retrieved or stored; each refusal is a security alert.
        Assert.Empty(await ShownAsync(node, "110112"));
        Assert.Empty(await ShownAsync(node, "110102"));
        var stored = await ShownAsync(node, "110104");
        Assert.Single(stored);
        var alerts = (await ShownAsync(node, "110113")).Select(Outcome).Where(o => o.Contains("refused (0x0211)", StringComparison.Ordinal)).ToList();
        Assert.Equal(6, alerts.Count);
    }

    /// <summary>
    /// Regression: a C-GET or C-MOVE keyed on Patient ID and Issuer of Patient ID also sent the other patient with the same
    /// ID under another issuer (C-FIND with the same identifier told them apart). And a retrieve with a list of Patient IDs
    /// sent every patient named, though a retrieve takes lists of UIDs only.
    /// </summary>
    [Fact]
    public async Task Regression_a_retrieve_with_the_issuer_sent_the_patient_of_another_issuer()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-issuer-retrieve");
        var made = new List<string>();
        var corpus = Peers.CtCorpusFiles();
        foreach (var (issuer, i) in new[] { ("HOSP_A", 1), ("HOSP_B", 2) })
        {
            var path = work.Combine($"{issuer}.dcm");
            File.Copy(corpus[i], path);
            var modify = await Peers.RunAsync(Peers.Require("dcmodify", "dcmtk"), ["-nb", "-m", "PatientID=ISS-9", "-i", $"IssuerOfPatientID={issuer}",
                "-m", $"StudyInstanceUID={Root}.1.{i}", "-m", $"SeriesInstanceUID={Root}.2.{i}", "-m", $"SOPInstanceUID={Root}.3.{i}", path],
                TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(modify.ExitCode == 0, modify.ToString());
            made.Add(path);
        }

        await using var moved = await StoreScp.StartAsync("MOVEDEST", work.Combine("moved"));
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"MOVEDEST@127.0.0.1:{moved.Port}"], cancellationToken: ct);
        await node.StoreAsync(made, ct);

        async Task<List<string>> IssuersAsync(string folder)
        {
            var issuers = new List<string>();
            foreach (var path in Directory.Exists(folder) ? Directory.GetFiles(folder) : [])
            {
                var read = await DicomReader.ReadFileAsync(path, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
                issuers.Add(read.Dataset.GetString(DicomTags.IssuerOfPatientID) ?? "");
            }

            return issuers;
        }

        foreach (var keys in new[]
                 {
                     new[] { "-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=ISS-9", "-k", "IssuerOfPatientID=HOSP_A" },
                     ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={Root}.1.1\\{Root}.1.2", "-k", "PatientID=ISS-9", "-k", "IssuerOfPatientID=HOSP_A"],
                 })
        {
            var got = work.Combine("got-" + keys[0]);
            Directory.CreateDirectory(got);
            var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-aec", "VIGIE", .. keys, "-od", got, "127.0.0.1", node.DicomPortText],
                TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(get.ExitCode == 0, get.ToString());
            Assert.Equal(["HOSP_A"], await IssuersAsync(got));
        }

        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-aec", "VIGIE", "-aem", "MOVEDEST", "-P", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", "PatientID=ISS-9", "-k", "IssuerOfPatientID=HOSP_B", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.True(move.ExitCode == 0, move.ToString());
        Assert.Equal(["HOSP_B"], await IssuersAsync(moved.Folder));

        // A list of Patient IDs is refused: a retrieve names one patient.
        var listed = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-v", "-aec", "VIGIE", "-aem", "MOVEDEST", "-P", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", "PatientID=ISS-9\\ISS-8", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Contains("DataSetDoesNotMatchSOPClass", listed.StandardOutput + listed.StandardError, StringComparison.OrdinalIgnoreCase);
        Assert.Single(await IssuersAsync(moved.Folder));
    }

    /// <summary>
    /// Regression: a C-FIND with a list of 20,000 UIDs (about 900 KB, under the 1 MiB identifier limit) failed 0110
    /// "AuditRecordException": its audit record, which kept the whole identifier, exceeded the 1 MiB cap on details.
    /// </summary>
    [Fact]
    public async Task Regression_a_find_with_a_long_uid_list_failed_on_its_audit_record()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var file = Peers.CtCorpusFiles()[0];
        await node.StoreAsync([file], ct);
        var sopInstance = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.SOPInstanceUID)!;

        var uids = Enumerable.Range(0, 20_000).Select(i => $"1.2.826.0.1.3680043.8.498.{100_000 + i}.12345678901").ToList();
        uids[12_345] = sopInstance;
        var identifier = new DicomDataset();
        identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, "IMAGE");
        identifier.SetStrings(DicomTags.SOPInstanceUID, DicomVR.UI, uids);
        Assert.InRange(((DicomValueElement)identifier[DicomTags.SOPInstanceUID]!).Length, 900_000, 1_000_000);

        await using var client = await ConnectAsync(node, "READER", [DicomUids.PatientRootQueryRetrieveInformationModelFind], ct);
        var matches = new List<DicomDataset>();
        await foreach (var match in client.FindAsync(DicomUids.PatientRootQueryRetrieveInformationModelFind, identifier, ct))
        {
            matches.Add(match);
        }

        Assert.Equal(sopInstance, Assert.Single(matches).GetString(DicomTags.SOPInstanceUID));
        await node.StopAsync();
        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110112");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var query = Assert.Single(JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray());
        Assert.StartsWith("1 matches; identifier shortened in this record: (0008,0018): ", Outcome(query), StringComparison.Ordinal);
        Assert.Contains(" of 20000 values kept", Outcome(query), StringComparison.Ordinal);
        // The record keeps the first values, says how many were left out, and the digest of the whole identifier.
        var kept = query.GetProperty("details").GetProperty("objects")[0].GetProperty("query").GetProperty("SOPInstanceUID").GetString()!;
        Assert.InRange(kept.Split('\\').Length, 2, 200);
        Assert.StartsWith(uids[0], kept, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a matching value on a key Vigie does not match on (Patient Comments, a sequence with a value in its
    /// item) was ignored and the matches came back FF00, so the requestor believed its filter applied (PS3.4 C.4.1.1.4: FF01).
    /// Also: a lower-case Query/Retrieve Level (`study`) was accepted, though CS values are upper case.
    /// </summary>
    [Fact]
    public async Task Regression_an_unsupported_matching_key_was_answered_ff00()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var file = Peers.CtCorpusFiles()[0];
        await node.StoreAsync([file], ct);
        var patient = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.PatientID)!;
        var find = DicomUids.StudyRootQueryRetrieveInformationModelFind;
        await using var client = await ConnectAsync(node, "READER", [find], ct);

        DicomDataset Identifier(string level = "STUDY")
        {
            var identifier = new DicomDataset();
            identifier.SetString(DicomTags.QueryRetrieveLevel, DicomVR.CS, level);
            identifier.SetString(DicomTags.PatientID, DicomVR.LO, patient);
            identifier.SetString(DicomTags.StudyInstanceUID, DicomVR.UI, "");
            return identifier;
        }

        // Matched keys only, or a key asked for return (empty, or an empty sequence item): FF00.
        var plain = Identifier();
        plain.SetString(DicomTags.PatientComments, DicomVR.LT, "");
        var emptyItem = new DicomSequence(DicomTags.ProcedureCodeSequence);
        emptyItem.Items.Add(new DicomDataset());
        plain.AddOrUpdate(emptyItem);
        Assert.Equal([DimseStatus.Pending, DimseStatus.Success], await ExchangeAsync(client, Request(client, find, DimseCommand.CFindRequest, find), plain, ct));

        var comments = Identifier();
        comments.SetString(DicomTags.PatientComments, DicomVR.LT, "NO SUCH COMMENT*");
        Assert.Equal([DimseStatus.PendingWithWarnings, DimseStatus.Success],
            await ExchangeAsync(client, Request(client, find, DimseCommand.CFindRequest, find), comments, ct));

        var sequence = Identifier();
        var item = new DicomDataset();
        item.SetString(DicomTags.CodeValue, DicomVR.SH, "NOPE");
        var codes = new DicomSequence(DicomTags.ProcedureCodeSequence);
        codes.Items.Add(item);
        sequence.AddOrUpdate(codes);
        Assert.Equal([DimseStatus.PendingWithWarnings, DimseStatus.Success],
            await ExchangeAsync(client, Request(client, find, DimseCommand.CFindRequest, find), sequence, ct));

        // A key of a level below the query's is not matched either.
        var below = Identifier();
        below.SetString(DicomTags.Modality, DicomVR.CS, "XX");
        Assert.Equal([DimseStatus.PendingWithWarnings, DimseStatus.Success],
            await ExchangeAsync(client, Request(client, find, DimseCommand.CFindRequest, find), below, ct));

        Assert.Equal([DimseStatus.IdentifierDoesNotMatchSopClass],
            await ExchangeAsync(client, Request(client, find, DimseCommand.CFindRequest, find), Identifier("study"), ct));
    }

    /// <summary>
    /// Regression: a C-FIND keyed on exact Patient IDs given as a list (`PAT\PAT`, `A\B`) returned the patients, but the
    /// query was filed under none of them, so it was missing from their history.
    /// </summary>
    [Fact]
    public async Task Regression_a_query_on_a_patient_id_list_was_missing_from_the_patients_history()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var file = Peers.CtCorpusFiles()[0];
        await node.StoreAsync([file], ct);
        var patient = (await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct)).Dataset.GetString(DicomTags.PatientID)!;
        foreach (var ids in new[] { $"{patient}\\{patient}", $"{patient}\\NOBODY-7" })
        {
            var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-aet", "SNOOP", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
                "-k", $"PatientID={ids}", "-k", "StudyInstanceUID", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
            Assert.True(find.ExitCode == 0, find.ToString());
        }

        // Over the bound of Patient IDs in one list: refused, and still audited.
        var many = string.Join('\\', Enumerable.Range(0, 101).Select(i => $"MANY-{i}"));
        var refused = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-v", "-aet", "SNOOP", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY",
            "-k", $"PatientID={many}", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Contains("DataSetDoesNotMatchSOPClass", refused.StandardOutput + refused.StandardError, StringComparison.OrdinalIgnoreCase);
        await node.StopAsync();

        var history = await node.VigieAsync("audit", "show", "--json", "--patient", patient, "--event", "110112");
        Assert.True(history.ExitCode == 0, history.ToString());
        Assert.Equal(2, JsonDocument.Parse(history.StandardOutput).RootElement.GetArrayLength());
        var nobody = await node.VigieAsync("audit", "show", "--json", "--patient", "NOBODY-7", "--event", "110112");
        Assert.Equal(1, JsonDocument.Parse(nobody.StandardOutput).RootElement.GetArrayLength());
        Assert.Equal(4, (await ShownAsync(node, "110112")).Count);
    }

    private static async Task<DicomClient> ConnectAsync(VigieNode node, string callingAE, string[] abstractSyntaxes, CancellationToken ct,
        IReadOnlyList<RoleSelection>? roles = null)
    {
        var contexts = abstractSyntaxes.Select((syntax, i) => new PresentationContext((byte)(2 * i + 1), syntax,
            SopClasses.IsStorage(syntax) ? [DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian] : [DicomUids.ImplicitVRLittleEndian])).ToList();
        var client = roles is null
            ? await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = callingAE, CalledAE = "VIGIE" }, contexts, ct)
            : await DicomClient.ConnectAsync(new DicomClientOptions { Host = "127.0.0.1", Port = node.DicomPort, CallingAE = callingAE, CalledAE = "VIGIE" }, contexts, ct,
                roles);
        Assert.All(client.Association.Parameters.PresentationContexts, c => Assert.True(c.IsAccepted, c.AbstractSyntax));
        return client;
    }

    private static int _nextId = 100;

    /// <summary>A request with any command field, on the context of <paramref name="contextSyntax"/>.</summary>
    private static DimseMessage Request(DicomClient client, string contextSyntax, DimseCommand field, string affectedSopClassUid)
    {
        var command = new DicomDataset();
        command.SetString(DicomTags.AffectedSOPClassUID, DicomVR.UI, affectedSopClassUid);
        command.SetUInt16(DicomTags.CommandField, (ushort)field);
        command.SetUInt16(DicomTags.MessageID, (ushort)Interlocked.Increment(ref _nextId));
        command.SetUInt16(DicomTags.Priority, 0);
        command.SetUInt16(DicomTags.CommandDataSetType, 0x0102);
        return new DimseMessage(command, client.Association.FindAcceptedContext(contextSyntax)!.Id);
    }

    /// <summary>Sends a request and its data set; returns the statuses of its responses. A C-STORE sub-operation sent back fails the test.</summary>
    private static async Task<List<ushort>> ExchangeAsync(DicomClient client, DimseMessage request, DicomDataset dataSet, CancellationToken ct)
    {
        var syntax = client.Association.AcceptedContext(request.PresentationContextId)!.AcceptedTransferSyntax!;
        await client.Association.SendAsync(request, DicomWriter.Encode(dataSet, TransferSyntax.Lookup(syntax)), ct);
        var statuses = new List<ushort>();
        while (true)
        {
            var response = await client.Association.ReceiveCommandAsync(ct) ?? throw new InvalidOperationException("released");
            Assert.False(response.IsRequest, $"Vigie sent a {response.Field}: the operation was performed");
            if (response.HasDataSet)
            {
                await client.Association.ReadDataSetAsync(16 * 1024 * 1024, ct);
            }

            statuses.Add(response.Status);
            if (!DimseStatus.IsPending(response.Status))
            {
                return statuses;
            }
        }
    }

    private static async Task<List<JsonElement>> ShownAsync(VigieNode node, string eventCode)
    {
        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", eventCode, "--limit", "1000");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        return [.. JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray().Select(e => e.Clone())];
    }

    private static string Outcome(JsonElement entry) => entry.GetProperty("details").GetProperty("outcome").GetString() ?? "";
}
