using System.Diagnostics;
using System.Globalization;
using Vigie.Archive.IO;

namespace Vigie.Bench.Archive;

/// <summary>
/// What acknowledging only durable objects costs on this disk before any software of ours runs: each corpus file,
/// already in memory, is written to a new file, flushed, renamed into place and its folder flushed, one after the other,
/// as one association's stores are, with the same calls the archive makes. A second pass flushes the file only, as Orthanc 1.10 does (no folder flush).
/// A third appends each object to one file written full of zeros and flushed beforehand, with fdatasync: the floor of an
/// append-only pack file, whose flush changes no metadata (see docs/archive.md).
/// dotnet run -c Release --project bench/Vigie.Bench -- durable-floor CORPUS_DIR WORK_DIR
/// </summary>
internal static class DurableFloor
{
    public static async Task RunAsync(string corpus, string work)
    {
        var files = Directory.EnumerateFiles(corpus, "*.dcm", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        var contents = new List<byte[]>(files.Count);
        foreach (var file in files)
        {
            contents.Add(await File.ReadAllBytesAsync(file));
        }

        // Best of three, as bench/ingest.sh takes the best of its rounds: the floor is what the disk can do, not its bad moments.
        var full = TimeSpan.MaxValue;
        var fileOnly = TimeSpan.MaxValue;
        var pack = TimeSpan.MaxValue;
        for (var round = 0; round < 3; round++)
        {
            var f = await MeasureAsync(contents, Path.Combine(work, "full"), renameAndFlushFolder: true);
            var o = await MeasureAsync(contents, Path.Combine(work, "file-only"), renameAndFlushFolder: false);
            var p = OperatingSystem.IsLinux() ? await MeasurePackAsync(contents, Path.Combine(work, "pack")) : TimeSpan.Zero;
            full = f < full ? f : full;
            fileOnly = o < fileOnly ? o : fileOnly;
            pack = p < pack ? p : pack;
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"durable floor: {files.Count} objects; write+fsync+rename+folder fsync {full.TotalSeconds:F3} s ({full.TotalMilliseconds / files.Count:F2} ms/object); write+fsync only {fileOnly.TotalSeconds:F3} s ({fileOnly.TotalMilliseconds / files.Count:F2} ms/object); pack file append+fdatasync {pack.TotalSeconds:F3} s ({pack.TotalMilliseconds / files.Count:F2} ms/object)"));
    }

    private static async Task<TimeSpan> MeasurePackAsync(List<byte[]> contents, string folder)
    {
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, "pack");
        var total = contents.Sum(c => (long)c.Length);
        using (var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write))
        {
            // Written, not just allocated: extents still marked unwritten would turn each flush into a metadata change.
            var zeros = new byte[1 << 20];
            for (long at = 0; at < total; at += zeros.Length)
            {
                await RandomAccess.WriteAsync(handle, zeros.AsMemory(0, (int)Math.Min(zeros.Length, total - at)), at);
            }

            RandomAccess.FlushToDisk(handle);
        }

        FileSync.SyncDirectory(folder);
        TimeSpan elapsed;
        using (var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write))
        {
            var watch = Stopwatch.StartNew();
            long offset = 0;
            foreach (var content in contents)
            {
                await RandomAccess.WriteAsync(handle, content, offset);
                offset += content.Length;
                FileSync.SyncData(handle);
            }

            elapsed = watch.Elapsed;
        }

        Directory.Delete(folder, recursive: true);
        return elapsed;
    }

    private static async Task<TimeSpan> MeasureAsync(List<byte[]> contents, string folder, bool renameAndFlushFolder)
    {
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        var spool = Path.Combine(folder, "spool");
        var objects = Path.Combine(folder, "objects");
        Directory.CreateDirectory(spool);
        Directory.CreateDirectory(objects);
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < contents.Count; i++)
        {
            var temporary = Path.Combine(renameAndFlushFolder ? spool : objects, i.ToString(CultureInfo.InvariantCulture));
            using (var handle = File.OpenHandle(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                await RandomAccess.WriteAsync(handle, contents[i], 0);
                RandomAccess.FlushToDisk(handle);
            }

            if (renameAndFlushFolder)
            {
                File.Move(temporary, Path.Combine(objects, i.ToString(CultureInfo.InvariantCulture)));
                FileSync.SyncDirectory(objects);
            }
        }

        watch.Stop();
        Directory.Delete(folder, recursive: true);
        return watch.Elapsed;
    }
}
