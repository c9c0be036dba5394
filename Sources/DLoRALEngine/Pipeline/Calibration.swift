import DLoRALFormats
import Foundation

/// Measures, while the pipeline runs, how much each integer layer's output changes when its
/// activations are quantized to int8 instead of int16: every integer layer computes both, records
/// the error energy, and passes the int16 result on (so each layer sees int16-quality inputs).
public final class ActivationProbe: @unchecked Sendable {
    /// The probe of the running calibration, if any (bound with `$current.withValue`).
    @TaskLocal public static var current: ActivationProbe?

    public struct Layer: Sendable {
        /// Σ(y₈ − y₁₆)² / Σy₁₆² over the layer's outputs (summed over calls).
        public var noise: Double = 0
        public var signal: Double = 0
        /// Multiply-accumulates of the layer in one run (output elements × K).
        public var macs: Int = 0
        public var noiseRatio: Double { signal > 0 ? noise / signal : 0 }
    }

    private let lock = NSLock()
    public private(set) var layers: [String: Layer] = [:]

    public init() {}

    func measure(_ weight: IntegerWeight, _ run: (IntegerWeight) -> Tensor) -> Tensor {
        let wide = run(weight.with(.int16))
        let narrow = run(weight.with(.int8))
        var noise = 0.0, signal = 0.0
        for i in 0..<wide.count {
            let y = Double(wide.data[i]), d = Double(narrow.data[i]) - y
            noise += d * d
            signal += y * y
        }
        lock.lock()
        layers[weight.name, default: Layer()].noise += noise
        layers[weight.name, default: Layer()].signal += signal
        layers[weight.name, default: Layer()].macs += wide.count * weight.info.k
        lock.unlock()
        return wide
    }
}

/// `dloral-convert quantize --activations auto`: chooses int16 or int8 activations per layer so
/// that the decoded frames reach a PSNR target against the fp32 engine, at the least cost.
///
/// One probed run (`ActivationProbe`) ranks the layers by their own int8 error (noise-to-signal
/// ratio of the layer's output); int16 goes to the top of that ranking, and a binary search over
/// how many layers get it finds the fewest that reach the target (each step is one pipeline run).
/// Ranking by error per multiply-accumulate instead was measured worse on the tiny fixture (340
/// of 350 layers needed int16 for 38 dB, against 125 ranked by error alone): a few large layers
/// carry most of the error.
public enum ActivationCalibration {
    public struct Result: Sendable {
        /// Full names (`unet.…weight`) → precision, for every integer layer.
        public var assignment: [String: DLRTActivations]
        /// Frames PSNR of the chosen assignment, of all-int8 and of all-int16, against the fp32 engine.
        public var psnrDB: Double
        public var allInt8PSNR: Double
        public var allInt16PSNR: Double
        /// Pipeline runs spent (reference, probe, search).
        public var runs: Int
        public var targetReached: Bool
        /// Share of the integer layers' multiply-accumulates (on the calibration frames) at int16.
        public var int16MACShare: Double = 0
    }

    /// - Parameters:
    ///   - file: a `.dlrt` with int8 `int8_channel` weights (any recorded activations).
    ///   - reference: the fp32 model the target is measured against.
    ///   - frames: [T, 3, H, W] in [-1, 1]; prompt: [1, 77, C].
    public static func calibrate(
        file: DLRTFile, reference: RuntimeModel, frames: Tensor, prompt: Tensor, targetPSNR: Double,
        log: (String) -> Void = { _ in }
    ) throws -> Result {
        let target = try DLoRALPipeline(model: reference).run(frames: frames, promptEmbeds: prompt).frames
        var runs = 1

        func psnr(_ choose: @escaping (String) -> DLRTActivations) throws -> Double {
            let model = try RuntimeModel(file: file, activations: { name, _ in choose(name) })
            let out = try DLoRALPipeline(model: model).run(frames: frames, promptEmbeds: prompt).frames
            runs += 1
            return Verification.framesPSNR(engine: out, reference: target)
        }

        // Rank the layers: one run with every layer probed.
        let probe = ActivationProbe()
        let wide = try RuntimeModel(file: file, activations: { _, _ in .int16 })
        let names = wide.integerLayers.keys.sorted()
        let allInt16 = try ActivationProbe.$current.withValue(probe) {
            try DLoRALPipeline(model: wide).run(frames: frames, promptEmbeds: prompt).frames
        }
        runs += 1
        let allInt16PSNR = Verification.framesPSNR(engine: allInt16, reference: target)
        func relative(_ full: String) -> String { String(full.drop { $0 != "." }.dropFirst()) }
        let ranked = names.sorted { a, b in
            let la = probe.layers[relative(a)] ?? .init(), lb = probe.layers[relative(b)] ?? .init()
            let ka = la.noiseRatio, kb = lb.noiseRatio
            return ka != kb ? ka > kb : a < b
        }
        let totalMACs = names.reduce(0) { $0 + (probe.layers[relative($1)]?.macs ?? 0) }
        func share(_ result: Result) -> Result {
            var result = result
            let wideMACs = result.assignment.filter { $0.value == .int16 }.reduce(0) { $0 + (probe.layers[relative($1.key)]?.macs ?? 0) }
            result.int16MACShare = Double(wideMACs) / Double(max(totalMACs, 1))
            return result
        }
        func assignment(wide count: Int) -> [String: DLRTActivations] {
            var result: [String: DLRTActivations] = [:]
            for (index, name) in ranked.enumerated() { result[name] = index < count ? .int16 : .int8 }
            return result
        }
        let allInt8PSNR = try psnr { _ in .int8 }
        log(String(format: "calibration: all int8 %.2f dB, all int16 %.2f dB, target %.2f dB (%d layers)",
                   allInt8PSNR, allInt16PSNR, targetPSNR, names.count))
        if allInt8PSNR >= targetPSNR {
            return share(Result(assignment: assignment(wide: 0), psnrDB: allInt8PSNR, allInt8PSNR: allInt8PSNR,
                                allInt16PSNR: allInt16PSNR, runs: runs, targetReached: true))
        }
        if allInt16PSNR < targetPSNR {
            return share(Result(assignment: assignment(wide: names.count), psnrDB: allInt16PSNR, allInt8PSNR: allInt8PSNR,
                                allInt16PSNR: allInt16PSNR, runs: runs, targetReached: false))
        }
        // Fewest int16 layers (in ranking order) that reach the target: lo fails, hi passes.
        var lo = 0, hi = names.count, best = allInt16PSNR
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            let chosen = assignment(wide: mid)
            let value = try psnr { chosen[$0] ?? .int16 }
            log(String(format: "calibration: int16 on %d of %d layers: %.2f dB", mid, names.count, value))
            if value >= targetPSNR {
                hi = mid
                best = value
            } else {
                lo = mid
            }
        }
        return share(Result(assignment: assignment(wide: hi), psnrDB: best, allInt8PSNR: allInt8PSNR,
                            allInt16PSNR: allInt16PSNR, runs: runs, targetReached: true))
    }
}
