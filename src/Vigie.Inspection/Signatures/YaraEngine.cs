using System.Buffers;
using System.IO.MemoryMappedFiles;
using Microsoft.Extensions.Options;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Signatures;

/// <summary>
/// YARA rules from the rules folder, run through Debian's libyara on every object and inner object. Objects in
/// memory are scanned in place, file ranges are memory-mapped (read-only), anything else is copied up to
/// <see cref="SignatureOptions.YaraMaxObjectSize"/>. Without libyara the engine reports itself unavailable when
/// there are YARA rules to run, so a scan never silently skips them.
/// </summary>
internal sealed class YaraEngine : IKnownBadEngine, IDisposable
{
    // libyara lets at most 32 threads (YR_MAX_THREADS) scan with one set of rules at a time; more fail the scan.
    private readonly SemaphoreSlim _scanners = new(16, 16);
    private readonly SignatureOptions _options;
    private readonly YaraRules? _rules;
    private readonly string? _unavailable;

    public YaraEngine(SignatureDatabase database, IOptions<SignatureOptions> options)
    {
        _options = options.Value;
        if (database.YaraFiles.Count == 0)
        {
            return;
        }

        var library = LibYara.Shared(out var error);
        if (library is null)
        {
            _unavailable = $"{error}; {database.YaraFiles.Count} YARA rule files were not run";
            return;
        }

        _rules = library.Compile(database.YaraFiles);
    }

    public string Name => "yara";

    public bool IsAvailable(out string? reason)
    {
        reason = _unavailable;
        return _unavailable is null;
    }

    public async ValueTask ScanAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (_rules is null)
        {
            return;
        }

        List<string>? matches;
        bool timedOut;
        await _scanners.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            matches = ScanContent(context, content, out timedOut);
        }
        finally
        {
            _scanners.Release();
        }

        if (matches is null)
        {
            return;
        }

        foreach (var rule in matches.Distinct(StringComparer.Ordinal))
        {
            context.Report(Rules.SignatureYara, Severity.High, $"matches YARA rule '{rule}'");
        }

        if (timedOut)
        {
            context.Report(Rules.SignatureIncomplete, Severity.Medium, $"libyara stopped after its {_options.YaraTimeoutSeconds} s limit");
        }
    }

    public void Dispose()
    {
        _rules?.Dispose();
        _scanners.Dispose();
    }

    private unsafe List<string>? ScanContent(InspectionContext context, ContentSource content, out bool timedOut)
    {
        timedOut = false;
        var length = content.Length;
        if (length == 0)
        {
            return ScanEmpty(out timedOut);
        }

        if (content.Memory is { } memory)
        {
            return _rules!.Scan(memory.Span, _options.YaraTimeoutSeconds, out timedOut);
        }

        if (content.FileRange is { } range)
        {
            using var file = MemoryMappedFile.CreateFromFile(range.Handle, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
            using var view = file.CreateViewAccessor(range.Offset, length, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            try
            {
                return _rules!.Scan(pointer + view.PointerOffset, length, _options.YaraTimeoutSeconds, out timedOut);
            }
            finally
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
        }

        if (length > _options.YaraMaxObjectSize)
        {
            context.Report(Rules.SignatureIncomplete, Severity.Medium,
                $"not scanned by YARA: {length} bytes is more than the {_options.YaraMaxObjectSize}-byte limit for extracted objects");
            return null;
        }

        var buffer = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            var read = content.ReadAt(0, buffer.AsSpan(0, (int)length));
            return _rules!.Scan(buffer.AsSpan(0, read), _options.YaraTimeoutSeconds, out timedOut);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private unsafe List<string> ScanEmpty(out bool timedOut)
    {
        byte none = 0;
        return _rules!.Scan(&none, 0, _options.YaraTimeoutSeconds, out timedOut);
    }
}
