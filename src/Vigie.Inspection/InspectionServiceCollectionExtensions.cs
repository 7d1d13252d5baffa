using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Vigie.Inspection.Archives;
using Vigie.Inspection.Dicom;
using Vigie.Inspection.Executables;
using Vigie.Inspection.Html;
using Vigie.Inspection.Mail;
using Vigie.Inspection.Office;
using Vigie.Inspection.Pdf;
using Vigie.Inspection.Signatures;
using Vigie.Inspection.Text;
using Vigie.Inspection.Xml;

namespace Vigie.Inspection;

public static class InspectionServiceCollectionExtensions
{
    /// <summary>
    /// Registers the <see cref="Inspector"/>, every content analyser of this module, the disarmers and their options
    /// (<see cref="InspectionLimits"/> from "Inspection", <see cref="MailInspectionOptions"/> from "Inspection:Mail",
    /// <see cref="SignatureOptions"/> from "Inspection:Signatures", bound by the host), and the known-bad engines:
    /// hash and byte-pattern signatures, YARA through libyara, and clamd when one is configured.
    /// </summary>
    public static IServiceCollection AddVigieInspection(this IServiceCollection services)
    {
        services.AddOptions<InspectionLimits>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<InspectionLimits>, InspectionLimitsValidation>());
        services.AddOptions<MailInspectionOptions>();
        services.AddOptions<SignatureOptions>();
        services.TryAddSingleton(sp => SignatureDatabase.FromOptions(
            sp.GetRequiredService<IOptions<SignatureOptions>>().Value,
            sp.GetService<ILoggerFactory>()?.CreateLogger("Vigie.Inspection.Signatures") ?? NullLogger.Instance));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IKnownBadEngine, SignatureEngine>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IKnownBadEngine, YaraEngine>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IKnownBadEngine, ClamdEngine>());
        services.TryAddSingleton(TimeProvider.System);

        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, DicomAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, ExecutableAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, ZipAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, CompressedStreamAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, ArchiveAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, PdfAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, Ole2Analyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, OoxmlAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, RtfAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, TextAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, HtmlAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, EncapsulatedDataAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, Hl7.FhirAttachmentAnalyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, Hl7.Hl7v2Analyser>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IContentAnalyser, MailAnalyser>());

        services.TryAddEnumerable(ServiceDescriptor.Singleton<IDisarmer, DicomDisarmer>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IDisarmer, PdfDisarmer>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IDisarmer, OoxmlDisarmer>());
        services.TryAddSingleton<DisarmService>();

        // Unbounded but for each inspection's own budget, unless the host registered one for the node (the gateway does).
        services.TryAddSingleton(_ => InspectionMemory.Unbounded());
        services.TryAddSingleton(sp => new Inspector(
            sp.GetServices<IContentAnalyser>(),
            sp.GetServices<IKnownBadEngine>(),
            sp.GetRequiredService<IOptions<InspectionLimits>>(),
            sp.GetService<TimeProvider>(),
            sp.GetRequiredService<InspectionMemory>()));
        return services;
    }
}
