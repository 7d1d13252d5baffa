using System.Buffers;
using System.Text;
using Vigie.Dicom;
using Vigie.Dicom.IO;

namespace Vigie.Gateway.Tests.EndToEnd;

/// <summary>Every patient name, patient ID, accession number and UID of a set of files, and a search for them in raw bytes.</summary>
internal static class CorpusIdentifiers
{
    public static async Task<IReadOnlyList<string>> CollectAsync(IEnumerable<string> files, CancellationToken cancellationToken)
    {
        var values = new HashSet<string>(StringComparer.Ordinal);
        foreach (var file in files)
        {
            var dicom = await DicomReader.ReadFileAsync(file, new DicomReadOptions { StopAtTag = DicomTags.PixelData }, cancellationToken);
            foreach (var dataset in new[] { dicom.Meta, dicom.Dataset })
            {
                foreach (var element in dataset.OfType<DicomValueElement>())
                {
                    if (element.VR == DicomVR.UI || element.Tag == DicomTags.PatientName || element.Tag == DicomTags.PatientID
                        || element.Tag == DicomTags.AccessionNumber)
                    {
                        foreach (var value in element.GetStrings(dataset.CharacterSet).Where(v => v.Length >= 6))
                        {
                            values.Add(value);
                        }
                    }
                }
            }
        }

        return [.. values];
    }

    /// <summary>Files under <paramref name="folder"/> holding any value as ASCII/UTF-8, UTF-16LE or UTF-16BE; each hit says which.</summary>
    public static async Task<List<string>> FindAsync(string folder, IReadOnlyList<string> values, CancellationToken cancellationToken)
    {
        // Raw bytes are read as Latin-1 so each byte is one char; the UTF-16 forms become interleaved NULs.
        var patterns = values.SelectMany(v => new[]
        {
            v,
            Encoding.Latin1.GetString(Encoding.Unicode.GetBytes(v)),
            Encoding.Latin1.GetString(Encoding.BigEndianUnicode.GetBytes(v)),
        }).ToArray();
        var search = SearchValues.Create(patterns, StringComparison.Ordinal);
        var hits = new List<string>();
        foreach (var file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            byte[] bytes;
            try
            {
                bytes = await File.ReadAllBytesAsync(file, cancellationToken);
            }
            catch (IOException)
            {
                continue;
            }

            var text = Encoding.Latin1.GetString(bytes);
            var at = text.AsSpan().IndexOfAny(search);
            if (at >= 0)
            {
                var found = patterns.First(p => text.AsSpan(at).StartsWith(p, StringComparison.Ordinal));
                hits.Add($"{file} @ {at}: {found.Replace("\0", "", StringComparison.Ordinal)}");
            }
        }

        return hits;
    }
}
