using Microsoft.Extensions.Options;
using Vigie.Archive;
using Vigie.Audit;
using Vigie.Core.IO;

namespace Vigie.Gateway;

/// <summary>
/// Audit files that may not lie in the data folder, links resolved (<see cref="RealPath"/>). An NDJSON audit export
/// holds patient names in clear, where nothing may be in clear (nor beside the keys, where backups of the data never
/// go): accepted before 2026-12-06. The signing key would let whoever copies the data folder (with SQLite, the trail
/// itself) rewrite the trail and sign new heads: accepted before 2026-12-07.
/// </summary>
internal sealed class AuditFilePlacementValidation(IOptions<ArchiveOptions> archive) : IValidateOptions<AuditOptions>
{
    public ValidateOptionsResult Validate(string? name, AuditOptions options)
    {
        var problems = new List<string>();
        var data = archive.Value.DataFolder;
        if (options.SigningKeyPath is { Length: > 0 } signingKey && !string.IsNullOrWhiteSpace(data) && RealPath.IsWithin(signingKey, data))
        {
            problems.Add($"Audit:SigningKeyPath {Path.GetFullPath(signingKey)} is inside the data folder {Path.GetFullPath(data)}: whoever holds a copy of the data "
                + "folder could rewrite the audit trail and sign it; keep the key outside it (by default beside the key file)");
        }

        var folders = new[] { data, archive.Value.KeyFile is { } keyFile ? Path.GetDirectoryName(keyFile) : null }
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
                if (RealPath.IsWithin(full, folder))
                {
                    problems.Add($"Audit:Sinks:{i}:NdjsonPath {full} is inside {folder}: the export holds patient data in clear, which may not lie in "
                        + "Vigie's data or key folder; write it elsewhere");
                }
            }
        }

        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
