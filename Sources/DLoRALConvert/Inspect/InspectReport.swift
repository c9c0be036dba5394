import Foundation
import DLoRALFormats

/// What `dloral-convert inspect` says about a checkpoint, as JSON and as text.
///
/// The JSON keys are a stable contract (docs/convert.md, `dloral-convert inspect`): `format`, `tensors` (`name`, `dtype`,
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

    /// One listed tensor: name, stored dtype, shape, stored bytes, and for `.dlrt` its scheme.
    struct Row {
        var name: String
        var dtype: String
        var shape: [Int]
        var bytes: Int
        var scheme: String?
        var sqnrDB: Double?
        /// `.dlrt` int8 layers on the integer path: "int8" or "int16" activations.
        var activations: String?
    }

    var rows: [Row] {
        if let dlrt = checkpoint.dlrt {
            return dlrt.entries.map {
                Row(name: $0.name, dtype: $0.dtype.rawValue, shape: $0.shape, bytes: $0.data.bytes + ($0.scales?.bytes ?? 0),
                    scheme: $0.scheme.rawValue + ($0.compression == .none ? "" : "+" + $0.compression.rawValue), sqnrDB: $0.sqnrDB,
                    activations: $0.activations?.rawValue)
            }
        }
        return (Array(checkpoint.tensors.tensors.map { ($0.key, $0.value) }) + loraEntries).map {
            Row(name: $0.0, dtype: $0.1.dtype.rawValue, shape: $0.1.shape, bytes: $0.1.byteCount)
        }
    }

    public var totalBytes: Int { rows.reduce(0) { $0 + $1.bytes } }

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
        let rows = self.rows
        pairs.append(("tensor_count", .int(rows.count)))
        pairs.append(("total_bytes", .int(totalBytes)))
        pairs.append(("tensors", .array(rows.map { row in
            var fields: [(String, JSONValue)] = [
                ("name", .string(row.name)),
                ("dtype", .string(row.dtype)),
                ("shape", .array(row.shape.map { .int($0) })),
                ("bytes", .int(row.bytes)),
            ]
            if let scheme = row.scheme {
                fields.append(("scheme", .string(scheme)))
                fields.append(("sqnr_db", row.sqnrDB.map { .number(DLRTTensorEntry.formatDB($0)) } ?? .null))
                fields.append(("activations", row.activations.map { .string($0) } ?? .null))
            }
            return .object(fields)
        })))
        if let dlrt = c.dlrt {
            pairs.append(("integrity", .object([
                ("header", .string("verified")),
                ("tensors_verified", .int(dlrt.verifiedCount)),
                ("tensors", .int(dlrt.entries.count)),
            ])))
        }
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
        let tensors = rows
        lines.append("  tensors: \(tensors.count), \(Self.bytes(totalBytes))")
        if let dlrt = c.dlrt {
            lines.append("  integrity: header verified; \(dlrt.verifiedCount) of \(dlrt.entries.count) tensors verified\(dlrt.verifiedCount < dlrt.entries.count ? " (--verify-all checks every tensor)" : "")")
        }
        let shown = limit.map { min($0, tensors.count) } ?? tensors.count
        let width = tensors.prefix(shown).map(\.name.count).max() ?? 0
        for row in tensors.prefix(shown) {
            let shape = "[" + row.shape.map(String.init).joined(separator: ", ") + "]"
            var line = "    \(row.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(row.dtype.padding(toLength: 4, withPad: " ", startingAt: 0))  \(shape)"
            if let scheme = row.scheme {
                line += "  \(scheme)" + (row.sqnrDB.map { "  \(DLRTTensorEntry.formatDB($0)) dB" } ?? "")
                if let activations = row.activations { line += "  activations \(activations)" }
            }
            lines.append(line)
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
