using System.Text.Json;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Queries and retrieves the node refuses still leave their trace.</summary>
public sealed class RefusedQueryAuditTests
{
    /// <summary>
    /// Regression: a C-FIND, C-GET or C-MOVE refused with A900 (no level, or a retrieve naming nothing it could take)
    /// left nothing in the audit trail, although each is an attempt to look patients up or take their images.
    /// </summary>
    [Fact]
    public async Task Regression_a_refused_find_get_or_move_was_not_audited()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-refused-qr");
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);

        var find = await Peers.RunAsync(Peers.Require("findscu", "dcmtk"), ["-v", "-aec", "VIGIE", "-S", "-k", "PatientID=REF-1", "127.0.0.1", node.DicomPortText],
            TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Contains("DataSetDoesNotMatchSOPClass", find.StandardOutput + find.StandardError, StringComparison.OrdinalIgnoreCase);
        var get = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-v", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=*",
            "-od", work.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Contains("DataSetDoesNotMatchSOPClass", get.StandardOutput + get.StandardError, StringComparison.OrdinalIgnoreCase);
        var move = await Peers.RunAsync(Peers.Require("movescu", "dcmtk"), ["-v", "-aec", "VIGIE", "-aem", "ELSEWHERE", "-S", "-k", "QueryRetrieveLevel=IMAGE",
            "-k", "PatientName=*", "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Contains("DataSetDoesNotMatchSOPClass", move.StandardOutput + move.StandardError, StringComparison.OrdinalIgnoreCase);

        var queries = await ShownAsync(node, "110112");
        var query = Assert.Single(queries);
        Assert.StartsWith("refused (A900): Query/Retrieve Level '' is not", Outcome(query), StringComparison.Ordinal);
        Assert.NotEqual("success", query.GetProperty("outcome").GetString());

        var transfers = await ShownAsync(node, "110102");
        Assert.Equal(2, transfers.Count);
        Assert.All(transfers, t => Assert.NotEqual("success", t.GetProperty("outcome").GetString()));
        Assert.Contains(transfers, t => Outcome(t).StartsWith("C-GET to ", StringComparison.Ordinal) && Outcome(t).Contains(": refused (A900): ", StringComparison.Ordinal));
        Assert.Contains(transfers, t => Outcome(t).StartsWith("C-MOVE to ELSEWHERE: refused (A900): ", StringComparison.Ordinal));

        // Keyed on one patient, a refused retrieve is in that patient's history, as a refused query is (second review).
        var keyed = await Peers.RunAsync(Peers.Require("getscu", "dcmtk"), ["-v", "-aec", "VIGIE", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=*",
            "-k", "PatientID=REF-2", "-od", work.Path, "127.0.0.1", node.DicomPortText], TimeSpan.FromMinutes(1), cancellationToken: ct);
        Assert.Contains("DataSetDoesNotMatchSOPClass", keyed.StandardOutput + keyed.StandardError, StringComparison.OrdinalIgnoreCase);
        var history = await node.VigieAsync("audit", "show", "--json", "--patient", "REF-2", "--event", "110102");
        Assert.Single(JsonDocument.Parse(history.StandardOutput).RootElement.EnumerateArray());
    }

    private static async Task<List<JsonElement>> ShownAsync(VigieNode node, string eventCode)
    {
        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", eventCode);
        Assert.True(shown.ExitCode == 0, shown.ToString());
        return [.. JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray().Select(e => e.Clone())];
    }

    private static string Outcome(JsonElement entry) => entry.GetProperty("details").GetProperty("outcome").GetString() ?? "";
}
