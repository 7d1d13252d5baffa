using System.Runtime.CompilerServices;

namespace Vigie.Inspection.Pdf;

/// <summary>Builds values from tokens, with caps on nesting, array length and dictionary size.</summary>
internal static class PdfParser
{
    public const int MaxDepth = 64;
    public const int MaxArrayItems = 100_000;
    public const int MaxDictionaryEntries = 10_000;

    /// <summary>Parses one value; null at the end of input or at a token that closes or ends something (pushed back).</summary>
    public static PdfObject? ParseValue(PdfLexer lexer, int depth = 0)
    {
        var token = lexer.Next();
        switch (token.Kind)
        {
            case PdfTokenKind.End:
                return null;
            case PdfTokenKind.Number:
                if (token.IsInteger && token.Integer is >= 0 and <= int.MaxValue)
                {
                    var second = lexer.Next();
                    if (second.IsInteger && second.Integer is >= 0 and <= 65535)
                    {
                        var third = lexer.Next();
                        if (third.IsKeyword("R"))
                        {
                            return new PdfReference((int)token.Integer, (int)second.Integer);
                        }

                        lexer.PushBack(third);
                    }

                    lexer.PushBack(second);
                }

                return token.Value;
            case PdfTokenKind.Name:
            case PdfTokenKind.String:
                return token.Value;
            case PdfTokenKind.ArrayStart:
                return depth >= MaxDepth ? SkipNested(lexer) : ParseArray(lexer, depth + 1);
            case PdfTokenKind.DictionaryStart:
                return depth >= MaxDepth ? SkipNested(lexer) : ParseDictionary(lexer, depth + 1);
            case PdfTokenKind.ArrayEnd:
            case PdfTokenKind.DictionaryEnd:
                lexer.PushBack(token);
                return null;
            case PdfTokenKind.Keyword:
                switch (token.Keyword)
                {
                    case "true":
                        return new PdfBoolean(true);
                    case "false":
                        return new PdfBoolean(false);
                    case "null":
                        return PdfObject.Null;
                    case "endobj" or "stream" or "endstream" or "obj" or "trailer" or "xref" or "startxref":
                        lexer.PushBack(token);
                        return null;
                    default:
                        return new PdfKeyword(token.Keyword!);
                }

            default:
                return null;
        }
    }

    private static PdfObject SkipNested(PdfLexer lexer)
    {
        // Too deep to keep: consume tokens until this level closes, keeping nothing.
        var level = 1;
        while (level > 0)
        {
            var token = lexer.Next();
            switch (token.Kind)
            {
                case PdfTokenKind.End:
                    return new PdfKeyword("(nesting too deep)");
                case PdfTokenKind.ArrayStart or PdfTokenKind.DictionaryStart:
                    level++;
                    break;
                case PdfTokenKind.ArrayEnd or PdfTokenKind.DictionaryEnd:
                    level--;
                    break;
                case PdfTokenKind.Keyword when token.Keyword is "endobj" or "stream" or "obj":
                    lexer.PushBack(token);
                    return new PdfKeyword("(nesting too deep)");
                default:
                    break;
            }
        }

        return new PdfKeyword("(nesting too deep)");
    }

    private static PdfArray ParseArray(PdfLexer lexer, int depth)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        var items = new List<PdfObject>();
        while (true)
        {
            var value = ParseValue(lexer, depth);
            if (value is null)
            {
                var token = lexer.Next();
                if (token.Kind != PdfTokenKind.ArrayEnd && token.Kind != PdfTokenKind.End)
                {
                    lexer.PushBack(token);
                }

                return new PdfArray(items);
            }

            if (items.Count < MaxArrayItems && lexer.TryKeepValue())
            {
                items.Add(value);
            }
        }
    }

    private static PdfDictionary ParseDictionary(PdfLexer lexer, int depth)
    {
        RuntimeHelpers.EnsureSufficientExecutionStack();
        var entries = new List<KeyValuePair<PdfName, PdfObject>>();
        while (true)
        {
            var token = lexer.Next();
            switch (token.Kind)
            {
                case PdfTokenKind.DictionaryEnd:
                case PdfTokenKind.End:
                    return new PdfDictionary(entries);
                case PdfTokenKind.Name:
                    var value = ParseValue(lexer, depth);
                    if (value is null)
                    {
                        // "/Key >>": a key without value; keep the key visible to analysis.
                        value = PdfObject.Null;
                        var next = lexer.Next();
                        if (next.Kind is PdfTokenKind.DictionaryEnd or PdfTokenKind.End)
                        {
                            if (entries.Count < MaxDictionaryEntries && lexer.TryKeepValue())
                            {
                                entries.Add(new((PdfName)token.Value!, value));
                            }

                            return new PdfDictionary(entries);
                        }

                        lexer.PushBack(next);
                        if (next.Kind == PdfTokenKind.Keyword)
                        {
                            return new PdfDictionary(entries);
                        }
                    }

                    if (entries.Count < MaxDictionaryEntries && lexer.TryKeepValue())
                    {
                        entries.Add(new((PdfName)token.Value!, value));
                    }

                    break;
                case PdfTokenKind.Keyword when token.Keyword is "endobj" or "stream" or "obj" or "endstream" or "trailer" or "xref" or "startxref":
                    lexer.PushBack(token);
                    return new PdfDictionary(entries);
                case PdfTokenKind.ArrayEnd:
                    break;
                default:
                    // A value where a key belongs: skip it (and anything nested in it).
                    if (token.Kind is PdfTokenKind.ArrayStart or PdfTokenKind.DictionaryStart)
                    {
                        lexer.PushBack(token);
                        ParseValue(lexer, depth);
                    }

                    break;
            }
        }
    }
}
