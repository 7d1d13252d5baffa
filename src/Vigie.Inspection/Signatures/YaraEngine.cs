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
internal sealed unsafe class YaraEngine : IKnownBadEngine, IDisposable
{
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

        var sources = database.YaraFiles.Select(f => (Path.GetFileName(f), File.ReadAllText(f))).ToList();
        _rules = library.Compile(sources);
    }

    public string Name => "yara";

    public bool IsAvailable(out string? reason)
    {
        reason = _unavailable;
        return _unavailable is null;
    }

    public ValueTask ScanAsync(InspectionContext context, ContentSource content, CancellationToken cancellationToken)
    {
        if (_rules is null)
        {
            return ValueTask.CompletedTask;
        }

        cancellationToken.ThrowIfCancellationRequested();
        var matches = ScanContent(context, content, out var timedOut);
        if (matches is null)
        {
            return ValueTask.CompletedTask;
        }

        foreach (var rule in matches.Distinct(StringComparer.Ordinal))
        {
            context.Report(Rules.SignatureYara, Severity.High, $"matches YARA rule '{rule}'");
        }

        if (timedOut)
        {
            context.Report(Rules.SignatureIncomplete, Severity.Medium, $"libyara stopped after its {_options.YaraTimeoutSeconds} s limit");
        }

        return ValueTask.CompletedTask;
    }

    public void Dispose() => _rules?.Dispose();

    private List<string>? ScanContent(InspectionContext context, ContentSource content, out bool timedOut)
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

    private List<string> ScanEmpty(out bool timedOut)
    {
        byte none = 0;
        return _rules!.Scan(&none, 0, _options.YaraTimeoutSeconds, out timedOut);
    }
}
