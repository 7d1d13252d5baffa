using System.Text;
using Vigie.Dicom.Network;
using Vigie.Dicom.Tests.Samples;

namespace Vigie.Dicom.Tests.Network;

/// <summary>
/// Mutation fuzzing of the A-ASSOCIATE-RQ and -AC decoders, the first code a hostile peer reaches (before any AE check).
/// Every mutated PDU body must decode or end in a <see cref="PduException"/> that says why; nothing else may escape,
/// since anything else would skip the A-ABORT. Replay a failure with VIGIE_FUZZ_SEED.
/// </summary>
public sealed class PduCodecFuzzTests
{
    private const int Iterations = 200_000;

    // Item and sub-item lengths are 16-bit big-endian.
    private static readonly Mutator Mutations = new()
    {
        InterestingLengths = [0, 1, 2, 3, 4, 5, 6, 8, 16, 0x40, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF],
        LengthWidths = [2],
        BigEndian = true,
    };

    [Fact]
    public void Mutated_associate_requests_and_accepts_decode_or_give_a_reason()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("VIGIE_FUZZ_SEED"), out var s) ? s : Environment.TickCount;
        var random = new Random(seed);
        var request = Body(PduCodec.EncodeAssociateRequest(Proposal()));
        var accept = Body(PduCodec.EncodeAssociateAccept(Answer()));
        int decoded = 0, refused = 0;
        for (var i = 0; i < Iterations; i++)
        {
            var asRequest = random.Next(2) == 0;
            var input = Mutations.Mutate(asRequest ? request : accept, random);
            try
            {
                if (asRequest)
                {
                    PduCodec.DecodeAssociateRequest(input);
                }
                else
                {
                    PduCodec.DecodeAssociateAccept(input, Proposal());
                }

                decoded++;
            }
            catch (PduException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
                refused++;
            }
            catch (Exception e)
            {
                Assert.Fail($"Input {i} (seed {seed}) threw {e.GetType().Name}: {e.Message}\n{e.StackTrace}\nbase64: {Convert.ToBase64String(input)}");
            }
        }

        // Both outcomes must be common, or the mutations no longer reach past the first checks.
        Assert.True(decoded > Iterations / 50, $"only {decoded} decoded (seed {seed})");
        Assert.True(refused > Iterations / 50, $"only {refused} refused (seed {seed})");
    }

    [Fact]
    public void The_unmutated_seeds_decode_to_what_was_encoded()
    {
        var proposal = Proposal();
        var decoded = PduCodec.DecodeAssociateRequest(Body(PduCodec.EncodeAssociateRequest(proposal)));
        Assert.Equal(proposal.PresentationContexts.Count, decoded.PresentationContexts.Count);
        Assert.Equal(proposal.RoleSelections.Count, decoded.RoleSelections.Count);
        Assert.Equal(proposal.AsyncOperations, decoded.AsyncOperations);
        Assert.Equal("fuzz-user", Encoding.ASCII.GetString(decoded.UserIdentity!.PrimaryField));

        var accepted = PduCodec.DecodeAssociateAccept(Body(PduCodec.EncodeAssociateAccept(Answer())), Proposal());
        Assert.Contains(accepted.PresentationContexts, pc => pc.IsAccepted);
    }

    private static AssociationParameters Proposal()
    {
        var parameters = new AssociationParameters
        {
            CalledAE = "VIGIE",
            CallingAE = "FUZZER",
            MaxPduLength = 65536,
            AsyncOperations = (4, 1),
            UserIdentity = new UserIdentity(UserIdentityType.UsernameAndPasscode, true, Encoding.ASCII.GetBytes("fuzz-user"), Encoding.ASCII.GetBytes("not-a-secret")),
        };
        string[] syntaxes = [DicomUids.ExplicitVRLittleEndian, DicomUids.ImplicitVRLittleEndian];
        parameters.PresentationContexts.Add(new PresentationContext(1, DicomUids.Verification, syntaxes));
        parameters.PresentationContexts.Add(new PresentationContext(3, "1.2.840.10008.5.1.4.1.1.2", syntaxes));
        parameters.PresentationContexts.Add(new PresentationContext(5, "1.2.840.10008.5.1.4.1.2.2.3", syntaxes));
        parameters.RoleSelections.Add(new RoleSelection("1.2.840.10008.5.1.4.1.1.2", true, true));
        parameters.ExtendedNegotiations.Add(("1.2.840.10008.5.1.4.1.2.2.1", [1, 1, 0]));
        return parameters;
    }

    private static AssociationParameters Answer()
    {
        var answer = new AssociationParameters { CalledAE = "VIGIE", CallingAE = "FUZZER", MaxPduLength = 262144, AsyncOperations = (4, 1), UserIdentityResponse = [] };
        foreach (var context in Proposal().PresentationContexts)
        {
            context.Result = PresentationContextResult.Acceptance;
            context.AcceptedTransferSyntax = context.TransferSyntaxes[0];
            answer.PresentationContexts.Add(context);
        }

        answer.RoleSelections.Add(new RoleSelection("1.2.840.10008.5.1.4.1.1.2", true, true));
        return answer;
    }

    private static byte[] Body(byte[] pdu) => pdu[PduCodec.HeaderLength..];
}
