import CKernels

/// Namespace for the engine's fp32 operations; each file adds one family.
///
/// Every operation follows the PyTorch definition it is named after, so that results agree with
/// PyTorch to float rounding. Shapes are checked with preconditions: a wrong shape here is a bug in
/// the module that called the op, not bad user input.
public enum Ops {}

extension Ops {
    /// Calls `body` with a pointer to `tensor`'s elements, or nil.
    static func withOptionalPointer<R>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let tensor else { return body(nil) }
        return tensor.data.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}

extension Ops {
    /// `torch.nn.functional.group_norm`: normalises each group of `C / groups` channels over the
    /// group's channels and all spatial positions, then applies the per-channel affine map;
    /// with `silu`, SiLU follows in the same pass (`dloral_group_norm`).
    ///
    /// Mean and biased variance are accumulated in `Double` (in a fixed order of 8 lanes), so the
    /// result is the exact value rounded once more than PyTorch's float accumulation; they agree
    /// to ~1e-6 relative. Groups run on all cores; the bits do not depend on the kernel path or
    /// the thread count.
    /// - Parameters:
    ///   - x: `[N, C, *]` (any number of trailing spatial axes, including none).
    ///   - groups: number of groups; must divide `C`.
    ///   - weight: `[C]` scale, or nil for 1.
    ///   - bias: `[C]` shift, or nil for 0.
    ///   - eps: added to the variance (SD UNet 1e-5, VAE 1e-6).
    ///   - silu: apply SiLU to the result (GroupNorm → SiLU, as in every ResNet block).
    /// - Returns: a tensor shaped like `x`.
    public static func groupNorm(
        _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, silu: Bool = false
    ) -> Tensor {
        precondition(x.rank >= 2, "groupNorm expects [N, C, *], got \(x.shape)")
        let n = x.shape[0]
        let c = x.shape[1]
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        if let weight { precondition(weight.count == c, "groupNorm weight has \(weight.count) elements, C = \(c)") }
        if let bias { precondition(bias.count == c, "groupNorm bias has \(bias.count) elements, C = \(c)") }
        let spatial = x.shape.dropFirst(2).reduce(1, *)
        let channelsPerGroup = c / groups
        let groupSize = channelsPerGroup * spatial
        guard groupSize > 0, n > 0 else { return x }
        let total = n * groups
        // Written straight into a new tensor (no copy of x first).
        return Tensor(shape: x.shape) { target in
            x.data.withUnsafeBufferPointer { source in
                let (base, out) = (source.baseAddress!, target.baseAddress!)
                withOptionalPointer(weight) { scale in
                    withOptionalPointer(bias) { shift in
                        parallelRanges(total, work: total * groupSize * 8) { first, end in
                            for g in first..<end {
                                let channel = (g % groups) * channelsPerGroup
                                dloral_group_norm(
                                    channelsPerGroup, spatial, base + g * groupSize, scale.map { $0 + channel },
                                    shift.map { $0 + channel }, eps, silu ? 1 : 0, out + g * groupSize)
                            }
                        }
                    }
                }
            }
        }
    }

    /// `groupNorm` of an NCHW image batch returned channels-last, `[N, H, W, C]`: the same values
    /// bit for bit, written transposed in the same pass (`dloral_group_norm_nhwc`), for the
    /// integer convolution, which reads its input channels-last.
    public static func groupNormNHWC(
        _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, silu: Bool = false
    ) -> Tensor {
        let (n, c, h, w) = x.nchw("groupNormNHWC")
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        if let weight { precondition(weight.count == c, "groupNorm weight has \(weight.count) elements, C = \(c)") }
        if let bias { precondition(bias.count == c, "groupNorm bias has \(bias.count) elements, C = \(c)") }
        let plane = h * w
        let channelsPerGroup = c / groups
        return Tensor(shape: [n, h, w, c]) { target in
            guard target.count > 0 else { return }
            var mean = [Float](repeating: 0, count: c)
            var rstd = [Float](repeating: 0, count: c)
            x.data.withUnsafeBufferPointer { source in
                withOptionalPointer(weight) { scale in
                    withOptionalPointer(bias) { shift in
                        for image in 0..<n {
                            let base = source.baseAddress! + image * c * plane
                            mean.withUnsafeMutableBufferPointer { m in
                                rstd.withUnsafeMutableBufferPointer { r in
                                    let (means, rstds) = (m.baseAddress!, r.baseAddress!)
                                    parallelRanges(groups, work: c * plane * 2) { g0, g1 in
                                        for g in g0..<g1 {
                                            let first = g * channelsPerGroup
                                            dloral_group_norm_stats(
                                                channelsPerGroup * plane, base + first * plane, eps,
                                                means + first, rstds + first)
                                            for ch in first + 1..<first + channelsPerGroup {
                                                means[ch] = means[first]
                                                rstds[ch] = rstds[first]
                                            }
                                        }
                                    }
                                    let out = target.baseAddress! + image * c * plane
                                    parallelRanges(plane, work: c * plane * 8) { p0, p1 in
                                        dloral_group_norm_nhwc(
                                            c, plane, base, means, rstds, scale, shift, silu ? 1 : 0, out, p0, p1)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `torch.nn.functional.layer_norm` over the last axis.
    /// - Parameters:
    ///   - x: `[*, D]`.
    ///   - weight: `[D]` scale, or nil for 1.
    ///   - bias: `[D]` shift, or nil for 0.
    ///   - eps: added to the variance (diffusers transformer blocks use 1e-5).
    /// - Returns: a tensor shaped like `x`.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        precondition(x.rank >= 1, "layerNorm expects [*, D], got a scalar")
        let d = x.shape[x.rank - 1]
        if let weight { precondition(weight.count == d, "layerNorm weight has \(weight.count) elements, D = \(d)") }
        if let bias { precondition(bias.count == d, "layerNorm bias has \(bias.count) elements, D = \(d)") }
        var out = x
        guard d > 0 else { return out }
        let rows = x.count / d
        // dloral_layer_norm: the moments in double lanes, the affine step vectorised, rows split
        // over the cores.
        out.data.withUnsafeMutableBufferPointer { dst in
            let target = dst.baseAddress!
            withOptionalPointer(weight) { w in
                withOptionalPointer(bias) { b in
                    parallelRanges(rows, work: rows * d * 8) { r0, r1 in
                        dloral_layer_norm(d, UnsafePointer(target), w, b, eps, target, r0, r1)
                    }
                }
            }
        }
        return out
    }
}
