import DLoRALFormats
import Foundation

/// Verification of a `.dlrt` against a reference file (the layout of docs/reference-files.md,
/// References): the reference's inputs checked against the pipeline, the thresholds for the
/// model, and each `output.*` stage compared. `dloral-verify --reference` is this plus argument
/// parsing and printing.
public enum ReferenceVerification {
    /// The stages a reference may hold, in pipeline order (`output.<stage>`).
    public static let stageOrder = ["latents", "unet_input", "unet_output", "x0", "frames"]

    /// Reference metadata key holding the W8A8 fake-quant simulation's figures for a file's int8
    /// granularity, as JSON with `frames_psnr_db`: per channel with int8 activations per row, or
    /// blocks of 32 for both (Tools/fixtures/simulate_quant.py). nil: no simulation of it is recorded.
    public static func simulationKey(granularity: DLRTGranularity?) -> String? {
        switch granularity {
        case .channel: return "quant_sim_w8a8_channel_row"
        case .block32: return "quant_sim_w8a8_block32"
        case .block64, nil: return nil
        }
    }

    /// The lowest frames PSNR the simulation reached: W8A8 at tiny sizes moves by ±0.5 dB with
    /// float-rounding-sized changes, so the script reruns it with 1e-7 relative noise on every
    /// quantized layer (`dither`); the bound starts from the lowest of those runs and the plain one.
    public static func simulatedFloor(_ record: JSONValue) -> Double? {
        let plain = record["frames_psnr_db"]?.doubleValue
        let dithered = record["dither"]?["frames"]?["psnr_db"]?["min"]?.doubleValue
        switch (plain, dithered) {
        case let (p?, d?): return min(p, d)
        default: return plain ?? dithered
        }
    }

    /// The scheme's defaults (W8A8 files held to the reference's recorded simulation, if any),
    /// with the caller's overrides: `minCosine` for every stage, `minPSNR` for the frames (which
    /// then replaces a max-abs bound).
    public static func thresholds(runtime: RuntimeModel, reference table: TensorTable?, minCosine: Double?, minPSNR: Double?) -> VerificationThresholds {
        // The reference may carry the fake-quant simulation of W8A8 on its own inputs
        // (Tools/fixtures/simulate_quant.py): W8A8 files are held to it.
        let simulated = table.flatMap { table in
            simulationKey(granularity: runtime.int8Granularity).flatMap { table.metadata[$0] }
                .flatMap { try? StrictJSONParser.parse($0) }.flatMap(simulatedFloor)
        }
        var thresholds = VerificationThresholds.defaults(for: runtime, simulatedW8A8PSNR: simulated)
        if let minCosine { thresholds.minCosine = minCosine }
        if let minPSNR {
            thresholds.framesMinPSNR = minPSNR
            thresholds.framesMaxAbs = nil
        }
        return thresholds
    }

    /// The reference's `input.frames`, checked: [T ≥ 2, 3, H, W] of a size the pipeline runs.
    public static func framesView(_ table: TensorTable, reference: String, pipeline: DLoRALPipeline) throws -> TensorView {
        guard let framesView = table["input.frames"] else {
            throw FormatError(.invalidModel, file: reference, "has no input.frames [T, 3, H, W] (the reference layout in docs/reference-files.md)")
        }
        let shape = framesView.shape
        guard shape.count == 4, shape[0] >= 2, shape[1] == 3 else {
            throw FormatError(.invalidModel, file: reference, tensor: "input.frames", "shape \(shape); expected [T ≥ 2, 3, H, W]")
        }
        if let problem = pipeline.requirements.problem(frames: shape[0], height: shape[2], width: shape[3]) {
            throw FormatError(.invalidModel, file: reference, tensor: "input.frames", problem)
        }
        return framesView
    }

    /// The frames and prompt embeddings to run: `input.frames` (finite), and `input.prompt_embeds`
    /// or else the model's baked-in embeddings, checked against the pipeline.
    public static func inputs(_ table: TensorTable, framesView: TensorView, reference: String, model: String, runtime: RuntimeModel,
                              pipeline: DLoRALPipeline) throws -> (frames: Tensor, prompt: Tensor) {
        let frames = Tensor(framesView)
        if let problem = DLoRALPipeline.nonFiniteProblem(frames) {
            throw FormatError(.invalidModel, file: reference, tensor: "input.frames", problem)
        }
        let prompt: Tensor
        if let view = table["input.prompt_embeds"] {
            if let problem = pipeline.promptEmbedsProblem(view.shape, pairs: framesView.shape[0] - 1) {
                throw FormatError(.invalidModel, file: reference, tensor: "input.prompt_embeds", problem)
            }
            prompt = Tensor(view)
            if let problem = DLoRALPipeline.nonFiniteProblem(prompt) {
                throw FormatError(.invalidModel, file: reference, tensor: "input.prompt_embeds", problem)
            }
        } else if let baked = runtime.defaultPromptEmbeds {
            if let problem = pipeline.promptEmbedsProblem(baked.shape) {
                throw FormatError(.invalidModel, file: model, tensor: "prompt_embeds", problem)
            }
            prompt = baked
        } else {
            throw FormatError(.invalidModel, file: reference, "has no input.prompt_embeds and \(model) has no default prompt embeddings")
        }
        return (frames, prompt)
    }

    /// Tensors of the reference that are not part of its layout (ignored; callers warn).
    public static func unknownTensors(_ table: TensorTable) -> [String] {
        let known = Set(["input.frames", "input.prompt_embeds"] + stageOrder.map { "output.\($0)" })
        return table.names.filter { !known.contains($0) }.sorted()
    }

    /// Every `output.*` stage the reference holds against the engine's, and the frame-to-frame
    /// changes when it holds the frames.
    /// - Throws: `FormatError` for a reference stage of another shape than the engine's (bad
    ///   input, not a failed comparison), or a reference with no stage at all.
    public static func compare(_ outputs: DLoRALPipeline.Outputs, reference table: TensorTable, file reference: String,
                               framesShape shape: [Int], thresholds: VerificationThresholds) throws -> VerificationOutcome {
        var stages: [StageMetrics] = []
        for stage in stageOrder {
            guard let view = table["output.\(stage)"], let engine = outputs.stage(stage) else { continue }
            guard view.shape == engine.shape else {
                throw FormatError(.invalidModel, file: reference, tensor: "output.\(stage)",
                                  "shape \(view.shape); expected \(engine.shape), the engine's \(stage) for input.frames \(shape)")
            }
            stages.append(Verification.compare(stage: stage, engine: engine, reference: Tensor(view), thresholds: thresholds))
        }
        guard !stages.isEmpty else {
            throw FormatError(.invalidModel, file: reference, "has no output.* tensors to compare (the reference layout in docs/reference-files.md)")
        }
        let temporal = table["output.frames"].flatMap {
            Verification.temporal(engine: outputs.frames, reference: Tensor($0), thresholds: thresholds)
        }
        return VerificationOutcome(stages: stages, temporal: temporal)
    }
}

/// The stages compared and the frame-to-frame check, with the verdict.
public struct VerificationOutcome: Sendable {
    public var stages: [StageMetrics]
    public var temporal: StageMetrics?
    public init(stages: [StageMetrics], temporal: StageMetrics?) {
        self.stages = stages
        self.temporal = temporal
    }
    /// The first stage (in pipeline order, then the temporal check) that failed.
    public var firstFailed: StageMetrics? { (stages + (temporal.map { [$0] } ?? [])).first { !$0.passed } }
    public var passed: Bool { stages.allSatisfy(\.passed) && (temporal?.passed ?? true) }
}

/// The printed forms of a verification: `--json`'s object and the table.
public enum VerificationSummary {
    /// "fp32", "int8", "int16", or "mixed (int8 on N layers, int16 on M)".
    public static func activations(_ model: RuntimeModel) -> String {
        guard model.activations == .mixed else { return model.activations.rawValue }
        let wide = model.integerLayers.values.filter { $0 == .int16 }.count
        return "mixed (int8 on \(model.integerLayers.count - wide) layers, int16 on \(wide))"
    }

    public static func metricsJSON(_ m: StageMetrics) -> JSONValue {
        func number(_ v: Double, _ format: (Double) -> String) -> JSONValue { v.isFinite ? .number(format(v)) : .null }
        return .object([
            ("max_abs", number(m.maxAbs, MetricFormat.error)), ("mean_abs", number(m.meanAbs, MetricFormat.error)),
            ("cosine", number(m.cosine, MetricFormat.cosine)),
            ("psnr_db", m.psnrDB == .infinity ? .string("inf") : number(m.psnrDB, MetricFormat.decibels)), ("passed", .bool(m.passed)),
            ("failures", .array(m.failures.map { .string($0) })),
        ])
    }

    public static func json(passed: Bool, scheme: String, activations: String = "fp32", stages: [StageMetrics], temporal: StageMetrics?,
                            thresholds: VerificationThresholds, firstFailed: StageMetrics?, seconds: Double,
                            timings: [(String, Double)] = [], kernels: String = KernelLevel.current) -> JSONValue {
        .object([
            ("passed", .bool(passed)),
            ("scheme", .string(scheme)),
            ("activations", .string(activations)),
            ("kernels", .string(kernels)),
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

    public static func table(stages: [StageMetrics], temporal: StageMetrics?, scheme: String, activations: String = "fp32",
                             thresholds: VerificationThresholds, kernels: String = KernelLevel.current) -> String {
        var lines = ["scheme \(scheme), activations \(activations), kernels \(kernels); thresholds: \(thresholds.summary)",
                     "stage         max_abs      mean_abs     cosine        psnr_db   result"]
        for m in stages + (temporal.map { [$0] } ?? []) {
            let name = m.stage.padding(toLength: 12, withPad: " ", startingAt: 0)
            let result = m.passed ? "pass" : "FAIL: " + m.failures.joined(separator: "; ")
            lines.append(name + "  " + [MetricFormat.error(m.maxAbs).padding(toLength: 11, withPad: " ", startingAt: 0),
                                        MetricFormat.error(m.meanAbs).padding(toLength: 11, withPad: " ", startingAt: 0),
                                        MetricFormat.cosine(m.cosine).padding(toLength: 12, withPad: " ", startingAt: 0),
                                        String(repeating: " ", count: max(0, 8 - MetricFormat.decibels(m.psnrDB).count)) + MetricFormat.decibels(m.psnrDB)]
                .joined(separator: "  ") + "   " + result)
        }
        return lines.joined(separator: "\n")
    }
}
