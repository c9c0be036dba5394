import Foundation

extension Ops {
    /// `F.interpolate(mode='nearest')` to an explicit size: output pixel `d` reads input pixel
    /// `min(floor(d · in/out), in − 1)`, with the scale computed in `Float` as PyTorch does.
    /// - Parameters:
    ///   - x: `[N, C, H, W]`.
    ///   - size: `(Ho, Wo)`.
    /// - Returns: `[N, C, Ho, Wo]`.
    public static func upsampleNearest(_ x: Tensor, to size: (h: Int, w: Int)) -> Tensor {
        let (n, c, h, w) = x.nchw("upsampleNearest")
        precondition(size.h >= 0 && size.w >= 0 && (h > 0 || size.h == 0) && (w > 0 || size.w == 0),
                     "upsampleNearest from \(h)×\(w) to \(size)")
        let rows = (0..<size.h).map { nearestSource($0, input: h, output: size.h) }
        let cols = (0..<size.w).map { nearestSource($0, input: w, output: size.w) }
        return Tensor(shape: [n, c, size.h, size.w]) { dst in
            x.data.withUnsafeBufferPointer { src in
                let (source, target) = (src.baseAddress, dst.baseAddress)
                Ops.parallelRanges(n * c, work: dst.count) { first, end in
                    for plane in first..<end {
                        let input = source! + plane * h * w
                        let output = target! + plane * size.h * size.w
                        for oy in 0..<size.h {
                            let line = input + rows[oy] * w
                            for ox in 0..<size.w { output[oy * size.w + ox] = line[cols[ox]] }
                        }
                    }
                }
            }
        }
    }

    /// `F.avg_pool2d(x, kernel_size=2, stride=2)`: no padding, odd trailing rows and columns
    /// dropped. Sums in PyTorch's order (row by row) and divides by 4, so results match exactly.
    /// - Parameter x: `[N, C, H, W]`.
    /// - Returns: `[N, C, H/2, W/2]` (floor).
    public static func avgPool2x(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = x.nchw("avgPool2x")
        let (ho, wo) = (h / 2, w / 2)
        var out = Tensor(zeros: [n, c, ho, wo])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for plane in 0..<(n * c) {
                    let input = src.baseAddress! + plane * h * w
                    let output = dst.baseAddress! + plane * ho * wo
                    for oy in 0..<ho {
                        let top = input + 2 * oy * w
                        let bottom = top + w
                        for ox in 0..<wo {
                            var sum = top[2 * ox]
                            sum += top[2 * ox + 1]
                            sum += bottom[2 * ox]
                            sum += bottom[2 * ox + 1]
                            output[oy * wo + ox] = sum / 4
                        }
                    }
                }
            }
        }
        return out
    }

    /// `F.interpolate(mode='bilinear', antialias=False)`.
    /// - Parameters:
    ///   - x: `[N, C, H, W]`.
    ///   - size: `(Ho, Wo)`.
    ///   - alignCorners: PyTorch's `align_corners`.
    ///   - scaleFactor: the `scale_factor` the PyTorch call passed (with
    ///     `recompute_scale_factor` unset), which then sets the source-coordinate scale to
    ///     `1 / scaleFactor` instead of `in / out`. Ignored when `alignCorners` is true.
    /// - Returns: `[N, C, Ho, Wo]`.
    public static func interpolateBilinear(
        _ x: Tensor, size: (h: Int, w: Int), alignCorners: Bool, scaleFactor: (h: Double, w: Double)? = nil
    ) -> Tensor {
        let (_, _, h, w) = x.nchw("interpolateBilinear")
        let rows = linearTaps(input: h, output: size.h, alignCorners: alignCorners, scaleFactor: scaleFactor?.h)
        let cols = linearTaps(input: w, output: size.w, alignCorners: alignCorners, scaleFactor: scaleFactor?.w)
        return separable(x, rows: rows, cols: cols)
    }

    /// `F.interpolate(mode='bicubic', antialias=False)`: Keys cubic convolution with
    /// `A = −0.75`, taps at `floor(src) − 1 … + 2` clamped to the border, source coordinate
    /// `(d + 0.5) · scale − 0.5` (not clamped) or `d · scale` with `alignCorners`.
    /// - Parameters:
    ///   - x: `[N, C, H, W]`.
    ///   - size: `(Ho, Wo)`.
    ///   - alignCorners: PyTorch's `align_corners` (DLoRAL uses false).
    ///   - scaleFactor: as for `interpolateBilinear`.
    /// - Returns: `[N, C, Ho, Wo]`.
    public static func interpolateBicubic(
        _ x: Tensor, size: (h: Int, w: Int), alignCorners: Bool = false,
        scaleFactor: (h: Double, w: Double)? = nil
    ) -> Tensor {
        let (_, _, h, w) = x.nchw("interpolateBicubic")
        let rows = cubicTaps(input: h, output: size.h, alignCorners: alignCorners, scaleFactor: scaleFactor?.h)
        let cols = cubicTaps(input: w, output: size.w, alignCorners: alignCorners, scaleFactor: scaleFactor?.w)
        return separable(x, rows: rows, cols: cols)
    }

    /// Source indices and weights along one axis: output `d` reads `indices[d·taps + t]` with
    /// weight `weights[d·taps + t]`.
    struct Taps {
        var taps: Int
        var count: Int
        var indices: [Int]
        var weights: [Float]
    }

    /// PyTorch's `nearest_idx`.
    static func nearestSource(_ d: Int, input: Int, output: Int) -> Int {
        if output == input { return d }
        if output == 2 * input { return d >> 1 }
        let scale = Float(input) / Float(output)
        return min(Int((Float(d) * scale).rounded(.down)), input - 1)
    }

    /// PyTorch's `area_pixel_compute_scale`, in `Float`.
    static func areaScale(input: Int, output: Int, alignCorners: Bool, scaleFactor: Double?) -> Float {
        if alignCorners {
            return output > 1 ? Float(input - 1) / Float(output - 1) : 0
        }
        if let scaleFactor, scaleFactor > 0 { return Float(1 / scaleFactor) }
        return Float(input) / Float(output)
    }

    /// PyTorch's `area_pixel_compute_source_index`.
    static func sourceCoordinate(_ d: Int, scale: Float, alignCorners: Bool, cubic: Bool) -> Float {
        if alignCorners { return scale * Float(d) }
        let source = scale * (Float(d) + 0.5) - 0.5
        return (!cubic && source < 0) ? 0 : source
    }

    /// PyTorch's `guard_index_and_lambda`: integer part clamped to `input − 1`, fraction in [0, 1].
    static func indexAndFraction(_ source: Float, input: Int) -> (Int, Float) {
        let index = min(Int(source.rounded(.down)), input - 1)
        let fraction = min(max(source - Float(index), 0), 1)
        return (index, fraction)
    }

    static func linearTaps(input: Int, output: Int, alignCorners: Bool, scaleFactor: Double?) -> Taps {
        precondition(input > 0 && output >= 0, "bilinear resize from \(input) to \(output)")
        var taps = Taps(taps: 2, count: output, indices: [], weights: [])
        let scale = areaScale(input: input, output: output, alignCorners: alignCorners, scaleFactor: scaleFactor)
        for d in 0..<output {
            if input == output {
                taps.indices += [d, d]
                taps.weights += [1, 0]
                continue
            }
            let source = sourceCoordinate(d, scale: scale, alignCorners: alignCorners, cubic: false)
            let (i0, lambda1) = indexAndFraction(source, input: input)
            let i1 = i0 + (i0 < input - 1 ? 1 : 0)
            taps.indices += [i0, i1]
            taps.weights += [1 - lambda1, lambda1]
        }
        return taps
    }

    static func cubicTaps(input: Int, output: Int, alignCorners: Bool, scaleFactor: Double?) -> Taps {
        precondition(input > 0 && output >= 0, "bicubic resize from \(input) to \(output)")
        var taps = Taps(taps: 4, count: output, indices: [], weights: [])
        let scale = areaScale(input: input, output: output, alignCorners: alignCorners, scaleFactor: scaleFactor)
        let a: Float = -0.75
        // Keys' kernel: |x| ≤ 1 and 1 < |x| < 2 pieces (PyTorch cubic_convolution1 / 2).
        func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        for d in 0..<output {
            let source = sourceCoordinate(d, scale: scale, alignCorners: alignCorners, cubic: true)
            let (index, t) = indexAndFraction(source, input: input)
            taps.weights += [far(t + 1), near(t), near(1 - t), far(2 - t)]
            for j in 0..<4 { taps.indices.append(max(min(index - 1 + j, input - 1), 0)) }
        }
        return taps
    }

    /// Applies per-axis taps: `y[oy, ox] = Σ_r wr · (Σ_c wc · x[r, c])`, PyTorch's order.
    static func separable(_ x: Tensor, rows: Taps, cols: Taps) -> Tensor {
        let (n, c, h, w) = x.nchw("resize")
        let (ho, wo) = (rows.count, cols.count)
        var out = Tensor(zeros: [n, c, ho, wo])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for plane in 0..<(n * c) {
                    let input = src.baseAddress! + plane * h * w
                    let output = dst.baseAddress! + plane * ho * wo
                    for oy in 0..<ho {
                        for ox in 0..<wo {
                            var total: Float = 0
                            for r in 0..<rows.taps {
                                let line = input + rows.indices[oy * rows.taps + r] * w
                                var partial: Float = 0
                                for q in 0..<cols.taps {
                                    partial += line[cols.indices[ox * cols.taps + q]] * cols.weights[ox * cols.taps + q]
                                }
                                total += partial * rows.weights[oy * rows.taps + r]
                            }
                            output[oy * wo + ox] = total
                        }
                    }
                }
            }
        }
        return out
    }
}
