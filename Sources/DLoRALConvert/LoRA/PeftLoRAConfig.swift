import DLoRALFormats

/// The parts of a peft `LoraConfig` that decide each module's scale: `r`, `lora_alpha`, and the
/// per-module `rank_pattern` / `alpha_pattern` overrides.
///
/// peft scales a module's delta by `alpha / r` (rsLoRA: `alpha / √r`), where a pattern key
/// matching the module (exactly or as a dotted suffix) overrides the default.
struct PeftLoRAConfig {
    var rank: Int
    var alpha: Double
    var rankPattern: [(String, Int)]
    var alphaPattern: [(String, Double)]
    var rsLoRA: Bool

    init(_ config: JSONValue, file: String) throws {
        guard let r = config["r"]?.intValue, r > 0 else {
            throw FormatError(.malformed, file: file, "\"r\" (the LoRA rank) must be a positive integer")
        }
        rank = r
        alpha = config["lora_alpha"]?.doubleValue ?? 8
        rankPattern = (config["rank_pattern"]?.objectValue ?? []).compactMap { k, v in v.intValue.map { (k, $0) } }
        alphaPattern = (config["alpha_pattern"]?.objectValue ?? []).compactMap { k, v in v.doubleValue.map { (k, $0) } }
        rsLoRA = config["use_rslora"]?.boolValue ?? false
        if config["use_dora"]?.boolValue == true {
            throw FormatError(.unsupported, file: file, "DoRA adapters (use_dora: true) are not supported; only plain LoRA can be merged exactly")
        }
    }

    static func matches(_ pattern: String, _ module: String) -> Bool {
        module == pattern || module.hasSuffix("." + pattern)
    }

    /// Stores in each module the alpha that gives peft's scale with the module's actual rank:
    /// scale = alpha_m / rank_m, so alpha_m = scale × rank_m.
    func apply(to modules: inout [LoRAModule]) {
        for i in modules.indices {
            let module = modules[i].module
            let bare = String(module.drop { $0 != "." }.dropFirst())
            let a = alphaPattern.first { Self.matches($0.0, bare) }?.1 ?? alpha
            let r = rankPattern.first { Self.matches($0.0, bare) }?.1 ?? rank
            let scale = rsLoRA ? a / Double(r).squareRoot() : a / Double(r)
            modules[i].alpha = scale * Double(modules[i].rank)
        }
    }
}
