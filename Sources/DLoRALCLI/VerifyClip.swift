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
        let json: JSONValue
        do { json = try StrictJSONParser.parse(recorded) } catch {
            throw FormatError(.malformed, file: reference, "metadata dloral_run_options is not JSON: \(error)")
        }
        let options = try RunOptions(json: json, file: reference)
        let prompt: Tensor
        if let view = table["input.prompt_embeds"] {
            if let problem = pipeline.promptEmbedsProblem(view.shape) {
                throw FormatError(.invalidModel, file: reference, tensor: "input.prompt_embeds", problem)
            }
            prompt = Tensor(view)
            if let problem = DLoRALPipeline.nonFiniteProblem(prompt) {
                throw FormatError(.invalidModel, file: reference, tensor: "input.prompt_embeds", problem)
            }
        } else {
            prompt = try PromptEmbeddings.load(file: nil, pipeline: pipeline)
        }
        guard let lq = table["input.lq_frames"] else {
            throw FormatError(.invalidModel, file: reference, "has dloral_run_options but no input.lq_frames (uint8 [T, H, W, 3], the clip's frames as read)")
        }
        let source = try TensorFrames(lq, file: reference, names: nil)
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
            let runtime = try RuntimeModel(file: try DLRTFile(path: model))
            let baselineModel = try RuntimeModel(file: try DLRTFile(path: against))
            guard baselineModel.weights == .fp32, baselineModel.integerLayers.isEmpty else {
                throw FormatError(.invalidModel, file: against, "is a \(baselineModel.weights.rawValue) file; --against takes the fp32 .dlrt (dloral-convert quantize --weights fp32) as the baseline")
            }
            let pipeline = try DLoRALPipeline(model: runtime), baseline = try DLoRALPipeline(model: baselineModel)
            let options = runOptions.options
            let prompt: Tensor
            if promptEmbeds != nil {
                prompt = try PromptEmbeddings.load(file: promptEmbeds, pipeline: pipeline)
                _ = try PromptEmbeddings.load(file: promptEmbeds, pipeline: baseline)
            } else if runtime.defaultPromptEmbeds != nil {
                prompt = try PromptEmbeddings.load(file: nil, pipeline: pipeline)
            } else {
                prompt = try PromptEmbeddings.load(file: nil, pipeline: baseline)
            }
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
            var thresholds = VerificationThresholds.defaults(for: runtime)
            if let minCosine { thresholds.minCosine = minCosine }
            if let minPSNR {
                thresholds.framesMinPSNR = minPSNR
                thresholds.framesMaxAbs = nil
            }
            try printVerdict(comparison, runtime: runtime, thresholds: thresholds, range: range, header: header, start: start)
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
        let (stages, temporal, finalFailures) = comparison.metrics(thresholds: thresholds)
        let final = comparison.final
        let firstFailed = (stages + (temporal.map { [$0] } ?? [])).first { !$0.passed }
        let passed = firstFailed == nil && finalFailures.isEmpty
        if json {
            guard case .object(var pairs) = Self.json(passed: passed, scheme: scheme, activations: activations, stages: stages, temporal: temporal,
                                                      thresholds: thresholds, firstFailed: firstFailed, seconds: seconds, kernels: kernels)
            else { return }
            pairs.removeAll { $0.0 == "phase_seconds" }
            if firstFailed == nil && !finalFailures.isEmpty {
                pairs.removeAll { $0.0 == "first_failed_stage" }
                pairs.append(("first_failed_stage", .string("final_frames")))
            }
            pairs.append(("final_frames", comparison.hasFinal ? .object([
                ("max_levels", .int(final.maxLevels)), ("allowed_levels", .int(final.allowedLevels)),
                ("worst_excess", .int(final.worstExcess)), ("differing_fraction", .number(String(format: "%.6g", final.differingFraction))),
                ("psnr_db", final.psnrDB == .infinity ? .string("inf") : .number(MetricFormat.decibels(final.psnrDB))),
                ("passed", .bool(finalFailures.isEmpty)), ("failures", .array(finalFailures.map { .string($0) })),
            ]) : .null))
            pairs.append(("range", .array([.int(range.lowerBound), .int(range.upperBound)])))
            pairs += header
            pairs.append(("per_frame", .array(comparison.perFrame.map { item in
                .object([("index", .int(item.index)),
                         ("psnr_db", item.psnrDB == .infinity ? .string("inf") : .number(MetricFormat.decibels(item.psnrDB))),
                         ("max_abs", .number(MetricFormat.error(item.maxAbs)))])
            })))
            pairs.append(("accumulators", comparison.accumulatorsJSON))
            print(JSONValue.object(pairs).prettyPrinted())
        } else {
            var text = Self.table(stages: stages, temporal: temporal, scheme: scheme, activations: activations, thresholds: thresholds, kernels: kernels)
            if comparison.hasFinal {
                text += "\n" + String(format: "saved frames: max %d levels, %.4f%% of values differ, PSNR %@ dB   %@", final.maxLevels,
                                      final.differingFraction * 100, MetricFormat.decibels(final.psnrDB),
                                      finalFailures.isEmpty ? "pass" : "FAIL: " + finalFailures.joined(separator: "; "))
            }
            text += "\noutput frames \(range.lowerBound) to \(range.upperBound - 1)"
            print(text)
        }
        if let firstFailed {
            Console.error("dloral-verify: FAILED: first diverging stage is \(firstFailed.stage): \(firstFailed.failures.joined(separator: "; "))")
            throw ExitCode(1)
        }
        if !finalFailures.isEmpty {
            Console.error("dloral-verify: FAILED: final_frames: \(finalFailures.joined(separator: "; "))")
            throw ExitCode(1)
        }
        Console.error(String(format: "dloral-verify: passed (%@, %@, %.2f s)", Wording.count(stages.count, "stage"),
                             Wording.count(range.count, "output frame"), seconds))
    }

    /// `--merge-results`: the shards' sums added up, their ranges checked to tile the clip once.
    func merge(_ files: [String]) throws {
        do {
            var shards: [(file: String, json: JSONValue, range: Range<Int>)] = []
            for file in files {
                let fd = try RegularFile.open(file)
                close(fd)
                let data: Data
                do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
                    throw FormatError(.io, file: file, "cannot read: \(error.localizedDescription)")
                }
                let json: JSONValue
                do { json = try StrictJSONParser.parse(String(decoding: data, as: UTF8.self)) } catch {
                    throw FormatError(.malformed, file: file, "is not JSON (\(error)); give the stdout of dloral-verify --frames START:END --json")
                }
                guard let bounds = json["range"]?.arrayValue?.compactMap(\.intValue), bounds.count == 2, bounds[0] < bounds[1],
                      json["accumulators"]?.objectValue != nil, json["clip_frames"]?.intValue != nil else {
                    throw FormatError(.malformed, file: file, "is not a shard result: it has no range, clip_frames or accumulators (give the stdout of dloral-verify --frames START:END --json on a real clip's reference or with --against)")
                }
                shards.append((file, json, bounds[0]..<bounds[1]))
            }
            let first = shards[0]
            // Paths may differ between the machines of a job array: files are compared by name.
            func value(_ json: JSONValue, _ key: String) -> String? {
                guard let v = json[key] else { return nil }
                return ["reference", "against", "input"].contains(key) ? v.stringValue.map(PathName.last) : v.serialized()
            }
            for key in ["kind", "clip_frames", "options", "scheme", "activations", "thresholds", "reference", "against", "input"] {
                let a = first.json[key]
                for shard in shards.dropFirst() where value(shard.json, key) != value(first.json, key) {
                    throw FormatError(.invalidModel, file: shard.file, "its \"\(key)\" (\(shard.json[key]?.serialized() ?? "none")) differs from \(first.file)'s (\(a?.serialized() ?? "none")): these are not shards of one verification")
                }
            }
            shards.sort { $0.range.lowerBound < $1.range.lowerBound }
            let frames = first.json["clip_frames"]!.intValue!
            var next = 1
            for shard in shards {
                if shard.range.lowerBound < next {
                    throw FormatError(.invalidModel, file: shard.file, "covers output frames \(shard.range.lowerBound) to \(shard.range.upperBound - 1), which overlap another shard's (up to \(next - 1)); give each frame to one shard")
                }
                if shard.range.lowerBound > next {
                    throw FormatError(.invalidModel, file: shard.file, "starts at output frame \(shard.range.lowerBound) but the shards before it end at \(next - 1): frames \(next) to \(shard.range.lowerBound - 1) are in no shard")
                }
                next = shard.range.upperBound
            }
            if next != frames {
                throw FormatError(.invalidModel, file: shards.last!.file, "the shards end at output frame \(next - 1) but the clip has frames up to \(frames - 1): frames \(next) to \(frames - 1) are in no shard")
            }
            var combined = ClipComparison()
            for shard in shards {
                guard let part = ClipComparison(accumulators: shard.json["accumulators"]!, perFrame: shard.json["per_frame"]) else {
                    throw FormatError(.malformed, file: shard.file, "its accumulators are incomplete (each stage needs count, sum_abs, sum_sq, dot, ee, rr, max_abs, peak, non_finite)")
                }
                combined.merge(part)
            }
            guard let thresholds = VerificationThresholds(json: first.json["thresholds"]) else {
                throw FormatError(.malformed, file: first.file, "its thresholds are incomplete (min_cosine, frames_max_abs, frames_min_psnr_db)")
            }
            let header = (first.json.objectValue ?? []).filter { ["kind", "model", "reference", "against", "input", "clip_frames", "options"].contains($0.0) }
                + [("shards", JSONValue.array(files.map { .string($0) }))]
            let seconds = shards.reduce(0) { $0 + ($1.json["seconds"]?.doubleValue ?? 0) }
            try Self.verdict(combined, scheme: first.json["scheme"]?.stringValue ?? "?", activations: first.json["activations"]?.stringValue ?? "?",
                             thresholds: thresholds, range: 1..<frames, header: header, seconds: seconds, json: json,
                             kernels: first.json["kernels"]?.stringValue ?? KernelLevel.current)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            ErrorReporting.exit(for: error, tool: "dloral-verify")
        }
    }
}
