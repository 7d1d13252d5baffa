using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Vigie.Inspection.Signatures;

internal enum HashAlgorithmKind
{
    Md5,
    Sha1,
    Sha256,
}

/// <summary>A known-bad whole-content hash; <see cref="Size"/> null matches any size.</summary>
internal sealed record HashSignature(string Name, HashAlgorithmKind Algorithm, byte[] Hash, long? Size, string Origin);

/// <summary>An .ndb body signature.</summary>
internal sealed record BodySignature(string Name, int Target, SignatureOffset Offset, BodyPattern Pattern, string Origin);

/// <summary>An .ldb sub-signature: a body pattern with an optional offset.</summary>
internal sealed record SubSignature(SignatureOffset Offset, BodyPattern Pattern);

/// <summary>An .ldb logical signature: sub-signatures combined by a logical expression.</summary>
internal sealed record LogicalSignature(string Name, int Target, long? MinSize, long? MaxSize, LogicalExpression Expression, SubSignature[] SubSignatures, string Origin, string ExpressionText);

/// <summary>A signature line that was valid but not supported, kept so that `vigie signatures check` can list it.</summary>
internal sealed record SkippedSignature(string Origin, string Reason);

/// <summary>
/// The known-bad signatures of a rules folder: ClamAV hash (.hdb, .hsb), body (.ndb) and logical (.ldb)
/// signatures, plain hash lists (.sha256, .sha1, .md5: a hash per line, optionally followed by a name), and
/// the YARA rule files (.yar, .yara) handed to libyara. A malformed line stops loading with its file and line.
/// </summary>
internal sealed partial class SignatureDatabase
{
    public const int MaxFiles = 10_000;
    public const long MaxFileBytes = 256L * 1024 * 1024;
    public const int MaxLineLength = 64 * 1024;

    internal static readonly string[] KnownExtensions = [".hdb", ".hsb", ".ndb", ".ldb", ".sha256", ".sha1", ".md5", ".yar", ".yara"];

    public List<HashSignature> Hashes { get; } = [];

    public List<BodySignature> Bodies { get; } = [];

    public List<LogicalSignature> Logicals { get; } = [];

    public List<SkippedSignature> Skipped { get; } = [];

    /// <summary>YARA sources by file name, in a stable order: read once, so what was checked for a rule is what compiles.</summary>
    public List<(string Name, string Source)> YaraFiles { get; } = [];

    public int Count => Hashes.Count + Bodies.Count + Logicals.Count;

    /// <summary>ClamAV target types this engine can honour (0 any, 1 PE, 2 OLE2, 4 mail, 5 graphics, 6 ELF, 9 Mach-O, 10 PDF).</summary>
    public static bool IsSupportedTarget(int target) => target is 0 or 1 or 2 or 4 or 5 or 6 or 9 or 10;

    public static bool TargetMatches(int target, ContentType type) => target switch
    {
        0 => true,
        1 => type == ContentType.Pe,
        2 => type == ContentType.Ole2,
        4 => type == ContentType.Mime,
        5 => type is ContentType.Jpeg or ContentType.Png or ContentType.Gif or ContentType.Jpeg2000,
        6 => type == ContentType.Elf,
        9 => type == ContentType.MachO,
        10 => type == ContentType.Pdf,
        _ => false,
    };

    /// <summary>Built-in signatures: the EICAR anti-virus test file, so that a deployment can be checked end to end without real malware.</summary>
    public static SignatureDatabase BuiltIn()
    {
        var database = new SignatureDatabase();
        database.Hashes.Add(new HashSignature("Vigie.Test.EICAR", HashAlgorithmKind.Md5, Convert.FromHexString("44d88612fea8a8f36de82e1278abb02f"), 68, "built-in"));
        database.Hashes.Add(new HashSignature("Vigie.Test.EICAR", HashAlgorithmKind.Sha256,
            Convert.FromHexString("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"), 68, "built-in"));
        return database;
    }

    /// <summary>The signatures the options name, logging what was loaded and skipped. Throws <see cref="SignatureFormatException"/> on a bad file.</summary>
    public static SignatureDatabase FromOptions(SignatureOptions options, ILogger logger)
    {
        if (string.IsNullOrWhiteSpace(options.RulesDirectory))
        {
            return options.BuiltIn ? BuiltIn() : new SignatureDatabase();
        }

        var database = Load(options.RulesDirectory, options.BuiltIn);
        LogLoaded(logger, database.Hashes.Count, database.Bodies.Count, database.Logicals.Count, database.YaraFiles.Count, database.Skipped.Count);
        foreach (var skipped in database.Skipped.Take(20))
        {
            LogSkipped(logger, skipped.Origin, skipped.Reason);
        }

        return database;
    }

    public static SignatureDatabase Load(string directory, bool includeBuiltIn)
    {
        var database = includeBuiltIn ? BuiltIn() : new SignatureDatabase();
        if (!Directory.Exists(directory))
        {
            throw new SignatureFormatException($"the rules folder {directory} does not exist");
        }

        var builtIn = database.Hashes.Count;
        var ignored = new List<string>();
        var files = SignatureFolder.Files(directory, ignored);
        if (files.Count > MaxFiles)
        {
            throw new SignatureFormatException($"{directory} holds more than {MaxFiles} signature files");
        }

        foreach (var file in files)
        {
            if (new FileInfo(file).Length > MaxFileBytes)
            {
                throw new SignatureFormatException($"{file} is larger than {MaxFileBytes} bytes");
            }

            var extension = Path.GetExtension(file).ToLowerInvariant();
            if (extension is ".yar" or ".yara")
            {
                // An empty, truncated or commented-out file compiles to no rule: it yields nothing, and is said so.
                var source = File.ReadAllText(file);
                if (HasYaraRule(source))
                {
                    database.YaraFiles.Add((Path.GetFileName(file), source));
                }
                else
                {
                    database.Skipped.Add(new SkippedSignature(Path.GetFileName(file), "no YARA rule in it"));
                }

                continue;
            }

            database.LoadFile(file, extension);
        }

        // Files of another kind (a rule named .yr, a list named .txt) were passed over without a word, and a folder of
        // them gave "clean" everywhere (before 2026-12-06): they are listed, and a folder that yields nothing is refused.
        var unusable = database.Skipped.Count;
        ignored.Sort(StringComparer.Ordinal);
        foreach (var name in ignored.Take(20))
        {
            database.Skipped.Add(new SkippedSignature(name, "not a signature file Vigie reads (" + string.Join(", ", KnownExtensions.Order(StringComparer.Ordinal)) + ")"));
        }

        if (ignored.Count > 20)
        {
            database.Skipped.Add(new SkippedSignature($"{ignored.Count - 20} more files", "not signature files Vigie reads"));
        }

        if (database.Hashes.Count == builtIn && database.Bodies.Count == 0 && database.Logicals.Count == 0 && database.YaraFiles.Count == 0)
        {
            throw new SignatureFormatException($"the rules folder {directory} yields no signature: it holds no {string.Join(", ", KnownExtensions.Order(StringComparer.Ordinal))} "
                + $"file with a signature Vigie reads{(ignored.Count > 0 ? $" ({ignored.Count} other files, e.g. {ignored[0]})" : "")}"
                + (unusable > 0 ? $"; {unusable} signatures it cannot use" : ""));
        }

        return database;
    }

    /// <summary>Whether YARA source declares a rule outside its comments (a malformed one too: libyara then says what is wrong).</summary>
    internal static bool HasYaraRule(string source)
    {
        var code = YaraComments().Replace(source, " ");
        return YaraRule().IsMatch(code);
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"/\*.*?\*/|//[^\n]*", System.Text.RegularExpressions.RegexOptions.Singleline, 1000)]
    private static partial System.Text.RegularExpressions.Regex YaraComments();

    [System.Text.RegularExpressions.GeneratedRegex(@"(?m)^\s*(?:(?:private|global)\s+)*rule\b", System.Text.RegularExpressions.RegexOptions.None, 1000)]
    private static partial System.Text.RegularExpressions.Regex YaraRule();

    /// <summary>Reads one signature file (exposed for tests); <paramref name="extension"/> decides the format.</summary>
    public void LoadFile(string file, string extension)
    {
        using var reader = new StreamReader(file, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var number = 0;
        while (reader.ReadLine() is { } line)
        {
            number++;
            var origin = $"{Path.GetFileName(file)}:{number}";
            if (line.Length > MaxLineLength)
            {
                throw new SignatureFormatException($"{origin}: the line is longer than {MaxLineLength} characters");
            }

            line = line.Trim();
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            try
            {
                switch (extension)
                {
                    case ".hdb":
                    case ".hsb":
                        Hashes.Add(ParseClamHash(line, origin, extension == ".hdb"));
                        break;
                    case ".ndb":
                        Bodies.Add(ParseBody(line, origin));
                        break;
                    case ".ldb":
                        Logicals.Add(ParseLogical(line, origin));
                        break;
                    case ".sha256":
                        Hashes.Add(ParsePlainHash(line, origin, HashAlgorithmKind.Sha256));
                        break;
                    case ".sha1":
                        Hashes.Add(ParsePlainHash(line, origin, HashAlgorithmKind.Sha1));
                        break;
                    case ".md5":
                        Hashes.Add(ParsePlainHash(line, origin, HashAlgorithmKind.Md5));
                        break;
                    default:
                        return;
                }
            }
            catch (SignatureFormatException e)
            {
                throw new SignatureFormatException($"{file}:{number}: {e.Message}");
            }
            catch (UnsupportedSignatureException e)
            {
                Skipped.Add(new SkippedSignature(origin, e.Message));
            }
        }
    }

    private static HashSignature ParseClamHash(string line, string origin, bool md5Only)
    {
        // HashString:FileSize:MalwareName[:MinFL[:MaxFL]]
        var fields = line.Split(':');
        if (fields.Length < 3)
        {
            throw new SignatureFormatException("expected HASH:SIZE:NAME");
        }

        var algorithm = ParseHashHex(fields[0], out var hash);
        if (md5Only && algorithm != HashAlgorithmKind.Md5)
        {
            throw new SignatureFormatException(".hdb holds MD5 hashes only (use .hsb for SHA-1 and SHA-256)");
        }

        long? size = fields[1] == "*"
            ? null
            : long.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s : throw new SignatureFormatException($"bad size '{fields[1]}'");
        return new HashSignature(CheckName(fields[2]), algorithm, hash, size, origin);
    }

    private static HashSignature ParsePlainHash(string line, string origin, HashAlgorithmKind expected)
    {
        // "HASH" or "HASH  name" (sha256sum output) or "HASH name".
        var space = line.IndexOfAny([' ', '\t']);
        var hex = space < 0 ? line : line[..space];
        var name = space < 0 ? "" : line[(space + 1)..].Trim().TrimStart('*');
        var algorithm = ParseHashHex(hex, out var hash);
        if (algorithm != expected)
        {
            throw new SignatureFormatException($"a {expected} list holds a {algorithm} hash");
        }

        var signatureName = name.Length == 0 ? $"Vigie.HashList.{hex.ToLowerInvariant()[..16]}" : CheckName(name.Replace(' ', '_'));
        return new HashSignature(signatureName, algorithm, hash, null, origin);
    }

    private static HashAlgorithmKind ParseHashHex(string hex, out byte[] hash)
    {
        var algorithm = hex.Length switch
        {
            32 => HashAlgorithmKind.Md5,
            40 => HashAlgorithmKind.Sha1,
            64 => HashAlgorithmKind.Sha256,
            _ => throw new SignatureFormatException($"a hash of {hex.Length} hex digits is neither MD5, SHA-1 nor SHA-256"),
        };
        try
        {
            hash = Convert.FromHexString(hex);
        }
        catch (FormatException)
        {
            throw new SignatureFormatException($"'{hex}' is not hexadecimal");
        }

        return algorithm;
    }

    private static BodySignature ParseBody(string line, string origin)
    {
        // MalwareName:TargetType:Offset:HexSignature[:MinFL[:MaxFL]]
        var fields = line.Split(':');
        if (fields.Length < 4)
        {
            throw new SignatureFormatException("expected NAME:TARGET:OFFSET:HEX");
        }

        var target = ParseTarget(fields[1]);
        var offset = SignatureOffset.Parse(fields[2]);
        CheckPlacement(offset, target);
        var pattern = BodyPattern.Parse(fields[3]);
        CheckAnchor(pattern, offset);
        return new BodySignature(CheckName(fields[0]), target, offset, pattern, origin);
    }

    private static LogicalSignature ParseLogical(string line, string origin)
    {
        // SignatureName;TargetDescriptionBlock;LogicalExpression;Subsig0;Subsig1;...
        var fields = line.Split(';');
        if (fields.Length < 4)
        {
            throw new SignatureFormatException("expected NAME;TARGET-BLOCK;EXPRESSION;SUBSIG0[;SUBSIG1...]");
        }

        int? target = null;
        long? minSize = null, maxSize = null;
        foreach (var attribute in fields[1].Split(','))
        {
            var colon = attribute.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                throw new SignatureFormatException($"bad target description '{attribute}'");
            }

            var key = attribute[..colon];
            var value = attribute[(colon + 1)..];
            switch (key)
            {
                case "Target":
                    target = ParseTarget(value);
                    break;
                case "Engine":
                    break;
                case "FileSize":
                    var dash = value.IndexOf('-', StringComparison.Ordinal);
                    minSize = long.Parse(dash < 0 ? value : value[..dash], NumberStyles.None, CultureInfo.InvariantCulture);
                    maxSize = dash < 0 ? minSize : long.Parse(value[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture);
                    break;
                default:
                    throw new UnsupportedSignatureException($"target description '{key}' is not supported");
            }
        }

        if (target is null)
        {
            throw new SignatureFormatException("the target description block has no Target");
        }

        var subSignatures = new SubSignature[fields.Length - 3];
        for (var i = 0; i < subSignatures.Length; i++)
        {
            var text = fields[i + 3];
            if (text.Contains('/', StringComparison.Ordinal))
            {
                throw new UnsupportedSignatureException($"sub-signature {i} is a PCRE");
            }

            // [offset:]hex[::modifiers]
            var modifiers = string.Empty;
            var separator = text.IndexOf("::", StringComparison.Ordinal);
            if (separator >= 0)
            {
                modifiers = text[(separator + 2)..];
                text = text[..separator];
            }

            var colon = text.IndexOf(':', StringComparison.Ordinal);
            var offset = colon < 0 ? SignatureOffset.Any : SignatureOffset.Parse(text[..colon]);
            CheckPlacement(offset, target.Value);
            var pattern = BodyPattern.Parse(colon < 0 ? text : text[(colon + 1)..], modifiers);
            CheckAnchor(pattern, offset);
            subSignatures[i] = new SubSignature(offset, pattern);
        }

        var expression = LogicalExpression.Parse(fields[2], subSignatures.Length);
        return new LogicalSignature(CheckName(fields[0]), target.Value, minSize, maxSize, expression, subSignatures, origin, fields[2]);
    }

    /// <summary>Entry points are read from PE and ELF headers here, sections from PE headers; Mach-O is not read.</summary>
    private static void CheckPlacement(SignatureOffset offset, int target)
    {
        if (offset.Kind == SignatureOffsetKind.EntryPoint ? target is not (1 or 6) : offset.NeedsExecutableLayout && target != 1)
        {
            throw new UnsupportedSignatureException(offset.Kind == SignatureOffsetKind.EntryPoint
                ? $"offset '{offset}' is placed from PE or ELF headers only (target 1 or 6), not target {target}"
                : $"offset '{offset}' is placed from PE headers only (target 1), not target {target}");
        }
    }

    private static void CheckAnchor(BodyPattern pattern, SignatureOffset offset)
    {
        if (!pattern.HasUsableAnchor && (offset.Kind == SignatureOffsetKind.Any || offset.Range > 1024 * 1024))
        {
            throw new UnsupportedSignatureException("a floating pattern needs two fixed bytes in its first part");
        }
    }

    private static int ParseTarget(string text)
    {
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var target))
        {
            throw new SignatureFormatException($"bad target type '{text}'");
        }

        return IsSupportedTarget(target) ? target : throw new UnsupportedSignatureException($"target type {target} is not supported");
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Known-bad signatures loaded: {Hashes} hashes, {Bodies} body, {Logicals} logical, {YaraFiles} YARA files, {Skipped} skipped")]
    private static partial void LogLoaded(ILogger logger, int hashes, int bodies, int logicals, int yaraFiles, int skipped);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Signature {Origin} skipped: {Reason}")]
    private static partial void LogSkipped(ILogger logger, string origin, string reason);

    private static string CheckName(string name)
    {
        if (name.Length is 0 or > 256 || name.Any(c => char.IsControl(c) || c is ':' or ';' or '"' or '\\'))
        {
            throw new SignatureFormatException($"bad signature name '{Inspector.Truncate(name, 60)}'");
        }

        return name;
    }
}

/// <summary>
/// An .ldb logical expression over sub-signature match counts: indices, <c>&amp;</c>, <c>|</c>, parentheses,
/// and <c>=n</c>, <c>&gt;n</c>, <c>&lt;n</c> (optionally <c>,m</c>: at least m distinct sub-signatures).
/// </summary>
internal abstract class LogicalExpression
{
    private const int MaxDepth = 32;

    /// <summary>Evaluates against the match count of each sub-signature.</summary>
    public abstract (bool Matched, long Count, int Distinct) Evaluate(ReadOnlySpan<int> counts);

    /// <summary>The expression in YARA condition syntax; <paramref name="leaf"/> renders "sub-signature i matched", counts use <c>#s{i}</c>.</summary>
    public abstract string ToYara(Func<int, string> leaf);

    public abstract IEnumerable<int> Indices();

    public static LogicalExpression Parse(string text, int subSignatureCount)
    {
        var position = 0;
        var expression = ParseOr(text, ref position, subSignatureCount, 0);
        return position != text.Length ? throw new SignatureFormatException($"unexpected '{text[position]}' at character {position} of the logical expression") : expression;
    }

    private static LogicalExpression ParseOr(string text, ref int position, int count, int depth)
    {
        var left = ParseAnd(text, ref position, count, depth);
        while (position < text.Length && text[position] == '|')
        {
            position++;
            left = new Binary(left, ParseAnd(text, ref position, count, depth), isAnd: false);
        }

        return left;
    }

    private static LogicalExpression ParseAnd(string text, ref int position, int count, int depth)
    {
        var left = ParseTerm(text, ref position, count, depth);
        while (position < text.Length && text[position] == '&')
        {
            position++;
            left = new Binary(left, ParseTerm(text, ref position, count, depth), isAnd: true);
        }

        return left;
    }

    private static LogicalExpression ParseTerm(string text, ref int position, int count, int depth)
    {
        if (depth > MaxDepth)
        {
            throw new SignatureFormatException($"the logical expression nests deeper than {MaxDepth}");
        }

        LogicalExpression term;
        if (position < text.Length && text[position] == '(')
        {
            position++;
            term = ParseOr(text, ref position, count, depth + 1);
            if (position >= text.Length || text[position] != ')')
            {
                throw new SignatureFormatException($"missing ')' at character {position} of the logical expression");
            }

            position++;
        }
        else
        {
            var index = ReadNumber(text, ref position);
            term = index < count ? new Leaf(index) : throw new SignatureFormatException($"sub-signature {index} does not exist");
        }

        if (position < text.Length && text[position] is '=' or '>' or '<')
        {
            var op = text[position++];
            var value = ReadNumber(text, ref position);
            var distinct = 0;
            if (position < text.Length && text[position] == ',')
            {
                position++;
                distinct = ReadNumber(text, ref position);
            }

            term = new Comparison(term, op, value, distinct);
        }

        return term;
    }

    private static int ReadNumber(string text, ref int position)
    {
        var start = position;
        while (position < text.Length && char.IsAsciiDigit(text[position]) && position - start < 9)
        {
            position++;
        }

        return position == start
            ? throw new SignatureFormatException($"expected a number at character {start} of the logical expression")
            : int.Parse(text.AsSpan(start, position - start), NumberStyles.None, CultureInfo.InvariantCulture);
    }

    private sealed class Leaf(int index) : LogicalExpression
    {
        public override (bool, long, int) Evaluate(ReadOnlySpan<int> counts) => (counts[index] > 0, counts[index], counts[index] > 0 ? 1 : 0);

        public override string ToYara(Func<int, string> leaf) => leaf(index);

        public override IEnumerable<int> Indices() => [index];
    }

    private sealed class Binary(LogicalExpression left, LogicalExpression right, bool isAnd) : LogicalExpression
    {
        public override (bool, long, int) Evaluate(ReadOnlySpan<int> counts)
        {
            var (lm, lc, ld) = left.Evaluate(counts);
            var (rm, rc, rd) = right.Evaluate(counts);
            return (isAnd ? lm && rm : lm || rm, lc + rc, ld + rd);
        }

        public override string ToYara(Func<int, string> leaf) => $"({left.ToYara(leaf)} {(isAnd ? "and" : "or")} {right.ToYara(leaf)})";

        public override IEnumerable<int> Indices() => left.Indices().Concat(right.Indices());
    }

    private sealed class Comparison(LogicalExpression inner, char op, int value, int distinct) : LogicalExpression
    {
        public override (bool, long, int) Evaluate(ReadOnlySpan<int> counts)
        {
            var (_, count, innerDistinct) = inner.Evaluate(counts);
            var matched = op switch
            {
                '=' => count == value,
                '>' => count > value,
                _ => count < value,
            };
            return (matched && innerDistinct >= distinct, count, innerDistinct);
        }

        public override string ToYara(Func<int, string> leaf)
        {
            var indices = Indices().Distinct().Order().ToArray();
            var sum = string.Join(" + ", indices.Select(i => $"#s{i}"));
            var comparison = $"({sum}) {(op == '=' ? "==" : op.ToString())} {value}";
            return distinct > 0 ? $"({comparison} and {distinct} of ({string.Join(", ", indices.Select(i => $"$s{i}"))}))" : $"({comparison})";
        }

        public override IEnumerable<int> Indices() => inner.Indices();
    }
}
