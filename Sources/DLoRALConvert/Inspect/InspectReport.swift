import Foundation
import DLoRALFormats

/// What `dloral-convert inspect` says about a checkpoint, as JSON and as text.
///
/// The JSON keys are a stable contract (DESIGN §3): `format`, `tensors` (`name`, `dtype`,
/// `shape`, `bytes`), `lora` (`adapter`, `rank`, `alpha`, `modules`); the rest is added
/// information and may grow, never be renamed.
public struct InspectReport {
    public let checkpoint: LoadedCheckpoint

    public init(_ checkpoint: LoadedCheckpoint) { self.checkpoint = checkpoint }

    /// LoRA tensors under canonical peft-style names, so every dialect lists the same way:
    /// `<module>.lora_A.<adapter>.weight`, `<module>.lora_B.<adapter>.weight`.
    var loraEntries: [(String, TensorView)] {
        checkpoint.lora.flatMap { m in
            [("\(m.module).lora_A.\(m.adapter).weight", m.down), ("\(m.module).lora_B.\(m.adapter).weight", m.up)]
        }
    }

    var allTensors: [(String, TensorView)] {
        Array(checkpoint.tensors.tensors.map { ($0.key, $0.value) }) + loraEntries
    }

    public var totalBytes: Int { allTensors.reduce(0) { $0 + $1.1.byteCount } }

    public func json() -> JSONValue {
        let c = checkpoint
        var pairs: [(String, JSONValue)] = [
            ("path", .string(c.path)),
            ("format", .string(c.format.rawValue)),
            ("dialect", .string(c.dialect.rawValue)),
            ("kinds", .array(c.kinds.map { .string($0) })),
        ]
        pairs.append(("configs", .object(c.configs.map { ($0.key.rawValue, $0.value) })))
        pairs.append(("inferred_configs", .array(c.inferredConfigs.map(\.rawValue).sorted().map { .string($0) })))
        pairs.append(("lora", .array(c.adapters.map { adapter in
            .object([
                ("adapter", .string(adapter.name)),
                ("rank", .int(adapter.rank)),
                ("alpha", .double(adapter.alpha)),
                ("alpha_source", .string(adapter.alphaSource)),
                ("modules", .int(adapter.moduleCount)),
            ])
        })))
        pairs.append(("tensor_count", .int(allTensors.count)))
        pairs.append(("total_bytes", .int(totalBytes)))
        pairs.append(("tensors", .array(allTensors.map { name, view in
            .object([
                ("name", .string(name)),
                ("dtype", .string(view.dtype.rawValue)),
                ("shape", .array(view.shape.map { .int($0) })),
                ("bytes", .int(view.byteCount)),
            ])
        })))
        pairs.append(("unrecognized", .array(c.unrecognized.map {
            .object([("name", .string($0.name)), ("reason", .string($0.reason))])
        })))
        pairs.append(("metadata", .object(c.tensors.metadata.map { ($0.key, .string($0.value)) })))
        pairs.append(("notes", .object(c.notes.map { ($0.key, $0.value) })))
        return .object(pairs)
    }

    /// Human-readable summary; `limit` caps the tensor table (nil = all).
    public func text(limit: Int? = 40) -> String {
        let c = checkpoint
        var lines: [String] = []
        lines.append("\(c.path)")
        lines.append("  format:  \(c.format.rawValue) (naming: \(c.dialect.rawValue))")
        lines.append("  holds:   \(c.kinds.isEmpty ? "no recognised model tensors" : c.kinds.joined(separator: ", "))")
        for (component, config) in c.configs {
            let inferred = c.inferredConfigs.contains(component) ? " (inferred from shapes)" : ""
            lines.append("  \(component.rawValue) config\(inferred): \(Self.configSummary(config))")
        }
        for adapter in c.adapters {
            lines.append("  LoRA adapter \(adapter.name): rank \(adapter.rank), alpha \(Self.number(adapter.alpha)) (\(adapter.alphaSource)), \(adapter.moduleCount) modules")
        }
        for (key, value) in c.notes {
            let text = value.serialized()
            lines.append("  \(key): \(text.count > 160 ? String(text.prefix(157)) + "..." : text)")
        }
        let tensors = allTensors
        lines.append("  tensors: \(tensors.count), \(Self.bytes(totalBytes))")
        let shown = limit.map { min($0, tensors.count) } ?? tensors.count
        let width = tensors.prefix(shown).map(\.0.count).max() ?? 0
        for (name, view) in tensors.prefix(shown) {
            let shape = "[" + view.shape.map(String.init).joined(separator: ", ") + "]"
            lines.append("    \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(view.dtype.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0))  \(shape)")
        }
        if shown < tensors.count {
            lines.append("    … \(tensors.count - shown) more (use --all or --json)")
        }
        if !c.unrecognized.isEmpty {
            lines.append("  not recognised: \(c.unrecognized.count) tensors, e.g. \(c.unrecognized[0].name) (\(c.unrecognized[0].reason))")
        }
        return lines.joined(separator: "\n")
    }

    static func configSummary(_ config: JSONValue) -> String {
        let keys = ["_class_name", "in_channels", "block_out_channels", "layers_per_block", "attention_head_dim",
                    "cross_attention_dim", "norm_num_groups", "latent_channels", "scaling_factor"]
        return keys.compactMap { key in config[key].map { "\(key)=\($0.serialized())" } }.joined(separator: " ")
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    static func bytes(_ count: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }
}
