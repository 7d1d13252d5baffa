using Microsoft.Extensions.DependencyInjection;

namespace Vigie.Inspection.Tests;

/// <summary>Builds inspectors the way a host does (AddVigieInspection), with per-test limits and extra parts.</summary>
internal static class TestInspection
{
    public static ServiceProvider Services(Action<InspectionLimits>? limits = null, Action<MailInspectionOptions>? mail = null,
        Action<IServiceCollection>? extra = null)
    {
        var services = new ServiceCollection();
        services.AddVigieInspection();
        if (limits is not null)
        {
            services.Configure(limits);
        }

        if (mail is not null)
        {
            services.Configure(mail);
        }

        extra?.Invoke(services);
        return services.BuildServiceProvider();
    }

    public static Inspector Create(Action<InspectionLimits>? limits = null, Action<MailInspectionOptions>? mail = null,
        Action<IServiceCollection>? extra = null) =>
        Services(limits, mail, extra).GetRequiredService<Inspector>();

    public static Inspector Default { get; } = Create();

    public static async Task<Verdict> InspectAsync(this Inspector inspector, byte[] bytes, string? name = null)
    {
        using var source = ContentSource.FromMemory(bytes);
        return await inspector.InspectAsync(source, name, TestContext.Current.CancellationToken);
    }

    public static Task<Verdict> InspectAsync(byte[] bytes, string? name = null) => Default.InspectAsync(bytes, name);
}

internal static class VerdictAssert
{
    public static string Describe(this Verdict verdict) =>
        $"{verdict.Kind} ({verdict.ContentType}):\n" + string.Join("\n", verdict.Findings.Select(f => $"  [{f.Severity}] {f.Rule} @{f.InnerPath} off={f.Offset}: {f.Message}"));

    public static Finding Has(this Verdict verdict, string rule, string? innerPath = null)
    {
        var found = verdict.Findings.FirstOrDefault(f => f.Rule == rule && (innerPath is null || f.InnerPath == innerPath));
        Assert.True(found is not null, $"expected {rule}{(innerPath is null ? "" : " at " + innerPath)} in\n{verdict.Describe()}");
        return found!;
    }

    public static void HasNo(this Verdict verdict, string rule) =>
        Assert.True(verdict.Findings.All(f => f.Rule != rule), $"did not expect {rule} in\n{verdict.Describe()}");

    /// <summary>A clean reference: no finding above Info (a false positive is a bug).</summary>
    public static void IsClean(this Verdict verdict)
    {
        Assert.True(verdict.Kind == VerdictKind.Clean && verdict.Findings.All(f => f.Severity == Severity.Info),
            $"expected a clean verdict, got\n{verdict.Describe()}");
    }

    public static void IsMalicious(this Verdict verdict) =>
        Assert.True(verdict.Kind == VerdictKind.Malicious, $"expected malicious, got\n{verdict.Describe()}");

    public static void IsSuspicious(this Verdict verdict) =>
        Assert.True(verdict.Kind == VerdictKind.Suspicious, $"expected suspicious, got\n{verdict.Describe()}");
}
