import CKernels
import DLoRALFormats

/// The merge arithmetic: `W + Σ scale · up · down` in fp32, then one rounding to the output dtype.
///
/// For a Linear, down is [r, in] and up [out, r]; for a Conv2d, down is [r, in, kh, kw] and up
/// [out, r, 1, 1], so `up · down` reshaped to W's kernel is the exact delta for any kernel size
/// and stride (what peft's conv merge computes). Each output row gets `Σ_k (scale·up[o,k]) ·
/// down[k, :]`, accumulated with fused multiply-adds into the fp32 weight row.
enum MergeKernel {
    /// The merged weight as fp32, row-major in W's shape.
    static func merged(_ item: MergePlan.Item) -> [Float] {
        var weight = item.source.toFloat32()
        let rows = item.source.shape[0]
        let columns = weight.count / max(rows, 1)
        weight.withUnsafeMutableBufferPointer { w in
            for delta in item.deltas {
                let down = delta.down.toFloat32()  // [r, columns]
                let up = delta.up.toFloat32()  // [rows, r]
                let rank = delta.down.shape[0]
                down.withUnsafeBufferPointer { a in
                    for o in 0..<rows {
                        let row = w.baseAddress! + o * columns
                        for k in 0..<rank {
                            let s = Float(delta.scale) * up[o * rank + k]
                            if s == 0 { continue }
                            dloral_axpy_f32(dloral_kernels_auto(), columns, s, a.baseAddress! + k * columns, row)
                        }
                    }
                }
            }
        }
        return weight
    }

}

/// Conversions from fp32 to the storage dtypes, rounding to nearest even once.
public enum DTypeConversion {
    /// Encodes `values` as `dtype` bytes (F32, F16 or BF16).
    public static func encode(_ values: UnsafeBufferPointer<Float>, as dtype: DType) -> [UInt8] {
        switch dtype {
        case .float32:
            return [UInt8](UnsafeRawBufferPointer(values))
        case .float16:
            var out = [UInt8](repeating: 0, count: values.count * 2)
            out.withUnsafeMutableBytes {
                dloral_f32_to_f16(dloral_kernels_auto(), values.count, values.baseAddress, $0.baseAddress!.assumingMemoryBound(to: UInt16.self))
            }
            return out
        case .bfloat16:
            var out = [UInt8](repeating: 0, count: values.count * 2)
            out.withUnsafeMutableBytes {
                dloral_f32_to_bf16(dloral_kernels_auto(), values.count, values.baseAddress, $0.baseAddress!.assumingMemoryBound(to: UInt16.self))
            }
            return out
        default:
            preconditionFailure("encode supports F32, F16 and BF16")
        }
    }

    /// bfloat16 bits of `value`, rounded to nearest even (NaN stays a quiet NaN).
    @inline(__always)
    public static func bfloat16Bits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }
}
