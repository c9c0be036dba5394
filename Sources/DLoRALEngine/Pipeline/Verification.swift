import DLoRALFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How close the engine must come to the PyTorch reference, per stage.
public struct VerificationThresholds: Sendable {
    /// Every stage's cosine similarity must reach this.
    public var minCosine: Double
    /// Decoded frames: largest allowed |engine − reference| (nil: not checked).
    public var framesMaxAbs: Double?
    /// Decoded frames: lowest allowed PSNR over the [-1, 1] range (nil: not checked).
    public var framesMinPSNR: Double?

    /// The defaults for a file's weight scheme (docs/quality.md). The fp32 engine runs int8 files with
    /// int8 weights and fp32 activations, so they are held to the weight-only frames bound
    /// (39 dB); their stage cosines get a guard against gross errors (0.998: the fake-quant
    /// simulation at SD 2.1 size (Tools/fixtures/simulate_quant.py) gives 0.99973 for the UNet output, the tiny fixture measures 0.9993).
    public static func defaults(forScheme scheme: DLRTWeights) -> VerificationThresholds {
        switch scheme {
        case .fp16: return VerificationThresholds(minCosine: 0.99999, framesMaxAbs: nil, framesMinPSNR: 60)
        case .int8: return VerificationThresholds(minCosine: 0.998, framesMaxAbs: nil, framesMinPSNR: 39)
        case .fp32: return VerificationThresholds(minCosine: 0.99999, framesMaxAbs: 1e-4, framesMinPSNR: nil)
        }
    }

    /// The defaults for a model: its weight scheme, and for int8 files the activations its layers
    /// run at (docs/quality.md).
    /// - int16 activations only: the int8-weight bounds (frames ≥ 39 dB).
    /// - int8 activations on every integer layer (W8A8): no worse than the fake-quant simulation,
    ///   `simulatedW8A8PSNR` (the lowest figure of the reference's recorded simulation runs) minus
    ///   0.5 dB, or the simulation's SD 2.1-size figure (31.4 dB) minus 1.4 dB without one; cosine ≥ 0.98 (full-size random weights at
    ///   256×256 measure 0.988 on the frames; a broken kernel gives far less).
    /// - mixed (`auto`): the calibration target minus 1 dB (it was met on other frames), cosine ≥ 0.98.
    public static func defaults(for model: RuntimeModel, simulatedW8A8PSNR: Double? = nil) -> VerificationThresholds {
        var thresholds = defaults(forScheme: model.weights)
        switch model.activations {
        case .int8:
            thresholds.minCosine = 0.98
            thresholds.framesMinPSNR = simulatedW8A8PSNR.map { $0 - 0.5 } ?? 30
        case .mixed:
            thresholds.minCosine = 0.98
            thresholds.framesMinPSNR = (model.calibrationTarget ?? 31.4) - 1
        case .fp32, .int16:
            break
        }
        return thresholds
    }

    public var summary: String {
        var parts = ["cosine ≥ \(minCosine) at every stage"]
        if let framesMaxAbs { parts.append("frames max abs ≤ \(framesMaxAbs)") }
        if let framesMinPSNR { parts.append("frames PSNR ≥ \(MetricFormat.decibels(framesMinPSNR)) dB") }
        return parts.joined(separator: ", ")
    }
}

/// Agreement of one stage with the reference.
public struct StageMetrics: Sendable {
    public var stage: String
    public var maxAbs: Double
    public var meanAbs: Double
    public var cosine: Double
    /// Frames: over the [-1, 1] range (peak-to-peak 2); other stages: against max |reference|.
    public var psnrDB: Double
    public var passed: Bool
    /// What failed, if anything.
    public var failures: [String]
}

/// How the metrics are printed everywhere (stderr, JSON, the HTML report; docs/verify.md,
/// `dloral-verify`): errors to 4 significant digits, cosine to 7 decimals, dB to 2 decimals.
/// Enough to compare with the thresholds, without float noise in the last digits.
public enum MetricFormat {
    public static func error(_ v: Double) -> String { special(v) ?? String(format: "%.4g", v) }
    public static func cosine(_ v: Double) -> String { special(v) ?? String(format: "%.7f", v) }
    public static func decibels(_ v: Double) -> String { special(v) ?? String(format: "%.2f", v) }

    static func special(_ v: Double) -> String? {
        v == .infinity ? "inf" : v == -.infinity ? "-inf" : v.isNaN ? "nan" : nil
    }
}

public enum Verification {
    /// PSNR of decoded frames over the [-1, 1] range (as `compare` reports for stage "frames").
    public static func framesPSNR(engine: Tensor, reference: Tensor) -> Double {
        let loose = VerificationThresholds(minCosine: -1, framesMaxAbs: nil, framesMinPSNR: nil)
        return compare(stage: "frames", engine: engine, reference: reference, thresholds: loose).psnrDB
    }

    /// Compares `engine` with `reference` (same shape) and applies `thresholds`.
    public static func compare(stage: String, engine: Tensor, reference: Tensor, thresholds: VerificationThresholds) -> StageMetrics {
        guard engine.shape == reference.shape else {
            return StageMetrics(stage: stage, maxAbs: .infinity, meanAbs: .infinity, cosine: 0, psnrDB: -.infinity, passed: false,
                                failures: ["shape \(engine.shape) vs reference \(reference.shape)"])
        }
        var sums = StageAccumulator()
        sums.add(engine: engine.data, reference: reference.data)
        return sums.metrics(stage: stage, thresholds: thresholds)
    }

    /// How far the engine's frame-to-frame changes stray from the reference's: the frames
    /// comparison applied to the differences of consecutive frames. Nil for a single frame.
    public static func temporal(engine: Tensor, reference: Tensor, thresholds: VerificationThresholds) -> StageMetrics? {
        guard engine.shape == reference.shape, engine.shape.first ?? 0 >= 2 else { return nil }
        func differences(_ t: Tensor) -> Tensor {
            let frames = t.shape[0], size = t.count / frames
            var data = [Float](repeating: 0, count: (frames - 1) * size)
            for f in 1..<frames {
                for i in 0..<size { data[(f - 1) * size + i] = t.data[f * size + i] - t.data[(f - 1) * size + i] }
            }
            var shape = t.shape
            shape[0] = frames - 1
            return Tensor(shape: shape, data: data)
        }
        // A difference of two frames carries both frames' errors: up to twice the largest error,
        // and (errors uncorrelated from frame to frame) twice the noise power, 10·log10(2) dB less.
        var limits = thresholds
        limits.framesMaxAbs = thresholds.framesMaxAbs.map { $0 * 2 }
        limits.framesMinPSNR = thresholds.framesMinPSNR.map { $0 - 10 * log10(2) }
        var metrics = compare(stage: "frames", engine: differences(engine), reference: differences(reference), thresholds: limits)
        metrics.stage = "temporal"
        // Consecutive outputs of a still scene barely differ, so cosine of the differences is not
        // meaningful; the absolute and PSNR bounds carry the check.
        metrics.failures.removeAll { $0.hasPrefix("cosine") }
        metrics.passed = metrics.failures.isEmpty
        return metrics
    }
}

/// Running sums of one stage's comparison: a clip is compared pair by pair (never whole in
/// memory), and shards' sums add up to the unsharded ones (`dloral-verify merge-results`).
public struct StageAccumulator: Sendable, Equatable {
    public var count = 0
    public var sumAbs = 0.0, sumSq = 0.0, dot = 0.0, ee = 0.0, rr = 0.0, maxAbs = 0.0, peak = 0.0
    public var nonFinite = false

    public init() {}

    public mutating func add(engine: UnsafeBufferPointer<Float>, reference: UnsafeBufferPointer<Float>) {
        precondition(engine.count == reference.count)
        for i in 0..<engine.count {
            let e = Double(engine[i]), r = Double(reference[i])
            if !e.isFinite { nonFinite = true }
            let d = abs(e - r)
            maxAbs = max(maxAbs, d)
            sumAbs += d
            sumSq += d * d
            dot += e * r
            ee += e * e
            rr += r * r
            peak = max(peak, abs(r))
        }
        count += engine.count
    }

    public mutating func add(engine: [Float], reference: [Float]) {
        engine.withUnsafeBufferPointer { e in reference.withUnsafeBufferPointer { r in add(engine: e, reference: r) } }
    }

    public mutating func merge(_ other: StageAccumulator) {
        count += other.count
        sumAbs += other.sumAbs
        sumSq += other.sumSq
        dot += other.dot
        ee += other.ee
        rr += other.rr
        maxAbs = max(maxAbs, other.maxAbs)
        peak = max(peak, other.peak)
        nonFinite = nonFinite || other.nonFinite
    }

    /// The metrics and verdict of `Verification.compare` over everything added.
    public func metrics(stage: String, thresholds: VerificationThresholds) -> StageMetrics {
        let n = Double(max(count, 1))
        let cosine = ee == 0 && rr == 0 ? 1 : dot / (ee.squareRoot() * rr.squareRoot())
        let range = stage == "frames" ? 2.0 : max(peak, 1e-12)
        let mse = sumSq / n
        let psnr = mse == 0 ? Double.infinity : 10 * log10(range * range / mse)
        var failures: [String] = []
        if nonFinite { failures.append("engine output is not finite") }
        if !(cosine >= thresholds.minCosine) { failures.append("cosine \(MetricFormat.cosine(cosine)) < \(thresholds.minCosine)") }
        if stage == "frames" {
            if let limit = thresholds.framesMaxAbs, !(maxAbs <= limit) { failures.append("max abs \(MetricFormat.error(maxAbs)) > \(limit)") }
            if let limit = thresholds.framesMinPSNR, !(psnr >= limit) {
                failures.append("PSNR \(MetricFormat.decibels(psnr)) dB < \(MetricFormat.decibels(limit)) dB")
            }
        }
        return StageMetrics(stage: stage, maxAbs: maxAbs, meanAbs: sumAbs / n, cosine: cosine, psnrDB: psnr,
                            passed: failures.isEmpty, failures: failures)
    }

    /// Doubles as JSON numbers written with 17 significant digits: read back, they are the same bits.
    public var json: JSONValue {
        func number(_ v: Double) -> JSONValue { .number(String(format: "%.17g", v)) }
        return .object([("count", .int(count)), ("sum_abs", number(sumAbs)), ("sum_sq", number(sumSq)), ("dot", number(dot)),
                        ("ee", number(ee)), ("rr", number(rr)), ("max_abs", number(maxAbs)), ("peak", number(peak)),
                        ("non_finite", .bool(nonFinite))])
    }

    public init?(json: JSONValue) {
        guard let count = json["count"]?.intValue, let sumAbs = json["sum_abs"]?.doubleValue, let sumSq = json["sum_sq"]?.doubleValue,
              let dot = json["dot"]?.doubleValue, let ee = json["ee"]?.doubleValue, let rr = json["rr"]?.doubleValue,
              let maxAbs = json["max_abs"]?.doubleValue, let peak = json["peak"]?.doubleValue, let nonFinite = json["non_finite"]?.boolValue
        else { return nil }
        (self.count, self.sumAbs, self.sumSq, self.dot, self.ee, self.rr, self.maxAbs, self.peak, self.nonFinite) =
            (count, sumAbs, sumSq, dot, ee, rr, maxAbs, peak, nonFinite)
    }
}
