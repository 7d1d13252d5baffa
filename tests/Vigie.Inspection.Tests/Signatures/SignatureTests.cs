using Microsoft.Extensions.DependencyInjection;
using Vigie.Inspection.Executables;
using Vigie.Inspection.Signatures;
using Vigie.Testing;

namespace Vigie.Inspection.Tests.Signatures;

public sealed class SignatureTests
{
    private static readonly string[] SignatureRules = ["signature.hash", "signature.pattern", "signature.yara", "signature.clamd"];

    private static Inspector WithRules(string folder, bool builtIn = false) =>
        TestInspection.Create(extra: s => s.Configure<SignatureOptions>(o =>
        {
            o.RulesDirectory = folder;
            o.BuiltIn = builtIn;
        }));

    /// <summary>The signature names a verdict reports, in YARA identifier form so the three engines compare.</summary>
    private static SortedSet<string> Detected(Verdict verdict) =>
        new(verdict.Findings.Where(f => SignatureRules.Contains(f.Rule)).Select(f => SignatureExporter.YaraIdentifier(f.Message.Split('\'')[1])), StringComparer.Ordinal);

    [Fact]
    public async Task The_built_in_EICAR_test_signature_needs_no_rules_folder()
    {
        var verdict = await TestInspection.InspectAsync(SignatureSamples.Eicar(), "eicar.com");
        Assert.Equal(VerdictKind.Malicious, verdict.Kind);
        Assert.Contains("Vigie.Test.EICAR", verdict.Has("signature.hash").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_signature_form_matches_its_sample_and_nothing_else()
    {
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var expected = SignatureSamples.WriteFiles(temp.Combine("files"));
        var inspector = WithRules(temp.Combine("rules"));
        foreach (var (name, signatures) in expected)
        {
            var verdict = await inspector.InspectFileAsync(temp.Combine("files", name), TestContext.Current.CancellationToken);
            Assert.True(signatures.Select(SignatureExporter.YaraIdentifier).Order(StringComparer.Ordinal).SequenceEqual(Detected(verdict)),
                $"{name}: expected [{string.Join(", ", signatures)}]\n{verdict.Describe()}");
        }
    }

    [Fact]
    public async Task A_SHA256_list_hashes_the_top_level_object_once_and_the_verdict_carries_the_digest()
    {
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var bytes = "an innocent object\n"u8.ToArray();
        var verdict = await WithRules(temp.Combine("rules")).InspectAsync(bytes);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), verdict.Sha256);
        Assert.Null((await TestInspection.InspectAsync(bytes)).Sha256);
    }

    [Fact]
    public async Task A_SHA256_the_producer_already_computed_is_used_instead_of_hashing_again()
    {
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var listed = System.Security.Cryptography.SHA256.HashData("a harmless file known by its SHA-256\n"u8);
        var bytes = "an object whose digest the archive spool computed\n"u8.ToArray();
        // A digest that is not these bytes' own shows which one the hash list was checked against.
        using var content = ContentSource.FromMemory(bytes).WithKnownSha256(listed);
        var verdict = await WithRules(temp.Combine("rules")).InspectAsync(content, null, TestContext.Current.CancellationToken);
        Assert.Contains("Vigie.Test.HashSha256", verdict.Has("signature.hash").Message, StringComparison.Ordinal);
        Assert.Equal(Convert.ToHexStringLower(listed), verdict.Sha256);
        // Slices (the entries of a container) are hashed themselves.
        Assert.Null(content.Slice(0, 4).KnownSha256);
    }

    /// <summary>
    /// Regression: a fixed-offset signature counted back from the end ("EOF-10,5") was tried from offset 0 when the
    /// content was shorter than the offset, while clamscan (and Vigie's own floating path) never matches there.
    /// </summary>
    [Fact]
    public async Task An_end_relative_offset_longer_than_the_content_never_matches_as_in_clamscan_and_yara()
    {
        var clamscan = Peers.Require("clamscan", "clamav");
        var yara = Peers.Require("yara", "yara");
        var ct = TestContext.Current.CancellationToken;
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp.Combine("rules"));
        Directory.CreateDirectory(temp.Combine("files"));
        File.WriteAllText(temp.Combine("rules", "eof.ndb"), "Vigie.Test.EofRange:0:EOF-10,5:414243\n");
        File.WriteAllText(temp.Combine("files", "short-at-0"), "ABCxxxx");
        File.WriteAllText(temp.Combine("files", "short-at-3"), "xxxABCx");
        File.WriteAllText(temp.Combine("files", "long-in-range"), "xxxxxxxxxxxxABCxxxxxx");
        var inspector = WithRules(temp.Combine("rules"));
        var clam = await Peers.RunAsync(clamscan, ["--no-summary", "--database=" + temp.Combine("rules"), temp.Combine("files")], TimeSpan.FromMinutes(1), cancellationToken: ct);
        SignatureExporter.Export(temp.Combine("rules"), includeBuiltIn: false, null, temp.Combine("eof.yar"));
        var yaraRun = await Peers.RunAsync(yara, ["-w", temp.Combine("eof.yar"), temp.Combine("files")], TimeSpan.FromMinutes(1), cancellationToken: ct);
        foreach (var name in new[] { "short-at-0", "short-at-3", "long-in-range" })
        {
            var ours = Detected(await inspector.InspectFileAsync(temp.Combine("files", name), ct)).Count == 1;
            var theirs = clam.StandardOutput.Contains($"{name}: Vigie.Test.EofRange", StringComparison.Ordinal);
            Assert.True(ours == theirs, $"{name}: Vigie {ours}, clamscan {theirs}\n{clam}");
            Assert.True(ours == yaraRun.StandardOutput.Contains("/" + name, StringComparison.Ordinal), $"{name}: Vigie {ours}\n{yaraRun}");
            Assert.Equal(name == "long-in-range", ours);
        }
    }

    [Fact]
    public async Task Signatures_match_inside_containers_with_the_inner_path()
    {
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var verdict = await WithRules(temp.Combine("rules")).InspectAsync(SignatureSamples.ZippedAlpha());
        var finding = verdict.Has("signature.pattern", "inner/alpha.txt");
        Assert.Contains("Vigie.Test.Alpha", finding.Message, StringComparison.Ordinal);
        Assert.Equal(7, finding.Offset);
    }

    [Fact]
    public async Task Same_detections_as_clamscan_and_yara_with_the_exported_signatures()
    {
        var clamscan = Peers.Require("clamscan", "clamav");
        var yara = Peers.Require("yara", "yara");
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var expected = SignatureSamples.WriteFiles(temp.Combine("files"));
        Directory.CreateDirectory(temp.Combine("zipped"));
        File.WriteAllBytes(temp.Combine("zipped", "alpha.zip"), SignatureSamples.ZippedAlpha());
        var count = SignatureExporter.Export(temp.Combine("rules"), includeBuiltIn: false, temp.Combine("clamav"), temp.Combine("vigie.yar"));
        Assert.Equal(39, count);
        // YARA has no form for "any two bytes but these" nor for a test of the byte beside a match: those rules are left
        // out of the YARA file, which says so.
        string[] notInYara = ["Vigie_Test_NotPair", "Vigie_Test_EdgeB", "Vigie_Test_EdgeL", "Vigie_Test_FullWord", "Vigie_Test_NotAfterWord"];
        Assert.Contains($"// Vigie.Test.NotPair: {SignatureExporter.NotInYara}", await File.ReadAllTextAsync(temp.Combine("vigie.yar"), TestContext.Current.CancellationToken),
            StringComparison.Ordinal);

        var vigie = new Dictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        var inspector = WithRules(temp.Combine("rules"));
        foreach (var file in Directory.EnumerateFiles(temp.Path, "*", SearchOption.AllDirectories).Where(f => f.Contains("/files/", StringComparison.Ordinal) || f.Contains("/zipped/", StringComparison.Ordinal)))
        {
            vigie[Path.GetFileName(file)] = Detected(await inspector.InspectFileAsync(file, TestContext.Current.CancellationToken));
        }

        // clamscan looks inside the ZIP as Vigie does; --allmatch reports every signature, not just the first.
        var clam = await Peers.RunAsync(clamscan, ["--no-summary", "--allmatch", "--database=" + temp.Combine("clamav"), temp.Combine("files"), temp.Combine("zipped")],
            TimeSpan.FromMinutes(2), cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(clam.ExitCode is 0 or 1, $"clamscan failed ({clam.ExitCode}): {clam.StandardError}");
        var clamDetections = Parse(clam.StandardOutput, line =>
        {
            // "path: Name.UNOFFICIAL FOUND"
            if (!line.EndsWith(" FOUND", StringComparison.Ordinal))
            {
                return null;
            }

            var colon = line.LastIndexOf(": ", StringComparison.Ordinal);
            var name = line[(colon + 2)..^" FOUND".Length].Replace(".UNOFFICIAL", "", StringComparison.Ordinal);
            return (Path.GetFileName(line[..colon]), SignatureExporter.YaraIdentifier(name));
        });

        // yara does not unpack containers: it is compared on the plain files only.
        var yaraRun = await Peers.RunAsync(yara, ["-w", temp.Combine("vigie.yar"), temp.Combine("files")], TimeSpan.FromMinutes(2),
            cancellationToken: TestContext.Current.CancellationToken);
        Assert.True(yaraRun.ExitCode == 0, $"yara failed ({yaraRun.ExitCode}): {yaraRun.StandardError}");
        var yaraDetections = Parse(yaraRun.StandardOutput, line =>
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            return space < 0 ? null : (Path.GetFileName(line[(space + 1)..]), line[..space]);
        });

        foreach (var name in expected.Keys.Append("alpha.zip"))
        {
            var ours = string.Join(", ", vigie[name]);
            Assert.True(ours == string.Join(", ", clamDetections.GetValueOrDefault(name) ?? []), $"{name}: Vigie [{ours}], clamscan [{string.Join(", ", clamDetections.GetValueOrDefault(name) ?? [])}]");
            if (name != "alpha.zip")
            {
                var oursInYara = string.Join(", ", vigie[name].Except(notInYara));
                Assert.True(oursInYara == string.Join(", ", yaraDetections.GetValueOrDefault(name) ?? []),
                    $"{name}: Vigie [{oursInYara}], yara [{string.Join(", ", yaraDetections.GetValueOrDefault(name) ?? [])}]");
                Assert.Equal(expected[name].Select(SignatureExporter.YaraIdentifier).Order(StringComparer.Ordinal), vigie[name]);
            }
        }

        Assert.Equal(["Vigie_Test_Alpha"], vigie["alpha.zip"]);

        // The same rules run as YARA inside Vigie, through libyara, give the same answers again.
        Directory.CreateDirectory(temp.Combine("yara-only"));
        File.Copy(temp.Combine("vigie.yar"), temp.Combine("yara-only", "vigie.yar"));
        var viaYara = WithRules(temp.Combine("yara-only"));
        foreach (var name in expected.Keys)
        {
            var verdict = await viaYara.InspectFileAsync(temp.Combine("files", name), TestContext.Current.CancellationToken);
            Assert.True(string.Join(", ", vigie[name].Except(notInYara)) == string.Join(", ", Detected(verdict)), $"{name}: libyara in Vigie disagrees\n{verdict.Describe()}");
        }
    }

    [Fact]
    public async Task Clean_references_give_no_signature_finding()
    {
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var inspector = WithRules(temp.Combine("rules"), builtIn: true);
        foreach (var file in Peers.CtCorpusFiles().Take(40))
        {
            var verdict = await inspector.InspectFileAsync(file, TestContext.Current.CancellationToken);
            verdict.IsClean();
        }
    }

    /// <summary>
    /// Regression: a rules folder that was empty, or held only files of other kinds (a rule named .yr, a hash list named
    /// .txt), loaded as "0 signatures", so `scan --rules` and `rescan --rules` said clean and `signatures check` usable.
    /// </summary>
    [Fact]
    public void Regression_a_rules_folder_without_a_usable_signature_was_taken_as_usable()
    {
        using var temp = new TempDirectory();
        Assert.Contains("yields no signature", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, includeBuiltIn: true)).Message,
            StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("rule.yr"), "rule X { condition: true }\n");
        File.WriteAllText(temp.Combine("hashes.ndb.txt"), "X:0:*:41424344\n");
        var error = Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, includeBuiltIn: false));
        Assert.Contains("2 other files, e.g. hashes.ndb.txt", error.Message, StringComparison.Ordinal);

        File.WriteAllText(temp.Combine("known.ndb"), "Known:0:*:41424344\n");
        var database = SignatureDatabase.Load(temp.Path, includeBuiltIn: false);
        Assert.Single(database.Bodies);
        Assert.Equal(["hashes.ndb.txt", "rule.yr"], database.Skipped.Select(s => s.Origin));
    }

    /// <summary>
    /// Regression (second review): an empty or commented-out .yar counted as a usable rules folder, and a hidden rules
    /// file (".h.hdb") was neither loaded nor listed.
    /// </summary>
    [Fact]
    public void Regression_an_empty_yara_file_counted_as_rules_and_hidden_files_were_passed_over()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.Combine("e.yar"), "");
        File.WriteAllText(temp.Combine("c.yar"), "// rule Off { condition: true }\n/* rule Off2 { condition: true } */\nimport \"pe\"\n");
        Assert.Contains("yields no signature", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, includeBuiltIn: false)).Message,
            StringComparison.Ordinal);
        File.WriteAllText(temp.Combine(".h.hdb"), "44d88612fea8a8f36de82e1278abb02f:68:Hidden.Test\n");
        var database = SignatureDatabase.Load(temp.Path, includeBuiltIn: false);
        Assert.Single(database.Hashes);
        Assert.Empty(database.YaraFiles);
        Assert.Contains(database.Skipped, s => s.Origin == "c.yar" && s.Reason == "no YARA rule in it");
        Assert.True(SignatureDatabase.HasYaraRule("private rule X { condition: true }"));
    }

    [Fact]
    public void A_malformed_line_names_its_file_and_line()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.Combine("bad.ndb"), "Good:0:*:41424344\nBad:0:*:4142zz\n");
        var error = Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, includeBuiltIn: false));
        Assert.Contains("bad.ndb:2", error.Message, StringComparison.Ordinal);
        Assert.Contains("not a hex digit", error.Message, StringComparison.Ordinal);

        File.WriteAllText(temp.Combine("bad.ndb"), "Short:0:*\n");
        Assert.Contains("bad.ndb:1", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("bad.ndb"), "Gap:0:*:4142{9-3}4344\n");
        Assert.Contains("reversed", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("bad.ndb"), "NegatedLengths:0:*:4142!(43|4445)46\n");
        Assert.Contains("same length", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("bad.ndb"), "Open:0:*:4142(43|44\n");
        Assert.Contains("not closed", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("bad.ndb"), "Range:0:*:41[2-40]4243\n");
        Assert.Contains("at most 32", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("bad.ndb"), "");
        File.WriteAllText(temp.Combine("bad.ldb"), "M;Target:0;0;41424344::q\n");
        Assert.Contains("unknown sub-signature modifier", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("bad.ldb"), "L;Target:0;0&7;41424344\n");
        Assert.Contains("sub-signature 7 does not exist", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
        File.WriteAllText(temp.Combine("bad.ldb"), "");
        File.WriteAllText(temp.Combine("bad.hdb"), "0123:12:Name\n");
        Assert.Contains("neither MD5", Assert.Throws<SignatureFormatException>(() => SignatureDatabase.Load(temp.Path, false)).Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A case-insensitive anchor that holds a byte above 0x7F (the rarest bytes make the best anchors) must still match:
    /// the runtime's ASCII comparison calls any such byte unequal. And an anchor after a bounded gap tries each start
    /// the gap allows, no more.
    /// </summary>
    [Fact]
    public async Task Case_insensitive_anchors_with_high_bytes_and_anchors_after_a_bounded_gap_match()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.Combine("edge.ldb"), "Vigie.Test.HighNoCase;Target:0;0;e9616263::i\n");
        File.WriteAllText(temp.Combine("edge.ndb"), "Vigie.Test.Slack:0:*:21{2-4}e9e8e7\n");
        var inspector = WithRules(temp.Path);
        async Task<SortedSet<string>> Scan(byte[] bytes) => Detected(await inspector.InspectAsync(bytes));

        Assert.Equal(["Vigie_Test_HighNoCase"], await Scan([0x20, 0xE9, (byte)'A', (byte)'b', (byte)'C', 0x20]));
        Assert.Empty(await Scan([0x20, 0xC9, (byte)'A', (byte)'b', (byte)'C', 0x20]));
        Assert.Equal(["Vigie_Test_Slack"], await Scan([0x20, 0x21, 1, 2, 0xE9, 0xE8, 0xE7]));
        Assert.Equal(["Vigie_Test_Slack"], await Scan([0x21, 1, 2, 3, 4, 0xE9, 0xE8, 0xE7]));
        Assert.Empty(await Scan([0x21, 1, 2, 3, 4, 5, 0xE9, 0xE8, 0xE7]));
        Assert.Empty(await Scan([0x21, 1, 0xE9, 0xE8, 0xE7]));
    }

    /// <summary>
    /// Rules folders come from outside (a vendor feed, a colleague): whatever the pattern text, loading it either works
    /// or says why, and scanning with what loaded ends. Random patterns from the syntax's own characters.
    /// </summary>
    [Fact]
    public async Task Any_pattern_text_loads_or_is_refused_with_a_reason_and_never_breaks_a_scan()
    {
        // Mostly pieces of the syntax, valid or not in that order, and now and then a stray character.
        string[] pieces =
        [
            "01", "23", "ab", "ef", "00", "ff", "45", "67", "??", "a?", "?b", "{2}", "{1-3}", "{-2}", "{2-}", "*", "[1-3]", "[0-40]",
            "(ab|cd)", "!(ab|cd)", "(abcd|ef01)", "!(abcd|ef)", "(ab|cdef)", "(a?|01)", "(W)", "(B)", "(", ")", "|", "!", "{", "}", "[", "-", "::i",
            "::wa", "::f", "x", "0",
        ];
        var random = new Random(20261204);
        var loaded = new List<string>();
        for (var n = 0; n < 20_000; n++)
        {
            var text = string.Concat(Enumerable.Range(0, random.Next(1, 12)).Select(_ => pieces[random.Next(pieces.Length)]));
            var separator = text.IndexOf("::", StringComparison.Ordinal);
            try
            {
                var pattern = separator < 0 ? BodyPattern.Parse(text) : BodyPattern.Parse(text[..separator], text[(separator + 2)..]);
                _ = SignatureExporter.ToYaraHex(pattern);
                if (separator < 0 && text.IndexOf(':', StringComparison.Ordinal) < 0)
                {
                    loaded.Add(text);
                }
            }
            catch (Exception e) when (e is SignatureFormatException or UnsupportedSignatureException)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
            }
        }

        Assert.True(loaded.Count > 500, $"only {loaded.Count} of the random patterns loaded: the generator no longer exercises the matcher");

        // Every pattern that loaded, at once, over content made of the bytes they name: the scan ends, with findings or not.
        using var temp = new TempDirectory();
        File.WriteAllText(temp.Combine("random.ndb"), string.Concat(loaded.Select((text, i) => $"Random.{i}:0:*:{text}\n")));
        var report = SignatureExporter.Check(temp.Path);
        Assert.True(report.Bodies > 0, string.Join("\n", report.Skipped.Take(5)));
        var content = new byte[64 * 1024];
        for (var i = 0; i < content.Length; i++)
        {
            content[i] = (byte)"\x01\x23\x45\x67\x89\xab\xcd\xef\xaa\xbb\x00\xff"[random.Next(12)];
        }

        var verdict = await WithRules(temp.Path).InspectAsync(content);
        Assert.DoesNotContain(verdict.Findings, f => f.Rule.StartsWith("inspection.", StringComparison.Ordinal) && f.Rule != "inspection.unknown-type");
    }

    /// <summary>
    /// Executable headers come from the sender: a reader that trusted a count, an offset or a size would read past the
    /// file or throw. Every mutation of a well-formed PE or ELF header reads to a layout inside the file, or to none.
    /// </summary>
    [Fact]
    public void PE_and_ELF_headers_bent_every_way_give_a_layout_inside_the_file_or_none()
    {
        var random = new Random(1204);
        var samples = new (byte[] Good, Func<ContentSource, ExecutableLayout?> Read, long EntryPoint)[]
        {
            (SignatureSamples.Pe32(shift: 0), ExecutableLayout.TryReadPe, 0x210),
            (SignatureSamples.Elf64(entryMarkerAt: 0x100), ExecutableLayout.TryReadElf, 0x100),
        };
        foreach (var (good, read, entryPoint) in samples)
        {
            using (var intact = ContentSource.FromMemory(good))
            {
                Assert.Equal(entryPoint, read(intact)?.EntryPoint);
            }

            for (var n = 0; n < 10_000; n++)
            {
                var bent = good.AsSpan(0, random.Next(2, good.Length + 1)).ToArray();
                for (var k = random.Next(1, 6); k > 0; k--)
                {
                    var at = random.Next(Math.Min(bent.Length, 0x200));
                    bent[at] = random.Next(3) switch { 0 => 0xFF, 1 => 0x00, _ => (byte)random.Next(256) };
                }

                using var content = ContentSource.FromMemory(bent);
                if (read(content) is { } layout)
                {
                    Assert.InRange(layout.EntryPoint, -1, bent.Length - 1);
                    Assert.InRange(layout.Sections.Count, 0, ExecutableLayout.MaxSections);
                    Assert.All(layout.Sections, s => Assert.True(s.RawSize == 0 || s.RawOffset + s.RawSize <= bent.Length));
                }
            }
        }

        using var pe = ContentSource.FromMemory(SignatureSamples.Pe32(shift: 0));
        Assert.Equal([0x200L, 0x400L], ExecutableLayout.TryReadPe(pe)!.Sections.Select(s => s.RawOffset));
    }

    [Fact]
    public void Valid_but_unsupported_signatures_are_skipped_and_listed()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.Combine("mixed.ndb"), "MachEntry:9:EP+0:4142434445\nNotBoundary:0:*:4142!(B)4344\nHtml:3:*:41424344\nFine:0:*:41424344\n");
        var report = SignatureExporter.Check(temp.Path);
        Assert.Equal(1, report.Bodies);
        Assert.Equal(3, report.Skipped.Count);
        Assert.Contains(report.Skipped, s => s.StartsWith("mixed.ndb:1", StringComparison.Ordinal) && s.Contains("PE or ELF headers only", StringComparison.Ordinal));
    }

    [Fact]
    public void Broken_YARA_rules_stop_loading_with_the_compiler_message()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.Combine("bad.yar"), "rule broken { strings: $a = \"x\" condition: $b }\n");
        var error = Assert.Throws<SignatureFormatException>(() => SignatureExporter.Check(temp.Path));
        Assert.Contains("bad.yar", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_pathological_pattern_stops_at_its_budget_instead_of_stalling()
    {
        using var temp = new TempDirectory();
        // Every "AB" starts a candidate whose unbounded gap then searches to the end for a "CD" that is not there.
        File.WriteAllText(temp.Combine("slow.ndb"), "Slow:0:*:4142*43440000\n");
        var inspector = WithRules(temp.Path);
        var content = new byte[4 * 1024 * 1024];
        for (var i = 0; i < content.Length - 1; i += 2)
        {
            content[i] = 0x41;
            content[i + 1] = 0x42;
        }

        var verdict = await inspector.InspectAsync(content);
        verdict.HasNo("signature.pattern");
        Assert.Equal(Severity.Info, verdict.Has("signature.budget").Severity);
        Assert.Equal(VerdictKind.Clean, verdict.Kind);
    }

    [Fact]
    public async Task Signature_scans_of_many_files_in_parallel_agree_with_single_scans()
    {
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var expected = SignatureSamples.WriteFiles(temp.Combine("files"));
        var inspector = WithRules(temp.Combine("rules"));
        var paths = Enumerable.Range(0, 8).SelectMany(_ => expected.Keys.Select(k => temp.Combine("files", k))).ToList();
        var results = new List<FileVerdict>();
        await foreach (var result in inspector.InspectFilesAsync(paths, TestContext.Current.CancellationToken))
        {
            results.Add(result);
        }

        Assert.Equal(paths.Count, results.Count);
        foreach (var result in results)
        {
            Assert.Equal(expected[Path.GetFileName(result.Path)].Select(SignatureExporter.YaraIdentifier).Order(StringComparer.Ordinal), Detected(result.Verdict));
        }
    }

    [Fact]
    public async Task Clamd_over_its_unix_socket_reports_its_detection_and_an_unreachable_clamd_is_an_error()
    {
        var clamd = Peers.Require("clamd", "clamav-daemon");
        var ct = TestContext.Current.CancellationToken;
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        var expected = SignatureSamples.WriteFiles(temp.Combine("files"));
        SignatureExporter.Export(temp.Combine("rules"), includeBuiltIn: false, temp.Combine("db"), null);
        var socket = temp.Combine("clamd.sock");
        File.WriteAllText(temp.Combine("clamd.conf"), string.Join("\n",
            "Foreground yes", $"LocalSocket {socket}", $"DatabaseDirectory {temp.Combine("db")}", $"TemporaryDirectory {temp.Path}",
            $"PidFile {temp.Combine("clamd.pid")}", "") );
        using var daemon = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(clamd, ["-c", temp.Combine("clamd.conf")])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        try
        {
            await WaitForUnixSocketAsync(daemon, socket, ct);

            var inspector = TestInspection.Create(extra: s => s.Configure<SignatureOptions>(o =>
            {
                o.BuiltIn = false;
                o.Clamd = "unix:" + socket;
            }));
            foreach (var (name, signatures) in expected)
            {
                // INSTREAM stops at clamd's first detection: one of the expected names, or none for a clean file.
                var verdict = await inspector.InspectFileAsync(temp.Combine("files", name), ct);
                var detected = Detected(verdict);
                Assert.True(signatures.Length == 0 ? detected.Count == 0 : detected.Count == 1 && signatures.Select(SignatureExporter.YaraIdentifier).Contains(detected.Single()),
                    $"{name}: expected one of [{string.Join(", ", signatures)}] from clamd\n{verdict.Describe()}");
            }

            var zipped = await inspector.InspectAsync(SignatureSamples.ZippedAlpha());
            Assert.Contains("Vigie.Test.Alpha", zipped.Has("signature.clamd", "").Message, StringComparison.Ordinal);
        }
        finally
        {
            daemon.Kill(entireProcessTree: true);
            await daemon.WaitForExitAsync(ct);
        }

        var down = TestInspection.Create(extra: s => s.Configure<SignatureOptions>(o => o.Clamd = "unix:" + temp.Combine("nobody-listens.sock")));
        var error = await down.InspectAsync("plain text"u8.ToArray());
        Assert.Equal(VerdictKind.Error, error.Kind);
        Assert.Contains("clamd", error.Has("inspection.analyser-error").Message, StringComparison.Ordinal);
    }

    private static async Task WaitForUnixSocketAsync(System.Diagnostics.Process daemon, string path, CancellationToken ct)
    {
        for (var i = 0; i < 600; i++)
        {
            if (daemon.HasExited)
            {
                Assert.Fail("clamd exited: " + await daemon.StandardError.ReadToEndAsync(ct));
            }

            using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            try
            {
                await probe.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(path), ct);
                return;
            }
            catch (System.Net.Sockets.SocketException)
            {
                await Task.Delay(100, ct);
            }
        }

        Assert.Fail($"clamd did not listen on {path} within 60 s");
    }

    /// <summary>libyara refuses a 33rd concurrent scanner; a busy gateway has more threads than that.</summary>
    [Fact]
    public async Task YARA_scans_from_more_threads_than_libyara_allows_all_succeed()
    {
        Peers.Require("yara", "yara");
        using var temp = new TempDirectory();
        SignatureSamples.WriteRules(temp.Combine("rules"));
        Directory.CreateDirectory(temp.Combine("yara-only"));
        SignatureExporter.Export(temp.Combine("rules"), includeBuiltIn: false, null, temp.Combine("yara-only", "vigie.yar"));
        var inspector = WithRules(temp.Combine("yara-only"));
        var sample = "xx VIGIE-INERT-MARKER-ALPHA xx"u8.ToArray();
        var detected = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, 400), new ParallelOptions { MaxDegreeOfParallelism = 64, CancellationToken = TestContext.Current.CancellationToken },
            async (_, token) =>
            {
                using var source = ContentSource.FromMemory(sample);
                var verdict = await inspector.InspectAsync(source, null, token);
                Assert.True(verdict.Kind == VerdictKind.Malicious, verdict.Describe());
                Interlocked.Increment(ref detected);
            });
        Assert.Equal(400, detected);
    }

    private static Dictionary<string, SortedSet<string>> Parse(string output, Func<string, (string File, string Name)?> parse)
    {
        var result = new Dictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (parse(line) is { } hit)
            {
                if (!result.TryGetValue(hit.File, out var set))
                {
                    result[hit.File] = set = new SortedSet<string>(StringComparer.Ordinal);
                }

                set.Add(hit.Name);
            }
        }

        return result;
    }
}
