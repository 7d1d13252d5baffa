using System.Text.Json;
using Vigie.Archive.Retention;
using Vigie.Archive.Storage;
using Vigie.Core.Outbox;
using Vigie.Gateway.Ingest;

namespace Vigie.Gateway.Forwarding;

/// <summary>
/// Objects still owed to a destination (waiting in the forward queue, or given up on until someone retries or
/// dismisses them): retention keeps them, so that the PACS that was down still gets what the hospital sent it.
/// </summary>
internal sealed class ForwardRetentionHold(Outbox outbox) : IRetentionHold
{
    public async ValueTask<IReadOnlySet<ObjectId>> HeldObjectsAsync(CancellationToken cancellationToken)
    {
        var held = new HashSet<ObjectId>();
        foreach (var payload in await outbox.UndeliveredPayloadsAsync(IngestPipeline.ForwardTopic, cancellationToken).ConfigureAwait(false))
        {
            // A payload that does not read as a forward request cannot be sent either: nothing to hold for it.
            try
            {
                if (JsonSerializer.Deserialize<IngestPipeline.ForwardRequest>(payload) is { } request && ObjectId.TryParse(request.ObjectId, out var id))
                {
                    held.Add(id);
                }
            }
            catch (JsonException)
            {
            }
        }

        return held;
    }
}
