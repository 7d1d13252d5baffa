// Assertions walk FHIR models whose properties are all nullable; a null there fails the test anyway.
#pragma warning disable CS8602, CS8604
using System.Net;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Vigie.Audit.Export;
using Vigie.Core.Data;
using Vigie.Testing;
using Task = System.Threading.Tasks.Task;

namespace Vigie.Audit.Tests;

/// <summary>
/// A FHIR repository stand-in with a strict validator: it refuses (422, with an OperationOutcome) any transaction that
/// holds one of the AuditEvents it was told to refuse, as a server with a stricter profile would, and every tree head
/// while <see cref="RefuseTreeHeads"/> is set. What it takes, it keeps.
/// </summary>
internal sealed class RefusingFhirRepository : IDisposable
{
    private readonly HttpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _serve;

    public RefusingFhirRepository()
    {
        (_listener, var port) = ExportTests.FhirServer();
        BaseUrl = new Uri($"http://127.0.0.1:{port}/fhir/");
        _serve = Task.Run(ServeAsync);
    }

    public Uri BaseUrl { get; }

    public HashSet<string> Refused { get; } = [];

    public bool RefuseTreeHeads { get; set; }

    public bool RefuseEverything { get; set; }

    public HashSet<string> Kept { get; } = [];

    public int Requests { get; private set; }

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync().WaitAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or HttpListenerException or ObjectDisposedException)
            {
                return;
            }

            using var reader = new StreamReader(context.Request.InputStream);
            var body = await reader.ReadToEndAsync();
            var ids = new List<string>();
            bool refuse;
            lock (Kept)
            {
                Requests++;
                if (context.Request.HttpMethod == "PUT")
                {
                    var resource = FhirJsonDeserializer.STRICT.Deserialize<AuditEvent>(body);
                    ids.Add(resource.Id);
                    refuse = RefuseTreeHeads || RefuseEverything;
                }
                else
                {
                    var bundle = FhirJsonDeserializer.STRICT.Deserialize<Bundle>(body);
                    ids.AddRange(bundle.Entry.Select(e => e.Resource.Id!));
                    refuse = RefuseEverything || ids.Any(Refused.Contains);
                }

                if (!refuse)
                {
                    Kept.UnionWith(ids);
                }
            }

            context.Response.StatusCode = refuse ? 422 : 200;
            context.Response.ContentType = "application/fhir+json";
            var answer = Encoding.UTF8.GetBytes(refuse
                ? """{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"AuditEvent.agent: profile constraint failed"}]}"""
                : ExportTests.TransactionResponse(ids.Count));
            context.Response.ContentLength64 = answer.Length;
            try
            {
                await context.Response.OutputStream.WriteAsync(answer);
                context.Response.Close();
            }
            catch (HttpListenerException)
            {
                // The sink went away first (disposed at the end of a test): a repository serves the next client.
                context.Response.Abort();
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _listener.Close();
        _serve.Wait(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}

/// <summary>
/// Regression: a FHIR repository that refused one event for good (a 4xx about its content) stalled its sink for ever,
/// since the worker retried the same bundle, so every later access stayed unseen by the hospital's tools.
/// </summary>
public sealed class ExportRefusalTests
{
    private static async Task<string> ResourceIdAsync(AuditHarness h, long seq) =>
        FhirAuditEvent.ResourceId(h.Log.Factory.ToEntry((await h.Store.ReadEntryAsync(seq, TestContext.Current.CancellationToken))!, unseal: false));

    private static (AuditSinkOptions Options, AuditSetAside SetAside, AuditExportStatus Status) Sink(AuditHarness h, RefusingFhirRepository repository)
    {
        var options = new AuditSinkOptions { Name = "fhir", Kind = AuditSinkKind.FhirHttp, FhirBaseUrl = repository.BaseUrl, BatchSize = 200 };
        h.Options.Sinks.Add(options);
        var wrapped = Microsoft.Extensions.Options.Options.Create(h.Options);
        return (options, new AuditSetAside(wrapped, h.Store, h.Log, TimeProvider.System), new AuditExportStatus(wrapped, h.Store));
    }

    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task A_fhir_repository_that_refuses_one_event_for_good_no_longer_holds_back_the_others(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        await h.AppendAsync(Samples.Records(0, 12));
        using var repository = new RefusingFhirRepository();
        repository.Refused.Add(await ResourceIdAsync(h, 3));
        repository.Refused.Add(await ResourceIdAsync(h, 9));
        var (options, setAside, status) = Sink(h, repository);
        await using var sink = new FhirHttpSink(options, "SITE-1");

        Assert.Equal(12, await h.ExportWorker(options, sink).RunOnceAsync(ct));

        Assert.Equal(10, repository.Kept.Count);
        var items = await setAside.ListAsync("fhir", 100, ct);
        Assert.Equal([3L, 9L], items.Select(i => i.Sequence));
        Assert.All(items, i =>
        {
            Assert.Equal("entry", i.Kind);
            Assert.Contains("422", i.Reason, StringComparison.Ordinal);
            // The server's OperationOutcome can echo content: only its status is kept.
            Assert.DoesNotContain("profile", i.Reason, StringComparison.Ordinal);
        });
        var sinkStatus = Assert.Single(await status.GetAsync(ct));
        Assert.Equal((0L, 0, 2L), (sinkStatus.Waiting, sinkStatus.FailedAttempts, sinkStatus.SetAside));

        // Later entries flow on; the refused ones wait for the repository to be fixed, then go on resend.
        await h.AppendAsync(Samples.Records(12, 3));
        Assert.Equal(3, await h.ExportWorker(options, sink).RunOnceAsync(ct));
        var stillRefused = await setAside.ResendAsync("fhir", ct);
        Assert.Equal((0, 2, 2L), (stillRefused.Resent, stillRefused.RefusedAgain.Count, stillRefused.Remaining));
        repository.Refused.Clear();
        var resent = await setAside.ResendAsync("fhir", ct);
        Assert.Equal((2, 0, 0L), (resent.Resent, resent.RefusedAgain.Count, resent.Remaining));
        Assert.Equal(15, repository.Kept.Count);
        Assert.Equal(0, Assert.Single(await status.GetAsync(ct)).SetAside);
    }

    [Fact]
    public async Task A_repository_that_refuses_every_event_is_retried_rather_than_drained_into_the_set_aside_table()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 5));
        using var repository = new RefusingFhirRepository { RefuseEverything = true };
        var (options, setAside, status) = Sink(h, repository);
        await using var sink = new FhirHttpSink(options, "SITE-1");
        var worker = h.ExportWorker(options, sink);

        var refused = await Assert.ThrowsAsync<AuditSinkRefusedException>(async () => await worker.RunOnceAsync(ct));

        Assert.Contains("refused every entry of the batch and an entry it took before", refused.Message, StringComparison.Ordinal);
        Assert.Empty(await setAside.ListAsync("fhir", 100, ct));
        Assert.Equal(5, Assert.Single(await status.GetAsync(ct)).Waiting);
        repository.RefuseEverything = false;
        Assert.Equal(5, await worker.RunOnceAsync(ct));
        Assert.Equal(5, repository.Kept.Count);
    }

    /// <summary>
    /// A burst of one kind of event the repository refuses, longer than a batch (a hostile peer's storm of security
    /// alerts, say): the batch made only of them is set aside too, since the repository still takes an entry it took
    /// before, and the entries after the burst flow.
    /// </summary>
    [Fact]
    public async Task A_burst_of_refused_events_longer_than_a_batch_is_set_aside_and_the_sink_goes_on()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        await h.AppendAsync(Samples.Records(0, 12));
        using var repository = new RefusingFhirRepository();
        for (var seq = 2; seq < 10; seq++)
        {
            repository.Refused.Add(await ResourceIdAsync(h, seq));
        }

        var (options, setAside, status) = Sink(h, repository);
        options.BatchSize = 4;
        await using var sink = new FhirHttpSink(options, "SITE-1");
        var worker = h.ExportWorker(options, sink);

        Assert.Equal(4, await worker.RunOnceAsync(ct));
        Assert.Equal(4, await worker.RunOnceAsync(ct));
        Assert.Equal(4, await worker.RunOnceAsync(ct));

        Assert.Equal(Enumerable.Range(2, 8).Select(i => (long)i), (await setAside.ListAsync("fhir", 100, ct)).Select(i => i.Sequence));
        Assert.Equal(4, repository.Kept.Count);
        Assert.Equal((0L, 8L), (Assert.Single(await status.GetAsync(ct)).Waiting, Assert.Single(await status.GetAsync(ct)).SetAside));
    }

    [Fact]
    public async Task A_tree_head_refused_by_a_repository_that_now_refuses_everything_is_retried_not_set_aside()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var repository = new RefusingFhirRepository();
        var (options, setAside, _) = Sink(h, repository);
        await using var sink = new FhirHttpSink(options, "SITE-1", sourceId: "VIGIE-NODE-1");
        var worker = h.ExportWorker(options, sink);
        await h.AppendAsync(Samples.Records(0, 3));
        Assert.Equal(3, await worker.RunOnceAsync(ct));
        await h.Log.SignTreeHeadAsync(ct);
        repository.RefuseEverything = true;

        await Assert.ThrowsAsync<AuditSinkRefusedException>(async () => await worker.RunOnceAsync(ct));

        Assert.Empty(await setAside.ListAsync("fhir", 100, ct));
        repository.RefuseEverything = false;
        Assert.Equal(0, await worker.RunOnceAsync(ct));
        Assert.Equal(4, repository.Kept.Count);
    }

    [Fact]
    public async Task A_refused_tree_head_is_set_aside_and_the_next_one_is_still_witnessed()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(DatabaseProvider.Sqlite);
        using var repository = new RefusingFhirRepository { RefuseTreeHeads = true };
        var (options, setAside, _) = Sink(h, repository);
        await using var sink = new FhirHttpSink(options, "SITE-1", sourceId: "VIGIE-NODE-1");
        var worker = h.ExportWorker(options, sink);
        await h.AppendAsync(Samples.Records(0, 3));
        var first = (await h.Log.SignTreeHeadAsync(ct))!;

        Assert.Equal(3, await worker.RunOnceAsync(ct));
        Assert.Equal(0, await worker.RunOnceAsync(ct));

        var item = Assert.Single(await setAside.ListAsync("fhir", 100, ct));
        Assert.Equal(("tree-head", first.TreeSize), (item.Kind, item.Sequence));
        repository.RefuseTreeHeads = false;
        await h.AppendAsync(Samples.Records(3, 2));
        var second = (await h.Log.SignTreeHeadAsync(ct))!;
        Assert.Equal(2, await worker.RunOnceAsync(ct));
        Assert.Contains(FhirTreeHead.ResourceId(second), repository.Kept);
        Assert.DoesNotContain(FhirTreeHead.ResourceId(first), repository.Kept);

        var resent = await setAside.ResendAsync("fhir", ct);

        Assert.Equal((1, 0L), (resent.Resent, resent.Remaining));
        Assert.Contains(FhirTreeHead.ResourceId(first), repository.Kept);
    }

    [Theory]
    [InlineData(HttpStatusCode.BadRequest, true)]
    [InlineData(HttpStatusCode.UnprocessableEntity, true)]
    [InlineData(HttpStatusCode.Conflict, true)]
    [InlineData(HttpStatusCode.PreconditionFailed, true)]
    [InlineData(HttpStatusCode.RequestEntityTooLarge, true)]
    [InlineData(HttpStatusCode.Unauthorized, false)]
    [InlineData(HttpStatusCode.Forbidden, false)]
    [InlineData(HttpStatusCode.NotFound, false)]
    [InlineData(HttpStatusCode.TooManyRequests, false)]
    [InlineData(HttpStatusCode.InternalServerError, false)]
    [InlineData(HttpStatusCode.ServiceUnavailable, false)]
    public void Only_statuses_about_the_content_count_as_refusals(HttpStatusCode status, bool refusal) =>
        Assert.Equal(refusal, FhirHttpSink.IsRefusal(status));
}
