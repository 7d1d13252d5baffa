using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Testing;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>
/// Regression: when the C-MOVE destination aborted its association in the middle of the sub-operations, the retrieve
/// stopped without a final response, and the requestor (movescu, a viewer) waited for ever. Now the sub-operations
/// left are counted as failed and the final response goes out at once; the node keeps serving.
/// </summary>
public sealed class MoveDestinationFailureTests
{
    [Fact]
    public async Task Regression_a_move_destination_that_aborts_left_the_requestor_waiting_for_a_final_response()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-move-abort");
        // dcmtk's storescp aborts the association as soon as the first C-STORE request arrives.
        await using var workstation = await StoreScp.StartAsync("WORKSTATION", work.Combine("moved"), "--abort-after");
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 3, ct);
        Assert.Contains("Received Final Move Response (Refused: OutOfResourcesSubOperations)", move.StandardError + move.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("to WORKSTATION: the destination dropped the association", node.Output, StringComparison.Ordinal);

        var echo = await Peers.RunAsync(Peers.Require("echoscu", "dcmtk"), ["-aec", "VIGIE", "127.0.0.1", node.DicomPortText], TimeSpan.FromSeconds(30),
            cancellationToken: ct);
        Assert.True(echo.ExitCode == 0, echo.ToString());
    }

    /// <summary>
    /// Regression: the final A702 response carried no Error Comment, so the radiologist's viewer could only say that
    /// the move failed, not why; the reason was in Vigie's log alone. It now names the first failure.
    /// </summary>
    [Fact]
    public async Task Regression_a_final_A702_response_carried_no_error_comment_saying_why()
    {
        var ct = TestContext.Current.CancellationToken;
        using var work = new TempDirectory("vigie-move-comment");
        await using var workstation = await StoreScp.StartAsync("WORKSTATION", work.Combine("moved"), "--abort-after");
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 2, ct, "-d");
        var output = move.StandardError + move.StandardOutput;
        Assert.Contains("DIMSE Status                  : 0xa702", output, StringComparison.Ordinal);
        Assert.Matches(@"\(0000,0902\) LO \[[^\]]*the move destination closed the association", output);
    }

    /// <summary>
    /// Regression: a move destination that answered the association request with something that is not DICOM ended
    /// the C-MOVE with 0110 ("failed: PduException"), as if Vigie had failed. It is a destination that cannot be
    /// reached, as one that refuses or drops the connection attempt (checked here at its connect timeout), and ends
    /// A702 as they do, with the reason in the log.
    /// </summary>
    [Theory]
    [InlineData("drops the connection attempt", "did not accept the connection within 00:00:02")]
    [InlineData("answers with garbage", "PDU")]
    public async Task Regression_a_move_destination_that_cannot_be_reached_ends_the_move_A702(string behaviour, string reason)
    {
        var ct = TestContext.Current.CancellationToken;
        using var destination = behaviour.StartsWith("drops", StringComparison.Ordinal)
            ? await UnansweringPeer.DroppingConnectionsAsync()
            : UnansweringPeer.Answering([0x09, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00]);
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "WORKSTATION",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = destination.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__CONNECTTIMEOUT"] = "00:00:02",
        }, cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 1, ct);

        Assert.Contains("Received Final Move Response (Refused: OutOfResourcesSubOperations)", move.StandardError + move.StandardOutput, StringComparison.Ordinal);
        var logged = node.Output.Split('\n').SkipWhile(l => !l.Contains($"to WORKSTATION (127.0.0.1:{destination.Port}) failed:", StringComparison.Ordinal))
            .Take(2).ToList();
        Assert.NotEmpty(logged);
        Assert.Contains(reason, string.Join(' ', logged), StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a move destination that cannot be reached ended the C-MOVE A702 without sub-operation counts or a
    /// Failed SOP Instance UID List, so the requestor had nothing to retry (a destination that drops the association
    /// midway gave both).
    /// </summary>
    [Fact]
    public async Task Regression_an_unreachable_move_destination_gave_no_counts_and_no_failed_list()
    {
        var ct = TestContext.Current.CancellationToken;
        using var destination = await UnansweringPeer.DroppingConnectionsAsync();
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "WORKSTATION",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = destination.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__CONNECTTIMEOUT"] = "00:00:02",
        }, cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 2, ct, "-d");
        var output = move.StandardError + move.StandardOutput;
        Assert.Contains("DIMSE Status                  : 0xa702", output, StringComparison.Ordinal);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(output, @"Failed Suboperations\s*:\s*2"), output);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(output, @"\(0008,0058\) UI \[[0-9.]+\\[0-9.]+\]"), output);
        Assert.Contains("cannot reach WORKSTATION", output, StringComparison.Ordinal);

        // Regression: the trail held only "C-MOVE of 2 instances to WORKSTATION", outcome success. Now the end says
        // what did not leave (PS3.15 A.5.3.4), under the patient.
        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110104");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var end = Assert.Single(System.Text.Json.JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray(),
            e => e.GetProperty("details").GetProperty("outcome").GetString()!.StartsWith("C-MOVE to WORKSTATION", StringComparison.Ordinal));
        Assert.StartsWith("C-MOVE to WORKSTATION: 0 of 2 instances sent, 2 failed, 0 not attempted (the move destination could not be reached); first failure cannot reach",
            end.GetProperty("details").GetProperty("outcome").GetString(), StringComparison.Ordinal);
        Assert.Equal("serious_failure", end.GetProperty("outcome").GetString());
        Assert.True(end.TryGetProperty("patient_ref", out var patient) && patient.GetString()!.Length > 0);
    }

    /// <summary>
    /// Regression: a C-MOVE to a destination Vigie does not know was answered A801 and nothing was sent, but the audit
    /// trail recorded "Begin Transferring DICOM Instances ... C-MOVE of 3 instances to WORKSTATION" as a success.
    /// </summary>
    [Fact]
    public async Task Regression_a_move_to_an_unknown_destination_was_audited_as_a_successful_transfer()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var node = await VigieNode.StartAsync(cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 3, ct);
        Assert.Contains("Refused: MoveDestinationUnknown", move.StandardError + move.StandardOutput, StringComparison.Ordinal);
        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--event", "110102");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var entry = Assert.Single(System.Text.Json.JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray());
        Assert.Contains("C-MOVE of 3 instances to WORKSTATION: refused, unknown move destination (A801)",
            entry.GetProperty("details").GetProperty("outcome").GetString(), StringComparison.Ordinal);
        Assert.NotEqual("success", entry.GetProperty("outcome").GetString());
    }

    /// <summary>
    /// Regression: a move destination answering each C-STORE with Success for another Affected SOP Instance UID had
    /// the sub-operation counted as completed (PS3.7 9.3.1.2: the response names the instance sent), so the viewer took
    /// the study as retrieved though the workstation never acknowledged one image of it. Forwarding checked this; C-MOVE
    /// and C-GET sub-operations did not.
    /// </summary>
    [Fact]
    public async Task Regression_a_move_destination_acknowledging_another_instance_counted_as_completed()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var workstation = RawStoreScp.Start(RawScpMode.WrongInstance, VigieNode.FreePort());
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 2, ct, "-d");
        var output = move.StandardError + move.StandardOutput;

        Assert.Equal(2, workstation.Instances.Count);
        Assert.Contains("DIMSE Status                  : 0xa702", output, StringComparison.Ordinal);
        Assert.Matches(@"Failed Suboperations +: 2", output);
        Assert.Matches(@"\(0000,0902\) LO \[[^\]]*the receiver answered for another object", output);
    }

    /// <summary>
    /// Regression: the receive loop waited for the requestor's next message with the idle timeout during a C-MOVE, in
    /// which the requestor only listens: a move longer than the idle timeout (5 min by default, any large study on a slow
    /// link) was aborted though every sub-operation was progressing, and the requestor never had its final response.
    /// </summary>
    [Fact]
    public async Task Regression_a_move_longer_than_the_idle_timeout_was_aborted()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var workstation = RawStoreScp.Start(RawScpMode.Accept, VigieNode.FreePort());
        workstation.Delay = TimeSpan.FromSeconds(1.5);
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"],
            environment: new Dictionary<string, string> { ["VIGIE__DICOM__SERVER__ASSOCIATION__IDLETIMEOUT"] = "00:00:02" }, cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 3, ct);
        var output = move.StandardError + move.StandardOutput;

        Assert.DoesNotContain("Peer aborted", output, StringComparison.Ordinal);
        Assert.Contains("Received Final Move Response (Success)", output, StringComparison.Ordinal);
        Assert.Equal(3, workstation.Instances.Count);
    }

    /// <summary>
    /// Regression: a destination that stopped answering, given up on after its ResponseTimeout, was reported to the
    /// requestor as "the move destination closed the association" and logged as having dropped it: the operator looked
    /// for a node that hung up, not one that hung.
    /// </summary>
    [Fact]
    public async Task Regression_a_move_destination_that_stopped_answering_was_reported_as_closing_the_association()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var workstation = RawStoreScp.Start(RawScpMode.Hang, VigieNode.FreePort());
        await using var node = await VigieNode.StartAsync(environment: new Dictionary<string, string>
        {
            ["VIGIE__GATEWAY__DESTINATIONS__0__AETITLE"] = "WORKSTATION",
            ["VIGIE__GATEWAY__DESTINATIONS__0__PORT"] = workstation.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["VIGIE__GATEWAY__DESTINATIONS__0__RESPONSETIMEOUT"] = "00:00:02",
        }, cancellationToken: ct);
        var move = await StoreAndMoveToWorkstationAsync(node, 2, ct, "-d");
        var output = move.StandardError + move.StandardOutput;

        Assert.Contains("DIMSE Status                  : 0xa702", output, StringComparison.Ordinal);
        Assert.Matches(@"\(0000,0902\) LO \[[^\]]*the move destination stopped answering; Vigie gave up", output);
        Assert.DoesNotContain("closed the association", output, StringComparison.Ordinal);
        Assert.Contains("to WORKSTATION: the destination stopped answering and Vigie gave up after its timeout", node.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("dropped the association", node.Output, StringComparison.Ordinal);
    }

    /// <summary>
    /// Regression: a stop during a C-MOVE to a destination that stopped reading waited on that destination (its release,
    /// then its timeouts) past the host's shutdown timeout: the process was killed, and the move's outcome, the
    /// application stop and the last signed tree head never reached the audit trail. A C-GET stopped the same way ended
    /// cleanly; the C-MOVE's outbound association is now aborted on the stop as well.
    /// </summary>
    [Fact]
    public async Task Regression_a_stop_during_a_move_to_a_destination_that_stopped_reading_lost_the_audit()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var workstation = RawStoreScp.Start(RawScpMode.StopReading, VigieNode.FreePort());
        await using var node = await VigieNode.StartAsync(arguments: ["--destination", $"WORKSTATION@127.0.0.1:{workstation.Port}"], cancellationToken: ct);
        var moving = StoreAndMoveToWorkstationAsync(node, 2, ct);
        await Eventually.WaitForAsync(() => Task.FromResult(workstation.Associations), n => n > 0, ct, TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(1), ct);

        var stopping = System.Diagnostics.Stopwatch.StartNew();
        await node.StopAsync();
        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(18), $"the stop took {stopping.Elapsed}");
        await moving;

        var shown = await node.VigieAsync("audit", "show", "--json", "--details", "--limit", "100");
        Assert.True(shown.ExitCode == 0, shown.ToString());
        var entries = System.Text.Json.JsonDocument.Parse(shown.StandardOutput).RootElement.EnumerateArray().ToList();
        Assert.Contains(entries, e => e.TryGetProperty("details", out var details) && details.ValueKind == System.Text.Json.JsonValueKind.Object
            && details.TryGetProperty("outcome", out var outcome) && outcome.GetString()!.StartsWith("C-MOVE to WORKSTATION: 0 of 2 instances sent", StringComparison.Ordinal));
        Assert.Contains(entries, e => e.TryGetProperty("event_types", out var types) && types.EnumerateArray().Any(t => t.GetString() == "Application Stop"));
    }

    /// <summary>Stores the first <paramref name="count"/> corpus files, then asks with movescu for their study to go to WORKSTATION.</summary>
    private static async Task<ProcessResult> StoreAndMoveToWorkstationAsync(VigieNode node, int count, CancellationToken ct, string verbosity = "-v")
    {
        var files = Peers.CtCorpusFiles().Take(count).ToList();
        await node.StoreAsync(files, ct);
        var first = await DicomReader.ReadFileAsync(files[0], new DicomReadOptions { StopAtTag = DicomTags.PixelData }, ct);
        var study = DicomText.TrimUid(first.Dataset.GetString(DicomTags.StudyInstanceUID)!);
        return await Peers.RunAsync(Peers.Require("movescu", "dcmtk"),
            [verbosity, "-aec", "VIGIE", "-aem", "WORKSTATION", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", $"StudyInstanceUID={study}", "127.0.0.1", node.DicomPortText],
            TimeSpan.FromSeconds(60), cancellationToken: ct);
    }
}
