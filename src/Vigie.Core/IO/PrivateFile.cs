using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Vigie.Core.IO;

/// <summary>
/// Whether a file that holds data in clear is the service account's alone. Checked on the open handle where there is
/// one, so a file swapped after a path check is still caught.
/// </summary>
public static class PrivateFile
{
    private const int GroupOrOthersReadWrite = 0b000_110_110;

    /// <summary>What exposes the open file (group or others may read or write it, or another account owns it), or null.</summary>
    public static FileExposure? Exposure(SafeFileHandle handle)
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }

        if (OperatingSystem.IsLinux())
        {
            var added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                return Check((int)handle.DangerousGetHandle(), "", AtEmptyPath);
            }
            finally
            {
                if (added)
                {
                    handle.DangerousRelease();
                }
            }
        }

        return FromMode((int)File.GetUnixFileMode(handle), -1);
    }

    /// <summary>What exposes the file at <paramref name="path"/> (followed if a link), or null, also when there is none.</summary>
    public static FileExposure? Exposure(string path)
    {
        if (OperatingSystem.IsWindows() || !File.Exists(path))
        {
            return null;
        }

        return OperatingSystem.IsLinux() ? Check(AtFdCwd, path, 0) : FromMode((int)File.GetUnixFileMode(path), -1);
    }

    private static FileExposure? Check(int directory, string path, int flags)
    {
        var buffer = new byte[256];
        if (Statx(directory, path, flags, StatxMode | StatxUid, buffer) != 0)
        {
            return null;
        }

        return FromMode(BitConverter.ToUInt16(buffer, 28) & 0xFFF, (int)BitConverter.ToUInt32(buffer, 20));
    }

    private static FileExposure? FromMode(int mode, int owner)
    {
        var account = OperatingSystem.IsWindows() ? -1 : (int)GetEUid();
        var foreign = owner >= 0 && owner != account;
        return (mode & GroupOrOthersReadWrite) != 0 || foreign ? new FileExposure(mode, foreign ? owner : -1, account) : null;
    }

    private const int AtFdCwd = -100;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxMode = 0x2;
    private const uint StatxUid = 0x8;

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Statx(int directory, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);

    [DllImport("libc", EntryPoint = "geteuid", SetLastError = false)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern uint GetEUid();
}

/// <summary>A file's mode, and its owner when another account than the one running Vigie (<see cref="Account"/>) owns it, else -1.</summary>
public sealed record FileExposure(int Mode, int ForeignOwner, int Account)
{
    public bool OthersMayAccess => (Mode & 0b000_110_110) != 0;

    /// <summary>"mode 644, group or others can read or write it; owned by uid 65534, not by uid 1000 that runs Vigie".</summary>
    public string Describe() => string.Join("; ", new[]
    {
        OthersMayAccess ? $"mode {Convert.ToString(Mode, 8)}, group or others can read or write it" : null,
        ForeignOwner >= 0 ? $"owned by uid {ForeignOwner}, not by uid {Account} that runs Vigie" : null,
    }.Where(s => s is not null));

    /// <summary>The commands that make <paramref name="path"/> the account's alone.</summary>
    public string Fix(string path) => ForeignOwner >= 0
        ? $"chown {Account} {path} && chmod 600 {path}, or remove it (Vigie creates it mode 600)"
        : $"chmod 600 {path}";
}
