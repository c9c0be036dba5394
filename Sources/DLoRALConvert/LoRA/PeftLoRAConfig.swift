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
        guard config.objectValue != nil else {
            throw FormatError(.malformed, file: file, "is not a JSON object; expected a peft LoraConfig with \"r\" and \"lora_alpha\"")
        }
        func bad(_ key: String, _ value: JSONValue, _ expected: String) -> FormatError {
            FormatError(.malformed, file: file, "key \"\(key)\" is \(value.serialized()); expected \(expected)")
        }
        func rankValue(_ key: String, _ value: JSONValue) throws -> Int {
            guard let r = value.intValue, r > 0 else { throw bad(key, value, "a positive integer (the LoRA rank)") }
            return r
        }
        func alphaValue(_ key: String, _ value: JSONValue) throws -> Double {
            guard let a = value.doubleValue, a.isFinite else {
                throw bad(key, value, "a finite number (the LoRA alpha; scale = alpha / r)")
            }
            return a
        }
        func pattern(_ key: String) throws -> [(String, JSONValue)] {
            guard let value = config[key], value != .null else { return [] }
            guard let pairs = value.objectValue else { throw bad(key, value, "an object mapping module names to values") }
            return pairs
        }
        func flag(_ key: String) throws -> Bool {
            guard let value = config[key], value != .null else { return false }
            guard let b = value.boolValue else { throw bad(key, value, "true or false") }
            return b
        }
        guard let r = config["r"] else {
            throw FormatError(.malformed, file: file, "has no key \"r\"; expected a positive integer (the LoRA rank)")
        }
        rank = try rankValue("r", r)
        // peft's LoraConfig default for lora_alpha is 8.
        if let value = config["lora_alpha"], value != .null {
            alpha = try alphaValue("lora_alpha", value)
        } else {
            alpha = 8
        }
        rankPattern = try pattern("rank_pattern").map { k, v in (k, try rankValue("rank_pattern.\(k)", v)) }
        alphaPattern = try pattern("alpha_pattern").map { k, v in (k, try alphaValue("alpha_pattern.\(k)", v)) }
        rsLoRA = try flag("use_rslora")
        if try flag("use_dora") {
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
