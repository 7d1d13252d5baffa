using Microsoft.Extensions.Options;
using Vigie.Archive;
using Vigie.Audit;

namespace Vigie.Gateway;

/// <summary>
/// An NDJSON audit export holds patient names in clear, so it may not lie in the data folder, where nothing may be in
/// clear (nor beside the keys, where backups of the data never go). Before 2026-12-06 such a path was accepted.
/// </summary>
internal sealed class AuditSinkPlacementValidation(IOptions<ArchiveOptions> archive) : IValidateOptions<AuditOptions>
{
    public ValidateOptionsResult Validate(string? name, AuditOptions options)
    {
        var problems = new List<string>();
        var folders = new[] { archive.Value.DataFolder, archive.Value.KeyFile is { } keyFile ? Path.GetDirectoryName(keyFile) : null }
            .Where(f => !string.IsNullOrWhiteSpace(f)).Select(f => Path.GetFullPath(f!)).ToList();
        for (var i = 0; i < options.Sinks.Count; i++)
        {
            if (options.Sinks[i].NdjsonPath is not { Length: > 0 } path)
            {
                continue;
            }

            var full = Path.GetFullPath(path);
            foreach (var folder in folders)
            {
                if (Vigie.Core.IO.RealPath.IsWithin(full, folder))
                {
                    problems.Add($"Audit:Sinks:{i}:NdjsonPath {full} is inside {folder}: the export holds patient data in clear, which may not lie in "
                        + "Vigie's data or key folder; write it elsewhere");
                }
            }
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
