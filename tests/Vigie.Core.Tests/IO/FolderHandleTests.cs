using Vigie.Core.IO;

namespace Vigie.Core.Tests.IO;

[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class FolderHandleTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("vigie-folder-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>
    /// Bug (quarantine export race): the output folder was checked by path, then written by path, so a folder swapped
    /// for a link to the data folder in between received the decrypted object. Writes through the handle stay put.
    /// </summary>
    [Fact]
    public void Quarantine_export_race_a_folder_swapped_for_a_link_after_the_check_does_not_redirect_the_writes()
    {
        var analysis = Directory.CreateDirectory(Path.Combine(_root, "analysis")).FullName;
        var data = Directory.CreateDirectory(Path.Combine(_root, "vigie-data")).FullName;
        using var folder = FolderHandle.Open(analysis);
        Assert.Equal(analysis, folder.Location);

        // The swap, after the check.
        var moved = Path.Combine(_root, "moved");
        Directory.Move(analysis, moved);
        Directory.CreateSymbolicLink(analysis, data);

        using (var partial = folder.CreateNew(".copy.partial", FileAccess.ReadWrite))
        {
            Assert.NotNull(partial);
            partial.Write("DICM"u8);
        }

        folder.Rename(".copy.partial", "copy.dcm");
        folder.Sync();
        Assert.Empty(Directory.GetFileSystemEntries(data));
        Assert.Equal("DICM", File.ReadAllText(Path.Combine(moved, "copy.dcm")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(moved, "copy.dcm")));
    }

    [Fact]
    public void A_name_taken_by_a_file_or_a_link_is_never_written_through()
    {
        var outside = Path.Combine(_root, "outside.dcm");
        File.WriteAllText(outside, "kept");
        var folder = Directory.CreateDirectory(Path.Combine(_root, "out")).FullName;
        File.CreateSymbolicLink(Path.Combine(folder, "copy.dcm"), outside);
        File.WriteAllText(Path.Combine(folder, "taken.dcm"), "kept");
        using var handle = FolderHandle.Open(folder);
        Assert.Null(handle.CreateNew("copy.dcm", FileAccess.Write));
        Assert.Null(handle.CreateNew("taken.dcm", FileAccess.Write));
        Assert.Equal("kept", File.ReadAllText(outside));

        // A rename replaces the link itself, not the file it points to.
        using (var partial = handle.CreateNew(".p", FileAccess.Write))
        {
            partial!.Write("new"u8);
        }

        handle.Rename(".p", "copy.dcm");
        Assert.Equal("kept", File.ReadAllText(outside));
        Assert.Equal("new", File.ReadAllText(Path.Combine(folder, "copy.dcm")));
        handle.Delete("copy.dcm");
        handle.Delete("copy.dcm");
        Assert.Throws<ArgumentException>(() => handle.CreateNew("../escape", FileAccess.Write));
    }

    [Fact]
    public void A_folder_that_cannot_be_opened_says_why()
    {
        var file = Path.Combine(_root, "file");
        File.WriteAllText(file, "x");
        Assert.Contains("no such folder", Assert.Throws<IOException>(() => FolderHandle.Open(Path.Combine(_root, "none"))).Message, StringComparison.Ordinal);
        Assert.Contains("is not a folder", Assert.Throws<IOException>(() => FolderHandle.Open(file)).Message, StringComparison.Ordinal);
    }
}
