import DLoRALConvert
import DLoRALFormats
import Foundation
import Testing

/// Every form of the tiny fixture reads to the same canonical tensors as the diffusers folder
/// that diffusers' own `save_pretrained` wrote (the PyTorch originals).
@Suite("checkpoint forms agree")
struct CheckpointAgreementTests {
    static let base = try! CheckpointReader.open(FixturePaths.tiny("base"))

    /// Compares `other`'s tensors with the base, element by element, exactly.
    func expectAgrees(_ other: LoadedCheckpoint, names: [String], file: String) {
        for name in names {
            guard let want = Self.base.tensors[name] else {
                Issue.record("\(file): \(name) is not in the base folder")
                continue
            }
            guard let got = other.tensors[name] else {
                Issue.record("\(file): \(name) missing")
                continue
            }
            #expect(got.shape == want.shape, "\(file): \(name) shape")
            let diff = maxAbsDifference(got.toFloat32(), want.toFloat32())
            #expect(diff == 0, "\(file): \(name) differs by up to \(diff)")
        }
    }

    @Test func baseFolderHasUNetAndVAE() throws {
        let base = Self.base
        #expect(base.format == .diffusersFolder)
        #expect(base.kinds == ["unet", "vae"])
        #expect(base.configs[.unet]?["in_channels"]?.intValue == 4)
        #expect(base.inferredConfigs.isEmpty)
        #expect(base.tensors["unet.conv_in.weight"] != nil)
        #expect(base.tensors["vae.encoder.conv_in.weight"] != nil)
        #expect(base.unrecognized.isEmpty)
    }

    @Test func ldmSingleFileAgrees() throws {
        let ldm = try CheckpointReader.open(FixturePaths.tiny("base.ldm.safetensors"))
        #expect(ldm.format == .ldm)
        #expect(Set(ldm.tensors.names) == Set(Self.base.tensors.names))
        expectAgrees(ldm, names: Self.base.tensors.names, file: "base.ldm.safetensors")
        // Shapes inferred from an LDM file without config.json still give the right structure.
        let unetConfig = try #require(ldm.configs[.unet])
        #expect(unetConfig["block_out_channels"] == Self.base.configs[.unet]?["block_out_channels"])
        #expect(unetConfig["layers_per_block"] == Self.base.configs[.unet]?["layers_per_block"])
        #expect(unetConfig["cross_attention_dim"] == Self.base.configs[.unet]?["cross_attention_dim"])
    }

    /// Sharded UNet and `.bin` VAE (the default, as diffusers picks it) are the same fp32 data.
    @Test func shardedAndBinVariantsAgree() throws {
        let variants = try CheckpointReader.open(FixturePaths.tiny("base-variants"))
        #expect(Set(variants.tensors.names) == Set(Self.base.tensors.names))
        #expect(variants.files.contains { $0.hasSuffix("diffusion_pytorch_model.safetensors.index.json") })
        #expect(variants.files.contains { $0.hasSuffix("vae/diffusion_pytorch_model.bin") })
        expectAgrees(variants, names: Self.base.tensors.names, file: "base-variants")
    }

    /// `--variant fp16` reads the VAE's `.fp16.safetensors`: the originals rounded once to half.
    @Test func fp16VariantIsTheRoundedOriginal() throws {
        let variants = try CheckpointReader.open(FixturePaths.tiny("base-variants"), variant: "fp16")
        #expect(variants.files.contains { $0.hasSuffix("vae/diffusion_pytorch_model.fp16.safetensors") })
        for name in Self.base.tensors.names where name.hasPrefix("vae.") {
            let got = try #require(variants.tensors[name])
            #expect(got.dtype == .float16)
            let want = Self.base.tensors[name]!.toFloat32().map { Float(Float16($0)) }
            #expect(maxAbsDifference(got.toFloat32(), want) == 0, "\(name)")
        }
    }

    @Test func onnxExportAgrees() throws {
        let onnx = try CheckpointReader.open(FixturePaths.tiny("onnx/unet.onnx"))
        #expect(onnx.format == .onnx)
        let unetNames = Self.base.tensors.names.filter { $0.hasPrefix("unet.") }
        #expect(Set(onnx.tensors.names) == Set(unetNames), "missing: \(Set(unetNames).subtracting(onnx.tensors.names).sorted().prefix(5))")
        expectAgrees(onnx, names: onnx.tensors.names, file: "unet.onnx")
    }

    @Test func dloralCheckpointBaseWeightsAgree() throws {
        let pkl = try CheckpointReader.open(FixturePaths.tiny("model.pkl"))
        #expect(pkl.format == .torchZip)
        #expect(pkl.dialect == .dloral)
        #expect(pkl.kinds == ["unet", "cfr", "lora"])
        // The 8-channel conv_in is DLoRAL's own; everything else is the SD base, untouched.
        let convIn = try #require(pkl.tensors["unet.conv_in.weight"])
        #expect(convIn.shape[1] == 8)
        let shared = Self.base.tensors.names.filter { $0.hasPrefix("unet.") && !$0.hasPrefix("unet.conv_in.") }
        expectAgrees(pkl, names: shared, file: "model.pkl")
        #expect(pkl.adapters.map(\.name).sorted() == [
            "default_decoder_consistency", "default_decoder_quality", "default_encoder_consistency",
            "default_encoder_quality", "default_others_consistency", "default_others_quality",
        ])
        for adapter in pkl.adapters {
            #expect(adapter.alpha == 8)
        }
    }
}

/// Largest |a − b| over two equally long arrays (infinity if the lengths differ).
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    guard a.count == b.count else { return .infinity }
    var worst: Float = 0
    for i in a.indices {
        let d = abs(a[i] - b[i])
        if d > worst || d.isNaN { worst = d.isNaN ? .infinity : d }
    }
    return worst
}
