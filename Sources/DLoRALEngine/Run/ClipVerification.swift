import DLoRALFormats
import Foundation

/// The saved 8-bit frames against the reference's: the largest level difference, the fraction
/// of values that differ, and PSNR over 255.
public struct FinalFramesAccumulator: Sendable, Equatable {
    public var count = 0
    public var differing = 0
    public var maxLevels = 0
    public var sumSq = 0.0
    /// The largest level difference any frame was allowed (`ColorFix.levelBound`), and by how
    /// much the worst frame exceeded its own bound (≤ 0: within).
    public var allowedLevels = 0
    public var worstExcess = Int.min

    public init() {}

    public mutating func add(engine: [UInt8], reference: UnsafeRawBufferPointer, allowedLevels allowed: Int) {
        precondition(engine.count == reference.count)
        var frameMax = 0
        for i in 0..<engine.count {
            let d = abs(Int(engine[i]) - Int(reference[i]))
            if d != 0 { differing += 1 }
            frameMax = max(frameMax, d)
            sumSq += Double(d * d)
        }
        maxLevels = max(maxLevels, frameMax)
        allowedLevels = max(allowedLevels, allowed)
        worstExcess = max(worstExcess, frameMax - allowed)
        count += engine.count
    }

    public mutating func merge(_ other: FinalFramesAccumulator) {
        count += other.count
        differing += other.differing
        maxLevels = max(maxLevels, other.maxLevels)
        sumSq += other.sumSq
        allowedLevels = max(allowedLevels, other.allowedLevels)
        worstExcess = max(worstExcess, other.worstExcess)
    }

    public var differingFraction: Double { Double(differing) / Double(max(count, 1)) }
    public var psnrDB: Double { sumSq == 0 ? .infinity : 10 * log10(255 * 255 / (sumSq / Double(max(count, 1)))) }

    /// fp32 files (whose float frames are held to a max abs): each frame within what one level
    /// (truncating float frames within bounds to 8 bits) becomes through the colour fix and the
    /// resize back (`ColorFix.levelBound`); other schemes: the frames PSNR bound, over 255.
    public func failures(thresholds: VerificationThresholds) -> [String] {
        if thresholds.framesMaxAbs != nil || thresholds.framesMinPSNR == nil {
            return worstExcess <= 0 ? [] : ["saved frames differ by up to \(maxLevels) levels, \(worstExcess) more than one level before the colour fix can become (up to \(allowedLevels))"]
        }
        let limit = thresholds.framesMinPSNR!
        return psnrDB >= limit ? [] : ["saved frames PSNR \(MetricFormat.decibels(psnrDB)) dB < \(MetricFormat.decibels(limit)) dB"]
    }

    public var json: JSONValue {
        .object([("count", .int(count)), ("differing", .int(differing)), ("max_levels", .int(maxLevels)),
                 ("sum_sq", .number(String(format: "%.17g", sumSq))), ("allowed_levels", .int(allowedLevels)),
                 ("worst_excess", .int(worstExcess))])
    }

    public init?(json: JSONValue) {
        guard let count = json["count"]?.intValue, let differing = json["differing"]?.intValue,
              let maxLevels = json["max_levels"]?.intValue, let sumSq = json["sum_sq"]?.doubleValue,
              let allowed = json["allowed_levels"]?.intValue, let excess = json["worst_excess"]?.intValue else { return nil }
        (self.count, self.differing, self.maxLevels, self.sumSq) = (count, differing, maxLevels, sumSq)
        (self.allowedLevels, self.worstExcess) = (allowed, excess)
    }
}

/// A clip compared stage by stage: the engine against a reference file's tensors, or a quantized
/// engine against the fp32 one.
public struct ClipComparison: Sendable {
    /// In the order first added.
    public var stages: [(String, StageAccumulator)] = []
    public var temporal = StageAccumulator()
    public var hasTemporal = false
    public var final = FinalFramesAccumulator()
    public var hasFinal = false
    /// Per output frame: its index, and its float frames' PSNR and max abs.
    public var perFrame: [(index: Int, psnrDB: Double, maxAbs: Double)] = []
    var previousFrames: (engine: [Float], reference: [Float])?

    public init() {}

    mutating func add(_ stage: String, engine: [Float], reference: [Float]) {
        if let i = stages.firstIndex(where: { $0.0 == stage }) {
            stages[i].1.add(engine: engine, reference: reference)
        } else {
            var a = StageAccumulator()
            a.add(engine: engine, reference: reference)
            stages.append((stage, a))
        }
    }

    /// The output frame `index` (float, [3, H, W]): its stage, per-frame figures, and the
    /// difference from the frame before it (when that one was compared too).
    mutating func addFrame(index: Int, engine: [Float], reference: [Float]) {
        add("frames", engine: engine, reference: reference)
        var one = StageAccumulator()
        one.add(engine: engine, reference: reference)
        let m = one.metrics(stage: "frames", thresholds: VerificationThresholds(minCosine: -1, framesMaxAbs: nil, framesMinPSNR: nil))
        perFrame.append((index, m.psnrDB, m.maxAbs))
        if let (pe, pr) = previousFrames {
            temporal.add(engine: zip(engine, pe).map { $0 - $1 }, reference: zip(reference, pr).map { $0 - $1 })
            hasTemporal = true
        }
        previousFrames = (engine, reference)
    }

    mutating func addFinal(engine: [UInt8], reference: UnsafeRawBufferPointer, allowedLevels: Int) {
        final.add(engine: engine, reference: reference, allowedLevels: allowedLevels)
        hasFinal = true
    }

    /// Stage metrics with the thresholds; the temporal row as `Verification.temporal` holds it.
    public func metrics(thresholds: VerificationThresholds) -> (stages: [StageMetrics], temporal: StageMetrics?, final: [String]) {
        let stages = self.stages.map { name, acc -> StageMetrics in
            var m = acc.metrics(stage: name == "input_frames" ? "input" : name, thresholds: thresholds)
            m.stage = name
            // The preparation is integer arithmetic on 8-bit pictures (Pillow's): exact, or wrong.
            if name == "input_frames", acc.maxAbs > 1e-6 {
                m.failures.append("max abs \(MetricFormat.error(acc.maxAbs)) > 1e-6: the frames are not prepared as the reference's (resampling)")
                m.passed = false
            }
            return m
        }
        var temporal: StageMetrics?
        if hasTemporal {
            var limits = thresholds
            limits.framesMaxAbs = thresholds.framesMaxAbs.map { $0 * 2 }
            limits.framesMinPSNR = thresholds.framesMinPSNR.map { $0 - 10 * log10(2) }
            var m = self.temporal.metrics(stage: "frames", thresholds: limits)
            m.stage = "temporal"
            m.failures.removeAll { $0.hasPrefix("cosine") }
            m.passed = m.failures.isEmpty
            temporal = m
        }
        return (stages, temporal, hasFinal ? final.failures(thresholds: thresholds) : [])
    }

    public mutating func merge(_ other: ClipComparison) {
        for (name, acc) in other.stages {
            if let i = stages.firstIndex(where: { $0.0 == name }) { stages[i].1.merge(acc) } else { stages.append((name, acc)) }
        }
        temporal.merge(other.temporal)
        hasTemporal = hasTemporal || other.hasTemporal
        final.merge(other.final)
        hasFinal = hasFinal || other.hasFinal
        perFrame += other.perFrame
    }

    public var accumulatorsJSON: JSONValue {
        var pairs = stages.map { ($0.0, $0.1.json) }
        if hasTemporal { pairs.append(("temporal", temporal.json)) }
        if hasFinal { pairs.append(("final_frames", final.json)) }
        return .object(pairs)
    }

    public init?(accumulators: JSONValue, perFrame: JSONValue?) {
        guard let pairs = accumulators.objectValue else { return nil }
        for (name, value) in pairs {
            switch name {
            case "temporal":
                guard let t = StageAccumulator(json: value) else { return nil }
                (temporal, hasTemporal) = (t, true)
            case "final_frames":
                guard let f = FinalFramesAccumulator(json: value) else { return nil }
                (final, hasFinal) = (f, true)
            default:
                guard let a = StageAccumulator(json: value) else { return nil }
                stages.append((name, a))
            }
        }
        for item in perFrame?.arrayValue ?? [] {
            guard let index = item["index"]?.intValue else { return nil }
            self.perFrame.append((index, Self.double(item["psnr_db"]), Self.double(item["max_abs"])))
        }
    }

    static func double(_ value: JSONValue?) -> Double {
        if value?.stringValue == "inf" { return .infinity }
        return value?.doubleValue ?? .nan
    }
}

/// Float rows of a reference tensor without copying the whole tensor.
struct ReferenceRows {
    let view: TensorView
    let name: String
    let file: String
    let rowShape: [Int]
    let bytes: UnsafeRawBufferPointer

    init(_ table: TensorTable, _ name: String, file: String, rows: Int, rowShape: [Int], dtype: DType = .float32) throws {
        guard let view = table[name] else {
            throw FormatError(.invalidModel, file: file, "has no \(name) (the reference layout for real clips in docs/reference-files.md)")
        }
        guard view.dtype == dtype, view.shape == [rows] + rowShape, let bytes = view.contiguousBytes else {
            throw FormatError(.invalidModel, file: file, tensor: name, "\(view.dtype) \(view.shape); expected \(dtype) \([rows] + rowShape) for these frames and options")
        }
        (self.view, self.name, self.file, self.rowShape, self.bytes) = (view, name, file, rowShape, bytes)
    }

    var rowCount: Int { rowShape.reduce(1, *) }

    func floats(_ row: Int) -> [Float] {
        let n = rowCount
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[(row * n * 4)..<((row + 1) * n * 4)])) }
        return out
    }

    func raw(_ row: Int) -> UnsafeRawBufferPointer {
        let n = rowCount * view.dtype.byteSize
        return UnsafeRawBufferPointer(rebasing: bytes[(row * n)..<((row + 1) * n)])
    }
}

public enum ClipVerification {
    /// Whether a shard of output frames `range` compares input frame `index`'s own stages.
    static func owns(_ index: Int, _ range: Range<Int>) -> Bool { range.contains(index) || index == 0 }

    /// `dloral_run_options` reference: runs `input.lq_frames` through the clip restorer with the
    /// recorded options and compares `input.frames`, `output.latents`, each pair's stages the
    /// reference holds, and `output.final_frames`, for output frames `range`.
    public static func compare(restorer: ClipRestorer, reference table: TensorTable, file: String, range: Range<Int>,
                               progress: ((ClipRestorer.Progress) -> Void)? = nil) throws -> ClipComparison {
        let names = table.metadata["dloral_run_options"].flatMap { try? StrictJSONParser.parse($0) }?["frame_names"]?.arrayValue?.compactMap(\.stringValue)
        guard let lq = table["input.lq_frames"] else {
            throw FormatError(.invalidModel, file: file, "has dloral_run_options but no input.lq_frames (uint8 [T, H, W, 3])")
        }
        let source = try TensorFrames(lq, file: file, names: names)
        let t = source.frameCount
        let size = restorer.options.preparation.preparedSize(width: source.width, height: source.height)
        let (h, w) = (size.height, size.width)
        let output = size.enlarged ? (source.height * restorer.options.preparation.upscale, source.width * restorer.options.preparation.upscale) : (h, w)
        let latentChannels = restorer.pipeline.decoder.config.latentChannels
        let factor = restorer.pipeline.requirements.vaeFactor
        let (lh, lw) = (h / factor, w / factor)
        let inputs = try ReferenceRows(table, "input.frames", file: file, rows: t, rowShape: [3, h, w])
        let latents = table["output.latents"] == nil ? nil : try ReferenceRows(table, "output.latents", file: file, rows: t, rowShape: [latentChannels, lh, lw])
        var pairStages: [(String, ReferenceRows)] = []
        for (stage, channels) in [("unet_input", 2 * latentChannels), ("unet_output", latentChannels), ("x0", latentChannels)] where table["output.\(stage)"] != nil {
            pairStages.append((stage, try ReferenceRows(table, "output.\(stage)", file: file, rows: t - 1, rowShape: [channels, lh, lw])))
        }
        let frames = try ReferenceRows(table, "output.frames", file: file, rows: t - 1, rowShape: [3, h, w])
        let finals = try ReferenceRows(table, "output.final_frames", file: file, rows: t - 1, rowShape: [output.0, output.1, 3], dtype: .uint8)
        var comparison = ClipComparison()
        _ = try restorer.run(source: source, range: range, sink: nil, resume: false, onFrame: { frame in
            // A shard reads the frame before its range; that frame is compared by the shard that
            // outputs it (frame 0, which none outputs, by the first), so shards' sums add up.
            guard Self.owns(frame.index, range) else { return }
            comparison.add("input_frames", engine: frame.input.data, reference: inputs.floats(frame.index))
            if let latents { comparison.add("latents", engine: frame.latent.data, reference: latents.floats(frame.index)) }
        }, onPair: { pair in
            let row = pair.index - 1
            for (stage, rows) in pairStages {
                // A tiled pair has no single UNet input; the reference then has none either.
                guard let engine = pair.outputs.stage(stage) else { continue }
                comparison.add(stage, engine: engine.data, reference: rows.floats(row))
            }
            comparison.addFrame(index: pair.index, engine: pair.outputs.frames.data, reference: frames.floats(row))
            comparison.addFinal(engine: pair.image.pixels, reference: finals.raw(row), allowedLevels: pair.levelBound)
        }, progress: progress)
        // Stages in the pipeline's order.
        let order = ["input_frames", "latents", "unet_input", "unet_output", "x0", "frames"]
        comparison.stages.sort { order.firstIndex(of: $0.0) ?? 99 < order.firstIndex(of: $1.0) ?? 99 }
        return comparison
    }

    /// `--against`: `restorer` (the file under test) against `baseline` (the fp32 file) on the
    /// same frames, stage by stage and on the saved frames.
    public static func compare(restorer: ClipRestorer, baseline: ClipRestorer, source: FrameSource, range: Range<Int>,
                               progress: ((ClipRestorer.Progress) -> Void)? = nil) throws -> ClipComparison {
        var comparison = ClipComparison()
        var previous: (ClipRestorer.Frame, ClipRestorer.Frame)?
        var done = 0
        for index in (range.lowerBound - 1)..<range.upperBound {
            let start = DispatchTime.now().uptimeNanoseconds
            let image = try source.read(index)
            let (a, b) = (restorer.frame(image, index: index), baseline.frame(image, index: index))
            if Self.owns(index, range) { comparison.add("latents", engine: a.latent.data, reference: b.latent.data) }
            if let (pa, pb) = previous {
                let (x, y) = (try restorer.restore(previous: pa, current: a), try baseline.restore(previous: pb, current: b))
                for stage in ["unet_input", "unet_output", "x0"] {
                    if let e = x.outputs.stage(stage), let r = y.outputs.stage(stage) { comparison.add(stage, engine: e.data, reference: r.data) }
                }
                comparison.addFrame(index: index, engine: x.outputs.frames.data, reference: y.outputs.frames.data)
                y.image.pixels.withUnsafeBytes { comparison.addFinal(engine: x.image.pixels, reference: $0, allowedLevels: y.levelBound) }
                done += 1
                progress?(ClipRestorer.Progress(index: index, done: done, total: range.count, skipped: false,
                                                seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, path: nil))
            }
            previous = (a, b)
        }
        return comparison
    }
}

extension VerificationThresholds {
    /// The `thresholds` object of dloral-verify's JSON (a shard's, for --merge-results).
    public init?(json: JSONValue?) {
        guard let json, let minCosine = json["min_cosine"]?.doubleValue else { return nil }
        func optional(_ key: String) -> Double?? {
            guard let value = json[key] else { return .none }
            if value == .null { return .some(nil) }
            return value.doubleValue.map { .some($0) }
        }
        guard let maxAbs = optional("frames_max_abs"), let psnr = optional("frames_min_psnr_db") else { return nil }
        self.init(minCosine: minCosine, framesMaxAbs: maxAbs, framesMinPSNR: psnr)
    }
}
