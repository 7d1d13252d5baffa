using System.Text;
using Vigie.Inspection.Engine;

namespace Vigie.Inspection.Tests.Engine;

public sealed class AsciiSearchTests
{
    [Fact]
    public void Large_haystacks_with_binary_and_utf8_bytes_are_searched_correctly()
    {
        var random = new Random(9);
        for (var round = 0; round < 50; round++)
        {
            var haystack = new byte[random.Next(5000, 100_000)];
            random.NextBytes(haystack);
            for (var i = 0; i < haystack.Length; i++)
            {
                // Keep the needle's letters out of the noise so the only hit is the planted one.
                if ((haystack[i] | 0x20) is (byte)'j' or (byte)'v')
                {
                    haystack[i] = 0xC3;
                }
            }

            var at = random.Next(haystack.Length - 20);
            Encoding.ASCII.GetBytes(round % 2 == 0 ? "JaVa" : "java").CopyTo(haystack, at);
            Assert.Equal(at, AsciiSearch.IndexOfIgnoreCase(haystack, "java"));
            Assert.Equal(-1, AsciiSearch.IndexOfIgnoreCase(haystack, "javax"));
        }

        var straddling = new byte[40_000];
        Encoding.ASCII.GetBytes("needle").CopyTo(straddling, 16 * 1024 - 3);
        Assert.Equal(16 * 1024 - 3, AsciiSearch.IndexOfIgnoreCase(straddling, "NEEDLE"));
    }
}
