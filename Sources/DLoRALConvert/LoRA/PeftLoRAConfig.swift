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
    let file: String

    /// LoraConfig keys whose non-default values change what the adapter computes in ways a merge
    /// of `up × down × scale` into the base weight does not reproduce, with their peft defaults.
    static let unsupported: [(key: String, default: JSONValue, why: String)] = [
        ("lora_bias", .bool(false), "the adapter's lora_B bias would be dropped"),
        ("bias", .string("none"), "trained biases would be dropped"),
        ("fan_in_fan_out", .bool(false), "its weights are stored transposed (Conv1D layers)"),
        ("layers_to_transform", .null, "it adapts only some layers' indices"),
        ("layer_replication", .null, "it duplicates layers"),
        ("modules_to_save", .null, "fully trained module copies would be dropped"),
        ("trainable_token_indices", .null, "trained token embeddings would be dropped"),
        ("target_parameters", .null, "it adapts parameters, not modules"),
        ("alora_invocation_tokens", .null, "an activated LoRA applies only after its invocation tokens"),
        ("use_qalora", .bool(false), "QALoRA pools its input in groups"),
        ("arrow_config", .null, "Arrow routes between adapters per token"),
        ("use_bdlora", .null, "a LoRA variant whose forward differs from up × down"),
        ("kasa_config", .null, "a LoRA variant whose forward differs from up × down"),
        ("velora_config", .null, "a LoRA variant whose forward differs from up × down"),
        ("monteclora_config", .null, "a LoRA variant whose forward differs from up × down"),
    ]

    init(_ config: JSONValue, file: String) throws {
        self.file = file
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
        if let type = config["peft_type"], type != .null, type.stringValue != "LORA" {
            throw FormatError(.unsupported, file: file, "key \"peft_type\" is \(type.serialized()); only \"LORA\" adapters can be merged (LoHa, LoKr, IA3 and the others compute a different delta)")
        }
        for (key, fallback, why) in Self.unsupported {
            guard let value = config[key], value != .null, value != fallback else { continue }
            if value.arrayValue?.isEmpty == true || value.objectValue?.isEmpty == true { continue }
            throw FormatError(.unsupported, file: file, "key \"\(key)\" is \(value.serialized().prefix(60)); only \(fallback.serialized()) (peft's default) is supported: \(why), so a merge would not reproduce the adapter")
        }
        if try flag("use_dora") {
            throw FormatError(.unsupported, file: file, "DoRA adapters (use_dora: true) are not supported; only plain LoRA can be merged exactly")
        }
    }

    static func matches(_ pattern: String, _ module: String) -> Bool {
        module == pattern || module.hasSuffix("." + pattern)
    }

    /// Stores in each module the alpha that gives peft's scale with the module's actual rank:
    /// scale = alpha_m / rank_m, so alpha_m = scale × rank_m.
    /// The config's rank must be the tensors' (peft itself refuses to load a size mismatch):
    /// another r would silently change the scale.
    func apply(to modules: inout [LoRAModule]) throws {
        for i in modules.indices {
            let module = modules[i].module
            let bare = String(module.drop { $0 != "." }.dropFirst())
            let a = alphaPattern.first { Self.matches($0.0, bare) }?.1 ?? alpha
            let patterned = rankPattern.first { Self.matches($0.0, bare) }
            let r = patterned?.1 ?? rank
            guard r == modules[i].rank else {
                let key = patterned.map { "rank_pattern.\($0.0)" } ?? "r"
                throw FormatError(.invalidModel, file: file, tensor: modules[i].sourceKey.isEmpty ? module : modules[i].sourceKey,
                                  "key \"\(key)\" is \(r) but the adapter's tensors have rank \(modules[i].rank) (lora_A [\(modules[i].rank), …]); the config does not belong to these weights: fix \"\(key)\" (or rank_pattern) to the tensors' rank")
            }
            let scale = rsLoRA ? a / Double(r).squareRoot() : a / Double(r)
            modules[i].alpha = scale * Double(modules[i].rank)
        }
    }
}
