import ArgumentParser
import DLoRALEngine
import DLoRALFormats
import Dispatch
import Foundation

/// `dloral-verify`: run the one-step engine on a `.dlrt` and compare with a reference.
public struct VerifyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dloral-verify",
        abstract: "Run a .dlrt model on a reference's inputs and check every stage against PyTorch.",
        discussion: """
            Runs the DLoRAL step (VAE encode, CFR, UNet at timestep 1, x0, VAE decode) on the \
            reference's input.frames and input.prompt_embeds (or the file's default embeddings) and \
            compares each output.* stage present: max and mean abs error, cosine similarity, PSNR \
            (frames over [-1, 1]), and the frame-to-frame changes. Exit 0 when every stage passes, \
            1 when any fails, 2 on bad input. Defaults follow the file's scheme (DESIGN §6).
            """)

    @Argument(help: "The runtime file (.dlrt) to verify.")
    var model: String

    @Option(help: "Reference safetensors file (DESIGN §4).")
    var reference: String?

    @Option(help: "Instead of a reference: a folder of PNG frames (low quality) to restore; each is upscaled ×4 first, as DLoRAL prepares its input.")
    var frames: String?

    @Option(help: "With --frames: the folder the restored frames are written to (one PNG per frame after the first).")
    var output: String?

    @Option(name: .customLong("prompt-embeds"), help: "With --frames: prompt embeddings ([1, 77, C] safetensors) if the file has no default.")
    var promptEmbeds: String?

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    @Option(name: .customLong("min-psnr"), help: "Lowest frames PSNR in dB (overrides the scheme default).")
    var minPSNR: Double?

    @Option(name: .customLong("min-cosine"), help: "Lowest cosine similarity at every stage (overrides the scheme default).")
    var minCosine: Double?

    @Option(help: ArgumentHelp("Write a visual report to this folder: per output frame a PNG (reference | engine | error heatmap) and index.html.", valueName: "folder"))
    var report: String?

    static let stageOrder = ["latents", "unet_input", "unet_output", "x0", "frames"]
    /// Reference metadata key holding the W8A8 fake-quant simulation's figures for a file's int8
    /// granularity, as JSON with `frames_psnr_db`: per channel with int8 activations per row, or
    /// blocks of 32 for both (Tools/fixtures/simulate_quant.py). nil: no simulation of it is recorded.
    static func simulationKey(granularity: String?) -> String? {
        switch granularity {
        case "channel": return "quant_sim_w8a8_channel_row"
        case "block32": return "quant_sim_w8a8_block32"
        default: return nil
        }
    }

    /// The lowest frames PSNR the simulation reached: W8A8 at tiny sizes moves by ±0.5 dB with
    /// float-rounding-sized changes, so the script reruns it with 1e-7 relative noise on every
    /// quantized layer (`dither`); the bound starts from the lowest of those runs and the plain one.
    static func simulatedFloor(_ record: JSONValue) -> Double? {
        let plain = record["frames_psnr_db"]?.doubleValue
        let dithered = record["dither"]?["frames"]?["psnr_db"]?["min"]?.doubleValue
        switch (plain, dithered) {
        case let (p?, d?): return min(p, d)
        default: return plain ?? dithered
        }
    }

    public init() {}

    /// Parses and runs, with usage errors exiting 2 (DESIGN §3).
    public static func main() { CommandLineMain.run(Self.self) }

    public func validate() throws {
        guard (reference == nil) != (frames == nil) else {
            throw ValidationError("give either --reference <file> (verify) or --frames <folder> (restore real frames)")
        }
        if frames != nil && output == nil {
            throw ValidationError("--frames needs --output <folder> for the restored frames")
        }
    }

    public func run() throws {
        if let frames, let output {
            return restore(frames: frames, output: output)
        }
        guard let reference else { return }
        do {
            let start = DispatchTime.now()
            if let report {
                try OutputPath.check(report, option: "--report", inputs: [model, reference] + [promptEmbeds].compactMap { $0 }, overwrite: nil,
                                  replacesFolder: false)
                try VerificationReport.checkFolder(report)
            }
            let file = try DLRTFile(path: model)
            let runtime = try RuntimeModel(file: file)
            let ref = try SafetensorsFile(path: reference).table
            guard let framesView = ref["input.frames"] else {
                throw FormatError(.invalidModel, file: reference, "has no input.frames [T, 3, H, W] (DESIGN §4)")
            }
            let frames = Tensor(framesView)
            guard frames.rank == 4, frames.shape[0] >= 2, frames.shape[1] == 3 else {
                throw FormatError(.invalidModel, file: reference, tensor: "input.frames", "shape \(frames.shape); expected [T ≥ 2, 3, H, W]")
            }
            guard frames.shape[2] % 8 == 0, frames.shape[3] % 8 == 0, frames.shape[2] >= 8, frames.shape[3] >= 8 else {
                throw FormatError(.invalidModel, file: reference, tensor: "input.frames",
                                  "frames are \(frames.shape[3])×\(frames.shape[2]); DLoRAL runs at sizes divisible by 8 (the latent grid is H/8 × W/8)")
            }
            let prompt: Tensor
            if let view = ref["input.prompt_embeds"] {
                prompt = Tensor(view)
            } else if let baked = runtime.defaultPromptEmbeds {
                prompt = baked
            } else {
                throw FormatError(.invalidModel, file: reference, "has no input.prompt_embeds and \(model) has no default prompt embeddings")
            }
            // The reference may carry the fake-quant simulation of W8A8 on its own inputs
            // (Tools/fixtures/simulate_quant.py): W8A8 files are held to it.
            let simulated = Self.simulationKey(granularity: runtime.int8Granularity).flatMap { ref.metadata[$0] }
                .flatMap { try? StrictJSONParser.parse($0) }.flatMap(Self.simulatedFloor)
            var thresholds = VerificationThresholds.defaults(for: runtime, simulatedW8A8PSNR: simulated)
            if let minCosine { thresholds.minCosine = minCosine }
            if let minPSNR {
                thresholds.framesMinPSNR = minPSNR
                thresholds.framesMaxAbs = nil
            }
            if runtime.cfr.count == 0 {
                Console.error("dloral-verify: warning: \(model) has no CFR weights; running without frame alignment")
            }
            let pipeline = try DLoRALPipeline(model: runtime)
            let outputs = try pipeline.run(frames: frames, promptEmbeds: prompt)
            var stages: [StageMetrics] = []
            for stage in Self.stageOrder {
                guard let view = ref["output.\(stage)"], let engine = outputs.stage(stage) else { continue }
                stages.append(Verification.compare(stage: stage, engine: engine, reference: Tensor(view), thresholds: thresholds))
            }
            guard !stages.isEmpty else {
                throw FormatError(.invalidModel, file: reference, "has no output.* tensors to compare (DESIGN §4)")
            }
            let temporal = ref["output.frames"].flatMap {
                Verification.temporal(engine: outputs.frames, reference: Tensor($0), thresholds: thresholds)
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            let passed = stages.allSatisfy(\.passed) && (temporal?.passed ?? true)
            let firstFailed = (stages + (temporal.map { [$0] } ?? [])).first { !$0.passed }
            if json {
                print(Self.json(passed: passed, scheme: runtime.weights, activations: Self.activationSummary(runtime), stages: stages, temporal: temporal,
                                thresholds: thresholds, firstFailed: firstFailed, seconds: seconds,
                                timings: outputs.timings).prettyPrinted())
            } else {
                print(Self.table(stages: stages, temporal: temporal, scheme: runtime.weights,
                                 activations: Self.activationSummary(runtime), thresholds: thresholds))
            }
            if let report {
                try VerificationReport(model: model, reference: reference, scheme: runtime.weights, thresholds: thresholds,
                                       stages: stages, temporal: temporal, passed: passed, engineFrames: outputs.frames,
                                       referenceFrames: ref["output.frames"].map { Tensor($0) }).write(to: report)
                Console.error("dloral-verify: report written to \(report)/index.html")
            }
            if let firstFailed {
                Console.error("dloral-verify: FAILED: first diverging stage is \(firstFailed.stage): \(firstFailed.failures.joined(separator: "; "))")
                throw ExitCode(1)
            }
            Console.error(String(format: "dloral-verify: passed (%d stages, %.2f s)", stages.count, seconds))
        } catch let exit as ExitCode {
            throw exit
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-verify")
        }
    }

    /// `--frames`: runs the model on a folder of real frames and writes the restored ones.
    func restore(frames folder: String, output: String) {
        do {
            let start = DispatchTime.now()
            try OutputPath.check(output, inputs: [model, folder] + [promptEmbeds].compactMap { $0 }, overwrite: nil,
                                  replacesFolder: false)
            let runtime = try RuntimeModel(file: try DLRTFile(path: model))
            let prompt: Tensor
            if let promptEmbeds {
                let table = try SafetensorsFile(path: promptEmbeds).table
                guard let view = table["prompt_embeds"] ?? (table.count == 1 ? table.tensors.values.first : nil) else {
                    throw FormatError(.invalidModel, file: promptEmbeds, "expected one tensor (or one named prompt_embeds) [1, 77, C]")
                }
                prompt = Tensor(view)
            } else if let baked = runtime.defaultPromptEmbeds {
                prompt = baked
            } else {
                throw FormatError(.invalidModel, file: model, "has no default prompt embeddings; pass --prompt-embeds <file> (or bake them in with dloral-convert quantize --prompt-embeds)")
            }
            let (names, input) = try FrameSequence.load(folder: folder)
            let outputs = try DLoRALPipeline(model: runtime).run(frames: input, promptEmbeds: prompt)
            let written = try FrameSequence.write(outputs.frames, names: names, to: output)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            if json {
                print(JSONValue.object([
                    ("frames", .array(written.map { .string($0) })),
                    ("width", .int(input.shape[3])), ("height", .int(input.shape[2])),
                    ("seconds", .number(String(format: "%.3f", seconds))),
                ]).prettyPrinted())
            }
            Console.error(String(format: "dloral-verify: restored %d frames (%d×%d) into %@ in %.2f s", written.count,
                                 input.shape[3], input.shape[2], output, seconds))
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-verify")
        }
    }

    static func metricsJSON(_ m: StageMetrics) -> JSONValue {
        func number(_ v: Double) -> JSONValue { v.isFinite ? .number(String(format: "%.9g", v)) : .null }
        return .object([
            ("max_abs", number(m.maxAbs)), ("mean_abs", number(m.meanAbs)), ("cosine", number(m.cosine)),
            ("psnr_db", m.psnrDB == .infinity ? .string("inf") : number(m.psnrDB)), ("passed", .bool(m.passed)),
            ("failures", .array(m.failures.map { .string($0) })),
        ])
    }

    /// "fp32", "int8", "int16", or "mixed (int8 on N layers, int16 on M)".
    static func activationSummary(_ model: RuntimeModel) -> String {
        guard model.activations == .mixed else { return model.activations.rawValue }
        let wide = model.integerLayers.values.filter { $0 == .int16 }.count
        return "mixed (int8 on \(model.integerLayers.count - wide) layers, int16 on \(wide))"
    }

    static func json(passed: Bool, scheme: String, activations: String = "fp32", stages: [StageMetrics], temporal: StageMetrics?,
                     thresholds: VerificationThresholds, firstFailed: StageMetrics?, seconds: Double,
                     timings: [(String, Double)] = []) -> JSONValue {
        .object([
            ("passed", .bool(passed)),
            ("scheme", .string(scheme)),
            ("activations", .string(activations)),
            ("stages", .object(stages.map { ($0.stage, metricsJSON($0)) })),
            ("temporal", temporal.map(metricsJSON) ?? .null),
            ("first_failed_stage", firstFailed.map { .string($0.stage) } ?? .null),
            ("thresholds", .object([
                ("min_cosine", .number("\(thresholds.minCosine)")),
                ("frames_max_abs", thresholds.framesMaxAbs.map { .number("\($0)") } ?? .null),
                ("frames_min_psnr_db", thresholds.framesMinPSNR.map { .number("\($0)") } ?? .null),
            ])),
            ("seconds", .number(String(format: "%.3f", seconds))),
            ("phase_seconds", .object(timings.map { ($0.0, .number(String(format: "%.3f", $0.1))) })),
        ])
    }

    static func table(stages: [StageMetrics], temporal: StageMetrics?, scheme: String, activations: String = "fp32",
                      thresholds: VerificationThresholds) -> String {
        var lines = ["scheme \(scheme), activations \(activations); thresholds: \(thresholds.summary)",
                     "stage         max_abs      mean_abs     cosine        psnr_db   result"]
        for m in stages + (temporal.map { [$0] } ?? []) {
            let name = m.stage.padding(toLength: 12, withPad: " ", startingAt: 0)
            let result = m.passed ? "pass" : "FAIL: " + m.failures.joined(separator: "; ")
            lines.append(name + String(format: "  %-11.4g  %-11.4g  %-12.9f  %8.2f   ", m.maxAbs, m.meanAbs, m.cosine, m.psnrDB) + result)
        }
        return lines.joined(separator: "\n")
    }
}
