using Vigie.Gateway.Forwarding;

namespace Vigie.Gateway.Tests.Forwarding;

public sealed class ForwarderConsumerTests
{
    [Fact]
    public void Only_claims_of_a_gone_process_of_this_machine_are_taken_for_abandoned()
    {
        var self = $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid():N}";
        Assert.False(OutboxConsumer.IsEarlierProcessOfThisMachine(self, self));
        // The same pid under another name: an earlier incarnation (a container restarted as the same pid).
        Assert.True(OutboxConsumer.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-{Environment.ProcessId}-0123", self));
        // A pid no process has (above the kernel's pid_max).
        Assert.True(OutboxConsumer.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-{int.MaxValue}-0123", self));
        // Another node, or a live process of this one (pid 1 is always running), is left alone.
        Assert.False(OutboxConsumer.IsEarlierProcessOfThisMachine($"other-host-{int.MaxValue}-0123", self));
        Assert.False(OutboxConsumer.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-1-0123", self));
        Assert.False(OutboxConsumer.IsEarlierProcessOfThisMachine($"{Environment.MachineName}-x-0123", self));
    }
}
