using System.Text.Json;
using Vigie.Audit.Signing;

namespace Vigie.Audit.Tests;

/// <summary>The portable form of a signed tree head, and reading back the copies a site kept of them.</summary>
public sealed class TreeHeadJsonTests
{
    private static readonly SignedTreeHead Head = new(1234, DateTimeOffset.FromUnixTimeMilliseconds(1_796_000_000_123), Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(),
        "0011223344556677", Enumerable.Repeat((byte)0xFB, 32).ToArray(), Enumerable.Repeat((byte)9, 64).ToArray());

    [Fact]
    public void A_head_reads_back_as_it_was_written_alone_in_an_array_or_on_lines()
    {
        var line = TreeHeadJson.Write(Head);
        Assert.Contains($"\"publicKey\":\"{Convert.ToBase64String(Head.PublicKey)}\"", line, StringComparison.Ordinal);
        var pretty = JsonSerializer.Serialize(JsonDocument.Parse(line), new JsonSerializerOptions { WriteIndented = true });

        foreach (var text in new[] { line, pretty, $"[{line},{line}]", $"<85>1 2026-12-04T10:00:00.000Z node vigie 1 VIGIE-STH - \uFEFF{line}\nnoise without braces\n{line}\n" })
        {
            var heads = TreeHeadJson.Parse(text);
            Assert.NotEmpty(heads);
            Assert.All(heads, h =>
            {
                Assert.Equal(Head.TreeSize, h.TreeSize);
                Assert.Equal(Head.Timestamp, h.Timestamp);
                Assert.Equal(Head.RootHash, h.RootHash);
                Assert.Equal(Head.KeyId, h.KeyId);
                Assert.Equal(Head.PublicKey, h.PublicKey);
                Assert.Equal(Head.Signature, h.Signature);
                Assert.Equal(Head.SignedBytes(), h.SignedBytes());
            });
        }
    }

    [Theory]
    [InlineData("{\"treeSize\":1}", "the head")]
    [InlineData("ok line\n{\"treeSize\":5,\"timestamp\":\"2026-12-04T10:00:00Z\",\"rootHash\":\"00\",\"keyId\":\"k\",\"publicKey\":\"\",\"signature\":\"\"}", "line 2")]
    [InlineData("x\ny\n{ not json }", "line 3")]
    [InlineData("[1]", "item 1")]
    [InlineData("{\"treeSize\":\"many\"}", "the head")]
    public void A_malformed_head_is_refused_naming_where(string text, string where)
    {
        var failure = Assert.Throws<FormatException>(() => TreeHeadJson.Parse(text));

        Assert.StartsWith(where, failure.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// FHIR copies come from a server or a file anyone may have edited: every shape either reads, is skipped as not a
    /// head, or is refused with a FormatException naming where; nothing else escapes (the CLI would crash).
    /// </summary>
    [Theory]
    [InlineData("{\"resourceType\":\"Bundle\",\"entry\":[1,\"x\",{\"resource\":3},{\"resource\":{}},{\"resource\":{\"resourceType\":7}}]}", 0, null)]
    [InlineData("{\"resourceType\":\"Bundle\",\"entry\":{\"resource\":1}}", 0, null)]
    [InlineData("{\"resourceType\":\"AuditEvent\",\"subtype\":[1,[],\"urn:vigie:audit\"]}", 0, null)]
    [InlineData("{\"resourceType\":\"AuditEvent\",\"subtype\":[{\"system\":[],\"code\":{}}]}", 0, null)]
    [InlineData("{\"resourceType\":\"AuditEvent\",\"subtype\":[{\"system\":\"urn:vigie:audit\",\"code\":\"signed-tree-head\"}],\"entity\":[1,{\"detail\":[2,{\"type\":[],\"valueString\":{}}]}]}", -1, "the head: a signed-tree-head AuditEvent, but its entity has no signed-tree-head detail")]
    [InlineData("{\"resourceType\":\"AuditEvent\",\"subtype\":[{\"system\":\"urn:vigie:audit\",\"code\":\"signed-tree-head\"}],\"entity\":[{\"detail\":[{\"type\":\"signed-tree-head\",\"valueString\":\"[1]\"}]}]}", -1, "the head: a signed-tree-head AuditEvent, but its detail is not a JSON object")]
    [InlineData("{\"resourceType\":\"AuditEvent\",\"subtype\":[{\"system\":\"urn:vigie:audit\",\"code\":\"signed-tree-head\"}],\"entity\":[{\"detail\":[{\"type\":\"signed-tree-head\",\"valueString\":\"{\\\"treeSize\\\":{}}\"}]}]}", -1, "the head: not a signed tree head")]
    [InlineData("{\"resourceType\":{\"a\":1}}\n{\"resourceType\":\"Patient\"}", 0, null)]
    public void Hostile_fhir_copies_are_skipped_or_refused_never_crash(string text, int heads, string? error)
    {
        if (error is null)
        {
            Assert.Equal(heads, TreeHeadJson.Parse(text).Count);
        }
        else
        {
            Assert.StartsWith(error, Assert.Throws<FormatException>(() => TreeHeadJson.Parse(text)).Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_bundle_nested_past_the_depth_limit_is_refused()
    {
        var deep = string.Concat(Enumerable.Repeat("{\"resourceType\":\"Bundle\",\"entry\":[{\"resource\":", 10)) + "{}" + string.Concat(Enumerable.Repeat("}]}", 10));
        Assert.Throws<FormatException>(() => TreeHeadJson.Parse(deep));
    }
}
