@testable import DLoRALConvert
import DLoRALFormats
import Foundation
import Testing

/// `merge --config <LDM yaml>`: Stable Diffusion 2.1's own inference yaml translates to the
/// config.json that stabilityai/stable-diffusion-2-1 ships (unet/ and vae/ on the Hub).
@Suite("LDM yaml configs")
struct LDMConfigTranslationTests {
    /// The unet_config / first_stage_config part of Stability's configs/stable-diffusion/v2-inference.yaml.
    static let v2Inference = """
        model:
          base_learning_rate: 1.0e-4
          target: ldm.models.diffusion.ddpm.LatentDiffusion
          params:
            linear_start: 0.00085
            linear_end: 0.0120
            scale_factor: 0.18215
            use_ema: False
            unet_config:
              target: ldm.modules.diffusionmodules.openaimodel.UNetModel
              params:
                use_checkpoint: True
                use_fp16: True
                image_size: 32 # unused
                in_channels: 4
                out_channels: 4
                model_channels: 320
                attention_resolutions: [ 4, 2, 1 ]
                num_res_blocks: 2
                channel_mult: [ 1, 2, 4, 4 ]
                num_head_channels: 64 # need to fix for flash-attn
                use_spatial_transformer: True
                use_linear_in_transformer: True
                transformer_depth: 1
                context_dim: 1024
                legacy: False
            first_stage_config:
              target: ldm.models.autoencoder.AutoencoderKL
              params:
                embed_dim: 4
                monitor: val/rec_loss
                ddconfig:
                  double_z: true
                  z_channels: 4
                  resolution: 256
                  in_channels: 3
                  out_ch: 3
                  ch: 128
                  ch_mult:
                  - 1
                  - 2
                  - 4
                  - 4
                  num_res_blocks: 2
                  attn_resolutions: []
                  dropout: 0.0
        """

    @Test func sd21InferenceYamlGivesTheHubConfigs() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("v2-inference-\(UUID().uuidString).yaml")
        try Self.v2Inference.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let configs = try ConfigFiles.read([url.path])
        let unet = try #require(configs[.unet]?.0)
        // stabilityai/stable-diffusion-2-1 unet/config.json
        #expect(unet["block_out_channels"]?.intArray == [320, 640, 1280, 1280])
        #expect(unet["attention_head_dim"]?.intArray == [5, 10, 20, 20])
        #expect(unet["cross_attention_dim"]?.intValue == 1024)
        #expect(unet["layers_per_block"]?.intValue == 2)
        #expect(unet["norm_num_groups"]?.intValue == 32)
        #expect(unet["use_linear_projection"]?.boolValue == true)
        #expect(unet["down_block_types"] == .array(["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"].map { .string($0) }))
        #expect(unet["up_block_types"] == .array(["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"].map { .string($0) }))
        #expect(unet["in_channels"]?.intValue == 4 && unet["out_channels"]?.intValue == 4)
        // stabilityai/stable-diffusion-2-1 vae/config.json
        let vae = try #require(configs[.vae]?.0)
        #expect(vae["block_out_channels"]?.intArray == [128, 256, 512, 512])
        #expect(vae["latent_channels"]?.intValue == 4)
        #expect(vae["layers_per_block"]?.intValue == 2)
        #expect(vae["scaling_factor"]?.doubleValue == 0.18215)
        // Both pass the value checks.
        try ModelConfigValidation.validateUNetConfig(unet, file: url.path)
        try ModelConfigValidation.validateVAEConfig(vae, file: url.path)
    }
}
