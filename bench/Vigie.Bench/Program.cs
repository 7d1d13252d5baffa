using BenchmarkDotNet.Running;

if (args is ["audit-quick" or "audit-verify", ..])
{
    // A quick console measurement of the audit trail, without BenchmarkDotNet's harness.
    await Vigie.Bench.Audit.AuditQuickMeasure.RunAsync(args);
    return;
}

if (args is ["durable-floor", var corpus, var work])
{
    await Vigie.Bench.Archive.DurableFloor.RunAsync(corpus, work);
    return;
}

// Every benchmark class in this assembly; pick with --filter, e.g. dotnet run -c Release --project bench/Vigie.Bench -- --filter '*Parse*'
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
