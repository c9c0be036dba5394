@testable import DLoRALFormats
import Foundation
import Testing

/// The tensors `ModelConfigValidation` derives from a config are exactly those diffusers saved
/// for that config: the tiny fixture's `save_pretrained` files (written by diffusers, not by us)
/// hold precisely the implied names with the implied shapes.
@Suite("config validation")
struct ModelConfigValidationTests {
    static func shapes(_ relative: String, dropPrefix: String = "") throws -> ModelConfigValidation.Shapes {
        let table = try SafetensorsFile(path: TestPaths.fixtures.appendingPathComponent("tiny/\(relative)").path).table
        var shapes: ModelConfigValidation.Shapes = [:]
        for name in table.names where name.hasPrefix(dropPrefix) { shapes[String(name.dropFirst(dropPrefix.count))] = table[name]!.shape }
        return shapes
    }

    static func config(_ relative: String) throws -> JSONValue {
        try JSONValue.read(path: TestPaths.fixtures.appendingPathComponent("tiny/\(relative)").path)
    }

    static func implied(_ expectations: Expectations) -> ModelConfigValidation.Shapes {
        var result: ModelConfigValidation.Shapes = [:]
        for (name, allowed, _) in expectations.shapes { result[name] = allowed[0] }
        return result
    }

    @Test func unetConfigImpliesExactlyTheSavedTensors() throws {
        let present = try Self.shapes("base/unet/diffusion_pytorch_model.safetensors")
        var expected = Expectations(configFile: "config.json", tensorFile: "weights")
        try UNetSpec(Self.config("base/unet/config.json"), file: "config.json").expect(&expected)
        let implied = Self.implied(expected)
        #expect(implied.count == 686)  // the UNet's parameters, as the ONNX export lists them
        #expect(Set(implied.keys) == Set(present.keys))
        for (name, shape) in present { #expect(implied[name] == shape, "\(name)") }
        try ModelConfigValidation.validateUNetConfig(Self.config("base/unet/config.json"), file: "config.json", against: present, tensorFile: "weights")
    }

    @Test func vaeConfigImpliesExactlyTheSavedTensors() throws {
        let present = try Self.shapes("base/vae/diffusion_pytorch_model.safetensors")
        var expected = Expectations(configFile: "config.json", tensorFile: "weights")
        try VAESpec(Self.config("base/vae/config.json"), file: "config.json").expect(&expected)
        let implied = Self.implied(expected)
        #expect(Set(implied.keys) == Set(present.keys))
        for (name, shape) in present { #expect(implied[name] == shape, "\(name)") }
    }

    /// DLoRAL's CFR (README of the fixtures: 6 SpyNet levels, 9 heads × 64, latent 4).
    @Test func cfrConfigImpliesExactlyTheInferenceTensors() throws {
        let present = try Self.shapes("cfr.safetensors")
        let config = JSONValue.object([
            ("latent_channels", .int(4)), ("attention_heads", .int(9)), ("attention_head_dim", .int(64)),
            ("attention_temperature", .double(3000)), ("spynet_levels", .int(6)), ("lq_downsample", .int(8)),
        ])
        var expected = Expectations(configFile: "config.json", tensorFile: "weights")
        try CFRSpec(config, file: "config.json").expect(&expected)
        let implied = Self.implied(expected)
        #expect(Set(implied.keys) == Set(present.keys))
        for (name, shape) in present { #expect(implied[name] == shape, "\(name)") }
    }

    /// A tensor missing from the weights, or one block too many in them, names the tensor.
    @Test func missingAndExtraTensorsAreNamed() throws {
        let config = try Self.config("base/unet/config.json")
        var present = try Self.shapes("base/unet/diffusion_pytorch_model.safetensors")
        present["up_blocks.3.resnets.3.conv1.weight"] = [8, 8, 3, 3]
        #expect {
            try ModelConfigValidation.validateUNetConfig(config, file: "c.json", against: present, tensorFile: "w")
        } throws: { ($0 as? FormatError)?.tensor == "up_blocks.3.resnets.3.conv1.weight" }
        present["up_blocks.3.resnets.3.conv1.weight"] = nil
        present["mid_block.attentions.0.proj_in.weight"] = nil
        #expect {
            try ModelConfigValidation.validateUNetConfig(config, file: "c.json", against: present, tensorFile: "w")
        } throws: { ($0 as? FormatError)?.tensor == "mid_block.attentions.0.proj_in.weight" }
    }

    /// Keys diffusers reads whose non-default values change the computation (ReLU / Mish
    /// resnets, a mid block or resnet output scale, SD3's latent shift, extra embeddings): the
    /// engine does not implement them, so the config is refused naming the key and what the
    /// engine implements. The diffusers-written fixture configs hold the defaults and pass.
    @Test(arguments: [
        ("unet", "act_fn", JSONValue.string("relu"), "'silu' only"),
        ("unet", "mid_block_scale_factor", .int(2), "1 only"),
        ("unet", "resnet_out_scale_factor", .int(0), "1 only"),
        ("unet", "mid_block_scale_factor", .double(1e30), "1 only"),
        ("unet", "center_input_sample", .bool(true), "false only"),
        ("unet", "downsample_padding", .int(0), "1 only"),
        ("unet", "resnet_skip_time_act", .bool(true), "false only"),
        ("unet", "time_embedding_act_fn", .string("silu"), "null (the key absent) only"),
        ("unet", "timestep_post_act", .string("silu"), "null (the key absent) only"),
        ("unet", "upcast_attention", .string("yes"), "true or false"),
        ("vae", "act_fn", .string("mish"), "'silu' only"),
        ("vae", "shift_factor", .double(0.0609), "null (the key absent) only"),
        ("vae", "latents_mean", .array([.int(0)]), "null (the key absent) only"),
        ("vae", "force_upcast", .string("yes"), "true or false"),
    ])
    func unimplementedConfigValuesAreRefused(_ component: String, _ key: String, _ value: JSONValue, _ implemented: String) throws {
        let config = try Self.config("base/\(component)/config.json")
        try ModelConfigValidation.validate(component: component, config: config, file: "config.json", against: nil, tensorFile: "w")
        #expect {
            try ModelConfigValidation.validate(component: component, config: config.setting(key, value), file: "config.json", against: nil, tensorFile: "w")
        } throws: { error in
            let text = "\(error)"
            return text.contains("key \"\(key)\"") && text.contains(implemented)
        }
    }
}
