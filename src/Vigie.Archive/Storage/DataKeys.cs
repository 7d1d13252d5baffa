using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;
using Vigie.Archive.Keys;

namespace Vigie.Archive.Storage;

internal static class DataKeys
{
    /// <summary>
    /// Unwraps the object's data key from the newest slot that opens for <paramref name="purpose"/>. Returns the key, the
    /// slot used and the purpose it opened for. An archive read refuses a key wrapped for quarantine
    /// (<see cref="ObjectProblem.Quarantined"/>); a quarantine read also takes a key wrapped as an archive object's (quarantined
    /// before 2026-12-07 and not re-wrapped yet); <paramref name="anyPurpose"/> takes either (key rotation, which keeps it).
    /// </summary>
    public static async ValueTask<(byte[] Key, int Slot, KeyPurpose Purpose)> OpenAsync(ObjectHeader header, IKeyEncryptionKeyStore keks, string location,
        KeyPurpose purpose, CancellationToken cancellationToken, bool anyPurpose = false)
    {
        KeyPurpose[] accepted = purpose == KeyPurpose.Quarantine || anyPurpose ? [purpose, Other(purpose)] : [purpose];
        var knownButFailed = false;
        var used = false;
        Exception? failure = null;
        foreach (var i in header.SlotsNewestFirst())
        {
            used = true;
            var slot = header.Slots[i];
            foreach (var candidate in accepted)
            {
                try
                {
                    var key = await keks.UnwrapAsync(new WrappedKey(slot.KeyId, slot.Wrapped),
                        ObjectFormat.DataKeyContext(header.Prefix, slot.Generation, candidate), cancellationToken).ConfigureAwait(false);
                    if (key.Length == ObjectFormat.DataKeySize)
                    {
                        return (key, i, candidate);
                    }

                    CryptographicOperations.ZeroMemory(key);
                    knownButFailed = true;
                }
                catch (UnknownKeyEncryptionKeyException e)
                {
                    failure ??= e;
                    break;
                }
                catch (CryptographicException e)
                {
                    knownButFailed = true;
                    failure = e;
                }
            }
        }

        if (!used)
        {
            throw new ObjectFormatException(ObjectProblem.InvalidHeader, "no key slot is in use", location, offset: ObjectFormat.PrefixSize);
        }

        if (knownButFailed && accepted.Length == 1 && await OpensForAsync(header, keks, KeyPurpose.Quarantine, cancellationToken).ConfigureAwait(false))
        {
            // Put in the archive's place by someone else (a quarantined file copied into objects/): never opened as an archive object.
            throw new ObjectFormatException(ObjectProblem.Quarantined,
                "a quarantined object, not an archive object: its data key is wrapped for quarantine", location, offset: ObjectFormat.PrefixSize);
        }

        throw knownButFailed
            ? new ObjectFormatException(ObjectProblem.KeyUnwrapFailed, "the wrapped data key does not authenticate under our key-encryption key",
                location, offset: ObjectFormat.PrefixSize, inner: failure)
            : new ObjectFormatException(ObjectProblem.UnknownKey,
                "the data key is wrapped under a key-encryption key this node does not hold: " +
                string.Join(", ", header.Slots.Where(s => s.Used).Select(s => s.KeyId)), location, offset: ObjectFormat.PrefixSize, inner: failure);
    }

    private static KeyPurpose Other(KeyPurpose purpose) => purpose == KeyPurpose.Archive ? KeyPurpose.Quarantine : KeyPurpose.Archive;

    private static async ValueTask<bool> OpensForAsync(ObjectHeader header, IKeyEncryptionKeyStore keks, KeyPurpose purpose, CancellationToken cancellationToken)
    {
        foreach (var i in header.SlotsNewestFirst())
        {
            var slot = header.Slots[i];
            try
            {
                var key = await keks.UnwrapAsync(new WrappedKey(slot.KeyId, slot.Wrapped),
                    ObjectFormat.DataKeyContext(header.Prefix, slot.Generation, purpose), cancellationToken).ConfigureAwait(false);
                CryptographicOperations.ZeroMemory(key);
                return true;
            }
            catch (Exception e) when (e is CryptographicException or UnknownKeyEncryptionKeyException)
            {
            }
        }

        return false;
    }

    /// <summary>
    /// Re-wraps an object's data key for quarantine, in place and without re-encrypting: the new wrap goes to the free
    /// slot with generation + 1 (synced), then the old slot is cleared (synced), as key rotation does, so a crash at any
    /// point leaves a slot that opens. Returns false when the key was wrapped for quarantine already (a crash between the
    /// two writes is finished: the old slot is cleared).
    /// </summary>
    /// <param name="sync">Makes the file's writes durable (null: not durable).</param>
    public static async ValueTask<bool> BindToQuarantineAsync(SafeFileHandle handle, IKeyEncryptionKeyStore keks, string location,
        Func<SafeFileHandle, CancellationToken, Task>? sync, CancellationToken cancellationToken)
    {
        var headerBytes = new byte[ObjectFormat.HeaderSize];
        var read = await RandomAccess.ReadAsync(handle, headerBytes, 0, cancellationToken).ConfigureAwait(false);
        var header = ObjectFormat.ParseHeader(headerBytes.AsSpan(0, read), location);
        var (key, slot, purpose) = await OpenAsync(header, keks, location, KeyPurpose.Quarantine, cancellationToken).ConfigureAwait(false);
        try
        {
            var other = 1 - slot;
            if (purpose == KeyPurpose.Quarantine)
            {
                if (!header.Slots[other].Used)
                {
                    return false;
                }

                await ClearSlotAsync(handle, other, sync, cancellationToken).ConfigureAwait(false);
                return true;
            }

            var generation = header.Slots.Where(s => s.Used).Max(s => s.Generation) + 1;
            var wrapped = await keks.WrapAsync(key, ObjectFormat.DataKeyContext(header.Prefix, generation, KeyPurpose.Quarantine), cancellationToken)
                .ConfigureAwait(false);
            var slotBytes = new byte[ObjectFormat.SlotSize];
            ObjectFormat.WriteSlot(slotBytes, generation, wrapped.KeyId, wrapped.Wrapped);
            await RandomAccess.WriteAsync(handle, slotBytes, ObjectFormat.SlotOffset(other), cancellationToken).ConfigureAwait(false);
            if (sync is not null)
            {
                await sync(handle, cancellationToken).ConfigureAwait(false);
            }

            // The new slot must open before the only other one goes.
            var check = await keks.UnwrapAsync(wrapped, ObjectFormat.DataKeyContext(header.Prefix, generation, KeyPurpose.Quarantine), cancellationToken)
                .ConfigureAwait(false);
            var same = CryptographicOperations.FixedTimeEquals(check, key);
            CryptographicOperations.ZeroMemory(check);
            if (!same)
            {
                throw new CryptographicException($"The data key re-wrapped for quarantine does not open again [{location}].");
            }

            await ClearSlotAsync(handle, slot, sync, cancellationToken).ConfigureAwait(false);
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    private static async ValueTask ClearSlotAsync(SafeFileHandle handle, int slot, Func<SafeFileHandle, CancellationToken, Task>? sync,
        CancellationToken cancellationToken)
    {
        await RandomAccess.WriteAsync(handle, new byte[ObjectFormat.SlotSize], ObjectFormat.SlotOffset(slot), cancellationToken).ConfigureAwait(false);
        if (sync is not null)
        {
            await sync(handle, cancellationToken).ConfigureAwait(false);
        }
    }
}
