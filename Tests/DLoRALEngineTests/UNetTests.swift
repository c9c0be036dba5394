import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// The tiny merged DLoRAL UNets and the PyTorch (diffusers + peft) references computed with them.
enum UNetFixture {
    static let tiny: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny")

    static func folder(_ stage: String) -> URL {
        tiny.appendingPathComponent("merged/\(stage)/unet")
    }

    static func config(_ stage: String) throws -> UNetConfig {
        try UNetConfig(json: JSONValue.read(path: folder(stage).appendingPathComponent("config.json").path))
    }

    static func weights(_ stage: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: folder(stage).appendingPathComponent("diffusion_pytorch_model.safetensors").path)
    }

    static func reference(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: tiny.appendingPathComponent(name).path)
    }

    /// (reference file, merged stage whose weights produced it)
    static let cases: [(String, String)] = [
        ("reference_full.safetensors", "full"),
        ("reference_consistency.safetensors", "consistency"),
        ("reference_full_48x80.safetensors", "full"),
    ]
}

@Suite("UNet against PyTorch")
struct UNetTests {
    /// Float rounding through ~60 layers; the merged weights also differ from the unmerged peft
    /// model the reference ran by ~1e-6 relative.
    static let tolerance: Float = 1e-4

    @Test("config.json is read")
    func config() throws {
        let config = try UNetFixture.config("full")
        #expect(config.inChannels == 8)
        #expect(config.outChannels == 4)
        #expect(config.blockOutChannels == [8, 16, 24, 24])
        #expect(config.layersPerBlock == [2, 2, 2, 2])
        #expect(config.attentionHeads == [2, 4, 6, 6])
        #expect(config.transformerLayersPerBlock == [1, 1, 1, 1])
        #expect(config.crossAttentionDim == 32)
        #expect(config.normNumGroups == 4)
        #expect(config.normEps == Float(1e-5))
        #expect(config.useLinearProjection)
        #expect(config.flipSinToCos)
        #expect(config.freqShift == 0)
        #expect(config.downBlockTypes == ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"])
        #expect(config.upBlockTypes == ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])

        let defaults = try UNetConfig(json: .object([]))
        #expect(defaults.blockOutChannels == [320, 640, 1280, 1280])
        #expect(defaults.attentionHeads == [5, 10, 20, 20])
        #expect(defaults.crossAttentionDim == 1024)
        #expect(defaults.inChannels == 4)

        let ints = try UNetConfig(json: .object([
            ("block_out_channels", .array([.int(8), .int(16)])),
            ("down_block_types", .array([.string("CrossAttnDownBlock2D"), .string("DownBlock2D")])),
            ("up_block_types", .array([.string("UpBlock2D"), .string("CrossAttnUpBlock2D")])),
            ("attention_head_dim", .int(2)), ("transformer_layers_per_block", .int(3)),
            ("layers_per_block", .int(1)),
        ]))
        #expect(ints.attentionHeads == [2, 2])
        #expect(ints.transformerLayersPerBlock == [3, 3])
        #expect(ints.layersPerBlock == [1, 1])

        #expect(throws: UNetConfigError.self) {
            _ = try UNetConfig(json: .object([("down_block_types", .array([.string("AttnDownBlock2D")]))]))
        }
    }

    @Test("sample, timestep 1, prompt → noise prediction", arguments: UNetFixture.cases.map { "\($0.0)|\($0.1)" })
    func unet(_ item: String) throws {
        let parts = item.split(separator: "|").map(String.init)
        let (name, stage) = (parts[0], parts[1])
        let reference = try UNetFixture.reference(name)
        let sample = try Tensor.load("output.unet_input", from: reference.tensors)
        let prompt = try Tensor.load("input.prompt_embeds", from: reference.tensors)
        let expected = try Tensor.load("output.unet_output", from: reference.tensors)
        let unet = try UNet2DCondition(table: UNetFixture.weights(stage).tensors, config: UNetFixture.config(stage))
        let output = try unet(sample, timestep: 1, encoderHiddenStates: prompt)
        #expect(output.shape == expected.shape)
        let error = output.maxAbsDifference(expected)
        print("UNet \(name) (\(stage)) \(sample.shape): max abs error \(error) (max |ref| \(expected.maxAbs))")
        #expect(error <= Self.tolerance)
    }

    /// Not bit-identical: BLAS blocks the K/V projections differently for 1 and B rows.
    @Test("a prompt given per batch item agrees with the broadcast one")
    func batchedPrompt() throws {
        let reference = try UNetFixture.reference("reference_full_48x80.safetensors")
        let sample = try Tensor.load("output.unet_input", from: reference.tensors)
        let prompt = try Tensor.load("input.prompt_embeds", from: reference.tensors)
        let batch = sample.shape[0]
        var tiled = [Float]()
        for _ in 0..<batch { tiled += prompt.data }
        let prompts = Tensor(shape: [batch] + prompt.shape.dropFirst(), data: tiled)
        let unet = try UNet2DCondition(table: UNetFixture.weights("full").tensors, config: UNetFixture.config("full"))
        let a = try unet(sample, timestep: 1, encoderHiddenStates: prompt)
        let b = try unet(sample, timestep: 1, encoderHiddenStates: prompts)
        #expect(a.shape == b.shape)
        let difference = a.maxAbsDifference(b)
        #expect(difference <= 1e-5, "broadcast vs per-item prompt differ by \(difference)")
    }

    @Test("bad inputs and missing weights are reported")
    func errors() throws {
        let config = try UNetFixture.config("full")
        #expect(throws: EngineError.missingTensor(name: "conv_in.weight")) {
            _ = try UNet2DCondition(table: TensorTable(), config: config)
        }
        let unet = try UNet2DCondition(table: UNetFixture.weights("full").tensors, config: config)
        #expect(throws: EngineError.self) {
            _ = try unet(Tensor(zeros: [1, 4, 8, 8]), timestep: 1, encoderHiddenStates: Tensor(zeros: [1, 77, 32]))
        }
        #expect(throws: EngineError.self) {
            _ = try unet(Tensor(zeros: [1, 8, 8, 8]), timestep: 1, encoderHiddenStates: Tensor(zeros: [1, 77, 16]))
        }
        // No token: cross-attention would have no key to attend to.
        #expect(throws: EngineError.self) {
            _ = try unet(Tensor(zeros: [1, 8, 8, 8]), timestep: 1, encoderHiddenStates: Tensor(zeros: [1, 0, 32]))
        }
    }
}
