namespace Vigie.Inspection.Pdf;

/// <summary>
/// Every object of a PDF found by a linear scan (so objects missing from the cross-reference data, and shadowed
/// earlier revisions, are seen too), completed by the offsets the cross-reference tables and streams list (so
/// objects hidden from the scan by a lying /Length are seen as well). Packed objects are added by
/// <see cref="AddPackedObjects"/> once their object stream is decoded.
/// </summary>
internal sealed class PdfDocument
{
    private const int MaxXrefOffsets = 1_000_000;

    private readonly List<PdfIndirectObject> _objects = [];
    private readonly Dictionary<int, PdfIndirectObject> _latest = [];
    private readonly HashSet<long> _parsedOffsets = [];
    private readonly List<long> _xrefOffsets = [];

    public IReadOnlyList<PdfIndirectObject> Objects => _objects;

    public List<PdfDictionary> Trailers { get; } = [];

    /// <summary>The value of the last "startxref": where a reader starts, the newest cross-reference section.</summary>
    public long? StartXref { get; private set; }

    private readonly Dictionary<long, PdfDictionary> _trailerByXref = [];

    /// <summary>
    /// The trailer a reader uses: that of the cross-reference table, or the dictionary of the cross-reference stream,
    /// that the last startxref points at (offsets counted from the file's start or from the header); null when it
    /// points at neither (a broken file, which readers rebuild from the last trailer).
    /// </summary>
    public PdfDictionary? StartTrailer
    {
        get
        {
            if (StartXref is not { } at)
            {
                return null;
            }

            foreach (var offset in new[] { at, at + HeaderOffset })
            {
                if (_trailerByXref.TryGetValue(offset, out var trailer))
                {
                    return trailer;
                }

                if (_objects.LastOrDefault(o => o.Offset == offset && o.ContainerNumber is null && o.Dictionary?.GetName("Type") == "XRef") is { } stream)
                {
                    return stream.Dictionary;
                }
            }

            return null;
        }
    }

    public long HeaderOffset { get; private set; }

    /// <summary>More objects than the limit: the rest were not read.</summary>
    public bool Truncated { get; private set; }

    public int MaxObjects { get; private set; }

    /// <summary>The document held more values or string bytes than the parser keeps: later values were dropped.</summary>
    public bool ValuesExhausted { get; private set; }

    public List<string> Problems { get; } = [];

    public PdfIndirectObject? Get(int number) => _latest.GetValueOrDefault(number);

    /// <summary>Follows references (a bounded number of hops) to a direct value.</summary>
    public PdfObject? Resolve(PdfObject? value)
    {
        for (var hops = 0; hops < 16 && value is PdfReference reference; hops++)
        {
            value = Get(reference.Number)?.Value;
        }

        return value is PdfReference ? null : value;
    }

    /// <param name="reconstruct">
    /// Also read every "N G obj" the bytes hold outside the objects already read, as readers do when a file's structure
    /// fails them (qpdf's reconstruction): for PDFs read out of another format, whose binary derails a sequential reading.
    /// </param>
    public static PdfDocument Scan(ContentSource source, int maxObjects, CancellationToken cancellationToken, bool reconstruct = false)
    {
        var document = new PdfDocument { MaxObjects = maxObjects };
        using var lexer = new PdfLexer(source);
        document.HeaderOffset = Math.Max(0, lexer.IndexOf("%PDF-"u8, 0, 1024));
        lexer.Seek(document.HeaderOffset);
        document.ScanLinear(lexer, cancellationToken);
        document.ValuesExhausted = lexer.BudgetExceeded;
        document.ReadListedOffsets(lexer, cancellationToken);
        if (reconstruct)
        {
            document.ReadUnlistedObjects(lexer, cancellationToken);
        }

        return document;
    }

    /// <summary>Where each object read lies ([start, end) in the source), so that a reconstruction does not read inside one.</summary>
    private readonly List<(long Start, long End)> _extents = [];

    /// <summary>
    /// Objects that neither the sequential reading nor the cross-reference data reached, found as a reconstructing
    /// reader finds them: "N G obj" after a delimiter, outside every object read. In a DICOM file a group 0028 tag reads
    /// "(" to a tokenizer and swallowed the objects that follow (review 14: a polyglot's /OpenAction script was unseen).
    /// </summary>
    private void ReadUnlistedObjects(PdfLexer lexer, CancellationToken cancellationToken)
    {
        var extents = _extents.OrderBy(e => e.Start).ToList();
        var merged = new List<(long Start, long End)>();
        foreach (var extent in extents)
        {
            if (merged.Count > 0 && extent.Start <= merged[^1].End)
            {
                merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, extent.End));
            }
            else
            {
                merged.Add(extent);
            }
        }

        Span<byte> before = stackalloc byte[48];
        Span<byte> after = stackalloc byte[1];
        for (var from = HeaderOffset; !Truncated;)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var at = lexer.IndexOf("obj"u8, from, lexer.Length);
            if (at < 0)
            {
                return;
            }

            from = at + 3;
            if (lexer.ReadAt(at + 3, after) == 1 && !IsDelimiter(after[0]))
            {
                continue;
            }

            var window = (int)Math.Min(before.Length, at);
            var head = before[..lexer.ReadAt(at - window, before[..window])];
            if (StartOfObjectHeader(head) is not { } back)
            {
                continue;
            }

            var start = at - head.Length + back;
            if (_parsedOffsets.Contains(start) || Inside(merged, start))
            {
                continue;
            }

            lexer.Seek(start);
            var number = lexer.Next();
            var generation = lexer.Next();
            var keyword = lexer.Next();
            if (number.IsInteger && generation.IsInteger && keyword.IsKeyword("obj") && number.Integer is >= 0 and <= int.MaxValue
                && generation.Integer is >= 0 and <= 65535)
            {
                Problems.Add($"object {number.Integer} at {start} is hidden from a sequential reading (found as a reconstructing reader finds it)");
                ParseIndirect(lexer, (int)number.Integer, (int)generation.Integer, start);
                from = Math.Max(from, lexer.Position);
            }
        }
    }

    /// <summary>Index in <paramref name="head"/> (bytes just before "obj") where "N G " begins, after a delimiter; null when it does not.</summary>
    private static int? StartOfObjectHeader(ReadOnlySpan<byte> head)
    {
        var i = head.Length;
        if (i == 0 || !IsWhitespace(head[i - 1]))
        {
            return null;
        }

        while (i > 0 && IsWhitespace(head[i - 1]))
        {
            i--;
        }

        var digits = i;
        while (i > 0 && char.IsAsciiDigit((char)head[i - 1]))
        {
            i--;
        }

        if (i == digits || i == 0 || !IsWhitespace(head[i - 1]))
        {
            return null;
        }

        while (i > 0 && IsWhitespace(head[i - 1]))
        {
            i--;
        }

        digits = i;
        while (i > 0 && char.IsAsciiDigit((char)head[i - 1]))
        {
            i--;
        }

        // The number must be whole: a delimiter before it, or the start of what was read only when that is the source's start.
        return i == digits || (i > 0 && !IsDelimiter(head[i - 1])) || (i == 0 && head.Length == 48) ? null : i;
    }

    private static bool Inside(List<(long Start, long End)> merged, long offset)
    {
        int low = 0, high = merged.Count - 1;
        while (low <= high)
        {
            var mid = (low + high) / 2;
            if (offset < merged[mid].Start)
            {
                high = mid - 1;
            }
            else if (offset >= merged[mid].End)
            {
                low = mid + 1;
            }
            else
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsWhitespace(byte b) => b is 0 or 9 or 10 or 12 or 13 or 32;

    private static bool IsDelimiter(byte b) => IsWhitespace(b) || b is (byte)'(' or (byte)')' or (byte)'<' or (byte)'>' or (byte)'[' or (byte)']'
        or (byte)'{' or (byte)'}' or (byte)'/' or (byte)'%';

    private void ScanLinear(PdfLexer lexer, CancellationToken cancellationToken)
    {
        PdfToken previous = default, beforePrevious = default;
        long? lastXref = null;
        var tokens = 0;
        while (!Truncated)
        {
            if ((++tokens & 0x3FF) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            var token = lexer.Next();
            if (token.Kind == PdfTokenKind.End)
            {
                break;
            }

            if (token.IsKeyword("obj") && beforePrevious.IsInteger && previous.IsInteger
                && beforePrevious.Integer is >= 0 and <= int.MaxValue && previous.Integer is >= 0 and <= 65535)
            {
                ParseIndirect(lexer, (int)beforePrevious.Integer, (int)previous.Integer, beforePrevious.Start);
                previous = beforePrevious = default;
                continue;
            }

            if (token.IsKeyword("trailer"))
            {
                if (PdfParser.ParseValue(lexer) is PdfDictionary trailer)
                {
                    Trailers.Add(trailer);
                    if (lastXref is { } xrefAt)
                    {
                        _trailerByXref[xrefAt] = trailer;
                        lastXref = null;
                    }
                }
            }
            else if (token.IsKeyword("xref"))
            {
                lastXref = token.Start;
                ReadXrefTable(lexer, cancellationToken);
            }
            else if (token.IsKeyword("startxref"))
            {
                var value = lexer.Next();
                if (value.IsInteger && value.Integer >= 0)
                {
                    StartXref = value.Integer;
                }
                else
                {
                    lexer.PushBack(value);
                }
            }

            beforePrevious = previous;
            previous = token;
        }
    }

    private void ParseIndirect(PdfLexer lexer, int number, int generation, long offset)
    {
        if (_objects.Count >= MaxObjects)
        {
            Truncated = true;
            return;
        }

        _parsedOffsets.Add(offset);
        var value = PdfParser.ParseValue(lexer) ?? PdfObject.Null;
        var next = lexer.Next();
        long streamOffset = -1, streamLength = 0;
        if (next.IsKeyword("stream"))
        {
            (streamOffset, streamLength) = LocateStreamData(lexer, value as PdfDictionary);
            var after = lexer.Next();
            if (!after.IsKeyword("endobj"))
            {
                lexer.PushBack(after);
            }
        }
        else if (!next.IsKeyword("endobj"))
        {
            lexer.PushBack(next);
        }

        Add(new PdfIndirectObject
        {
            Number = number,
            Generation = generation,
            Offset = offset,
            Value = value,
            StreamOffset = streamOffset,
            StreamLength = streamLength,
        });
        _extents.Add((offset, Math.Max(lexer.Position, streamOffset + streamLength)));
    }

    private void Add(PdfIndirectObject indirect)
    {
        _objects.Add(indirect);
        _latest[indirect.Number] = indirect;
    }

    /// <summary>
    /// Stream data starts after the EOL following "stream". A direct /Length is trusted only when "endstream"
    /// follows it; otherwise the data runs to the next "endstream".
    /// </summary>
    private (long Offset, long Length) LocateStreamData(PdfLexer lexer, PdfDictionary? dictionary)
    {
        // Byte-level reading from here: drop any token read ahead.
        lexer.Seek(lexer.Position);
        var c = lexer.Peek();
        if (c == '\r')
        {
            lexer.Read();
            if (lexer.Peek() == '\n')
            {
                lexer.Read();
            }
        }
        else if (c == '\n')
        {
            lexer.Read();
        }

        var dataStart = lexer.Position;
        if (dictionary?.Get("Length") is PdfNumber { IsInteger: true } declared && declared.AsLong >= 0 && dataStart + declared.AsLong <= lexer.Length)
        {
            var end = dataStart + declared.AsLong;
            var keyword = lexer.IndexOf("endstream"u8, end, Math.Min(lexer.Length, end + 32));
            if (keyword >= 0 && OnlyWhitespace(lexer, end, keyword))
            {
                lexer.Seek(keyword + 9);
                return (dataStart, declared.AsLong);
            }

            Problems.Add($"stream at {dataStart}: /Length {declared.AsLong} does not end at 'endstream'");
        }

        var found = lexer.IndexOf("endstream"u8, dataStart, lexer.Length);
        if (found < 0)
        {
            Problems.Add($"stream at {dataStart} has no 'endstream'");
            lexer.Seek(lexer.Length);
            return (dataStart, lexer.Length - dataStart);
        }

        var dataEnd = found;
        if (dataEnd > dataStart && ByteAt(lexer, dataEnd - 1) == '\n')
        {
            dataEnd--;
        }

        if (dataEnd > dataStart && ByteAt(lexer, dataEnd - 1) == '\r')
        {
            dataEnd--;
        }

        lexer.Seek(found + 9);
        return (dataStart, dataEnd - dataStart);
    }

    private static int ByteAt(PdfLexer lexer, long offset)
    {
        var saved = lexer.Position;
        lexer.Seek(offset);
        var b = lexer.Peek();
        lexer.Seek(saved);
        return b;
    }

    private static bool OnlyWhitespace(PdfLexer lexer, long from, long to)
    {
        for (var i = from; i < to; i++)
        {
            if (ByteAt(lexer, i) is not (0 or 9 or 10 or 12 or 13 or 32))
            {
                return false;
            }
        }

        return true;
    }

    private void ReadXrefTable(PdfLexer lexer, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var first = lexer.Next();
            if (!first.IsInteger)
            {
                lexer.PushBack(first);
                return;
            }

            var count = lexer.Next();
            if (!count.IsInteger || count.Integer < 0)
            {
                lexer.PushBack(count);
                return;
            }

            for (long i = 0; i < count.Integer; i++)
            {
                var offset = lexer.Next();
                var generation = lexer.Next();
                var kind = lexer.Next();
                if (!offset.IsInteger || !generation.IsInteger || kind.Kind != PdfTokenKind.Keyword)
                {
                    lexer.PushBack(kind);
                    return;
                }

                if (kind.Keyword == "n" && offset.Integer > 0 && _xrefOffsets.Count < MaxXrefOffsets)
                {
                    _xrefOffsets.Add(offset.Integer);
                }
            }
        }
    }

    /// <summary>Offsets from an xref stream (type 1 entries), decoded by the caller.</summary>
    public void AddXrefStreamOffsets(PdfDictionary dictionary, ReadOnlySpan<byte> data)
    {
        if (dictionary.Get("W") is not PdfArray { Items.Count: 3 } w)
        {
            return;
        }

        var widths = new int[3];
        for (var i = 0; i < 3; i++)
        {
            widths[i] = w.Items[i] is PdfNumber n ? (int)Math.Clamp(n.AsLong, 0, 8) : 0;
        }

        var rowLength = widths[0] + widths[1] + widths[2];
        if (rowLength == 0)
        {
            return;
        }

        for (var row = 0; row + rowLength <= data.Length && _xrefOffsets.Count < MaxXrefOffsets; row += rowLength)
        {
            var type = widths[0] == 0 ? 1 : ReadField(data.Slice(row, widths[0]));
            var field2 = ReadField(data.Slice(row + widths[0], widths[1]));
            if (type == 1 && field2 > 0)
            {
                _xrefOffsets.Add(field2);
            }
        }
    }

    private static long ReadField(ReadOnlySpan<byte> bytes)
    {
        long value = 0;
        foreach (var b in bytes)
        {
            value = (value << 8) | b;
        }

        return value;
    }

    /// <summary>Parses objects at listed offsets the linear scan did not reach.</summary>
    public void ReadListedOffsets(PdfLexer lexer, CancellationToken cancellationToken)
    {
        foreach (var offset in _xrefOffsets.Distinct().ToList())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (Truncated)
            {
                return;
            }

            if (_parsedOffsets.Contains(offset) || offset >= lexer.Length)
            {
                continue;
            }

            lexer.Seek(offset);
            var number = lexer.Next();
            var generation = lexer.Next();
            var keyword = lexer.Next();
            if (number.IsInteger && generation.IsInteger && keyword.IsKeyword("obj") && number.Integer is >= 0 and <= int.MaxValue
                && generation.Integer is >= 0 and <= 65535)
            {
                Problems.Add($"object {number.Integer} at {offset} is listed in the cross-reference data but hidden from a sequential reading");
                ParseIndirect(lexer, (int)number.Integer, (int)generation.Integer, offset);
            }
        }
    }

    /// <summary>Re-reads listed offsets after xref streams were decoded.</summary>
    public void ReadListedOffsets(ContentSource source, CancellationToken cancellationToken)
    {
        using var lexer = new PdfLexer(source);
        ReadListedOffsets(lexer, cancellationToken);
    }

    /// <summary>Unpacks an object stream's decoded bytes ("n offset" pairs, then values from /First).</summary>
    public int AddPackedObjects(PdfIndirectObject container, ContentSource source, CancellationToken cancellationToken)
    {
        var dictionary = container.Dictionary!;
        var count = dictionary.Get("N") is PdfNumber n ? n.AsLong : 0;
        var first = dictionary.Get("First") is PdfNumber f ? f.AsLong : 0;
        if (count <= 0 || first < 0 || first > source.Length)
        {
            Problems.Add($"object stream {container.Number} has an invalid /N or /First");
            return 0;
        }

        using var lexer = new PdfLexer(source);
        var pairs = new List<(int Number, long Offset)>();
        for (long i = 0; i < count && pairs.Count < MaxObjects; i++)
        {
            var number = lexer.Next();
            var offset = lexer.Next();
            if (!number.IsInteger || !offset.IsInteger || number.Integer is < 0 or > int.MaxValue || offset.Integer < 0)
            {
                Problems.Add($"object stream {container.Number}: header ends after {i} of {count} entries");
                break;
            }

            pairs.Add(((int)number.Integer, offset.Integer));
        }

        var added = 0;
        foreach (var (number, offset) in pairs)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_objects.Count >= MaxObjects)
            {
                Truncated = true;
                break;
            }

            if (first + offset >= source.Length)
            {
                continue;
            }

            lexer.Seek(first + offset);
            var value = PdfParser.ParseValue(lexer) ?? PdfObject.Null;
            Add(new PdfIndirectObject { Number = number, Generation = 0, Offset = container.Offset, Value = value, ContainerNumber = container.Number });
            added++;
        }

        return added;
    }

}
