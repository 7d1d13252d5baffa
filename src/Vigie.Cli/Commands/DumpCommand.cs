using System.CommandLine;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Vigie.Dicom;
using Vigie.Dicom.IO;
using Vigie.Dicom.Json;

namespace Vigie.Cli.Commands;

/// <summary>`vigie dump FILE [--json]`: a dcmdump-like listing, or the DICOM JSON model with the file meta group.</summary>
internal static class DumpCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("file") { Description = "A DICOM file (Part 10, or a bare dataset)." };
        var json = new Option<bool>("--json") { Description = "Print the DICOM JSON model (PS3.18 Annex F) instead of a listing." };
        var command = new Command("dump", "Show the elements of a DICOM file. Exit 0 on success, 2 on a file that cannot be read.")
        {
            file,
            json,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(parse.GetRequiredValue(file), parse.GetValue(json), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(FileInfo file, bool json, CancellationToken cancellationToken)
    {
        DicomFile dicom;
        try
        {
            dicom = await DicomReader.ReadFileAsync(file.FullName, DicomReadOptions.Default, cancellationToken);
        }
        catch (DicomParseException e)
        {
            await Console.Error.WriteLineAsync($"vigie dump: {file.Name}: {e.Message}");
            return ExitCodes.Error;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"vigie dump: {file.Name}: {e.Message}");
            return ExitCodes.Error;
        }

        await using var stdout = Console.OpenStandardOutput();
        if (json)
        {
            await using var buffered = new BufferedStream(stdout, 64 * 1024);
            await using (var writer = new Utf8JsonWriter(buffered, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                DicomJsonWriter.Write(writer, dicom, new DicomJsonOptions { BulkDataUri = DicomJsonOptions.FileUri(file.FullName) });
            }

            await buffered.WriteAsync("\n"u8.ToArray(), cancellationToken);
            return ExitCodes.Ok;
        }

        await using var text = new StreamWriter(stdout, new UTF8Encoding(false), 64 * 1024);
        DicomDumper.Write(text, dicom);
        return ExitCodes.Ok;
    }
}
