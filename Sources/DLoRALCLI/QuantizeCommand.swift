import Foundation
import ArgumentParser
import DLoRALConvert
import DLoRALEngine
import DLoRALFormats

/// `dloral-convert quantize`: a merged folder into one `.dlrt` runtime file.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a merged DLoRAL folder into a .dlrt runtime file (Formats/dlrt.md).",
        discussion: """
            Linear and Conv2d weights become int8 (symmetric, per output channel or per block of \
            32/64 along K, in the row layout the int8 kernels read) or fp16; norms, biases and the \
            timestep embedding stay fp32, as do tensors matching --keep and, with int8 weights, the \
            CFR (unless --int8-cfr). Every tensor carries a SHA-256, and the header one over header \
            and metadata.
            """)

    @Argument(help: "A merged folder written by dloral-convert merge.")
    var source: String

    @Option(help: "Weight storage: int8, fp16 or fp32.")
    var weights: String = "int8"

    @Option(help: "Output file (.dlrt).")
    var output: String

    @Option(name: .customLong("int8-granularity"), help: "int8 scales: channel, block32 or block64.")
    var granularity: String = "channel"

    @Option(help: ArgumentHelp(
        "How int8 layers run in the engine: fp32, int8, int16 or auto.",
        discussion: "int8/int16 quantize each UNet/VAE layer's input per row (pixel or token) on the fly; auto gives int16 to the layers that need it to reach --target-psnr on calibration frames, int8 to the rest. Needs --weights int8; int16 and auto need --int8-granularity channel, while block32/block64 with int8 quantize the activations per row and block of 32/64."))
    var activations: String = "fp32"

    @Option(name: .customLong("target-psnr"), help: "For --activations auto: decoded-frame PSNR (dB) to reach against the fp32 engine (default 38).")
    var targetPSNR: Double?

    @Option(help: "For --activations auto (required): frames to calibrate on, a folder of PNG frames (with --prompt-embeds) or a reference .safetensors with input.frames and input.prompt_embeds.")
    var calibration: String?

    @Option(help: "Keep tensors matching this glob (on canonical names, e.g. 'unet.conv_in.*') in fp32 (repeatable); a glob that matches no tensor is an error.")
    var keep: [String] = []

    @Flag(name: .customLong("int8-cfr"), help: "With --weights int8: quantize the CFR's weights to int8 too (by default the CFR stays fp32).")
    var int8CFR = false

    @Option(name: .customLong("prompt-embeds"), help: "Default prompt embeddings to bake in: a safetensors file with one [1, 77, C] tensor.")
    var promptEmbeds: String?

    @Option(help: "Compress the payload: zstd.")
    var compress: String?

    @Flag(help: "Replace an existing output file.")
    var overwrite = false

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    func validate() throws { _ = try options() }

    func options() throws -> QuantizeOptions {
        if let problem = KernelLevel.environmentProblem() { throw ValidationError(problem) }
        var options = QuantizeOptions()
        guard let w = DLRTWeights(rawValue: weights) else {
            throw ValidationError("--weights must be int8, fp16 or fp32, not '\(weights)'")
        }
        guard let g = DLRTGranularity(rawValue: granularity) else {
            throw ValidationError("--int8-granularity must be channel, block32 or block64, not '\(granularity)'")
        }
        if let compress, compress != "zstd" {
            throw ValidationError("--compress supports zstd, not '\(compress)'")
        }
        guard let a = DLRTActivationPolicy(rawValue: activations) else {
            throw ValidationError("--activations must be fp32, int8, int16 or auto, not '\(activations)'")
        }
        if a != .fp32 {
            guard w == .int8 else {
                throw ValidationError("--activations \(activations) quantizes the activations of int8 layers; it needs --weights int8 (this is --weights \(weights))")
            }
            guard g == .channel || a == .int8 else {
                throw ValidationError("--activations \(activations) needs one scale per output channel (--int8-granularity channel); block scales (\(granularity)) run int8 activations only (--activations int8)")
            }
        }
        if a == .auto && calibration == nil {
            throw ValidationError("--activations auto calibrates on your frames: pass --calibration <folder of PNG frames> with --prompt-embeds <[1, 77, C] safetensors>, or --calibration <reference .safetensors with input.frames and input.prompt_embeds>")
        }
        if g != .channel && w != .int8 {
            throw ValidationError("--int8-granularity \(granularity) sets the scales of int8 weights; it needs --weights int8 (this is --weights \(weights))")
        }
        if a != .auto {
            let given = [("--target-psnr", targetPSNR != nil), ("--calibration", calibration != nil)].filter(\.1).map(\.0)
            if !given.isEmpty {
                throw ValidationError("\(given.joined(separator: " and ")) \(given.count == 1 ? "applies" : "apply") only with --activations auto (this is --activations \(activations)): drop \(given.count == 1 ? "it" : "them") or use --activations auto")
            }
        }
        if int8CFR && w != .int8 {
            throw ValidationError("--int8-cfr quantizes the CFR's weights to int8; it needs --weights int8 (this is --weights \(weights))")
        }
        let targetPSNR = targetPSNR ?? 38
        guard targetPSNR.isFinite, targetPSNR > 0 else {
            throw ValidationError("--target-psnr must be a positive number of dB, not \(targetPSNR)")
        }
        options.weights = w
        options.activations = a
        options.granularity = g
        options.keep = keep
        options.promptEmbeds = promptEmbeds
        options.compress = compress != nil
        options.int8CFR = int8CFR
        return options
    }

    func run() throws {
        let options = try options()
        CommandRun.report(json: json, {
            try OutputPath.check(output, inputs: [source] + [promptEmbeds, calibration].compactMap { $0 }, overwrite: overwrite, isFile: true)
            if options.activations == .auto {
                return try CalibratedQuantization.quantize(
                    source: source, output: output, options: options, calibration: calibration!, targetPSNR: targetPSNR ?? 38,
                    progress: TerminalProgress.ifInteractive(label: "quantize"),
                    log: { Console.error(FormatError.escapingControls("dloral-convert: \($0)")) })
            }
            return try Quantizer.quantize(source: source, output: output, options: options,
                                          progress: TerminalProgress.ifInteractive(label: "quantize"))
        }, warnings: \.warnings, asJSON: Self.json, summary: Self.summary)
    }

    static func json(_ report: QuantizeReport) -> JSONValue {
        .object([
            ("output", .string(report.output)),
            ("bytes", .int(report.bytes)),
            ("scheme", .string(report.scheme)),
            ("source_bytes", .int(report.sourceBytes)),
            ("ratio", .number(String(format: "%.4f", Double(report.bytes) / Double(max(report.sourceBytes, 1))))),
            ("compressed", .bool(report.compressed)),
            ("compression_ratio", report.compressed
                ? .number(String(format: "%.4f", Double(report.rawBytes) / Double(max(report.bytes, 1)))) : .null),
            ("tensors", .array(report.tensors.map { t in
                .object([
                    ("name", .string(t.name)), ("dtype", .string(t.dtype)), ("scheme", .string(t.scheme)),
                    ("bytes", .int(t.bytes)), ("source_bytes", .int(t.sourceBytes)),
                    ("sqnr_db", t.sqnrDB.map { .number(DLRTTensorEntry.formatDB($0)) } ?? .null),
                ])
            })),
            ("activations", report.activations.map { a in
                .object([
                    ("policy", .string(a.policy)), ("int16_layers", .int(a.int16Layers)), ("int8_layers", .int(a.int8Layers)),
                    ("calibration_psnr_db", a.calibrationPSNR.map { .number(String(format: "%.2f", $0)) } ?? .null),
                    ("target_psnr_db", a.targetPSNR.map { .number(String(format: "%.2f", $0)) } ?? .null),
                ])
            } ?? .null),
            ("warnings", .array(report.warnings.map { .string($0) })),
        ])
    }

    static func summary(_ report: QuantizeReport) -> String {
        let quantized = report.tensors.compactMap(\.sqnrDB)
        let worst = report.tensors.filter { $0.sqnrDB != nil }.min { $0.sqnrDB! < $1.sqnrDB! }
        let names = ["F32": "fp32", "F16": "fp16", "BF16": "bf16"]
        let source = report.sourceDTypes.count == 1
            ? "the \(names[report.sourceDTypes[0]] ?? report.sourceDTypes[0]) source"
            : "the source (\(report.sourceDTypes.map { names[$0] ?? $0 }.joined(separator: ", ")))"
        var line = "wrote \(report.output): \(report.bytes) bytes, \(String(format: "%.3f", Double(report.bytes) / Double(max(report.sourceBytes, 1)))) of \(source), scheme \(report.scheme), \(Wording.count(report.tensors.count, "tensor"))"
        if let worst, !quantized.isEmpty {
            let median = quantized.sorted()[quantized.count / 2]
            line += "\n  weight SQNR: median \(DLRTTensorEntry.formatDB(median)) dB, lowest \(DLRTTensorEntry.formatDB(worst.sqnrDB!)) dB (\(worst.name))"
        }
        if let a = report.activations, a.int8Layers + a.int16Layers > 0 {
            line += "\n  activations: \(a.policy), int8 on \(a.int8Layers) layers, int16 on \(a.int16Layers)"
            if let p = a.calibrationPSNR, let t = a.targetPSNR {
                line += String(format: " (calibrated: %.2f dB frames PSNR vs fp32, target %.2f dB)", p, t)
            }
        }
        return line
    }
}
