using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>Regressions from the first review of the OLE2 analyser (2026-12-07).</summary>
public sealed class Ole2ReviewTests
{
    [Fact]
    public async Task A_vba_storage_past_max_entries_is_not_called_clean()
    {
        var builder = new Ole2Builder().Stream("WordDocument", new byte[600]);
        for (var i = 0; i < 30; i++)
        {
            builder.Stream($"Pad{i}/x", new byte[10]);
        }

        var doc = VbaSamples.AddProject(builder, "Macros").Build();
        var verdict = await TestInspection.Create(limits: l => l.MaxEntries = 20).InspectAsync(doc, "padded.doc");
        Assert.Equal(Severity.Medium, verdict.Has("ole2.too-many-entries").Severity);
        Assert.NotEqual(VerdictKind.Clean, verdict.Kind);

        // The same file read whole has no such finding.
        (await TestInspection.InspectAsync(doc, "padded.doc")).HasNo("ole2.too-many-entries");
    }
}
