using Vigie.Core.IO;

namespace Vigie.Core.Tests.IO;

public sealed class LocalProcessTests
{
    [Fact]
    public void Only_holders_that_are_gone_processes_of_this_machine_count_as_abandoned()
    {
        var self = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";
        Assert.False(LocalProcess.IsEarlierProcessOfThisMachine(self, self));
        // The same pid under another name: an earlier incarnation (a container restarted as the same pid).
        Assert.True(LocalProcess.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-{Environment.ProcessId}-0123", self));
        // A pid no process has (above the kernel's pid_max).
        Assert.True(LocalProcess.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-{int.MaxValue}-0123", self));
        // Another node, or a live process of this one (pid 1 is always running), is left alone.
        Assert.False(LocalProcess.IsEarlierProcessOfThisMachine($"other-host-{int.MaxValue}-0123", self));
        Assert.False(LocalProcess.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-1-0123", self));
        Assert.False(LocalProcess.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-x-0123", self));
    }
}
