import DLoRALFormats
import Foundation
import Yams

/// Translates an LDM inference config (`model.params.unet_config.params` and
/// `model.params.first_stage_config.params.ddconfig`, as in Stable Diffusion 2.1's
/// `v2-inference.yaml`) to diffusers config keys, the way diffusers' own single-file loader
/// does (`create_unet_diffusers_config`, `create_vae_diffusers_config`): block_out_channels =
/// model_channels × channel_mult, a level has attention if its downsampling factor is in
/// attention_resolutions, heads = channels / num_head_channels (or num_heads), 32 GroupNorm groups.
enum LDMConfigTranslation {
    static func read(path: String) throws -> [(ModelComponent, JSONValue)] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw FormatError(.io, file: path, "cannot read the LDM config: \(error.localizedDescription)")
        }
        let root: Any?
        do {
            root = try Yams.load(yaml: text)
        } catch {
            throw FormatError(.malformed, file: path, "not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        let model = (root as? [String: Any])?["model"] as? [String: Any]
        let params = model?["params"] as? [String: Any]
        guard let unet = (params?["unet_config"] as? [String: Any])?["params"] as? [String: Any] else {
            throw FormatError(.invalidModel, file: path, "has no model.params.unet_config.params; expected an LDM inference config such as Stable Diffusion's v2-inference.yaml")
        }
        var result = [(ModelComponent.unet, try unetConfig(unet, path: path))]
        if let stage = (params?["first_stage_config"] as? [String: Any])?["params"] as? [String: Any],
            let dd = stage["ddconfig"] as? [String: Any]
        {
            let scale = params?["scale_factor"]
            result.append((.vae, try vaeConfig(dd, scaleFactor: scale, path: path)))
        }
        return result
    }

    static func int(_ dict: [String: Any], _ key: String, _ prefix: String, path: String, default fallback: Int? = nil) throws -> Int {
        guard let value = dict[key] else {
            guard let fallback else { throw FormatError(.invalidModel, file: path, "\(prefix).\(key) is missing; expected an integer") }
            return fallback
        }
        guard let i = value as? Int, !(value is Bool) else {
            throw FormatError(.invalidModel, file: path, "\(prefix).\(key) is \(value); expected an integer")
        }
        return i
    }

    static func ints(_ dict: [String: Any], _ key: String, _ prefix: String, path: String) throws -> [Int] {
        guard let list = dict[key] as? [Any], !list.isEmpty, list.allSatisfy({ $0 is Int && !($0 is Bool) }) else {
            throw FormatError(.invalidModel, file: path, "\(prefix).\(key) is \(dict[key].map { "\($0)" } ?? "missing"); expected a list of integers")
        }
        return list.map { $0 as! Int }
    }

    static func bool(_ dict: [String: Any], _ key: String, default fallback: Bool) -> Bool {
        dict[key] as? Bool ?? fallback
    }

    static func unetConfig(_ p: [String: Any], path: String) throws -> JSONValue {
        let prefix = "model.params.unet_config.params"
        let base = try int(p, "model_channels", prefix, path: path)
        let mult = try ints(p, "channel_mult", prefix, path: path)
        let attention = Set(try ints(p, "attention_resolutions", prefix, path: path))
        let channels = mult.map { base * $0 }
        let headChannels = try int(p, "num_head_channels", prefix, path: path, default: -1)
        let numHeads = try int(p, "num_heads", prefix, path: path, default: -1)
        var heads: [JSONValue] = []
        for c in channels {
            if headChannels > 0 {
                guard c % headChannels == 0 else {
                    throw FormatError(.invalidModel, file: path, "\(prefix).num_head_channels \(headChannels) does not divide block channels \(c)")
                }
                heads.append(.int(c / headChannels))
            } else if numHeads > 0 {
                heads.append(.int(numHeads))
            } else {
                throw FormatError(.invalidModel, file: path, "\(prefix) has neither num_head_channels nor num_heads")
            }
        }
        let levels = channels.indices.map { attention.contains(1 << $0) }
        let depth: JSONValue
        if let list = p["transformer_depth"] as? [Any] {
            depth = .array(try list.map {
                guard let i = $0 as? Int else { throw FormatError(.invalidModel, file: path, "\(prefix).transformer_depth holds \($0); expected integers") }
                return .int(i)
            })
        } else {
            depth = .int(try int(p, "transformer_depth", prefix, path: path, default: 1))
        }
        return .object([
            ("_class_name", .string("UNet2DConditionModel")),
            ("attention_head_dim", .array(heads)),
            ("block_out_channels", .array(channels.map { .int($0) })),
            ("cross_attention_dim", .int(try int(p, "context_dim", prefix, path: path))),
            ("down_block_types", .array(levels.map { .string($0 ? "CrossAttnDownBlock2D" : "DownBlock2D") })),
            ("in_channels", .int(try int(p, "in_channels", prefix, path: path))),
            ("layers_per_block", .int(try int(p, "num_res_blocks", prefix, path: path))),
            ("mid_block_type", .string("UNetMidBlock2DCrossAttn")),
            // LDM's GroupNorm (normalization() in ldm/modules/diffusionmodules/util.py) is 32 groups.
            ("norm_num_groups", .int(32)),
            ("out_channels", .int(try int(p, "out_channels", prefix, path: path))),
            ("transformer_layers_per_block", depth),
            ("up_block_types", .array(levels.reversed().map { .string($0 ? "CrossAttnUpBlock2D" : "UpBlock2D") })),
            ("use_linear_projection", .bool(bool(p, "use_linear_in_transformer", default: false))),
        ])
    }

    static func vaeConfig(_ d: [String: Any], scaleFactor: Any?, path: String) throws -> JSONValue {
        let prefix = "model.params.first_stage_config.params.ddconfig"
        let ch = try int(d, "ch", prefix, path: path)
        let channels = try ints(d, "ch_mult", prefix, path: path).map { ch * $0 }
        let scale = (scaleFactor as? Double) ?? (scaleFactor as? Int).map(Double.init) ?? 0.18215
        return .object([
            ("_class_name", .string("AutoencoderKL")),
            ("block_out_channels", .array(channels.map { .int($0) })),
            ("down_block_types", .array(channels.map { _ in .string("DownEncoderBlock2D") })),
            ("in_channels", .int(try int(d, "in_channels", prefix, path: path))),
            ("latent_channels", .int(try int(d, "z_channels", prefix, path: path))),
            ("layers_per_block", .int(try int(d, "num_res_blocks", prefix, path: path))),
            ("norm_num_groups", .int(32)),
            ("out_channels", .int(try int(d, "out_ch", prefix, path: path))),
            ("scaling_factor", .double(scale)),
            ("up_block_types", .array(channels.map { _ in .string("UpDecoderBlock2D") })),
        ])
    }
}
