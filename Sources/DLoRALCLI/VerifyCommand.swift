import ArgumentParser
import DLoRALConvert
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
            1 when any fails, 2 on bad input. The default thresholds follow the file's scheme: fp32 \
            frames max abs ≤ 1e-4 and cosine ≥ 0.99999; fp16 frames PSNR ≥ 60 dB; int8 with fp32 or \
            int16 activations 39 dB, cosine ≥ 0.998; W8A8 the reference's recorded simulation − 0.5 dB \
            (else 30 dB), auto the calibration target − 1 dB, cosine ≥ 0.98 (docs/quality.md).

            A reference made by Tools/reference/make_reference.py (metadata dloral_run_options) is \
            run as dloral-run runs a clip, with the options it records, on its input.lq_frames: the \
            preparation (input.frames), each stage it holds and the saved 8-bit frames \
            (output.final_frames) are compared. --frames START:END compares output frames START to \
            END−1 only (a shard); --merge-results combines the shards' --json files into one verdict.

            --against <fp32.dlrt> --input <clip> compares the file with our fp32 engine on real frames \
            (a folder or a video, prepared, tiled and colour-fixed as dloral-run does), with the \
            file's thresholds: no PyTorch needed.

            Restoring footage is dloral-run's job (dloral-run --help).

            The CPU kernels are chosen at run time (scalar, avx2, avxvnni, avx512, amx, neon); every \
            level gives the same bits. DLORAL_KERNELS=<level> caps the level, e.g. DLORAL_KERNELS=avx2.
            """,
        version: ToolVersion.string)

    @Argument(help: "The runtime file (.dlrt) to verify.")
    var model: String?

    @Option(help: "Reference safetensors file: input.frames [T, 3, H, W], optional input.prompt_embeds, and the output.* stages to compare (layout: docs/reference-files.md); or a real clip's reference with dloral_run_options.")
    var reference: String?

    @Option(help: ArgumentHelp("Instead of a reference: our fp32 engine on this fp32 .dlrt is the baseline, on the frames of --input.", valueName: "fp32.dlrt"))
    var against: String?

    @Option(help: ArgumentHelp("With --against: the clip (a folder of PNG or JPEG frames, or a video).", valueName: "folder|video"))
    var input: String?

    @Option(help: ArgumentHelp("Only output frames START to END−1 of the clip (a shard; END left out: to the end).", valueName: "START:END"))
    var frames: String?

    @Option(help: .hidden)
    var output: String?

    @Option(name: .customLong("prompt-embeds"), help: "With --against: prompt embeddings ([1, 77, C] safetensors) if the files have none baked in.")
    var promptEmbeds: String?

    @OptionGroup(title: "With --against: preparation, tiling and colour fix (as dloral-run)")
    var runOptions: RunOptionFlags

    @Option(name: .customLong("merge-results"), parsing: .upToNextOption, help: ArgumentHelp("Combine the --json results of shards (--frames) into one verdict (no model).", valueName: "shard.json"))
    var mergeResults: [String] = []

    @Flag(help: "Print one JSON object on stdout.")
    var json = false

    @Option(name: .customLong("min-psnr"), help: "Lowest frames PSNR in dB (overrides the scheme default).")
    var minPSNR: Double?

    @Option(name: .customLong("min-cosine"), help: "Lowest cosine similarity at every stage (overrides the scheme default).")
    var minCosine: Double?

    @Option(help: ArgumentHelp("Write a visual report to this folder: per output frame a PNG (reference | engine | error heatmap) and index.html.", valueName: "folder"))
    var report: String?

    @Flag(help: "Replace files of the same names already in the --report or --output folder (never an input).")
    var overwrite = false

    public init() {}

    /// Parses and runs, with usage errors exiting 2 (README.md).
    public static func main() { CommandLineMain.run(Self.self) }

    public func validate() throws {
        if let problem = KernelLevel.environmentProblem() { throw ValidationError(problem) }
        if output != nil {
            throw ValidationError("--output is dloral-run's now: restore frames with dloral-run <file.dlrt> --input <folder|video> --output <folder|video>")
        }
        if let frames, !Self.isRange(frames) {
            throw ValidationError("--frames <folder> moved to dloral-run: restore real frames with dloral-run <file.dlrt> --input \(frames) --output <folder>; here --frames takes START:END (a shard of a clip)")
        }
        if let frames, case .failure(let error) = FrameRange.parse(frames) { throw ValidationError(error.message) }
        if !mergeResults.isEmpty {
            let given = [("<file.dlrt>", model != nil), ("--reference", reference != nil), ("--against", against != nil), ("--frames", frames != nil),
                         ("--report", report != nil), ("--min-psnr", minPSNR != nil), ("--min-cosine", minCosine != nil)].filter(\.1).map(\.0)
            if !given.isEmpty {
                throw ValidationError("--merge-results combines shard results alone (their thresholds are recorded in them): drop \(Wording.list(given))")
            }
            return
        }
        guard model != nil else { throw ValidationError("missing <file.dlrt>: dloral-verify <file.dlrt> --reference <file> (or --against <fp32.dlrt> --input <clip>)") }
        guard (reference == nil) != (against == nil) else {
            throw ValidationError("give either --reference <file> or --against <fp32.dlrt> --input <clip>")
        }
        if let minPSNR, !minPSNR.isFinite {
            throw ValidationError("--min-psnr must be a finite number of dB, not \(minPSNR)")
        }
        if let minCosine, !(minCosine > 0 && minCosine <= 1) {
            throw ValidationError("--min-cosine must be in (0, 1] (1 means identical directions), not \(minCosine)")
        }
        if against != nil {
            guard input != nil else { throw ValidationError("--against needs --input <folder|video>: the frames both files run on") }
            if report != nil {
                throw ValidationError("--report draws a reference file's frames; with --against compare with --json (per-frame figures) or drop --report")
            }
        } else {
            let given = [("--input", input != nil), ("--prompt-embeds", promptEmbeds != nil)].filter(\.1).map(\.0) + runOptions.given
            if !given.isEmpty {
                throw ValidationError("\(Wording.list(given)) \(given.count == 1 ? "applies" : "apply") only with --against; --reference runs on the reference's own frames and options: drop \(given.count == 1 ? "it" : "them") or use --against <fp32.dlrt> --input <clip>")
            }
        }
        if overwrite && report == nil {
            throw ValidationError("--overwrite applies only to the files written by --report <folder>: drop it or add --report <folder>")
        }
    }

    /// "START:END" or "START:" (a shard) rather than a folder name.
    static func isRange(_ text: String) -> Bool {
        guard let colon = text.firstIndex(of: ":") else { return false }
        let head = text[..<colon]
        return !head.isEmpty && head.allSatisfy { $0.isNumber || $0 == "-" }
    }

    public func run() throws {
        if !mergeResults.isEmpty { return try merge(mergeResults) }
        guard let model else { return }
        if let against, let input { return try compare(model: model, against: against, input: input) }
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
            if runtime.cfr.count == 0 {
                Console.error(FormatError.escapingControls("dloral-verify: warning: \(model) has no CFR weights; running without frame alignment"))
            }
            let pipeline = try DLoRALPipeline(model: runtime)
            let ref = try SafetensorsFile(path: reference).table
            if let recorded = ref.metadata["dloral_run_options"] {
                return try verifyClip(model: model, pipeline: pipeline, runtime: runtime, reference: reference, table: ref, recorded: recorded)
            }
            if frames != nil {
                throw FormatError(.invalidModel, file: reference, "has no dloral_run_options metadata: --frames START:END shards a real clip's reference (Tools/reference/make_reference.py); drop --frames")
            }
            let framesView = try ReferenceVerification.framesView(ref, reference: reference, pipeline: pipeline)
            let shape = framesView.shape
            if let report {
                // Every file the report will write, checked before the model runs.
                let pictures = ref["output.frames"].map { 0..<($0.shape.first ?? 0) } ?? 0..<0
                try checkWrites(pictures.map { "frame_\($0).png" } + ["index.html"], in: report, option: "--report",
                                inputs: [model, reference])
            }
            let (frames, prompt) = try ReferenceVerification.inputs(ref, framesView: framesView, reference: reference, model: model,
                                                                    runtime: runtime, pipeline: pipeline)
            let thresholds = thresholds(runtime: runtime, table: ref)
            let unknown = ReferenceVerification.unknownTensors(ref)
            if !unknown.isEmpty {
                Console.error(FormatError.escapingControls("dloral-verify: warning: \(reference): ignoring \(Wording.list(unknown.map { "'\($0)'" })), not tensors of the reference layout (input.frames, input.prompt_embeds, \(ReferenceVerification.stageOrder.map { "output.\($0)" }.joined(separator: ", ")))"))
            }
            let outputs = try pipeline.run(frames: frames, promptEmbeds: prompt)
            let outcome = try ReferenceVerification.compare(outputs, reference: ref, file: reference, framesShape: shape, thresholds: thresholds)
            let (stages, temporal) = (outcome.stages, outcome.temporal)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            let (passed, firstFailed) = (outcome.passed, outcome.firstFailed)
            if json {
                print(VerificationSummary.json(passed: passed, scheme: runtime.weights.rawValue, activations: Self.activationSummary(runtime), stages: stages, temporal: temporal,
                                thresholds: thresholds, firstFailed: firstFailed, seconds: seconds,
                                timings: outputs.timings).prettyPrinted())
            } else {
                print(VerificationSummary.table(stages: stages, temporal: temporal, scheme: runtime.weights.rawValue,
                                 activations: Self.activationSummary(runtime), thresholds: thresholds))
            }
            if let report {
                try VerificationReport(model: model, reference: reference, scheme: runtime.weights.rawValue, thresholds: thresholds,
                                       stages: stages, temporal: temporal, passed: passed, engineFrames: outputs.frames,
                                       referenceFrames: ref["output.frames"].map { Tensor($0) }).write(to: report)
                Console.error(FormatError.escapingControls("dloral-verify: report written to \(report)/index.html"))
            }
            if let firstFailed {
                Console.error("dloral-verify: FAILED: first diverging stage is \(firstFailed.stage): \(firstFailed.failures.joined(separator: "; "))")
                throw ExitCode(1)
            }
            Console.error("dloral-verify: passed (\(Wording.count(stages.count, "stage")), \(String(format: "%.2f", seconds)) s)")
        } catch let exit as ExitCode {
            throw exit
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-verify", file: model)
        }
    }

    /// The scheme's defaults (W8A8 files held to the reference's recorded simulation, if any),
    /// with --min-cosine and --min-psnr applied.
    func thresholds(runtime: RuntimeModel, table: TensorTable?) -> VerificationThresholds {
        ReferenceVerification.thresholds(runtime: runtime, reference: table, minCosine: minCosine, minPSNR: minPSNR)
    }

    /// Refuses to write `names` into `folder` if one of them is an input (its path, a symlink or a
    /// hard link to it: even with --overwrite) or, without --overwrite, already exists.
    func checkWrites(_ names: [String], in folder: String, option: String, inputs: [String]) throws {
        for name in names {
            try OutputPath.check((folder as NSString).appendingPathComponent(name), option: option, inputs: inputs,
                                 overwrite: overwrite ? nil : false, isFile: true)
        }
    }

    static func activationSummary(_ model: RuntimeModel) -> String { VerificationSummary.activations(model) }
}
