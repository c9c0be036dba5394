import DLoRALFormats
import Foundation
import Testing

/// The typed model configs' defaults against the models they stand for: SD 2.1-base's configs as
/// diffusers wrote them (Tests/Fixtures/naming/ldm_sd21.json, by Tools/fixtures) and DLoRAL's CFR
/// constants (upstream `cross_frame_retrieval`: heads=9, temperature 3000).
@Suite("model configs")
struct ModelConfigsTests {
    static func sd21() throws -> JSONValue {
        let path = TestPaths.fixtures.appendingPathComponent("naming/ldm_sd21.json").path
        return try StrictJSONParser.parse(String(contentsOfFile: path, encoding: .utf8))
    }

    @Test("UNet: absent keys take SD 2.1-base's values")
    func unetDefaults() throws {
        let written = try #require(try Self.sd21()["unet_config"])
        let d = UNetConfig.sd21Base
        #expect(d.blockOutChannels == written["block_out_channels"]?.intArray)
        #expect(d.layersPerBlock == Array(repeating: try #require(written["layers_per_block"]?.intValue), count: 4))
        #expect(d.downBlockTypes == written["down_block_types"]?.arrayValue?.compactMap(\.stringValue))
        #expect(d.upBlockTypes == written["up_block_types"]?.arrayValue?.compactMap(\.stringValue))
        #expect(d.inChannels == written["in_channels"]?.intValue && d.outChannels == written["out_channels"]?.intValue)
        #expect(d.crossAttentionDim == written["cross_attention_dim"]?.intValue)
        #expect(d.useLinearProjection == written["use_linear_projection"]?.boolValue)
        // SD 2.1-base's attention_head_dim (its unet/config.json).
        #expect(d.attentionHeads == [5, 10, 20, 20])
        #expect(try UNetConfig(json: .object([])) == d)
        #expect(try UNetConfig(json: written) == d)
        // Another block count has no SD 2.1 channels or heads to fall back on.
        let twoBlocks = JSONValue.object([("down_block_types", .array([.string("DownBlock2D"), .string("DownBlock2D")])),
                                          ("up_block_types", .array([.string("UpBlock2D"), .string("UpBlock2D")]))])
        #expect(throws: UNetConfigError("block_out_channels missing")) { try UNetConfig(json: twoBlocks) }
    }

    @Test("VAE: absent keys take SD 2.1-base's values")
    func vaeDefaults() throws {
        let written = try #require(try Self.sd21()["vae_config"])
        let d = VAEConfig.sd21
        #expect(d.blockOutChannels == written["block_out_channels"]?.intArray)
        #expect(d.layersPerBlock == written["layers_per_block"]?.intValue)
        #expect(d.latentChannels == written["latent_channels"]?.intValue)
        #expect(d.scalingFactor == Float(0.18215) && d.inChannels == 3 && d.outChannels == 3)
        #expect(VAEConfig(json: .object([])) == d)
    }

    @Test("CFR: DLoRAL's constants, and the config merge writes reads back")
    func cfr() {
        let d = CFRConfig.dloral
        #expect(d.attentionHeads == 9 && d.attentionTemperature == 3000)
        #expect(CFRConfig.spynetChannels == [8, 32, 64, 32, 16, 2] && CFRConfig.lqDownsample == 8)
        #expect(CFRConfig(json: .object([])) == d)
        let other = CFRConfig(latentChannels: 4, attentionHeads: 3, attentionHeadDim: 8, attentionTemperature: 2.5, spynetLevels: 2)
        #expect(CFRConfig(json: other.json) == other)
        // Formats/dlrt.md §3: the CFR config's keys.
        #expect(other.json.objectValue?.map(\.0) == ["_class_name", "latent_channels", "attention_heads", "attention_head_dim",
                                                      "attention_temperature", "spynet_levels", "spynet_channels", "lq_downsample"])
    }
}
