using Vigie.Archive.Index;

namespace Vigie.Archive.Tests;

public sealed class MatcherTests
{
    private static bool Match(uint tag, string key, params string[] values) =>
        AttributeMatcher.Matches(new QueryKey(tag, key), new AttributeSet([new(tag, values)]));

    [Theory]
    [InlineData("DUPONT*", "DUPONT^JEAN", true)]
    [InlineData("dupont*", "DUPONT^JEAN", true)]
    [InlineData("DUP?NT^J*", "Dupont^Jean", true)]
    [InlineData("*JEAN", "DUPONT^JEAN", true)]
    [InlineData("*ONT*", "DUPONT^JEAN", true)]
    [InlineData("MARTIN^ELODIE", "MARTIN^ÉLODIE", true)]
    [InlineData("DUPONT", "DUPONT^JEAN", false)]
    [InlineData("DUPONT^JEAN", "DUPONT^JEAN^^^", true)]
    [InlineData("DUPONT^JEAN^*", "DUPONT^JEAN^^^", true)]
    [InlineData("DUPONT^JEAN^*", "DUPONT^JEAN", true)]
    [InlineData("DUPONT^*^*", "DUPONT", true)]
    [InlineData("DUPONT^JEAN^?", "DUPONT^JEAN", false)]
    [InlineData("DURAND*", "DUPONT^JEAN", false)]
    [InlineData("", "ANYONE", true)]
    [InlineData("*", "ANYONE", true)]
    public void Person_names(string key, string value, bool expected) => Assert.Equal(expected, Match(DicomTags.PatientName, key, value));

    [Theory]
    [InlineData("20240101-20240131", "20240115", true)]
    [InlineData("20240101-20240131", "20240201", false)]
    [InlineData("20240101-", "20991231", true)]
    [InlineData("-20240101", "20240101", true)]
    [InlineData("-20240101", "20240102", false)]
    [InlineData("20240115", "20240115", true)]
    [InlineData("2024.01.15", "20240115", true)]
    [InlineData("20240115", "garbage", false)]
    public void Dates(string key, string value, bool expected) => Assert.Equal(expected, Match(DicomTags.StudyDate, key, value));

    [Theory]
    [InlineData("1000-1200", "115959", true)]
    [InlineData("1000-1200", "120030", true)]
    [InlineData("1000-1200", "130000", false)]
    [InlineData("10:15-", "101500.5", true)]
    [InlineData("-0959", "100000", false)]
    public void Times(string key, string value, bool expected) => Assert.Equal(expected, Match(DicomTags.StudyTime, key, value));

    /// <summary>
    /// Bug: a DT's UTC offset was dropped (23:00+0200 did not match 21:00+0000, and matched 23:00-0500), and a negative
    /// offset's '-' was taken for the range separator, so a value did not even match itself.
    /// </summary>
    [Theory]
    [InlineData("20240101210000+0000", "20240101230000+0200", true)]
    [InlineData("-20240101220000+0000", "20240101230000+0200", true)]
    [InlineData("20240101220000+0000-", "20240101230000+0200", false)]
    [InlineData("20240101230000-0500", "20240101230000-0500", true)]
    [InlineData("20240101220000-0500-20240102000000-0500", "20240101230000-0500", true)]
    [InlineData("20240101230000+0200", "20240101230000-0500", false)]
    [InlineData("20240101-20240131", "20240115103000", true)]
    [InlineData("2024-2024", "20241231235959.5", true)]
    [InlineData("20240115103000", "20240115103000", true)]
    [InlineData("202401", "20240115103000", false)]
    [InlineData("20240101-20240131", "garbage", false)]
    public void Datetimes_are_compared_in_utc_when_they_carry_an_offset(string key, string value, bool expected) =>
        Assert.Equal(expected, AttributeMatcher.Matches(new QueryKey(0x0008002A, key, QueryValueKind.DateTime), new AttributeSet([new(0x0008002A, [value])])));

    /// <summary>Bug: '?' matched one UTF-16 unit, so a CJK extension ideograph or an emoji needed two.</summary>
    [Theory]
    [InlineData("?^太郎", "\U00020B9F^太郎", true)]
    [InlineData("??^太郎", "\U00020B9F^太郎", false)]
    [InlineData("Smile?^Ann", "Smile\U0001F600^Ann", true)]
    [InlineData("*?^Ann", "\U0001F600^Ann", true)]
    [InlineData("S*e\U0001F600^Ann", "Smile\U0001F600^Ann", true)]
    public void A_question_mark_is_one_character_outside_the_basic_plane_too(string key, string value, bool expected) =>
        Assert.Equal(expected, Match(DicomTags.PatientName, key, value));

    [Fact]
    public void Uid_lists_and_padding()
    {
        Assert.True(Match(DicomTags.StudyInstanceUid, "1.2.3\\1.2.4", "1.2.4\0"));
        Assert.False(Match(DicomTags.StudyInstanceUid, "1.2.3\\1.2.4", "1.2.40"));
        Assert.False(Match(DicomTags.StudyInstanceUid, "1.2.*", "1.2.3"));
    }

    [Fact]
    public void Text_is_case_sensitive_and_multi_valued_attributes_match_any_value()
    {
        Assert.True(Match(DicomTags.Modality, "CT", "CT"));
        Assert.False(Match(DicomTags.Modality, "ct", "CT"));
        Assert.True(Match(DicomTags.ModalitiesInStudy, "SR", "CT", "SR"));
        Assert.False(AttributeMatcher.Matches(new QueryKey(DicomTags.Modality, "CT"), AttributeSet.Empty));
        Assert.True(AttributeMatcher.Matches(new QueryKey(DicomTags.Modality, ""), AttributeSet.Empty));
    }

    [Fact]
    public void A_hostile_wildcard_pattern_finishes_quickly()
    {
        var pattern = string.Concat(Enumerable.Repeat("*A", 2000)) + "B";
        var value = new string('A', 10_000);
        Assert.False(AttributeMatcher.Wildcard(pattern, value));
    }

    [Fact]
    public void Attribute_sets_serialise_and_reject_damage()
    {
        var set = AttributeSet.From((DicomTags.PatientName, "DUPONT^JEAN"), (DicomTags.ModalitiesInStudy, "CT\\SR"), (DicomTags.StudyDescription, ""));
        var bytes = set.Serialize(1024, 16);
        var back = AttributeSet.Deserialize(bytes);
        Assert.Equal(["CT", "SR"], back[DicomTags.ModalitiesInStudy]);
        Assert.Equal(bytes, back.Serialize(1024, 16));
        Assert.Throws<IndexLimitException>(() => set.Serialize(10, 16));
        Assert.Throws<IndexLimitException>(() => set.Serialize(1024, 2));
        for (var cut = 0; cut < bytes.Length; cut++)
        {
            Assert.Throws<InvalidDataException>(() => AttributeSet.Deserialize(bytes.AsSpan(0, cut)));
        }

        var lying = (byte[])bytes.Clone();
        lying[9] = 0x7F; // a value length far past the end
        Assert.Throws<InvalidDataException>(() => AttributeSet.Deserialize(lying));
    }
}
