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
        let kernels = Kernels.current.handle
        return applyPerGroup(x, groups: groups, weight: weight, bias: bias) { channels, spatial, _, input, scale, shift, out in
            dloral_group_norm(kernels, channels, spatial, input, scale, shift, eps, silu ? 1 : 0, out)
        }
    }

    /// The mean and biased variance of every (image, group) of `x` `[N, C, *]`, indexed
    /// `image · groups + group`, summed as `groupNorm` sums them (double, then rounded to float).
    public static func groupMoments(_ x: Tensor, groups: Int) -> (mean: [Float], variance: [Float]) {
        precondition(x.rank >= 2, "groupMoments expects [N, C, *], got \(x.shape)")
        let (n, c) = (x.shape[0], x.shape[1])
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        let groupSize = c / groups * x.shape.dropFirst(2).reduce(1, *)
        var mean = [Float](repeating: 0, count: n * groups)
        var variance = [Float](repeating: 0, count: n * groups)
        let kernels = Kernels.current.handle
        x.data.withUnsafeBufferPointer { source in
            mean.withUnsafeMutableBufferPointer { m in
                variance.withUnsafeMutableBufferPointer { v in
                    let (base, means, variances) = (source.baseAddress, m.baseAddress!, v.baseAddress!)
                    parallelRanges(n * groups, work: n * groups * groupSize * 2) { first, end in
                        for g in first..<end {
                            dloral_group_norm_moments(kernels, groupSize, base! + g * groupSize, means + g, variances + g)
                        }
                    }
                }
            }
        }
        return (mean, variance)
    }

    /// `groupNorm` with statistics from outside instead of `x`'s own: each (image, group) is
    /// normalised by `statistics`' mean and rstd (`dloral_group_norm_apply`), then the affine map
    /// and the optional SiLU as in `groupNorm`.
    public static func groupNorm(
        _ x: Tensor, statistics: GroupNormStatistics, weight: Tensor?, bias: Tensor?, silu: Bool = false
    ) -> Tensor {
        precondition(x.rank >= 2, "groupNorm expects [N, C, *], got \(x.shape)")
        let (n, c, groups) = (x.shape[0], x.shape[1], statistics.groups)
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        precondition(statistics.mean.count == n * groups && statistics.rstd.count == n * groups,
                     "groupNorm: statistics for \(statistics.mean.count) groups, \(x.shape) has \(n * groups)")
        let kernels = Kernels.current.handle
        return applyPerGroup(x, groups: groups, weight: weight, bias: bias) { channels, spatial, g, input, scale, shift, out in
            dloral_group_norm_apply(kernels, channels, spatial, input, statistics.mean[g], statistics.rstd[g], scale, shift, silu ? 1 : 0, out)
        }
    }

    /// The shared loop of both `groupNorm`s: checks, then `kernel(channelsPerGroup, spatial,
    /// group index, input, scale, shift, output)` for every (image, group) of `x` `[N, C, *]`, on
    /// both cores, written straight into a new tensor (no copy of x first).
    private static func applyPerGroup(
        _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?,
        kernel: (Int, Int, Int, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafePointer<Float>?, UnsafeMutablePointer<Float>) -> Void
    ) -> Tensor {
        let (n, c) = (x.shape[0], x.shape[1])
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        if let weight { precondition(weight.count == c, "groupNorm weight has \(weight.count) elements, C = \(c)") }
        if let bias { precondition(bias.count == c, "groupNorm bias has \(bias.count) elements, C = \(c)") }
        let spatial = x.shape.dropFirst(2).reduce(1, *)
        let channelsPerGroup = c / groups
        let groupSize = channelsPerGroup * spatial
        guard groupSize > 0, n > 0 else { return x }
        let total = n * groups
        return Tensor(shape: x.shape) { target in
            x.data.withUnsafeBufferPointer { source in
                let (base, out) = (source.baseAddress!, target.baseAddress!)
                withOptionalPointer(weight) { scale in
                    withOptionalPointer(bias) { shift in
                        parallelRanges(total, work: total * groupSize * 8) { first, end in
                            for g in first..<end {
                                let channel = (g % groups) * channelsPerGroup
                                kernel(channelsPerGroup, spatial, g, base + g * groupSize, scale.map { $0 + channel },
                                       shift.map { $0 + channel }, out + g * groupSize)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The statistics `groupNorm` normalises `x` `[N, C, H, W]` with, per (image, group): `given`,
    /// checked against `x`, or `x`'s own as `dloral_group_norm` computes them
    /// (`dloral_group_norm_stats`). Checks the affine `weight` and `bias` against `x` too. For the
    /// convolutions that normalise their input band by band.
    static func groupNormStatistics(
        _ x: Tensor, groups: Int, eps: Float, given: GroupNormStatistics?, weight: Tensor?, bias: Tensor?
    ) -> GroupNormStatistics {
        let (n, c, h, w) = x.nchw("groupNorm")
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        if let weight { precondition(weight.count == c, "groupNorm weight has \(weight.count) elements, C = \(c)") }
        if let bias { precondition(bias.count == c, "groupNorm bias has \(bias.count) elements, C = \(c)") }
        if let given {
            precondition(given.groups == groups && given.mean.count == n * groups && given.rstd.count == n * groups,
                         "groupNorm: statistics for \(given.mean.count) groups, \(x.shape) has \(n * groups)")
            return given
        }
        let groupSize = c / groups * h * w
        var mean = [Float](repeating: 0, count: n * groups), rstd = [Float](repeating: 0, count: n * groups)
        guard groupSize > 0 else { return GroupNormStatistics(groups: groups, mean: mean, rstd: rstd) }
        let kernels = Kernels.current.handle
        x.data.withUnsafeBufferPointer { src in
            mean.withUnsafeMutableBufferPointer { m in
                rstd.withUnsafeMutableBufferPointer { r in
                    let (means, rstds) = (m.baseAddress!, r.baseAddress!)
                    parallelRanges(n * groups, work: n * groups * groupSize * 2) { g0, g1 in
                        for g in g0..<g1 {
                            dloral_group_norm_stats(kernels, groupSize, src.baseAddress! + g * groupSize, eps, means + g, rstds + g)
                        }
                    }
                }
            }
        }
        return GroupNormStatistics(groups: groups, mean: mean, rstd: rstd)
    }

    /// `groupNorm` of an NCHW image batch returned channels-last, `[N, H, W, C]`: the same values
    /// bit for bit, written transposed in the same pass (`dloral_group_norm_nhwc`), for the
    /// integer convolution, which reads its input channels-last. With `statistics`, those replace
    /// `x`'s own (as `groupNorm(_:statistics:weight:bias:silu:)`).
    public static func groupNormNHWC(
        _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, silu: Bool = false,
        statistics: GroupNormStatistics? = nil
    ) -> Tensor {
        let (n, c, h, w) = x.nchw("groupNormNHWC")
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(groups) groups do not divide \(c) channels")
        if let statistics {
            precondition(statistics.groups == groups && statistics.mean.count == n * groups
                         && statistics.rstd.count == n * groups,
                         "groupNormNHWC: statistics for \(statistics.mean.count) groups, \(x.shape) has \(n * groups)")
        }
        if let weight { precondition(weight.count == c, "groupNorm weight has \(weight.count) elements, C = \(c)") }
        if let bias { precondition(bias.count == c, "groupNorm bias has \(bias.count) elements, C = \(c)") }
        let plane = h * w
        let channelsPerGroup = c / groups
        let kernels = Kernels.current.handle
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
                                            if let statistics {
                                                means[first] = statistics.mean[image * groups + g]
                                                rstds[first] = statistics.rstd[image * groups + g]
                                            } else {
                                                dloral_group_norm_stats(
                                                    kernels, channelsPerGroup * plane, base + first * plane, eps,
                                                    means + first, rstds + first)
                                            }
                                            for ch in first + 1..<first + channelsPerGroup {
                                                means[ch] = means[first]
                                                rstds[ch] = rstds[first]
                                            }
                                        }
                                    }
                                    let out = target.baseAddress! + image * c * plane
                                    parallelRanges(plane, work: c * plane * 8) { p0, p1 in
                                        dloral_group_norm_nhwc(
                                            kernels, c, plane, base, means, rstds, scale, shift, silu ? 1 : 0, out, p0, p1)
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
        let kernels = Kernels.current.handle
        // dloral_layer_norm: the moments in double lanes, the affine step vectorised, rows split
        // over the cores.
        out.data.withUnsafeMutableBufferPointer { dst in
            let target = dst.baseAddress!
            withOptionalPointer(weight) { w in
                withOptionalPointer(bias) { b in
                    parallelRanges(rows, work: rows * d * 8) { r0, r1 in
                        dloral_layer_norm(kernels, d, UnsafePointer(target), w, b, eps, target, r0, r1)
                    }
                }
            }
        }
        return out
    }
}

/// GroupNorm statistics given from outside a tensor: the mean and rstd = 1 / sqrt(variance + eps)
/// of every (image, group), indexed `image · groups + group`.
public struct GroupNormStatistics: Sendable, Equatable {
    public let groups: Int
    public var mean: [Float]
    public var rstd: [Float]

    public init(groups: Int, mean: [Float], rstd: [Float]) {
        precondition(mean.count == rstd.count && groups > 0 && mean.count % groups == 0,
                     "GroupNormStatistics: \(mean.count) means, \(rstd.count) rstds, \(groups) groups")
        self.groups = groups
        self.mean = mean
        self.rstd = rstd
    }

    /// The statistics of several tiles of the same images combined as a tiled VAE (VAEHook)
    /// combines them: each tile's biased variance and mean per (image, group), averaged with the
    /// tile's pixel count as its weight (`pixels / max pixels`, then divided by their sum, in
    /// float), so the variance is the weighted mean of the tiles' variances, not the pooled one.
    /// - Parameters:
    ///   - tiles: `[N, C, h_t, w_t]` each, the same N and C.
    ///   - eps: added to the combined variance.
    public static func combining(_ tiles: [Tensor], groups: Int, eps: Float) -> GroupNormStatistics {
        precondition(!tiles.isEmpty, "GroupNormStatistics.combining needs a tile")
        let pixels = tiles.map { Float($0.shape.dropFirst(2).reduce(1, *)) }
        let largest = pixels.max()!
        let relative = pixels.map { $0 / largest }
        let total = relative.reduce(0, +)
        let weights = relative.map { $0 / total }
        var mean: [Float] = []
        var variance: [Float] = []
        for (t, tile) in tiles.enumerated() {
            let moments = Ops.groupMoments(tile, groups: groups)
            if t == 0 {
                mean = moments.mean.map { $0 * weights[0] }
                variance = moments.variance.map { $0 * weights[0] }
            } else {
                precondition(moments.mean.count == mean.count, "GroupNormStatistics.combining: tiles of different batches")
                for i in mean.indices {
                    mean[i] += moments.mean[i] * weights[t]
                    variance[i] += moments.variance[i] * weights[t]
                }
            }
        }
        let rstd = variance.map { Float(1.0 / (Double($0) + Double(eps)).squareRoot()) }
        return GroupNormStatistics(groups: groups, mean: mean, rstd: rstd)
    }
}
