using System.Globalization;
using System.Text;

namespace Vigie.Inspection.Signatures;

/// <summary>What a rules folder holds, as `vigie signatures check` reports it.</summary>
public sealed record SignatureReport(int Hashes, int Bodies, int Logicals, int YaraFiles, IReadOnlyList<string> Skipped, string Yara);

/// <summary>
/// Writes Vigie's hash and pattern signatures as a ClamAV database and as YARA rules, so the same detections can be
/// checked with <c>clamscan</c> and <c>yara</c>. YARA cannot express every ClamAV target type; those are written with
/// the closest magic-number test and listed in docs/signatures.md.
/// </summary>
public static class SignatureExporter
{
    /// <summary>Exports the signatures of <paramref name="rulesDirectory"/> (plus the built-in ones when asked). Returns the number of signatures written.</summary>
    public static int Export(string rulesDirectory, bool includeBuiltIn, string? clamAvDirectory, string? yaraFile)
    {
        var database = SignatureDatabase.Load(rulesDirectory, includeBuiltIn);
        if (clamAvDirectory is not null)
        {
            WriteClamAv(database, clamAvDirectory);
        }

        if (yaraFile is not null)
        {
            File.WriteAllText(yaraFile, ToYara(database), new UTF8Encoding(false));
        }

        return database.Count;
    }

    /// <summary>
    /// Loads a rules folder as a scan would, compiles its YARA rules when libyara is present, and says what it holds.
    /// Throws <see cref="SignatureFormatException"/> when a file is malformed or the YARA rules do not compile.
    /// </summary>
    public static SignatureReport Check(string rulesDirectory)
    {
        var database = SignatureDatabase.Load(rulesDirectory, includeBuiltIn: false);
        string yara;
        if (database.YaraFiles.Count == 0)
        {
            yara = "no YARA rules";
        }
        else if (LibYara.Shared(out var error) is { } library)
        {
            using var rules = library.Compile(database.YaraFiles);
            yara = $"{database.YaraFiles.Count} YARA files compiled by libyara";
        }
        else
        {
            yara = $"{database.YaraFiles.Count} YARA files NOT usable: {error}";
        }

        return new SignatureReport(database.Hashes.Count, database.Bodies.Count, database.Logicals.Count, database.YaraFiles.Count,
            [.. database.Skipped.Select(s => $"{s.Origin}: {s.Reason}")], yara);
    }

    /// <summary>The identifier a signature name becomes in YARA (letters, digits and underscores).</summary>
    public static string YaraIdentifier(string name)
    {
        var builder = new StringBuilder(name.Length + 1);
        foreach (var c in name)
        {
            builder.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        }

        if (builder.Length == 0 || char.IsAsciiDigit(builder[0]))
        {
            builder.Insert(0, '_');
        }

        return builder.Length > 128 ? builder.ToString(0, 128) : builder.ToString();
    }

    internal static void WriteClamAv(SignatureDatabase database, string directory)
    {
        Directory.CreateDirectory(directory);
        var hdb = new StringBuilder();
        var hsb = new StringBuilder();
        foreach (var hash in database.Hashes)
        {
            var hex = Convert.ToHexStringLower(hash.Hash);
            if (hash.Algorithm == HashAlgorithmKind.Md5 && hash.Size is { } size)
            {
                hdb.Append(CultureInfo.InvariantCulture, $"{hex}:{size}:{hash.Name}\n");
            }
            else if (hash.Size is { } sized)
            {
                hsb.Append(CultureInfo.InvariantCulture, $"{hex}:{sized}:{hash.Name}\n");
            }
            else
            {
                // An unknown size needs functionality level 73 (ClamAV 0.98) or later.
                hsb.Append(CultureInfo.InvariantCulture, $"{hex}:*:{hash.Name}:73\n");
            }
        }

        var ndb = new StringBuilder();
        foreach (var body in database.Bodies)
        {
            ndb.Append(CultureInfo.InvariantCulture, $"{body.Name}:{body.Target}:{body.Offset}:{body.Pattern.Source}\n");
        }

        var ldb = new StringBuilder();
        foreach (var logical in database.Logicals)
        {
            ldb.Append(logical.Name).Append(";Target:").Append(logical.Target.ToString(CultureInfo.InvariantCulture));
            if (logical.MinSize is { } min)
            {
                ldb.Append(CultureInfo.InvariantCulture, $",FileSize:{min}-{logical.MaxSize}");
            }

            ldb.Append(';').Append(logical.ExpressionText);
            foreach (var sub in logical.SubSignatures)
            {
                ldb.Append(';');
                if (sub.Offset.Kind != SignatureOffsetKind.Any)
                {
                    ldb.Append(sub.Offset.ToString()).Append(':');
                }

                ldb.Append(sub.Pattern.Source);
                if (sub.Pattern.Modifiers.Length > 0)
                {
                    ldb.Append("::").Append(sub.Pattern.Modifiers);
                }
            }

            ldb.Append('\n');
        }

        Write(directory, "vigie.hdb", hdb);
        Write(directory, "vigie.hsb", hsb);
        Write(directory, "vigie.ndb", ndb);
        Write(directory, "vigie.ldb", ldb);
    }

    /// <summary>What the YARA file says in place of a rule it cannot write.</summary>
    public const string NotInYara = "not written: YARA has no form for negated alternatives of several bytes, nor for a test of the byte beside a match ((B), (L), (W) at an end, ::f)";

    internal static string ToYara(SignatureDatabase database)
    {
        var yara = new StringBuilder("import \"hash\"\nimport \"pe\"\nimport \"elf\"\n\n");
        var used = new HashSet<string>(StringComparer.Ordinal);
        string Unique(string name)
        {
            var identifier = YaraIdentifier(name);
            var candidate = identifier;
            for (var i = 2; !used.Add(candidate); i++)
            {
                candidate = $"{identifier}_{i}";
            }

            return candidate;
        }

        // Rules sharing a name (e.g. an MD5 and a SHA-256 of the same file) become one rule with an "or".
        foreach (var group in database.Hashes.GroupBy(h => h.Name, StringComparer.Ordinal))
        {
            var conditions = group.Select(h =>
            {
                var function = h.Algorithm switch
                {
                    HashAlgorithmKind.Md5 => "md5",
                    HashAlgorithmKind.Sha1 => "sha1",
                    HashAlgorithmKind.Sha256 => "sha256",
                    _ => "sha256",
                };
                var test = $"hash.{function}(0, filesize) == \"{Convert.ToHexStringLower(h.Hash)}\"";
                return h.Size is { } size ? $"(filesize == {size} and {test})" : $"({test})";
            });
            yara.Append(CultureInfo.InvariantCulture, $"rule {Unique(group.Key)}\n{{\n  meta:\n    clamav_name = \"{group.Key}\"\n  condition:\n    {string.Join(" or ", conditions)}\n}}\n\n");
        }

        foreach (var body in database.Bodies)
        {
            if (ToYaraHex(body.Pattern) is not { } hex)
            {
                yara.Append(CultureInfo.InvariantCulture, $"// {body.Name}: {NotInYara}\n\n");
                continue;
            }

            var condition = Placed("$a", body.Offset, body.Target);
            yara.Append(CultureInfo.InvariantCulture,
                $"rule {Unique(body.Name)}\n{{\n  meta:\n    clamav_name = \"{body.Name}\"\n  strings:\n    $a = {{ {hex} }}\n  condition:\n    {WithTarget(body.Target, condition)}\n}}\n\n");
        }

        foreach (var logical in database.Logicals)
        {
            var hexes = logical.SubSignatures.Select(sub => ToYaraHex(sub.Pattern)).ToList();
            if (hexes.Any(hex => hex is null))
            {
                yara.Append(CultureInfo.InvariantCulture, $"// {logical.Name}: {NotInYara}\n\n");
                continue;
            }

            yara.Append(CultureInfo.InvariantCulture, $"rule {Unique(logical.Name)}\n{{\n  meta:\n    clamav_name = \"{logical.Name}\"\n  strings:\n");
            for (var i = 0; i < logical.SubSignatures.Length; i++)
            {
                yara.Append(CultureInfo.InvariantCulture, $"    $s{i} = {{ {hexes[i]} }}\n");
            }

            var condition = logical.Expression.ToYara(i => Placed($"$s{i}", logical.SubSignatures[i].Offset, logical.Target));
            if (logical.MinSize is { } min)
            {
                condition = $"filesize >= {min} and filesize <= {logical.MaxSize} and {condition}";
            }

            yara.Append(CultureInfo.InvariantCulture, $"  condition:\n    {WithTarget(logical.Target, condition)}\n}}\n\n");
        }

        return yara.ToString();
    }

    private static string Placed(string variable, SignatureOffset offset, int target)
    {
        var entryPoint = target == 6 ? "elf.entry_point" : "pe.entry_point";
        var section = $"pe.sections[{offset.Section}]";
        var last = "pe.sections[pe.number_of_sections - 1]";
        var value = offset.Value.ToString(CultureInfo.InvariantCulture);
        var start = offset.Kind switch
        {
            SignatureOffsetKind.FromEnd => $"filesize - {value}",
            SignatureOffsetKind.EntryPoint => offset.Value < 0 ? $"{entryPoint} - {-offset.Value}" : $"{entryPoint} + {value}",
            SignatureOffsetKind.SectionStart => $"{section}.raw_data_offset + {value}",
            SignatureOffsetKind.LastSection => $"{last}.raw_data_offset + {value}",
            _ => value,
        };
        var placed = offset.Kind switch
        {
            SignatureOffsetKind.Any => variable,
            SignatureOffsetKind.SectionWhole => $"{variable} in ({section}.raw_data_offset..{section}.raw_data_offset + {section}.raw_data_size - 1)",
            _ when offset.Range == 0 => $"{variable} at {start}",
            _ => $"{variable} in ({start}..{start} + {offset.Range})",
        };

        // ClamAV never matches an end-relative offset longer than the file; YARA would clamp the range at 0. A section
        // offset needs the section.
        return offset.Kind switch
        {
            SignatureOffsetKind.FromEnd => $"(filesize >= {value} and {placed})",
            SignatureOffsetKind.SectionStart or SignatureOffsetKind.SectionWhole => $"(pe.number_of_sections > {offset.Section} and {placed})",
            _ => placed,
        };
    }

    private static string WithTarget(int target, string condition)
    {
        var magic = target switch
        {
            1 => "uint16(0) == 0x5A4D and uint32(0x3C) < filesize and uint32(uint32(0x3C)) == 0x00004550",
            2 => "uint32(0) == 0xE011CFD0 and uint32(4) == 0xE11AB1A1",
            5 => "(uint16be(0) == 0xFFD8 or uint32be(0) == 0x89504E47 or uint32be(0) == 0x47494638)",
            6 => "uint32be(0) == 0x7F454C46",
            9 => "(uint32(0) == 0xFEEDFACE or uint32(0) == 0xFEEDFACF or uint32(0) == 0xCEFAEDFE or uint32(0) == 0xCFFAEDFE)",
            10 => "uint32be(0) == 0x25504446",
            _ => null,
        };
        return magic is null ? condition : $"{magic} and ({condition})";
    }

    /// <summary>
    /// The pattern as a YARA hex string, or null when YARA cannot say it: any string of several bytes but a few
    /// (<c>!(aabb|ccdd)</c>), and a test of the byte beside the match, have no YARA form.
    /// </summary>
    internal static string? ToYaraHex(BodyPattern pattern)
    {
        // The byte beside a match is outside a YARA string; testing it would take a loop over every occurrence.
        if (pattern.LeftEdge != EdgeTest.None || pattern.RightEdge != EdgeTest.None)
        {
            return null;
        }

        var text = new StringBuilder();
        for (var s = 0; s < pattern.Segments.Length; s++)
        {
            if (s > 0)
            {
                var gap = pattern.Gaps[s - 1];
                // A part that follows the previous one directly (around a choice) needs no jump: YARA refuses [0].
                text.Append(gap switch
                {
                    { Min: 0, Max: 0 } => string.Empty,
                    { IsUnbounded: true, Min: 0 } => "[-] ",
                    { IsUnbounded: true } => $"[{gap.Min}-] ",
                    _ when gap.Min == gap.Max => $"[{gap.Min}] ",
                    _ => $"[{gap.Min}-{gap.Max}] ",
                });
            }

            if (YaraSegment(pattern.Segments[s]) is not { } part)
            {
                return null;
            }

            text.Append(part).Append(' ');
        }

        return text.ToString().TrimEnd();
    }

    /// <summary>One part of a pattern in YARA hex; a choice becomes YARA alternatives of different lengths.</summary>
    private static string? YaraSegment(PatternSegment segment)
    {
        if (segment.Options is { } options)
        {
            var runs = options.Select(YaraSegment).ToList();
            return runs.Any(r => r is null) ? null : $"( {string.Join(" | ", runs)} )";
        }

        var text = new StringBuilder();
        for (var i = 0; i < segment.Length; i++)
        {
            if (segment.Groups.FirstOrDefault(g => g.Position == i) is { } group)
            {
                if (group.Negated)
                {
                    return null;
                }

                text.Append("( ").AppendJoin(" | ", group.Alternatives.Select(a => YaraBytes(a.Values, a.Masks))).Append(" ) ");
                i += group.Length - 1;
            }
            else if (segment.Sets.FirstOrDefault(set => set.Position == i) is { } set)
            {
                text.Append(YaraSet(set)).Append(' ');
            }
            else if (segment.Masks[i] == 0xDF)
            {
                // A letter of a case-insensitive sub-signature.
                text.Append(CultureInfo.InvariantCulture, $"( {segment.Values[i]:X2} | {segment.Values[i] | 0x20:X2} ) ");
            }
            else
            {
                text.Append(YaraBytes([segment.Values[i]], [segment.Masks[i]])).Append(' ');
            }
        }

        return text.ToString().TrimEnd();
    }

    /// <summary>
    /// A set of bytes as YARA alternatives, a whole high nibble at a time where it can (<c>3?</c>): libyara refuses a
    /// list of two hundred single bytes as too complex.
    /// </summary>
    private static string YaraSet(PatternByteSet set)
    {
        if (set.Members().Count() == 256)
        {
            return "??";
        }

        var parts = new List<string>();
        for (var high = 0; high < 16; high++)
        {
            var row = Enumerable.Range(high << 4, 16).Select(v => (byte)v).Where(set.Contains).ToList();
            if (row.Count == 16)
            {
                parts.Add($"{high:X}?");
            }
            else
            {
                parts.AddRange(row.Select(v => v.ToString("X2", CultureInfo.InvariantCulture)));
            }
        }

        return parts.Count == 1 ? parts[0] : $"( {string.Join(" | ", parts)} )";
    }

    private static string YaraBytes(byte[] values, byte[] masks) => string.Join(' ', values.Select((value, i) =>
    {
        var high = (masks[i] & 0xF0) != 0 ? ((value >> 4) & 0xF).ToString("X", CultureInfo.InvariantCulture) : "?";
        var low = (masks[i] & 0x0F) != 0 ? (value & 0xF).ToString("X", CultureInfo.InvariantCulture) : "?";
        return high + low;
    }));

    private static void Write(string directory, string name, StringBuilder content)
    {
        var path = Path.Combine(directory, name);
        if (content.Length > 0)
        {
            File.WriteAllText(path, content.ToString(), new UTF8Encoding(false));
        }
        else if (File.Exists(path))
        {
            File.Delete(path);
        }
    }
}
