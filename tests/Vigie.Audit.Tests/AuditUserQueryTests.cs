using Vigie.Audit.Model;
using Vigie.Core.Data;
using Vigie.Testing;

namespace Vigie.Audit.Tests;

/// <summary>Finding a DICOM user's activity: the user authenticated behind an AE title is the participant's AlternativeUserID.</summary>
public sealed class AuditUserQueryTests
{
    private static AuditRecord Login(string ae, string? dicomUser, int second) => new()
    {
        Time = DateTimeOffset.FromUnixTimeMilliseconds(1_765_000_000_000 + second * 1000L),
        EventId = AuditEventIds.UserAuthentication,
        EventTypes = [AuditEventTypes.Login],
        Action = AuditAction.Execute,
        Outcome = AuditOutcome.Success,
        Participants =
        [
            new AuditParticipant
            {
                UserId = ae, AlternativeUserId = dicomUser, IsRequestor = true, Kind = AuditParticipantKind.Application, NetworkAccessPointId = "192.0.2.7",
                NetworkAccessPointType = NetworkAccessPointType.IpAddress,
            },
            new AuditParticipant { UserId = "VIGIE", Kind = AuditParticipantKind.Application, Roles = [AuditRoles.Destination] },
        ],
    };

    /// <summary>
    /// Regression: `vigie audit show --user ct01` matched the requesting AE title only, so the logins and stores of the
    /// DICOM user ct01 (stored as the participant's "alt") could not be found by that name.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDatabases.Providers), MemberType = typeof(TestDatabases))]
    public async Task Regression_a_DICOM_user_could_not_be_found_by_name(DatabaseProvider provider)
    {
        var ct = TestContext.Current.CancellationToken;
        await using var h = await AuditHarness.CreateAsync(provider);
        await h.AppendAsync([
            Login("SECURE", "ct01", 0), Login("SECURE", "ct012", 1), Login("SECURE", "CT01", 2), Login("CT01", null, 3), Login("OTHER", "ct01", 4),
            Login("SECURE", "o'brien \"x\"", 5), Login("SECURE", null, 6),
        ]);

        async Task<long[]> ByUserAsync(string user) =>
            [.. (await h.Log.QueryAsync(new AuditQuery { UserId = user, Ascending = true, Limit = 100 }, ct)).Entries.Select(e => e.Sequence)];

        // The DICOM user exactly (not a longer name, not another case), under any AE title.
        Assert.Equal(new long[] { 0, 4 }, await ByUserAsync("ct01"));
        // An AE title still finds its own entries, and the DICOM user of that spelling too.
        Assert.Equal(new long[] { 2, 3 }, await ByUserAsync("CT01"));
        Assert.Equal(new long[] { 0, 1, 2, 5, 6 }, await ByUserAsync("SECURE"));
        // Characters JSON escapes are found as written.
        Assert.Equal(new long[] { 5 }, await ByUserAsync("o'brien \"x\""));
        Assert.Empty(await ByUserAsync("ct0"));
        Assert.Equal("ct01", (await h.Log.QueryAsync(new AuditQuery { UserId = "ct01", Limit = 1 }, ct)).Entries[0].Participants[0].AlternativeUserId);
    }
}
