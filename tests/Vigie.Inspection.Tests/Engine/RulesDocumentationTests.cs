using System.Reflection;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Tests.Engine;

public sealed class RulesDocumentationTests
{
    [Fact]
    public void Every_rule_id_is_documented_in_docs_rules_md()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "docs", "rules.md")))
        {
            directory = directory.Parent;
        }

        Assert.NotNull(directory);
        var documentation = File.ReadAllText(Path.Combine(directory.FullName, "docs", "rules.md"));
        var ids = typeof(Rules).GetFields(BindingFlags.Public | BindingFlags.Static).Select(f => (string)f.GetRawConstantValue()!).ToList();
        Assert.True(ids.Count > 80);
        var missing = ids.Where(id => !documentation.Contains($"`{id}`", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, "undocumented rules: " + string.Join(", ", missing));
        Assert.All(ids, id => Assert.Matches("^[a-z0-9]+(\\.[a-z0-9-]+)+$", id));
    }
}
