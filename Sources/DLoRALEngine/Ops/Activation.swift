import CKernels
import Foundation

extension Ops {
    /// SiLU (swish): `x * sigmoid(x)`, computed as PyTorch does, `x / (1 + exp(-x))`, with the
    /// kernels' exp (`dloral_silu`, about 1 ulp; the same bits on every kernel path), on all cores.
    public static func silu(_ x: Tensor) -> Tensor {
        let kernels = Kernels.current.handle
        return elementwise(x) { dloral_silu(kernels, $0, $1, $2) }
    }

    /// Exact GELU, `0.5 · x · (1 + erf(x / √2))` (PyTorch `approximate='none'`), on all cores.
    ///
    /// Float arithmetic in the kernels (`dloral_gelu`: a polynomial for the normal tail, no
    /// cancellation for negative x), within 1.8 ulp of the true value wherever |gelu| ≥ 1e-30;
    /// the same bits on every kernel path.
    public static func gelu(_ x: Tensor) -> Tensor {
        let kernels = Kernels.current.handle
        return elementwise(x) { dloral_gelu(kernels, $0, $1, $2) }
    }

    /// An elementwise kernel `(n, x, y)` over all of `x`, in chunks of 64 Ki elements on all
    /// cores, written straight into a new tensor (no copy of x first).
    static func elementwise(
        _ x: Tensor, _ kernel: (Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    ) -> Tensor {
        let count = x.count
        guard count > 0 else { return x }
        return Tensor(shape: x.shape) { target in
            x.data.withUnsafeBufferPointer { source in
                let (base, out) = (source.baseAddress!, target.baseAddress!)
                let chunk = 1 << 16
                parallelRanges((count + chunk - 1) / chunk, work: count * 8) { first, end in
                    let lo = first * chunk, hi = min(count, end * chunk)
                    if hi > lo { kernel(hi - lo, base + lo, out + lo) }
                }
            }
        }
    }

    /// The GEGLU feed-forward gate of diffusers: splits the last axis into halves `h` and `g` and
    /// returns `h * gelu(g)` (`dloral_geglu`: `gelu` as above, then one float product).
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
        let kernels = Kernels.current.handle
        // Every element is written, rows split over the cores.
        return Tensor(shape: shape) { dst in
            x.data.withUnsafeBufferPointer { src in
                let (base, out) = (src.baseAddress!, dst.baseAddress!)
                parallelRanges(rows, work: rows * half * 8) { r0, r1 in
                    if r1 > r0 { dloral_geglu(kernels, r1 - r0, half, base + r0 * width, out + r0 * half) }
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
        let kernels = Kernels.current
        out.data.withUnsafeMutableBufferPointer { buffer in
            for o in 0..<outer {
                for i in 0..<inner {
                    let base = o * length * inner + i
                    softmaxInPlace(kernels, buffer.baseAddress! + base, count: length, stride: inner)
                }
            }
        }
        return out
    }

    /// Softmax of `count` values spaced `stride` apart, in place (contiguous rows through
    /// `dloral_softmax`: the vector exp and a fixed 16-lane sum).
    @inline(__always)
    static func softmaxInPlace(_ kernels: Kernels, _ p: UnsafeMutablePointer<Float>, count: Int, stride: Int) {
        if stride == 1 {
            dloral_softmax(kernels.handle, count, p)
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
}
