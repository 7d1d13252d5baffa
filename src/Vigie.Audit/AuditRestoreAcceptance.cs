using System.Globalization;
using Vigie.Audit.Model;
using Vigie.Audit.Signing;
using Vigie.Audit.Storage;
using Vigie.Audit.Verification;
using Vigie.Core.Outbox;

namespace Vigie.Audit;

/// <summary>What <see cref="AuditRestoreAcceptance.AcceptAsync"/> did.</summary>
/// <param name="Accepted">False when the log still holds the recorded head (or there is none): nothing was changed.</param>
/// <param name="RecordedSize">The size of the head recorded beside the key before, or null (no record, or unreadable).</param>
/// <param name="RecordedRoot">Its root, hex.</param>
/// <param name="RecordedProblem">Why the log does not hold it (the signer's refusal), or why the record could not be read.</param>
/// <param name="LogSize">The log's size before the acceptance entry.</param>
/// <param name="LogRoot">The log's root at that size, hex.</param>
/// <param name="Sequence">The acceptance entry's sequence number.</param>
/// <param name="NewHead">The head signed over the log with the acceptance entry, now the record.</param>
/// <param name="KeptAside">Where the replaced record is kept, whole.</param>
public sealed record AcceptedRestore(bool Accepted, long? RecordedSize, string? RecordedRoot, string? RecordedProblem, long LogSize, string LogRoot,
    long? Sequence, SignedTreeHead? NewHead, string? KeptAside);

/// <summary>The restored log does not verify by itself: nothing is accepted over it.</summary>
public sealed class AuditRestoreRefusedException(string message, AuditVerificationReport report) : Exception(message)
{
    public AuditVerificationReport Report { get; } = report;
}

/// <summary>
/// The operator's acceptance of a deliberate restore of the database from a backup (disaster recovery): the heads signed
/// after the backup are gone for good, and the node refuses to sign until told so. Records it in the trail (a Security
/// Alert with the reason, the head recorded before and the log's size and root), signs a head over it and makes that
/// head the record beside the key (since 2026-12-07).
/// </summary>
public sealed class AuditRestoreAcceptance
{
    private const string LeaseName = "audit-tree-head";

    /// <summary>The longest the signing lease is held (here); a signer takes over a lease claimed further ahead.</summary>
    internal static readonly TimeSpan LeaseLength = TimeSpan.FromMinutes(5);
    private readonly AuditStore _store;
    private readonly TreeHeadSigner _signer;
    private readonly AuditLog _log;
    private readonly IAuditSigningKeyProvider _keys;
    private readonly LeaseStore _leases;
    private readonly AuditOptions _options;
    private readonly TimeProvider _time;

    internal AuditRestoreAcceptance(AuditStore store, TreeHeadSigner signer, AuditLog log, IAuditSigningKeyProvider keys, LeaseStore leases, AuditOptions options,
        TimeProvider time)
    {
        _store = store;
        _signer = signer;
        _log = log;
        _keys = keys;
        _leases = leases;
        _options = options;
        _time = time;
    }

    /// <summary>
    /// Accepts the log as it is now. Throws <see cref="InvalidOperationException"/> when a node is signing on this log
    /// (stop it first) or there is no signing key path, and <see cref="AuditRestoreRefusedException"/> when the log does
    /// not verify by itself.
    /// </summary>
    public async ValueTask<AcceptedRestore> AcceptAsync(string reason, string account, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        var path = TreeHeadWitnessFile.PathFor(_options.SigningKeyPath)
            ?? throw new InvalidOperationException("Audit:SigningKeyPath is not set: there is no record of the heads signed to replace.");
        var holder = $"accept-restore:{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid():N}";
        if (!await _leases.TryAcquireAsync(LeaseName, holder, LeaseLength, cancellationToken).ConfigureAwait(false))
        {
            var current = await _leases.HolderAsync(LeaseName, cancellationToken).ConfigureAwait(false);
            throw new InvalidOperationException($"a node signs tree heads on this audit log ({current ?? "lease held"}): stop every node that uses it first "
                + "(a node killed keeps its lease until it expires, 10 s by default)");
        }

        try
        {
            return await AcceptLeasedAsync(path, reason, account, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await _leases.ReleaseAsync(LeaseName, holder, CancellationToken.None).ConfigureAwait(false);
        }
    }

    private async ValueTask<AcceptedRestore> AcceptLeasedAsync(string path, string reason, string account, CancellationToken cancellationToken)
    {
        SignedTreeHead? recorded = null;
        string? problem = null;
        try
        {
            recorded = await TreeHeadWitnessFile.ReadAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            problem = e.Message;
        }

        var state = await _store.ReadStateAsync(cancellationToken).ConfigureAwait(false);
        var root = (await _store.RangeHashesAsync([(0, state.TreeSize)], cancellationToken).ConfigureAwait(false))[0];
        if (recorded is not null)
        {
            problem = await _signer.FindViolationOfAsync(recorded, path, state.TreeSize, root, cancellationToken).ConfigureAwait(false);
        }

        var rootHex = Convert.ToHexStringLower(root);
        if (problem is null)
        {
            return new AcceptedRestore(false, recorded?.TreeSize, recorded is null ? null : Convert.ToHexStringLower(recorded.RootHash), null, state.TreeSize,
                rootHex, null, null, null);
        }

        // The log accepted must stand by itself: a forged one is not made the reference.
        var report = await _log.VerifyAsync(new AuditVerifyOptions { IgnoreOwnWitness = true }, cancellationToken).ConfigureAwait(false);
        if (!report.IsValid)
        {
            throw new AuditRestoreRefusedException(string.Create(CultureInfo.InvariantCulture,
                $"the audit log as restored does not verify by itself ({report.ProblemCount} problems; `vigie audit verify` names them): nothing was accepted"), report);
        }

        // The key must sign before anything is written.
        _ = await _keys.GetSignerAsync(cancellationToken).ConfigureAwait(false);
        var now = _time.GetUtcNow();
        var kept = await TreeHeadWitnessFile.KeepAsideAsync(path, now, cancellationToken).ConfigureAwait(false);
        var before = recorded is null ? "the record of the last head signed could not be read"
            : string.Create(CultureInfo.InvariantCulture, $"the last head this node signed, size {recorded.TreeSize}, root {Convert.ToHexStringLower(recorded.RootHash)}");
        var sequence = await _log.AppendAsync(new AuditRecord
        {
            Time = now,
            EventId = AuditEventIds.SecurityAlert,
            Action = AuditAction.Update,
            Outcome = AuditOutcome.Success,
            Participants = [AuditParticipant.LocalOperator(account)],
            Details = new AuditDetails
            {
                OutcomeDescription = string.Create(CultureInfo.InvariantCulture,
                    $"audit accept-restore: the database was restored on purpose; {before}, is not in the log, which holds {state.TreeSize} entries, root {rootHex}. "
                    + $"The heads signed after the backup are gone for good; signing resumes from here. Reason: {reason}"),
                Objects = [AuditObject.AuditLog()],
            },
        }, cancellationToken).ConfigureAwait(false);
        var head = await _signer.SignAsync(force: true, rebaseWitness: true, cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException("no tree head could be signed over the acceptance entry");
        return new AcceptedRestore(true, recorded?.TreeSize, recorded is null ? null : Convert.ToHexStringLower(recorded.RootHash), problem, state.TreeSize,
            rootHex, sequence, head, kept);
    }
}
