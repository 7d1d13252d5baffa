namespace Vigie.Bench.Infrastructure;

/// <summary>
/// The shared synthetic CT corpus (200 files, 105 MB): VIGIE_CT_CORPUS, or .cache/ct-corpus under the repository
/// (scripts/test.sh and bench/*.sh generate it with ../shared/tools/gen_ct_corpus.py).
/// </summary>
internal static class Corpus
{
    public static string Directory
    {
        get
        {
            var fromEnvironment = Environment.GetEnvironmentVariable("VIGIE_CT_CORPUS");
            if (!string.IsNullOrEmpty(fromEnvironment))
            {
                return fromEnvironment;
            }

            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, ".cache", "ct-corpus");
                if (System.IO.Directory.Exists(candidate))
                {
                    return candidate;
                }
            }

            throw new InvalidOperationException("No CT corpus: set VIGIE_CT_CORPUS or run bench/parse.sh, which generates it.");
        }
    }

    public static string[] Files() =>
        System.IO.Directory.EnumerateFiles(Directory, "*.dcm", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToArray();
}
