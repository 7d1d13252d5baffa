using System.Security.Cryptography;
using Vigie.Archive.Storage;

namespace Vigie.Archive;

/// <summary>
/// The data folder: objects/xyz/&lt;id&gt; (4096 fan-out folders by the first three hex digits, made at start or on first use),
/// spool/, quarantine/ and keys/. Everything under it is ciphertext or keyed hashes.
/// </summary>
internal sealed class ArchiveLayout
{
    public const string SpoolExtension = ".spool";
    public const string QuarantineExtension = ".vobj";
    public const string QuarantineReasonExtension = ".reason";
    public const string SlotExtension = ".slot";
    public const string DamagedExtension = ".damaged";

    public ArchiveLayout(string dataFolder)
    {
        Root = Path.GetFullPath(dataFolder);
        Objects = Path.Combine(Root, "objects");
        Spool = Path.Combine(Root, "spool");
        SpoolReserve = Path.Combine(Spool, "reserve");
        Landing = Path.Combine(Spool, "landing");
        Quarantine = Path.Combine(Root, "quarantine");
        Keys = Path.Combine(Root, "keys");
        RootKeyFile = Path.Combine(Keys, "root.key");
        ArchiveIdFile = Path.Combine(Keys, "archive.id");
        Damaged = Path.Combine(Root, "damaged");
    }

    public string Root { get; }

    public string Objects { get; }

    public string Spool { get; }

    /// <summary>Empty spool files made ahead of need (no key, no data); see <see cref="Storage.SpoolReserve"/>.</summary>
    public string SpoolReserve { get; }

    /// <summary>Pre-written slot files, and objects committed into them until they move to objects/; see <see cref="Storage.LandingSlots"/>.</summary>
    public string Landing { get; }

    public string Quarantine { get; }

    public string Keys { get; }

    public string RootKeyFile { get; }

    /// <summary>The archive's identity, which its index holds too: a node never runs this folder on another index.</summary>
    public string ArchiveIdFile { get; }

    /// <summary>Stored copies found damaged when the same content arrived again, set aside (kept, as evidence) for the new copy.</summary>
    public string Damaged { get; }

    /// <summary>
    /// True for the names Vigie itself keeps at the top of a data folder; anything else there was put by someone else
    /// (a ransom note, an index renamed by the ransomware that encrypted it, a file copied in by hand).
    /// </summary>
    public static bool IsOwnEntry(string name) =>
        // Not vigie.json: settings are not read from the data folder (since 2026-12-07), so one there was put by someone else.
        name is "objects" or "spool" or "quarantine" or "keys" or "damaged" or "lost+found" or "audit-spill" or "withheld"
        || name is FullDiskReserve.FileName or FullDiskReserve.FileName + ".partial"
        // The embedded index (Database:SqlitePath defaults to index.db in the data folder) and SQLite's side files.
        || name.EndsWith(".db", StringComparison.Ordinal) || name.EndsWith(".db-wal", StringComparison.Ordinal)
        || name.EndsWith(".db-shm", StringComparison.Ordinal) || name.EndsWith(".db-journal", StringComparison.Ordinal);

    /// <summary>A spool file's name: random, so concurrent writers and nodes never collide.</summary>
    public static string NewSpoolName() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    public string SpoolPath(string name) => Path.Combine(Spool, name + SpoolExtension);

    public string FanOutDirectory(ObjectId id) => Path.Combine(Objects, id.FanOut);

    public string ObjectPath(ObjectId id) => Path.Combine(Objects, id.FanOut, id.ToString());

    public string QuarantinePath(string quarantineId) => Path.Combine(Quarantine, quarantineId + QuarantineExtension);

    public string QuarantineReasonPath(string quarantineId) => Path.Combine(Quarantine, quarantineId + QuarantineReasonExtension);

    /// <summary>
    /// Whether <paramref name="path"/> lands in the data folder once symbolic links are resolved (RealPath, as every
    /// "outside the data folder" check): until 2026-12-07 the path's text alone was compared, and a link led a key file in.
    /// </summary>
    public bool Contains(string path) => Vigie.Core.IO.RealPath.IsWithin(path, Root);

    public static IEnumerable<string> FanOutNames()
    {
        for (var i = 0; i < 4096; i++)
        {
            yield return i.ToString("x3", System.Globalization.CultureInfo.InvariantCulture);
        }
    }
}
