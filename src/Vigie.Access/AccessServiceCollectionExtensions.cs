using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Vigie.Access;

public static class AccessServiceCollectionExtensions
{
    /// <summary>Registers the policy decision point; the host binds <see cref="AccessOptions"/>.</summary>
    public static IServiceCollection AddAccess(this IServiceCollection services)
    {
        services.AddOptions<AccessOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AccessOptions>, AccessOptionsValidation>());
        services.TryAddSingleton<AccessPolicy>();
        services.TryAddSingleton<IPolicyDecisionPoint>(sp => sp.GetRequiredService<AccessPolicy>());
        services.TryAddSingleton<IDicomUserVerifier>(sp => new DicomUserVerifier(sp.GetRequiredService<AccessPolicy>()));
        return services;
    }
}

/// <summary>Verifies DICOM User Identity Negotiation credentials.</summary>
public interface IDicomUserVerifier
{
    bool Verify(string name, string passcode);
}

internal sealed class DicomUserVerifier(AccessPolicy policy) : IDicomUserVerifier
{
    public bool Verify(string name, string passcode) => policy.VerifyDicomUser(name, passcode);
}
