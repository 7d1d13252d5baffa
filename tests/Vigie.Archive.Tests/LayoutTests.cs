namespace Vigie.Archive.Tests;

public sealed class LayoutTests
{
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task The_initializer_makes_private_folders_and_precreates_the_fan_out_when_asked()
    {
        await using var archive = await ArchiveHarness.CreateAsync(configure: o => o.PrecreateFanOutFolders = true);
        var layout = archive.Store.Layout;
        Assert.Equal(4096, Directory.EnumerateDirectories(layout.Objects).Count());
        foreach (var folder in new[] { layout.Root, layout.Objects, layout.Spool, layout.Quarantine, layout.Keys })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
        }

        var content = Samples.Content(1000, 1);
        var stored = await archive.PutAsync(content);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(layout.ObjectPath(stored.Id)));
        Assert.Equal(content, await archive.ReadAllAsync(stored.Id));
    }
}
