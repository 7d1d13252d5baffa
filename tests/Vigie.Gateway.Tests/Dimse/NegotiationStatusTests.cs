using Vigie.Gateway.Dimse;

namespace Vigie.Gateway.Tests.Dimse;

/// <summary>Whether the node turns associations away for now, and since when, as /health's dicom-node check gives it.</summary>
public sealed class NegotiationStatusTests
{
    private static readonly DateTimeOffset Noon = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// Regression: with no association between two database outages (the first one's refusal settled, /health saying
    /// the database answered again), /health gave the first outage's start as the second's ("refused for now since"),
    /// and an operator read one long outage.
    /// </summary>
    [Fact]
    public void Regression_health_gave_the_previous_outages_start_for_a_new_outage()
    {
        var status = new NegotiationStatus();
        status.Refused(Noon, "the audit trail is unavailable");
        status.DatabaseAnswers();
        // Still told until an association decides.
        Assert.Equal(Noon, status.Refusing(Noon.AddSeconds(20))!.Value.Since);

        status.Refused(Noon.AddSeconds(40), "the audit trail is unavailable");
        Assert.Equal(Noon.AddSeconds(40), status.Refusing(Noon.AddSeconds(41))!.Value.Since);
    }

    [Fact]
    public void Refusals_within_one_outage_keep_its_start_and_one_past_the_window_begins_another()
    {
        var status = new NegotiationStatus();
        status.Refused(Noon, "the audit trail is unavailable");
        status.Refused(Noon.AddSeconds(30), "the audit trail is unavailable");
        Assert.Equal(Noon, status.Refusing(Noon.AddSeconds(31))!.Value.Since);

        status.Refused(Noon.AddMinutes(5), "the audit trail is unavailable");
        Assert.Equal(Noon.AddMinutes(5), status.Refusing(Noon.AddMinutes(5))!.Value.Since);
    }
}
