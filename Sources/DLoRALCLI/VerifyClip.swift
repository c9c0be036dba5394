import ArgumentParser
import DLoRALEngine
import DLoRALFormats
import Dispatch
import Foundation

/// dloral-verify on real clips: references with `dloral_run_options`, `--against`, shards and
/// `--merge-results`.
extension VerifyCommand {
    /// A reference from Tools/reference/make_reference.py: the recorded options on its
    /// input.lq_frames, through the clip restorer dloral-run uses.
    func verifyClip(model: String, pipeline: DLoRALPipeline, runtime: RuntimeModel, reference: String, table: TensorTable, recorded: String) throws {
        let start = DispatchTime.now()
        if report != nil {
            throw FormatError(.invalidModel, file: reference, "is a real clip's reference (dloral_run_options): --report draws the frames of the other reference kind; compare with --json (per-frame figures) or drop --report")
        }
        let clip = try ClipReference(table: table, recorded: recorded, file: reference, pipeline: pipeline)
        let (options, prompt, source) = (clip.options, clip.promptEmbeds, clip.source)
        let range = try (frames.flatMap { try? FrameRange.parse($0).get() } ?? FrameRange(start: 1, end: nil)).outputs(of: source.frameCount, file: reference)
        let restorer = ClipRestorer(pipeline: pipeline, options: options, promptEmbeds: prompt)
        _ = try ClipRestorer.check(source: source, pipeline: pipeline, options: options)
        let progress = Console.stderrIsTerminal ? RunProgress(tool: "dloral-verify") : nil
        let comparison = try ClipVerification.compare(restorer: restorer, reference: table, file: reference, range: range, progress: { progress?.draw($0) })
        progress?.finish()
        let header: [(String, JSONValue)] = [("kind", .string("reference")), ("model", .string(model)), ("reference", .string(reference)),
                                             ("clip_frames", .int(source.frameCount)), ("options", options.json)]
        try printVerdict(comparison, runtime: runtime, thresholds: thresholds(runtime: runtime, table: table), range: range, header: header, start: start)
    }

    /// `--against`: the file against our fp32 engine on the fp32 file, on the same frames.
    func compare(model: String, against: String, input: String) throws {
        do {
            let start = DispatchTime.now()
            let models = try BaselinePair(model: model, against: against, promptEmbeds: promptEmbeds)
            let (runtime, pipeline, baseline, prompt) = (models.runtime, models.pipeline, models.baseline, models.promptEmbeds)
            let options = runOptions.options
            let source = try FrameSources.open(input)
            let range = try (frames.flatMap { try? FrameRange.parse($0).get() } ?? FrameRange(start: 1, end: nil)).outputs(of: source.frameCount, file: input)
            _ = try ClipRestorer.check(source: source, pipeline: pipeline, options: options)
            let progress = Console.stderrIsTerminal ? RunProgress(tool: "dloral-verify") : nil
            let comparison = try ClipVerification.compare(restorer: ClipRestorer(pipeline: pipeline, options: options, promptEmbeds: prompt),
                                                          baseline: ClipRestorer(pipeline: baseline, options: options, promptEmbeds: prompt),
                                                          source: source, range: range, progress: { progress?.draw($0) })
            progress?.finish()
            let header: [(String, JSONValue)] = [("kind", .string("against")), ("model", .string(model)), ("against", .string(against)),
                                                 ("input", .string(input)), ("clip_frames", .int(source.frameCount)), ("options", options.json)]
            try printVerdict(comparison, runtime: runtime, thresholds: thresholds(runtime: runtime, table: nil), range: range, header: header, start: start)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-verify", file: model)
        }
    }

    /// The table (or JSON) and exit code of a clip comparison.
    func printVerdict(_ comparison: ClipComparison, runtime: RuntimeModel, thresholds: VerificationThresholds, range: Range<Int>,
                header: [(String, JSONValue)], start: DispatchTime) throws {
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        try Self.verdict(comparison, scheme: runtime.weights.rawValue, activations: Self.activationSummary(runtime), thresholds: thresholds,
                         range: range, header: header, seconds: seconds, json: json)
    }

    /// Prints the comparison; throws ExitCode(1) when a check fails.
    static func verdict(_ comparison: ClipComparison, scheme: String, activations: String, thresholds: VerificationThresholds,
                        range: Range<Int>, header: [(String, JSONValue)], seconds: Double, json: Bool, kernels: String = KernelLevel.current) throws {
        let verdict = ClipVerdict(comparison, thresholds: thresholds)
        if json {
            print(verdict.json(scheme: scheme, activations: activations, range: range, header: header, seconds: seconds, kernels: kernels).prettyPrinted())
        } else {
            print(verdict.table(scheme: scheme, activations: activations, range: range, kernels: kernels))
        }
        if let firstFailed = verdict.firstFailed {
            Console.error("dloral-verify: FAILED: first diverging stage is \(firstFailed.stage): \(firstFailed.failures.joined(separator: "; "))")
            throw ExitCode(1)
        }
        if !verdict.finalFailures.isEmpty {
            Console.error("dloral-verify: FAILED: final_frames: \(verdict.finalFailures.joined(separator: "; "))")
            throw ExitCode(1)
        }
        Console.error(String(format: "dloral-verify: passed (%@, %@, %.2f s)", Wording.count(verdict.stages.count, "stage"),
                             Wording.count(range.count, "output frame"), seconds))
    }

    /// `--merge-results`: the shards' sums added up, their ranges checked to tile the clip once.
    func merge(_ files: [String]) throws {
        do {
            let merged = try MergedShards(files: files)
            try Self.verdict(merged.comparison, scheme: merged.scheme, activations: merged.activations,
                             thresholds: merged.thresholds, range: merged.range, header: merged.header, seconds: merged.seconds, json: json,
                             kernels: merged.kernels ?? KernelLevel.current)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-verify")
        }
    }
}
