using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json.Nodes;
using Vigie.Testing;

namespace Vigie.Cli.Tests.Interop;

/// <summary>
/// `vigie dump --json` against real peers, over every sample file Debian's python3-pydicom ships: where pydicom reads a
/// file, the same tags and the same non-binary values; where pydicom or dcmdump rejects a file as truncated or
/// malformed, exit 2 with a reason. Deliberate differences are listed in docs/dicom-interop.md.
/// </summary>
public sealed class PydicomInteropTests
{
    private const string Python = "/usr/bin/python3";

    private static string Script => Path.Combine(AppContext.BaseDirectory, "Interop", "pydicom_json.py");

    [Fact]
    public async Task Every_pydicom_sample_dumps_like_pydicom_or_is_rejected_like_dcmdump()
    {
        var ct = TestContext.Current.CancellationToken;
        var dcmdump = Peers.Require("dcmdump", "dcmtk");
        Peers.Require(Python, "python3");
        var list = await Peers.RunAsync(Python, [Script, "--list"], TimeSpan.FromMinutes(1), cancellationToken: ct);
        if (list.ExitCode != 0)
        {
            Peers.Require("/usr/lib/python3/dist-packages/pydicom/__init__.py", "python3-pydicom");
            Assert.Fail(list.ToString());
        }

        var dataDir = list.StandardOutput.Split('\n')[0].Trim();
        var files = new[] { "test_files", "charset_files", "palettes" }
            .Select(d => Path.Combine(dataDir, d))
            .Where(Directory.Exists)
            .SelectMany(d => Directory.EnumerateFiles(d, "*", SearchOption.AllDirectories))
            .Where(f => !f.Contains("__pycache__", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.True(files.Count > 60, $"only {files.Count} sample files under {dataDir}");

        var reference = await Peers.RunAsync(Python, [Script, .. files], TimeSpan.FromMinutes(5), cancellationToken: ct);
        Assert.Equal(0, reference.ExitCode);
        var pydicom = reference.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonNode.Parse(line)!.AsObject())
            .ToDictionary(o => (string)o["path"]!, o => o);

        var problems = new ConcurrentBag<string>();
        var compared = 0;
        var rejected = 0;
        await Parallel.ForEachAsync(files, new ParallelOptions { MaxDegreeOfParallelism = 2, CancellationToken = ct }, async (file, token) =>
        {
            var name = Path.GetRelativePath(dataDir, file);
            var dump = await Peers.RunAsync(dcmdump, ["-q", file], TimeSpan.FromMinutes(1), cancellationToken: token);
            var ours = await VigieProcess.RunAsync(["dump", "--json", file], cancellationToken: token);
            var py = pydicom[file];
            var pyOk = (bool)py["ok"]!;
            var pyError = pyOk ? null : (string)py["error"]!;
            // pydicom reading the file but failing to convert a malformed value to JSON is not a rejection of the file.
            var pyRejects = !pyOk && !pyError!.StartsWith("ValueError", StringComparison.Ordinal);
            if (dump.ExitCode != 0 || pyRejects)
            {
                Interlocked.Increment(ref rejected);
                if (ours.ExitCode != 2 || ours.StandardError.Trim().Length == 0 || ours.StandardError.Contains("Unhandled", StringComparison.Ordinal))
                {
                    problems.Add($"{name}: rejected by {(dump.ExitCode != 0 ? "dcmdump" : "pydicom")}, but vigie gave exit {ours.ExitCode}: {ours.StandardError.Trim()}");
                }

                return;
            }

            if (ours.ExitCode != 0)
            {
                problems.Add($"{name}: read by dcmdump and pydicom, but vigie gave exit {ours.ExitCode}: {ours.StandardError.Trim()}");
                return;
            }

            if (!pyOk)
            {
                // Documented: pydicom cannot convert a malformed IS/DS value; vigie keeps it as a string.
                return;
            }

            Interlocked.Increment(ref compared);
            var mine = JsonNode.Parse(ours.StandardOutput)!.AsObject();
            var theirs = py["json"]!.AsObject();
            var differences = new List<string>();
            CompareDatasets(theirs, mine, "", differences);
            foreach (var difference in differences.Take(20))
            {
                problems.Add($"{name}: {difference}");
            }
        });

        Assert.True(problems.IsEmpty, $"{problems.Count} differences ({compared} files compared, {rejected} rejected):\n" + string.Join('\n', problems.Order(StringComparer.Ordinal)));
        Assert.True(compared > 50, $"only {compared} files were compared");
    }

    private static void CompareDatasets(JsonObject theirs, JsonObject mine, string path, List<string> differences)
    {
        foreach (var key in theirs.Select(p => p.Key).Union(mine.Select(p => p.Key)).Order(StringComparer.Ordinal))
        {
            var at = path.Length == 0 ? key : $"{path}.{key}";
            if (!theirs.ContainsKey(key))
            {
                differences.Add($"{at}: only vigie has it");
                continue;
            }

            if (!mine.ContainsKey(key))
            {
                differences.Add($"{at}: only pydicom has it");
                continue;
            }

            CompareElements(theirs[key]!.AsObject(), mine[key]!.AsObject(), at, differences);
        }
    }

    private static void CompareElements(JsonObject theirs, JsonObject mine, string path, List<string> differences)
    {
        var theirVR = (string)theirs["vr"]!;
        var myVR = (string)mine["vr"]!;
        var binary = theirs.ContainsKey("InlineBinary") || theirs.ContainsKey("BulkDataURI") || mine.ContainsKey("InlineBinary") || mine.ContainsKey("BulkDataURI");
        if (theirVR != myVR && !EquivalentVR(theirVR, myVR))
        {
            differences.Add($"{path}: VR {theirVR} (pydicom) vs {myVR} (vigie)");
        }

        if (binary)
        {
            return;
        }

        var theirValues = theirs["Value"] as JsonArray ?? [];
        var myValues = mine["Value"] as JsonArray ?? [];
        if (theirVR == "SQ" || myVR == "SQ")
        {
            if (theirValues.Count != myValues.Count)
            {
                differences.Add($"{path}: {theirValues.Count} items (pydicom) vs {myValues.Count} (vigie)");
                return;
            }

            for (var i = 0; i < theirValues.Count; i++)
            {
                CompareDatasets(theirValues[i]!.AsObject(), myValues[i]!.AsObject(), $"{path}[{i}]", differences);
            }

            return;
        }

        var a = theirValues.Select(Normalise).ToList();
        var b = myValues.Select(Normalise).ToList();
        TrimEmpty(a);
        TrimEmpty(b);
        if (a.Count != b.Count || a.Zip(b).Any(p => !Same(p.First, p.Second)))
        {
            differences.Add($"{path}: [{string.Join(" | ", a)}] (pydicom) vs [{string.Join(" | ", b)}] (vigie)");
        }
    }

    /// <summary>VRs pydicom leaves unresolved or spells differently, where the bytes and values agree.</summary>
    private static bool EquivalentVR(string theirs, string mine) =>
        (theirs, mine) switch
        {
            ("US or SS", "US" or "SS") => true,
            ("OB or OW", "OB" or "OW") => true,
            ("US or OW", "US" or "OW") => true,
            ("US or SS or OW", "US" or "SS" or "OW") => true,
            _ => false,
        };

    private static void TrimEmpty(List<string> values)
    {
        if (values.TrueForAll(v => v.Length == 0))
        {
            values.Clear();
        }
    }

    private static string Normalise(JsonNode? node) => node switch
    {
        null => string.Empty,
        JsonObject pn => string.Join('=', new[] { "Alphabetic", "Ideographic", "Phonetic" }
            .Select(g => ((string?)pn[g] ?? string.Empty).TrimEnd(' ', '\0'))).TrimEnd('='),
        JsonValue value when value.TryGetValue<string>(out var s) => s.TrimEnd(' ', '\0'),
        JsonValue value => value.ToJsonString(),
        _ => node.ToJsonString(),
    };

    private static bool Same(string a, string b)
    {
        if (a == b)
        {
            return true;
        }

        return double.TryParse(a, NumberStyles.Float, CultureInfo.InvariantCulture, out var x)
            && double.TryParse(b, NumberStyles.Float, CultureInfo.InvariantCulture, out var y)
            && Math.Abs(x - y) <= 1e-6 * Math.Max(1, Math.Abs(x));
    }
}
