using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Vigie.Inspection.Signatures;

/// <summary>
/// The few entry points of Debian's libyara that Vigie uses, bound at run time so that a machine without the
/// library still runs (the YARA engine then says it is unavailable). Compiled rules are thread-safe for scanning.
/// </summary>
internal sealed unsafe class LibYara
{
    private const int CallbackMsgRuleMatching = 1;
    private const int CallbackContinue = 0;
    private const int ScanFlagsReportRulesMatching = 8;
    private const int ErrorScanTimeout = 26;
    private const int RuleIdentifierOffset = 8;

    private static readonly string[] LibraryNames = ["libyara.so.10", "libyara.so.9", "libyara.so"];
    private static readonly Lazy<(LibYara? Library, string? Error)> SharedLibrary = new(Load);

    private readonly delegate* unmanaged[Cdecl]<int> _initialize;
    private readonly delegate* unmanaged[Cdecl]<nint*, int> _compilerCreate;
    private readonly delegate* unmanaged[Cdecl]<nint, void> _compilerDestroy;
    private readonly delegate* unmanaged[Cdecl]<nint, delegate* unmanaged[Cdecl]<int, byte*, int, nint, byte*, nint, void>, nint, void> _compilerSetCallback;
    private readonly delegate* unmanaged[Cdecl]<nint, byte*, byte*, int> _compilerAddString;
    private readonly delegate* unmanaged[Cdecl]<nint, nint*, int> _compilerGetRules;
    private readonly delegate* unmanaged[Cdecl]<nint, int> _rulesDestroy;
    private readonly delegate* unmanaged[Cdecl]<nint, byte*, nuint, int, delegate* unmanaged[Cdecl]<nint, int, nint, nint, int>, nint, int, int> _rulesScanMem;

    private LibYara(nint handle)
    {
        _initialize = (delegate* unmanaged[Cdecl]<int>)NativeLibrary.GetExport(handle, "yr_initialize");
        _compilerCreate = (delegate* unmanaged[Cdecl]<nint*, int>)NativeLibrary.GetExport(handle, "yr_compiler_create");
        _compilerDestroy = (delegate* unmanaged[Cdecl]<nint, void>)NativeLibrary.GetExport(handle, "yr_compiler_destroy");
        _compilerSetCallback = (delegate* unmanaged[Cdecl]<nint, delegate* unmanaged[Cdecl]<int, byte*, int, nint, byte*, nint, void>, nint, void>)NativeLibrary.GetExport(handle, "yr_compiler_set_callback");
        _compilerAddString = (delegate* unmanaged[Cdecl]<nint, byte*, byte*, int>)NativeLibrary.GetExport(handle, "yr_compiler_add_string");
        _compilerGetRules = (delegate* unmanaged[Cdecl]<nint, nint*, int>)NativeLibrary.GetExport(handle, "yr_compiler_get_rules");
        _rulesDestroy = (delegate* unmanaged[Cdecl]<nint, int>)NativeLibrary.GetExport(handle, "yr_rules_destroy");
        _rulesScanMem = (delegate* unmanaged[Cdecl]<nint, byte*, nuint, int, delegate* unmanaged[Cdecl]<nint, int, nint, nint, int>, nint, int, int>)NativeLibrary.GetExport(handle, "yr_rules_scan_mem");
    }

    /// <summary>The process-wide library, or null with the reason it could not be loaded.</summary>
    public static LibYara? Shared(out string? error)
    {
        var (library, loadError) = SharedLibrary.Value;
        error = loadError;
        return library;
    }

    /// <summary>Compiles YARA sources (one namespace per file). Throws <see cref="SignatureFormatException"/> listing every compiler error.</summary>
    public YaraRules Compile(IReadOnlyList<(string Name, string Source)> files)
    {
        nint compiler;
        Check(_compilerCreate(&compiler), "yr_compiler_create");
        var errors = new List<string>();
        var handle = GCHandle.Alloc(errors);
        try
        {
            _compilerSetCallback(compiler, &OnCompilerMessage, GCHandle.ToIntPtr(handle));
            foreach (var (name, source) in files)
            {
                var before = errors.Count;
                var sourceBytes = NullTerminated(source);
                var nameBytes = NullTerminated(Path.GetFileNameWithoutExtension(name));
                fixed (byte* sourcePointer = sourceBytes)
                fixed (byte* namePointer = nameBytes)
                {
                    _compilerAddString(compiler, sourcePointer, namePointer);
                }

                for (var i = before; i < errors.Count; i++)
                {
                    errors[i] = $"{name}:{errors[i]}";
                }

                if (errors.Count > 0)
                {
                    // libyara refuses further sources once one failed.
                    break;
                }
            }

            if (errors.Count > 0)
            {
                throw new SignatureFormatException("YARA rules do not compile: " + string.Join("; ", errors.Take(10)));
            }

            nint rules;
            Check(_compilerGetRules(compiler, &rules), "yr_compiler_get_rules");
            return new YaraRules(this, rules);
        }
        finally
        {
            _compilerDestroy(compiler);
            handle.Free();
        }
    }

    /// <summary>Scans a buffer; returns the identifiers of the matching rules.</summary>
    internal List<string> Scan(nint rules, byte* data, long length, int timeoutSeconds, out bool timedOut)
    {
        var matches = new List<string>();
        var handle = GCHandle.Alloc(matches);
        try
        {
            var result = _rulesScanMem(rules, data, (nuint)length, ScanFlagsReportRulesMatching, &OnScanMessage, GCHandle.ToIntPtr(handle), timeoutSeconds);
            timedOut = result == ErrorScanTimeout;
            if (result != 0 && !timedOut)
            {
                throw new InvalidOperationException($"yr_rules_scan_mem failed with libyara error {result}");
            }

            return matches;
        }
        finally
        {
            handle.Free();
        }
    }

    internal void Destroy(nint rules) => _rulesDestroy(rules);

    private static (LibYara?, string?) Load()
    {
        foreach (var name in LibraryNames)
        {
            if (NativeLibrary.TryLoad(name, out var handle))
            {
                try
                {
                    var library = new LibYara(handle);
                    Check(library._initialize(), "yr_initialize");
                    return (library, null);
                }
                catch (Exception e) when (e is EntryPointNotFoundException or InvalidOperationException)
                {
                    return (null, $"{name} is not a usable libyara: {e.Message}");
                }
            }
        }

        return (null, "libyara is not installed (Debian package libyara9 or libyara10)");
    }

    private static void Check(int result, string function)
    {
        if (result != 0)
        {
            throw new InvalidOperationException($"{function} failed with libyara error {result}");
        }
    }

    private static byte[] NullTerminated(string text)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
        Encoding.UTF8.GetBytes(text, bytes);
        return bytes;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void OnCompilerMessage(int level, byte* file, int line, nint rule, byte* message, nint userData)
    {
        // Level 0 is an error, 1 a warning; warnings do not stop the rules from loading.
        if (level == 0 && GCHandle.FromIntPtr(userData).Target is List<string> errors)
        {
            errors.Add($"{line}: {Marshal.PtrToStringUTF8((nint)message)}");
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int OnScanMessage(nint context, int message, nint messageData, nint userData)
    {
        if (message == CallbackMsgRuleMatching && GCHandle.FromIntPtr(userData).Target is List<string> matches)
        {
            var identifier = *(nint*)(messageData + RuleIdentifierOffset);
            matches.Add(Marshal.PtrToStringUTF8(identifier) ?? "(unnamed)");
        }

        return CallbackContinue;
    }
}

/// <summary>Compiled YARA rules, destroyed with this object.</summary>
internal sealed unsafe class YaraRules(LibYara library, nint rules) : IDisposable
{
    private nint _rules = rules;

    public List<string> Scan(ReadOnlySpan<byte> data, int timeoutSeconds, out bool timedOut)
    {
        ObjectDisposedException.ThrowIf(_rules == 0, this);
        fixed (byte* pointer = data)
        {
            return library.Scan(_rules, pointer, data.Length, timeoutSeconds, out timedOut);
        }
    }

    public List<string> Scan(byte* data, long length, int timeoutSeconds, out bool timedOut)
    {
        ObjectDisposedException.ThrowIf(_rules == 0, this);
        return library.Scan(_rules, data, length, timeoutSeconds, out timedOut);
    }

    public void Dispose()
    {
        if (_rules != 0)
        {
            library.Destroy(_rules);
            _rules = 0;
        }
    }
}
