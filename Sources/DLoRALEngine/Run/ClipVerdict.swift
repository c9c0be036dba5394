import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real clip's reference (Tools/reference/make_reference.py: metadata `dloral_run_options`):
/// the options it records, the prompt embeddings and the clip's frames as read
/// (`input.lq_frames`), checked against the pipeline.
public struct ClipReference {
    public let options: RunOptions
    public let promptEmbeds: Tensor
    public let source: TensorFrames

    /// - Parameter recorded: the `dloral_run_options` metadata value.
    public init(table: TensorTable, recorded: String, file reference: String, pipeline: DLoRALPipeline) throws {
        let json: JSONValue
        do { json = try StrictJSONParser.parse(recorded) } catch {
            throw FormatError(.malformed, file: reference, "metadata dloral_run_options is not JSON: \(error)")
        }
        options = try RunOptions(json: json, file: reference)
        if let view = table["input.prompt_embeds"] {
            if let problem = pipeline.promptEmbedsProblem(view.shape) {
                throw FormatError(.invalidModel, file: reference, tensor: "input.prompt_embeds", problem)
            }
            promptEmbeds = Tensor(view)
            if let problem = DLoRALPipeline.nonFiniteProblem(promptEmbeds) {
                throw FormatError(.invalidModel, file: reference, tensor: "input.prompt_embeds", problem)
            }
        } else {
            promptEmbeds = try PromptEmbeddings.load(file: nil, pipeline: pipeline)
        }
        guard let lq = table["input.lq_frames"] else {
            throw FormatError(.invalidModel, file: reference, "has dloral_run_options but no input.lq_frames (uint8 [T, H, W, 3], the clip's frames as read)")
        }
        source = try TensorFrames(lq, file: reference, names: nil)
    }
}

/// `dloral-verify --against`: a `.dlrt` and the fp32 `.dlrt` it is compared with, both ready to
/// run on the same frames with the same prompt embeddings.
public struct BaselinePair {
    public let runtime: RuntimeModel
    public let pipeline: DLoRALPipeline
    public let baseline: DLoRALPipeline
    public let promptEmbeds: Tensor

    /// - Parameter promptEmbeds: a `[1, 77, C]` safetensors file; nil: the model's baked-in
    ///   embeddings, else the baseline's.
    /// - Throws: `FormatError` when `against` is not an fp32 file, or as the files and
    ///   embeddings fail to load.
    public init(model: String, against: String, promptEmbeds: String?) throws {
        runtime = try RuntimeModel(file: try DLRTFile(path: model))
        let baselineModel = try RuntimeModel(file: try DLRTFile(path: against))
        guard baselineModel.weights == .fp32, baselineModel.integerLayers.isEmpty else {
            throw FormatError(.invalidModel, file: against, "is a \(baselineModel.weights.rawValue) file; --against takes the fp32 .dlrt (dloral-convert quantize --weights fp32) as the baseline")
        }
        pipeline = try DLoRALPipeline(model: runtime)
        baseline = try DLoRALPipeline(model: baselineModel)
        if promptEmbeds != nil {
            self.promptEmbeds = try PromptEmbeddings.load(file: promptEmbeds, pipeline: pipeline)
            _ = try PromptEmbeddings.load(file: promptEmbeds, pipeline: baseline)
        } else if runtime.defaultPromptEmbeds != nil {
            self.promptEmbeds = try PromptEmbeddings.load(file: nil, pipeline: pipeline)
        } else {
            self.promptEmbeds = try PromptEmbeddings.load(file: nil, pipeline: baseline)
        }
    }
}

/// The verdict of a clip comparison (`ClipVerification`): each stage's metrics, the saved 8-bit
/// frames' check, and the printed forms (`--json`'s object and the table).
public struct ClipVerdict {
    public let comparison: ClipComparison
    public let thresholds: VerificationThresholds
    public let stages: [StageMetrics]
    public let temporal: StageMetrics?
    /// What the saved frames failed (empty: passed, or none compared).
    public let finalFailures: [String]

    public init(_ comparison: ClipComparison, thresholds: VerificationThresholds) {
        self.comparison = comparison
        self.thresholds = thresholds
        (stages, temporal, finalFailures) = comparison.metrics(thresholds: thresholds)
    }

    /// The first stage (in pipeline order, then the temporal check) that failed.
    public var firstFailed: StageMetrics? { (stages + (temporal.map { [$0] } ?? [])).first { !$0.passed } }
    public var passed: Bool { firstFailed == nil && finalFailures.isEmpty }

    /// - Parameters:
    ///   - range: the output frames compared.
    ///   - header: what was compared (kind, model, reference or against and input, clip frames,
    ///     options), appended after the verdict's own keys.
    public func json(scheme: String, activations: String, range: Range<Int>, header: [(String, JSONValue)], seconds: Double,
                     kernels: String = KernelLevel.current) -> JSONValue {
        let final = comparison.final
        guard case .object(var pairs) = VerificationSummary.json(
            passed: passed, scheme: scheme, activations: activations, stages: stages, temporal: temporal,
            thresholds: thresholds, firstFailed: firstFailed, seconds: seconds, kernels: kernels)
        else { return .null }
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
        return .object(pairs)
    }

    public func table(scheme: String, activations: String, range: Range<Int>, kernels: String = KernelLevel.current) -> String {
        let final = comparison.final
        var text = VerificationSummary.table(stages: stages, temporal: temporal, scheme: scheme, activations: activations, thresholds: thresholds, kernels: kernels)
        if comparison.hasFinal {
            text += "\n" + String(format: "saved frames: max %d levels, %.4f%% of values differ, PSNR %@ dB   %@", final.maxLevels,
                                  final.differingFraction * 100, MetricFormat.decibels(final.psnrDB),
                                  finalFailures.isEmpty ? "pass" : "FAIL: " + finalFailures.joined(separator: "; "))
        }
        text += "\noutput frames \(range.lowerBound) to \(range.upperBound - 1)"
        return text
    }
}

/// `dloral-verify --merge-results`: the `--json` results of the shards of one clip verification
/// (`--frames START:END`), checked to be of one verification and to tile the clip once, combined.
public struct MergedShards {
    public var comparison: ClipComparison
    public var thresholds: VerificationThresholds
    /// The verification's description, as the shards recorded it, and the shard files.
    public var header: [(String, JSONValue)]
    /// The shards' seconds added up.
    public var seconds: Double
    public var scheme: String
    public var activations: String
    public var kernels: String?
    /// The output frames of the whole clip (1 ..< clip frames).
    public var range: Range<Int>

    /// - Throws: `FormatError` naming the shard file that is unreadable, not a shard result, of
    ///   another verification, overlapping or leaving a gap.
    public init(files: [String]) throws {
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
        comparison = combined
        self.thresholds = thresholds
        header = (first.json.objectValue ?? []).filter { ["kind", "model", "reference", "against", "input", "clip_frames", "options"].contains($0.0) }
            + [("shards", JSONValue.array(files.map { .string($0) }))]
        seconds = shards.reduce(0) { $0 + ($1.json["seconds"]?.doubleValue ?? 0) }
        scheme = first.json["scheme"]?.stringValue ?? "?"
        activations = first.json["activations"]?.stringValue ?? "?"
        kernels = first.json["kernels"]?.stringValue
        range = 1..<frames
    }
}
