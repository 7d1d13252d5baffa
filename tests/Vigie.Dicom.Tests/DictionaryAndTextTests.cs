using System.Text;
using System.Text.Json;
using Vigie.Dicom.Json;

namespace Vigie.Dicom.Tests;

public sealed class DictionaryAndTextTests
{
    [Fact]
    public void Dictionary_knows_public_repeating_private_creator_and_group_length_elements()
    {
        Assert.Equal("PatientName", DicomDictionary.Find(DicomTags.PatientName)!.Keyword);
        Assert.Equal(DicomVR.PN, DicomDictionary.VRFor(new DicomTag(0x0010, 0x0010)));
        Assert.Equal("OverlayData", DicomDictionary.Find(new DicomTag(0x6002, 0x3000))!.Keyword);
        Assert.Equal(DicomVR.LO, DicomDictionary.VRFor(new DicomTag(0x0029, 0x0011)));
        Assert.Equal(DicomVR.UL, DicomDictionary.VRFor(new DicomTag(0x0008, 0x0000)));
        Assert.Equal(DicomVR.UN, DicomDictionary.VRFor(new DicomTag(0x0029, 0x1011)));
        Assert.Equal([DicomVR.SS], DicomDictionary.Find(DicomTags.SmallestImagePixelValue)!.AlternativeVRs);
        Assert.Equal(DicomVR.OV, DicomDictionary.Find(DicomTags.SelectorOVValue)!.VR);
        Assert.Equal("CT Image Storage", DicomDictionary.FindUid(DicomUids.CTImageStorage)!.Name);
        Assert.True(DicomDictionary.Entries.Count > 4900);
    }

    [Fact]
    public void Every_VR_of_the_standard_is_known_with_its_length_field()
    {
        foreach (var code in new[] { "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
                     "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV" })
        {
            var vr = DicomVRInfo.Parse(code);
            Assert.NotEqual(DicomVR.None, vr);
            Assert.Equal(code, DicomVRInfo.Code(vr));
        }

        Assert.True(DicomVRInfo.HasLongLength(DicomVR.UC) && DicomVRInfo.HasLongLength(DicomVR.UR) && DicomVRInfo.HasLongLength(DicomVR.SV));
        Assert.False(DicomVRInfo.HasLongLength(DicomVR.LO));
        Assert.Equal(DicomVR.None, DicomVRInfo.Parse("XX"));
    }

    [Fact]
    public void Private_dictionary_types_elements_through_their_creator()
    {
        var entry = DicomDictionary.FindPrivate("AGFA", new DicomTag(0x0019, 0x1010));
        Assert.NotNull(entry);
        Assert.Equal(DicomVR.SH, entry.VR);
        Assert.Null(DicomDictionary.FindPrivate("NOBODY", new DicomTag(0x0019, 0x1010)));
    }

    [Theory]
    [InlineData("(0010,0010)", 0x00100010u)]
    [InlineData("0010,0010", 0x00100010u)]
    [InlineData("7FE00010", 0x7FE00010u)]
    public void Tags_parse_and_format(string text, uint value)
    {
        Assert.True(DicomTag.TryParse(text, out var tag));
        Assert.Equal(value, tag.Value);
        Assert.Equal(value.ToString("X8", System.Globalization.CultureInfo.InvariantCulture), tag.ToString("J", null));
        Assert.False(DicomTag.TryParse("(0010,001G)", out _));
    }

    [Theory]
    [InlineData("ISO_IR 100", new byte[] { 0x44, 0xE9 }, "Dé")]
    [InlineData("ISO_IR 144", new byte[] { 0xB1, 0xDE }, "Бо")]
    [InlineData("ISO_IR 192", new byte[] { 0xC3, 0xA9 }, "é")]
    [InlineData("GB18030", new byte[] { 0xCD, 0xF5 }, "王")]
    [InlineData("ISO-IR 100", new byte[] { 0xE9 }, "é")]
    public void Single_character_sets_decode(string term, byte[] bytes, string expected) =>
        Assert.Equal(expected, DicomCharacterSet.FromTerms([term]).Decode(bytes, DicomVR.LO));

    [Fact]
    public void Iso2022_escapes_switch_between_jis_x0208_and_ascii_and_reset_at_delimiters()
    {
        // "Yamada^Tarou=" then ESC $ B (JIS X 0208) "山田" ESC ( B "^" ...
        var bytes = new List<byte>(Encoding.ASCII.GetBytes("Yamada^Tarou="));
        bytes.AddRange([0x1B, 0x24, 0x42, 0x3B, 0x33, 0x45, 0x44, 0x1B, 0x28, 0x42, (byte)'^']);
        bytes.AddRange([0x1B, 0x24, 0x42, 0x42, 0x40, 0x4F, 0x3A, 0x1B, 0x28, 0x42]);
        var charset = DicomCharacterSet.FromTerms(["", "ISO 2022 IR 87"]);
        Assert.Equal("Yamada^Tarou=山田^太郎", charset.Decode(bytes.ToArray(), DicomVR.PN));
        Assert.Empty(charset.UnknownTerms);
    }

    [Fact]
    public void Korean_ks_x1001_in_g1_decodes()
    {
        var charset = DicomCharacterSet.FromTerms(["", "ISO 2022 IR 149"]);
        Assert.Equal("김", charset.Decode([0x1B, 0x24, 0x29, 0x43, 0xB1, 0xE8], DicomVR.PN));
    }

    [Fact]
    public void Unknown_terms_are_reported_and_decode_as_latin1()
    {
        var charset = DicomCharacterSet.FromTerms(["ISO_IR 999"]);
        Assert.Equal(["ISO_IR 999"], charset.UnknownTerms);
        Assert.Equal("é", charset.Decode([0xE9], DicomVR.LO));
    }

    [Fact]
    public void Json_model_follows_part_18_annex_f()
    {
        var ds = new DicomDataset();
        ds.SetString(DicomTags.SpecificCharacterSet, DicomVR.CS, "ISO_IR 192");
        ds.SetString(DicomTags.PatientName, DicomVR.PN, "Yamada^Tarou=山田^太郎");
        ds.SetStrings(DicomTags.ImageType, DicomVR.CS, ["ORIGINAL", "", "AXIAL"]);
        ds.SetStrings(DicomTags.PixelSpacing, DicomVR.DS, ["0.5", "+.5"]);
        ds.SetString(DicomTags.InstanceNumber, DicomVR.IS, "1A");
        ds.SetBytes(DicomTags.FrameIncrementPointer, DicomVR.AT, new byte[] { 0x18, 0x00, 0x63, 0x10 });
        ds.SetBytes(DicomTags.RescaleSlope, DicomVR.FD, BitConverter.GetBytes(double.NaN));
        ds.SetUInt16(DicomTags.Rows, 512);
        ds.SetBytes(new DicomTag(0x0009, 0x1001), DicomVR.OB, new byte[] { 1, 2, 3, 4 });
        ds.AddOrUpdate(new DicomSequence(DicomTags.ReferencedImageSequence));
        var json = JsonDocument.Parse(DicomJsonWriter.ToJson(ds)).RootElement;
        var name = json.GetProperty("00100010").GetProperty("Value")[0];
        Assert.Equal("Yamada^Tarou", name.GetProperty("Alphabetic").GetString());
        Assert.Equal("山田^太郎", name.GetProperty("Ideographic").GetString());
        Assert.False(name.TryGetProperty("Phonetic", out _));
        var imageType = json.GetProperty("00080008").GetProperty("Value");
        Assert.Equal(JsonValueKind.Null, imageType[1].ValueKind);
        Assert.Equal(0.5, json.GetProperty("00280030").GetProperty("Value")[1].GetDouble());
        Assert.Equal("1A", json.GetProperty("00200013").GetProperty("Value")[0].GetString());
        Assert.Equal("00181063", json.GetProperty("00280009").GetProperty("Value")[0].GetString());
        Assert.Equal("NaN", json.GetProperty("00281053").GetProperty("Value")[0].GetString());
        Assert.Equal(512, json.GetProperty("00280010").GetProperty("Value")[0].GetInt32());
        Assert.Equal("AQIDBA==", json.GetProperty("00091001").GetProperty("InlineBinary").GetString());
        Assert.False(json.GetProperty("00081140").TryGetProperty("Value", out _));
    }
}
