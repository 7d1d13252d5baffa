namespace Vigie.Inspection.Signatures;

/// <summary>Known-bad signatures ("Inspection:Signatures"): where they come from and how far the engines may go.</summary>
public sealed class SignatureOptions
{
    public const string Section = "Inspection:Signatures";

    /// <summary>A folder of ClamAV (.hdb, .hsb, .ndb, .ldb), hash-list (.sha256, .sha1, .md5) and YARA (.yar, .yara) files; none when empty.</summary>
    public string? RulesDirectory { get; set; }

    /// <summary>Load the built-in test signatures (the EICAR test file), so a deployment can be checked end to end.</summary>
    public bool BuiltIn { get; set; } = true;

    /// <summary>Bytes of pattern verification allowed per scanned byte, so that pathological patterns cannot stall an inspection.</summary>
    public int VerifyBudgetFactor { get; set; } = 32;

    /// <summary>Largest object handed to libyara in one piece (it needs contiguous memory); larger objects get a finding instead.</summary>
    public long YaraMaxObjectSize { get; set; } = 256L * 1024 * 1024;

    /// <summary>A clamd to ask as well ("unix:/run/clamav/clamd.ctl" or "tcp:127.0.0.1:3310"); none when empty.</summary>
    public string? Clamd { get; set; }

    /// <summary>Time allowed for one clamd answer.</summary>
    public int ClamdTimeoutSeconds { get; set; } = 60;

    /// <summary>libyara's own time limit for one object.</summary>
    public int YaraTimeoutSeconds { get; set; } = 30;
}
