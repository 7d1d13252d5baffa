using System.Collections;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Vigie.Access;
using Vigie.Archive;
using Vigie.Audit;
using Vigie.Core.Data;
using Vigie.Dicom.Network;
using Vigie.Gateway;
using Vigie.Inspection;
using Vigie.Inspection.Signatures;

namespace Vigie.Cli;

/// <summary>
/// Finds configuration keys (file, environment) that no setting reads. The binder ignores them, so a misspelt key
/// ("AETitel", "Acess") left the node on its defaults without a word.
/// </summary>
internal static class ConfigurationKeys
{
    private const BindingFlags Public = BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase;

    /// <summary>The sections AddVigieConfiguration binds, longest first (Inspection:Mail before Inspection).</summary>
    private static readonly (string[] Prefix, Type Type)[] Sections = new (string Section, Type Type)[]
        {
            (SignatureOptions.Section, typeof(SignatureOptions)), (MailInspectionOptions.Section, typeof(MailInspectionOptions)),
            (DicomServerOptions.Section, typeof(DicomServerOptions)), (InspectionLimits.Section, typeof(InspectionLimits)),
            (ArchiveOptions.Section, typeof(ArchiveOptions)), (AuditOptions.Section, typeof(AuditOptions)), (DatabaseOptions.Section, typeof(DatabaseOptions)),
            (AccessOptions.Section, typeof(AccessOptions)), (GatewayOptions.Section, typeof(GatewayOptions)),
        }
        .Select(s => (s.Section.Split(':'), s.Type)).OrderByDescending(s => s.Item1.Length).ToArray();

    /// <summary>Host sections read as they are (ASP.NET Core's logging filters, the HTTP address).</summary>
    private static readonly string[] HostKeys = ["Logging", "Web:Urls"];

    /// <summary>The keys with a value that no Vigie setting reads, in configuration order.</summary>
    public static IReadOnlyList<string> Unknown(IConfiguration configuration) =>
        configuration.AsEnumerable().Where(pair => pair.Value is not null && !IsKnown(pair.Key)).Select(pair => pair.Key).Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// List entries the binder could not read, with its reason. It drops such an entry without a word: a rule of
    /// Access:DicomNodes with "Rights": "Stor" vanished, and with no rule left every caller had every right; an audit
    /// sink of an unknown Kind vanished, and /health said there was no sink.
    /// </summary>
    public static IReadOnlyList<string> Unreadable(IConfiguration configuration)
    {
        var problems = new List<string>();
        foreach (var (prefix, type) in Sections)
        {
            var section = configuration.GetSection(string.Join(':', prefix));
            if (section.Exists())
            {
                CheckEntries(section, type, problems);
            }
        }

        return problems;
    }

    /// <summary>
    /// Says each unreadable list entry on stderr after <paramref name="prefix"/>; true when there was none. Refused rather
    /// than warned, by serve and every command alike: the entry would be dropped, and a dropped access rule or audit sink
    /// opens or blinds the node (before 2026-12-06 `audit sinks` said "no sink is configured" of one with a misspelt Kind).
    /// </summary>
    public static async Task<bool> AllReadableAsync(IConfiguration configuration, string prefix)
    {
        var unreadable = Unreadable(configuration);
        foreach (var problem in unreadable)
        {
            await Console.Error.WriteLineAsync(prefix + problem);
        }

        return unreadable.Count == 0;
    }

    private static void CheckEntries(IConfigurationSection section, Type type, List<string> problems)
    {
        foreach (var child in section.GetChildren())
        {
            // Values and dictionaries (any key is a setting's name there) hold no entries the binder drops.
            var property = type.GetProperty(child.Key, Public);
            if (property is null || IsLeaf(property.PropertyType) || DictionaryValue(property.PropertyType) is not null)
            {
                continue;
            }

            if (ElementOf(property.PropertyType) is { } element)
            {
                if (IsLeaf(element))
                {
                    continue;
                }

                foreach (var entry in child.GetChildren())
                {
                    try
                    {
                        entry.Get(element);
                        CheckEntries(entry, element, problems);
                    }
                    catch (InvalidOperationException e)
                    {
                        problems.Add($"{entry.Path} cannot be read: {Explain(e)}");
                    }
                }
            }
            else
            {
                CheckEntries(child, property.PropertyType, problems);
            }
        }
    }

    /// <summary>The binder's own message, with the names an enumeration takes.</summary>
    internal static string Explain(Exception e)
    {
        var message = e.Message;
        if (System.Text.RegularExpressions.Regex.Match(message, @"Cannot create instance of type '(?<type>[^']+)' because parameter '(?<parameter>[^']+)' has no matching config") is { Success: true } missing)
        {
            // "Vigie.Archive.Retention.RetentionPolicy" → "a retention policy setting".
            var name = missing.Groups["type"].Value.Split('.')[^1];
            var words = System.Text.RegularExpressions.Regex.Replace(name, "(?<=[a-z])(?=[A-Z])", " ").ToLowerInvariant();
            return $"a {words} setting lacks its {missing.Groups["parameter"].Value}, which is required.";
        }

        if (System.Text.RegularExpressions.Regex.Match(message, @"value '(?<value>.*)' at '(?<path>[^']+)' to type '(?<type>[^']+)'") is not { Success: true } match)
        {
            return message;
        }

        // In the operator's words: the binder's message names a .NET type ("to type 'Vigie.Audit.AuditSinkKind'").
        var (value, path, type) = (match.Groups["value"].Value, match.Groups["path"].Value, match.Groups["type"].Value);
        var names = Sections.Select(s => s.Type.Assembly).Distinct().Select(a => a.GetType(type)).FirstOrDefault(t => t is { IsEnum: true });
        var expected = names is not null
            ? $"{(names.IsDefined(typeof(FlagsAttribute), false) ? "a comma-separated list of" : "one of")}: {string.Join(", ", Enum.GetNames(names))}"
            : Type.GetType(type) switch
        {
            { } t when t == typeof(int) || t == typeof(long) || t == typeof(short) => "a whole number",
            { } t when t == typeof(double) || t == typeof(decimal) || t == typeof(float) => "a number",
            { } t when t == typeof(bool) => "true or false",
            { } t when t == typeof(TimeSpan) => "a duration, such as 00:00:30 or 1.00:00:00",
            _ => "a value of the right kind",
        };
        return $"{path} is '{value}', which is not {expected}.";
    }

    internal static bool IsKnown(string key)
    {
        if (HostKeys.Any(h => key.Equals(h, StringComparison.OrdinalIgnoreCase) || key.StartsWith(h + ":", StringComparison.OrdinalIgnoreCase)))
        {
            return true;
        }

        var segments = key.Split(':');
        foreach (var (prefix, type) in Sections)
        {
            if (segments.Length >= prefix.Length && prefix.Select((p, i) => p.Equals(segments[i], StringComparison.OrdinalIgnoreCase)).All(b => b))
            {
                return Reaches(type, segments, prefix.Length);
            }
        }

        return false;
    }

    /// <summary>True when segments[at..] name a property path of <paramref name="type"/>: lists take an index, dictionaries any key.</summary>
    private static bool Reaches(Type type, string[] segments, int at)
    {
        while (at < segments.Length)
        {
            if (IsLeaf(type))
            {
                return false;
            }

            if (DictionaryValue(type) is { } value)
            {
                type = value;
                at++;
                continue;
            }

            if (ElementOf(type) is { } element)
            {
                if (!int.TryParse(segments[at], out _))
                {
                    return false;
                }

                type = element;
                at++;
                continue;
            }

            var property = type.GetProperty(segments[at], Public);
            if (property is null)
            {
                return false;
            }

            type = property.PropertyType;
            at++;
        }

        return true;
    }

    private static bool IsLeaf(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        return type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(TimeSpan) || type == typeof(DateTimeOffset)
               || type == typeof(DateTime) || type == typeof(Guid) || type == typeof(Uri) || type == typeof(byte[]);
    }

    /// <summary>The value type of a dictionary keyed by string (any key is a setting's name there), else null.</summary>
    private static Type? DictionaryValue(Type type)
    {
        if (!type.IsGenericType || type.GetGenericArguments() is not [var key, var value] || key != typeof(string))
        {
            return null;
        }

        return typeof(IDictionary).IsAssignableFrom(type) || Implements(type, typeof(IReadOnlyDictionary<,>)) ? value : null;
    }

    private static bool Implements(Type type, Type generic) =>
        type.GetInterfaces().Append(type).Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == generic);

    private static Type? ElementOf(Type type) =>
        type.IsArray ? type.GetElementType()
        : type != typeof(string) && type.GetInterfaces().Append(type).FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>)) is { } enumerable
            ? enumerable.GetGenericArguments()[0]
            : null;
}
