using Microsoft.Extensions.DependencyInjection;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Engine;

public sealed class RegistrationTests
{
    [Fact]
    public void Registration_is_idempotent_and_picks_up_engines_registered_later()
    {
        var services = new ServiceCollection();
        services.AddVigieInspection();
        services.AddVigieInspection();
        services.AddSingleton<IKnownBadEngine, EngineTests.RecordingEngine>();
        using var provider = services.BuildServiceProvider();
        var inspector = provider.GetRequiredService<Inspector>();
        Assert.Equal(inspector.Analysers.Count, inspector.Analysers.Select(a => a.Name).Distinct().Count());
        Assert.Equal(["dicom", "executable", "zip", "compressed-stream", "archive", "pdf", "ole2", "ooxml", "rtf", "text", "html", "xml-data", "fhir-data", "hl7v2", "mail"], inspector.Analysers.Select(a => a.Name));
        Assert.Equal(["signatures", "yara", "clamd", "recording-engine"], inspector.Engines.Select(e => e.Name));
        Assert.Equal(3, provider.GetServices<IDisarmer>().Count());
    }

    [Fact]
    public async Task Disarm_refuses_types_it_does_not_handle()
    {
        using var provider = TestInspection.Services();
        var service = provider.GetRequiredService<DisarmService>();
        using var source = ContentSource.FromMemory(new ZipBuilder().Add("a.txt", "x").Build());
        Assert.False(service.CanDisarm(source));
        await Assert.ThrowsAsync<NotSupportedException>(async () => await service.DisarmAsync(source, Stream.Null, cancellationToken: TestContext.Current.CancellationToken));
    }
}
