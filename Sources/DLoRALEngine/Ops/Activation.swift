import CKernels
import Foundation

extension Ops {
    /// SiLU (swish): `x * sigmoid(x)`, computed as PyTorch does, `x / (1 + exp(-x))`, with the
    /// kernels' exp (`dloral_silu`, about 1 ulp; the same bits on every kernel path), on all cores.
    public static func silu(_ x: Tensor) -> Tensor {
        let count = x.count
        guard count > 0 else { return x }
        // Written straight into a new tensor (no copy of x first).
        return Tensor(shape: x.shape) { target in
            x.data.withUnsafeBufferPointer { source in
                let (base, out) = (source.baseAddress!, target.baseAddress!)
                let chunk = 1 << 16
                parallelRanges((count + chunk - 1) / chunk, work: count * 8) { first, end in
                    let lo = first * chunk, hi = min(count, end * chunk)
                    if hi > lo { dloral_silu(hi - lo, base + lo, out + lo) }
                }
            }
        }
    }

    /// Exact GELU, `0.5 · x · (1 + erf(x / √2))` (PyTorch `approximate='none'`).
    ///
    /// Evaluated in `Double` and rounded once, so it is within half an ulp of the true value.
    public static func gelu(_ x: Tensor) -> Tensor {
        map(x) { gelu($0) }
    }

    /// The GEGLU feed-forward gate of diffusers: splits the last axis into halves `h` and `g` and
    /// returns `h * gelu(g)`.
    /// - Parameter x: `[*, 2D]`, the output of the GEGLU projection.
    /// - Returns: `[*, D]`.
    public static func geglu(_ x: Tensor) -> Tensor {
        precondition(x.rank >= 1, "geglu expects [*, 2D], got a scalar")
        let width = x.shape[x.rank - 1]
        precondition(width % 2 == 0, "geglu needs an even last axis, got \(x.shape)")
        let half = width / 2
        var shape = x.shape
        shape[shape.count - 1] = half
        guard half > 0 else { return Tensor(zeros: shape) }
        let rows = x.count / width
        // Every element is written, rows split over the cores (the exact-erf GELU is the cost).
        return Tensor(shape: shape) { dst in
            x.data.withUnsafeBufferPointer { src in
                parallelRanges(rows, work: rows * half * 16) { r0, r1 in
                    for row in r0..<r1 {
                        for j in 0..<half {
                            let value = src[row * width + j]
                            let gate = src[row * width + half + j]
                            dst[row * half + j] = value * gelu(gate)
                        }
                    }
                }
            }
        }
    }

    /// Softmax along `axis` (negative counts from the end), subtracting the maximum first as
    /// PyTorch does so large logits do not overflow.
    /// - Parameters:
    ///   - x: any shape.
    ///   - axis: the axis to normalise over; -1 is the last.
    /// - Returns: a tensor shaped like `x`.
    public static func softmax(_ x: Tensor, axis: Int = -1) -> Tensor {
        let resolved = axis < 0 ? axis + x.rank : axis
        precondition(resolved >= 0 && resolved < x.rank, "softmax axis \(axis) out of range for \(x.shape)")
        let length = x.shape[resolved]
        let inner = x.shape[(resolved + 1)...].reduce(1, *)
        let outer = x.shape[..<resolved].reduce(1, *)
        var out = x
        guard length > 0, inner > 0 else { return out }
        out.data.withUnsafeMutableBufferPointer { buffer in
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * length * inner + i
                    softmaxInPlace(buffer.baseAddress! + base, count: length, stride: inner)
                }
            }
        }
        return out
    }

    /// Softmax of `count` values spaced `stride` apart, in place (contiguous rows through
    /// `dloral_softmax`: the vector exp and a fixed 16-lane sum).
    @inline(__always)
    static func softmaxInPlace(_ p: UnsafeMutablePointer<Float>, count: Int, stride: Int) {
        if stride == 1 {
            dloral_softmax(count, p)
            return
        }
        var peak = -Float.infinity
        for j in 0..<count { peak = max(peak, p[j * stride]) }
        if peak == -.infinity { peak = 0 }
        var sum: Float = 0
        for j in 0..<count {
            let e = Foundation.exp(p[j * stride] - peak)
            p[j * stride] = e
            sum += e
        }
        let inverse = 1 / sum
        for j in 0..<count { p[j * stride] *= inverse }
    }

    /// Exact GELU of one value.
    @inline(__always)
    static func gelu(_ v: Float) -> Float {
        let x = Double(v)
        return Float(0.5 * x * (1 + Foundation.erf(x * 0.70710678118654752440)))
    }

    /// Applies `body` to every element.
    @inline(__always)
    static func map(_ x: Tensor, _ body: (Float) -> Float) -> Tensor {
        var out = x
        out.data.withUnsafeMutableBufferPointer { buffer in
            for i in buffer.indices { buffer[i] = body(buffer[i]) }
        }
        return out
    }
}
