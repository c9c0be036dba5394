#if canImport(Glibc)
import Glibc
#endif
import CKernels
import DLoRALFormats

/// Symmetric int8 quantization into the `rows_k32` layout (Formats/dlrt.md §4).
///
/// Scales follow the spec to the bit: the float32 maximum of |w| over a row (or block) divided
/// by the float32 127, 1 where it is zero; q = clamp(round-half-even(w / s), −127, 127) with the
/// division in float32, the same arithmetic numpy does on float32 arrays.
public enum Int8Quantizer {
    public struct Result {
        /// The int8 matrix as raw bytes (two's complement), row-major [N][Kp].
        public var rows: [UInt8]
        public var scales: [Float]
        public var sqnrDB: Double?
        public var k: Int
        public var kPadded: Int
    }

    /// Padded K for a weight of `k` columns and block size `block` (0: per channel).
    public static func paddedK(_ k: Int, block: Int) -> Int {
        let multiple = max(DLRT.rowPaddingColumns, block)
        return (k + multiple - 1) / multiple * multiple
    }

    /// Quantizes a weight given as float32 in torch layout (`shape`), via the SIMD kernels.
    public static func quantize(_ w: UnsafeBufferPointer<Float>, shape: [Int], block: Int) -> Result {
        let n = shape[0]
        let k = w.count / max(n, 1)
        let kp = paddedK(k, block: block)
        var arranged = [Float](repeating: 0, count: n * kp)
        let (c, kh, kw) = shape.count == 4 ? (shape[1], shape[2], shape[3]) : (k, 1, 1)
        arranged.withUnsafeMutableBufferPointer { dloral_conv_to_rows(n, c, kh, kw, w.baseAddress, $0.baseAddress, kp) }
        let groupSize = block == 0 ? kp : block
        let groups = n * kp / groupSize
        var scales = [Float](repeating: 1, count: groups)
        var q = [UInt8](repeating: 0, count: n * kp)
        var energy: [Double] = [0, 0]
        arranged.withUnsafeBufferPointer { a in
            q.withUnsafeMutableBytes { qp in
                scales.withUnsafeMutableBufferPointer { sp in
                    dloral_quantize_i8(dloral_kernels_auto(), groups, groupSize, a.baseAddress, qp.bindMemory(to: Int8.self).baseAddress, sp.baseAddress, &energy)
                }
            }
        }
        return Result(rows: q, scales: scales, sqnrDB: sqnr(signal: energy[0], noise: energy[1]), k: k, kPadded: kp)
    }

    public static func quantize(_ w: [Float], shape: [Int], block: Int) -> Result {
        w.withUnsafeBufferPointer { quantize($0, shape: shape, block: block) }
    }

    /// 10·log10(signal / noise); nil when the noise is zero (exact).
    public static func sqnr(signal: Double, noise: Double) -> Double? {
        noise == 0 ? nil : 10 * (signal / noise).log10()
    }
}

extension Double {
    func log10() -> Double { Glibc.log10(self) }
}
