import ArgumentParser
import DLoRALConvert
import DLoRALFormats

/// `dloral-convert merge`: the dual LoRA merged into the base weights, as a diffusers folder.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge DLoRAL's LoRA adapters into the base model and write a diffusers folder.",
        discussion: """
            Writes <output>/unet, <output>/vae and <output>/cfr (diffusers naming, config.json each) \
            and <output>/dloral.json (SHA-256 of every input, adapters and scales applied). Each \
            adapter's delta is weight × alpha / rank × up · down, added in fp32 and rounded once to \
            --dtype. The output appears only when complete.
            """)

    @Option(help: "Base model: a diffusers folder, an LDM single file, or an ONNX UNet.")
    var base: String

    @Option(help: "LoRA checkpoint: DLoRAL's model.pkl, a peft folder, a kohya or diffusers LoRA file.")
    var lora: String

    @Option(help: "Output folder (must not exist unless --overwrite).")
    var output: String

    @Option(help: "full: all six DLoRAL adapters; consistency: only the three C-LoRA adapters.")
    var stage: String = "full"

    @Option(name: .customLong("adapter-weight"), help: "Override one adapter's weight, NAME=W (repeatable).")
    var adapterWeights: [String] = []

    @Option(name: .customLong("config"), help: ArgumentHelp(
        "Config for a base without one (LDM file, ONNX UNet): a diffusers config.json (UNet or VAE, by _class_name) or an LDM .yaml (repeatable).",
        valueName: "file"))
    var configs: [String] = []

    @Option(help: "Output dtype of floating-point tensors: fp32, fp16 or bf16.")
    var dtype: String = "fp32"

    @Flag(name: .customLong("allow-unmatched"), help: "Skip LoRA modules with no base weight instead of failing.")
    var allowUnmatched = false

    @Flag(help: "Replace an existing output folder.")
    var overwrite = false

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    func options() throws -> MergeOptions {
        var options = MergeOptions()
        guard let stage = MergeOptions.Stage(rawValue: stage) else {
            throw ValidationError("--stage must be full or consistency, not '\(stage)'")
        }
        options.stage = stage
        options.dtype = try OutputDType.parse(dtype, option: "--dtype")
        for pair in adapterWeights {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let weight = Double(parts[1]), weight.isFinite else {
                throw ValidationError("--adapter-weight takes NAME=W with a number W, got '\(pair)'")
            }
            options.adapterWeights[String(parts[0])] = weight
        }
        options.allowUnmatched = allowUnmatched
        options.overwrite = overwrite
        options.configPaths = configs
        return options
    }

    func run() throws {
        let options = try options()
        CommandRun.report(json: json, {
            try Merger.merge(base: base, lora: lora, output: output, options: options,
                             progress: TerminalProgress.ifInteractive(label: "merge"))
        }, warnings: \.warnings, asJSON: Self.json, summary: Self.summary)
    }

    static func json(_ report: MergeReport) -> JSONValue {
        .object([
            ("output", .string(report.output)),
            ("stage", .string(report.stage)),
            ("dtype", .string(report.dtype)),
            ("adapters", Merger.adaptersJSON(report)),
            ("merged_modules", .int(report.mergedModules)),
            ("tensors_written", .int(report.tensorsWritten)),
            ("bytes_written", .int(report.bytesWritten)),
            ("dropped", .array(report.dropped.map { .string($0.name) })),
            ("dropped_reasons", .object(report.dropped.map { ($0.name, .string($0.reason)) })),
            ("overridden", .array(report.overridden.map { .string($0) })),
            ("unmatched", .array(report.unmatched.map { .string($0) })),
            ("warnings", .array(report.warnings.map { .string($0) })),
            ("inputs", .array(report.inputs.map {
                .object([("path", .string($0.path)), ("bytes", .int($0.bytes)), ("sha256", .string($0.sha256))])
            })),
        ])
    }

    static func summary(_ report: MergeReport) -> String {
        var lines = ["merged \(Wording.count(report.mergedModules, "LoRA module")) (stage \(report.stage)) into \(report.output) as \(report.dtype): \(Wording.count(report.tensorsWritten, "tensor")), \(report.bytesWritten) bytes"]
        for adapter in report.adapters {
            lines.append("  \(adapter.name): weight \(adapter.weight), scale \(adapter.scale), \(adapter.modules) modules")
        }
        if !report.overridden.isEmpty {
            lines.append("  taken from the LoRA checkpoint instead of the base: \(report.overridden.prefix(5).joined(separator: ", "))\(report.overridden.count > 5 ? ", …" : "")")
        }
        if !report.dropped.isEmpty {
            lines.append("  dropped \(report.dropped.count) tensors (e.g. \(report.dropped[0].name): \(report.dropped[0].reason))")
        }
        return lines.joined(separator: "\n")
    }
}

/// Parses the dtype spellings the CLI accepts.
enum OutputDType {
    static func parse(_ text: String, option: String) throws -> DType {
        switch text.lowercased() {
        case "fp32", "f32", "float32": return .float32
        case "fp16", "f16", "float16": return .float16
        case "bf16", "bfloat16": return .bfloat16
        default: throw ValidationError("\(option) must be fp32, fp16 or bf16, not '\(text)'")
        }
    }
}
