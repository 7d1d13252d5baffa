using System.Security.Cryptography;
using Vigie.Archive.Keys;

namespace Vigie.Archive.Storage;

internal static class DataKeys
{
    /// <summary>Unwraps the object's data key from the newest slot that opens. Returns the key and the slot used.</summary>
    public static async ValueTask<(byte[] Key, int Slot)> OpenAsync(ObjectHeader header, IKeyEncryptionKeyStore keks, string location,
        CancellationToken cancellationToken)
    {
        var knownButFailed = false;
        var used = false;
        Exception? failure = null;
        foreach (var i in header.SlotsNewestFirst())
        {
            used = true;
            var slot = header.Slots[i];
            try
            {
                var key = await keks.UnwrapAsync(new WrappedKey(slot.KeyId, slot.Wrapped),
                    ObjectFormat.DataKeyContext(header.Prefix, slot.Generation), cancellationToken).ConfigureAwait(false);
                if (key.Length == ObjectFormat.DataKeySize)
                {
                    return (key, i);
                }

                CryptographicOperations.ZeroMemory(key);
                knownButFailed = true;
            }
            catch (UnknownKeyEncryptionKeyException e)
            {
                failure ??= e;
            }
            catch (CryptographicException e)
            {
                knownButFailed = true;
                failure = e;
            }
        }

        if (!used)
        {
            throw new ObjectFormatException(ObjectProblem.InvalidHeader, "no key slot is in use", location, offset: ObjectFormat.PrefixSize);
        }

        throw knownButFailed
            ? new ObjectFormatException(ObjectProblem.KeyUnwrapFailed, "the wrapped data key does not authenticate under our key-encryption key",
                location, offset: ObjectFormat.PrefixSize, inner: failure)
            : new ObjectFormatException(ObjectProblem.UnknownKey,
                "the data key is wrapped under a key-encryption key this node does not hold: " +
                string.Join(", ", header.Slots.Where(s => s.Used).Select(s => s.KeyId)), location, offset: ObjectFormat.PrefixSize, inner: failure);
    }
}
