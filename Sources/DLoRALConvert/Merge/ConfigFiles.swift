import DLoRALFormats
import Foundation

/// `merge --config`: configs given by the user for a base that has none (an LDM single file, an
/// ONNX UNet) or whose own is wrong.
///
/// A `.json` file is a diffusers `config.json`; its `_class_name` (`UNet2DConditionModel`, the
/// default, or `AutoencoderKL`) says which part it describes. A `.yaml` / `.yml` file is an LDM
/// inference config such as Stable Diffusion 2.1's `v2-inference.yaml`; its UNet and VAE
/// parameters are translated to diffusers keys (`LDMConfigTranslation`).
enum ConfigFiles {
    static func read(_ paths: [String]) throws -> [ModelComponent: (JSONValue, String)] {
        var result: [ModelComponent: (JSONValue, String)] = [:]
        for path in paths {
            let lower = path.lowercased()
            let found: [(ModelComponent, JSONValue)]
            if lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") {
                found = try LDMConfigTranslation.read(path: path)
            } else {
                let json = try JSONValue.read(path: path)
                guard json.objectValue != nil else {
                    throw FormatError(.malformed, file: path, "is not a JSON object; expected a diffusers config.json")
                }
                switch json["_class_name"]?.stringValue {
                case nil, "UNet2DConditionModel"?: found = [(.unet, json)]
                case "AutoencoderKL"?: found = [(.vae, json)]
                case let other?:
                    throw FormatError(.invalidModel, file: path, "_class_name is \"\(other)\"; --config takes a UNet2DConditionModel or AutoencoderKL config.json, or an LDM .yaml")
                }
            }
            for (component, json) in found {
                if let (_, earlier) = result[component] {
                    throw FormatError(.invalidModel, file: path, "gives a second \(component.rawValue) config (the first came from \(earlier)); pass one per part")
                }
                result[component] = (json, path)
            }
        }
        return result
    }
}
