import CKernels

extension Ops {
    /// `torch.nn.functional.conv2d` (groups 1, dilation 1) as one implicit GEMM per image
    /// (`dloral_sconv2d`: the im2col matrix is packed straight from the image).
    ///
    /// A 1×1 kernel with stride 1 and no padding is a plain GEMM: the image already is the
    /// `[C, H·W]` column matrix.
    /// - Parameters:
    ///   - x: `[N, C, H, W]`.
    ///   - weight: `[O, C, kh, kw]`.
    ///   - bias: `[O]`, or nil.
    ///   - stride: `(sh, sw)`.
    ///   - padding: `(ph, pw)` zeros on each side.
    /// - Returns: `[N, O, (H + 2ph − kh)/sh + 1, (W + 2pw − kw)/sw + 1]`.
    public static func conv2d(
        _ x: Tensor, weight: Tensor, bias: Tensor?,
        stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
    ) -> Tensor {
        conv2d(x, weight: FloatWeight(weight), bias: bias, stride: stride, padding: padding)
    }

    /// `conv2d` with the weight read in place (fp32, or fp16 widened as it is packed): the same
    /// bits as with the widened weight as a `Tensor`.
    public static func conv2d(
        _ x: Tensor, weight: FloatWeight, bias: Tensor?,
        stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
    ) -> Tensor {
        let (n, c, h, w) = x.nchw("conv2d")
        let (o, kh, kw, ho, wo) = floatConvShape(c: c, h: h, w: w, weight: weight, bias: bias, stride: stride, padding: padding)
        let (sh, sw) = stride
        let (ph, pw) = padding
        let k = c * kh * kw
        let columnsPerImage = ho * wo
        let direct = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0
        var geometry = dloral_conv_geometry(
            c: c, h: h, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, ho: ho, wo: wo)
        let kernels = Kernels.current
        // Every element is written here (bias then beta 1, or beta 0): no zero fill first.
        return Tensor(shape: [n, o, ho, wo]) { dst in
            guard dst.count > 0 else { return }
            x.data.withUnsafeBufferPointer { src in
                weight.withElements { wt, half in
                    for image in 0..<n {
                        let input = src.baseAddress! + image * c * h * w
                        let output = dst.baseAddress! + image * o * columnsPerImage
                        if let bias {
                            for oc in 0..<o {
                                (output + oc * columnsPerImage).update(repeating: bias.data[oc], count: columnsPerImage)
                            }
                        }
                        let beta: Float = bias == nil ? 0 : 1
                        if direct {
                            sgemm(
                                kernels, m: o, n: columnsPerImage, k: k, a: wt, aHalf: half, lda: k,
                                b: input, ldb: columnsPerImage, c: output, ldc: columnsPerImage, beta: beta)
                        } else {
                            // Implicit GEMM: the im2col matrix is gathered into the GEMM's packed
                            // panels by the threads that use them, never stored.
                            dloral_sconv2d(kernels.handle, half ? 1 : 0, o, wt, &geometry, input, beta, output)
                        }
                    }
                }
            }
        }
    }

    /// Checks a float convolution's weight, bias, stride and padding against its input; returns
    /// (outputs, kh, kw, ho, wo).
    private static func floatConvShape(
        c: Int, h: Int, w: Int, weight: FloatWeight, bias: Tensor?, stride: (Int, Int), padding: (Int, Int)
    ) -> (Int, Int, Int, Int, Int) {
        precondition(weight.shape.count == 4, "conv2d weight must be [O, C, kh, kw], got \(weight.shape)")
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        precondition(weight.shape[1] == c, "conv2d weight \(weight.shape) does not take \(c) input channels")
        if let bias { precondition(bias.count == o, "conv2d bias has \(bias.count) elements for \(o) outputs") }
        let (sh, sw) = stride
        let (ph, pw) = padding
        precondition(sh > 0 && sw > 0 && ph >= 0 && pw >= 0, "conv2d stride \(stride) / padding \(padding)")
        precondition(h + 2 * ph >= kh && w + 2 * pw >= kw, "conv2d kernel \(kh)×\(kw) larger than padded \(h)×\(w)")
        return (o, kh, kw, (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1)
    }

    /// `conv2d(upsampleNearest(x, to: size))` without making the upsampled input: each band of
    /// output rows gathers the rows it reads from `x` (the decoder's upsamplers; the same bits).
    public static func conv2d(
        _ x: Tensor, weight: FloatWeight, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
        upsampledTo size: (h: Int, w: Int)
    ) -> Tensor {
        let (n, c, sourceH, sourceW) = x.nchw("conv2d")
        precondition((sourceH > 0 || size.h == 0) && (sourceW > 0 || size.w == 0), "conv2d upsampling \(sourceH)×\(sourceW) to \(size)")
        let rowMap = (0..<size.h).map { nearestSource($0, input: sourceH, output: size.h) }
        let columnMap = (0..<size.w).map { nearestSource($0, input: sourceW, output: size.w) }
        let kernels = Kernels.current
        return x.data.withUnsafeBufferPointer { src in
            bandedConv2d(kernels, n: n, c: c, h: size.h, w: size.w, weight: weight, bias: bias, stride: stride, padding: padding) {
                image, y0, rows, band, channelStride in
                parallelRanges(c, work: c * rows * size.w) { c0, c1 in
                    for ch in c0..<c1 {
                        let plane = src.baseAddress! + (image * c + ch) * sourceH * sourceW
                        for r in 0..<rows {
                            let line = plane + rowMap[y0 + r] * sourceW
                            let out = band + ch * channelStride + r * size.w
                            for ox in 0..<size.w { out[ox] = line[columnMap[ox]] }
                        }
                    }
                }
            }
        }
    }

    /// `conv2d(groupNorm(x, …))` (SiLU too with `silu`) without making the normalised input: the
    /// statistics come from the whole of `x` (or `statistics`), then each band of output rows
    /// normalises the rows it reads (`dloral_group_norm` is its statistics, then this elementwise
    /// apply: the same bits).
    public static func conv2d(
        normalizing x: Tensor, groups: Int, scale: Tensor?, shift: Tensor?, eps: Float, silu: Bool,
        statistics: GroupNormStatistics? = nil,
        weight: FloatWeight, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
    ) -> Tensor {
        let (n, c, h, w) = x.nchw("conv2d")
        let statistics = groupNormStatistics(x, groups: groups, eps: eps, given: statistics, weight: scale, bias: shift)
        let (mean, rstd, channelsPerGroup) = (statistics.mean, statistics.rstd, c / groups)
        let kernels = Kernels.current
        return x.data.withUnsafeBufferPointer { src in
            return withOptionalPointer(scale) { scales in
                withOptionalPointer(shift) { shifts in
                    bandedConv2d(kernels, n: n, c: c, h: h, w: w, weight: weight, bias: bias, stride: stride, padding: padding) {
                        image, y0, rows, band, channelStride in
                        parallelRanges(c, work: c * rows * w * 8) { c0, c1 in
                            for ch in c0..<c1 {
                                let g = image * groups + ch / channelsPerGroup
                                dloral_group_norm_apply(
                                    kernels.handle, 1, rows * w, src.baseAddress! + (image * c + ch) * h * w + y0 * w, mean[g], rstd[g],
                                    scales.map { $0 + ch }, shifts.map { $0 + ch }, silu ? 1 : 0, band + ch * channelStride)
                            }
                        }
                    }
                }
            }
        }
    }

    /// A convolution of an input that is made band by band: for each band of at most
    /// `bandBytes` of input rows, `fill(image, y0, rows, band, channelStride)` writes input rows
    /// y0 ..< y0 + rows of every channel (channel `ch` at `band + ch · channelStride`, rows `w`
    /// apart); the padding rows are zeros written here. Each band is one implicit GEMM whose
    /// output pixels are a run of the image's, computed as in `conv2d` (the same bits).
    private static func bandedConv2d(
        _ kernels: Kernels, n: Int, c: Int, h: Int, w: Int, weight: FloatWeight, bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
        fill: (Int, Int, Int, UnsafeMutablePointer<Float>, Int) -> Void
    ) -> Tensor {
        let (o, kh, kw, ho, wo) = floatConvShape(c: c, h: h, w: w, weight: weight, bias: bias, stride: stride, padding: padding)
        let (sh, sw) = stride
        let (ph, pw) = padding
        let rowBytes = max(1, c * w * MemoryLayout<Float>.size)
        let bandRows = max(1, min(ho, (bandBytes / rowBytes - kh) / sh + 1))
        let capacity = (bandRows - 1) * sh + kh
        var band = [Float](repeating: 0, count: c * capacity * w)
        var staging = [Float](repeating: 0, count: bandRows < ho ? o * bandRows * wo : 0)
        return Tensor(shape: [n, o, ho, wo]) { dst in
            guard dst.count > 0 else { return }
            band.withUnsafeMutableBufferPointer { band in
                staging.withUnsafeMutableBufferPointer { staging in
                    weight.withElements { wt, half in
                        for image in 0..<n {
                            let output = dst.baseAddress! + image * o * ho * wo
                            for oy0 in Swift.stride(from: 0, to: ho, by: bandRows) {
                                let oy1 = min(ho, oy0 + bandRows)
                                let first = oy0 * sh - ph, rows = (oy1 - 1) * sh + kh - oy0 * sh
                                let y0 = max(0, first), y1 = max(y0, min(h, first + rows))
                                let channelStride = rows * w
                                for ch in 0..<c {
                                    let plane = band.baseAddress! + ch * channelStride
                                    plane.update(repeating: 0, count: (y0 - first) * w)
                                    (plane + (y1 - first) * w).update(repeating: 0, count: (rows - (y1 - first)) * w)
                                }
                                if y1 > y0 { fill(image, y0, y1 - y0, band.baseAddress! + (y0 - first) * w, channelStride) }
                                // The whole image in one band writes the output in place.
                                let pixels = (oy1 - oy0) * wo
                                let target = bandRows < ho ? staging.baseAddress! : output
                                if let bias {
                                    for oc in 0..<o { (target + oc * pixels).update(repeating: bias.data[oc], count: pixels) }
                                }
                                var geometry = dloral_conv_geometry(
                                    c: c, h: rows, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: 0, pw: pw, ho: oy1 - oy0, wo: wo)
                                dloral_sconv2d(kernels.handle, half ? 1 : 0, o, wt, &geometry, band.baseAddress!, bias == nil ? 0 : 1, target)
                                if bandRows < ho {
                                    for oc in 0..<o {
                                        (output + oc * ho * wo + oy0 * wo).update(from: target + oc * pixels, count: pixels)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `torch.nn.functional.linear`: `y = x · Wᵀ + b` over the last axis.
    /// - Parameters:
    ///   - x: `[*, in]`.
    ///   - weight: `[out, in]`.
    ///   - bias: `[out]`, or nil.
    /// - Returns: `[*, out]`.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        linear(x, weight: FloatWeight(weight), bias: bias)
    }

    /// `linear` with the weight read in place (fp32, or fp16 widened as it is packed): the same
    /// bits as with the widened weight as a `Tensor`.
    public static func linear(_ x: Tensor, weight: FloatWeight, bias: Tensor?) -> Tensor {
        precondition(x.rank >= 1 && weight.shape.count == 2, "linear: x \(x.shape), weight \(weight.shape)")
        let inFeatures = x.shape[x.rank - 1]
        let outFeatures = weight.shape[0]
        precondition(weight.shape[1] == inFeatures, "linear weight \(weight.shape) does not take \(inFeatures) features")
        if let bias { precondition(bias.count == outFeatures, "linear bias has \(bias.count) elements for \(outFeatures)") }
        var shape = x.shape
        shape[shape.count - 1] = outFeatures
        var out = Tensor(zeros: shape)
        let rows = inFeatures == 0 ? x.shape.dropLast().reduce(1, *) : x.count / inFeatures
        guard rows > 0, outFeatures > 0 else { return out }
        if let bias {
            for r in 0..<rows {
                for j in 0..<outFeatures { out.data[r * outFeatures + j] = bias.data[j] }
            }
        }
        guard inFeatures > 0 else { return out }
        let kernels = Kernels.current
        x.data.withUnsafeBufferPointer { a in
            weight.withElements { b, half in
                out.data.withUnsafeMutableBufferPointer { c in
                    sgemm(
                        kernels, m: rows, n: outFeatures, k: inFeatures, a: a.baseAddress!, lda: inFeatures,
                        b: b, bHalf: half, ldb: inFeatures, transposeB: true,
                        c: c.baseAddress!, ldc: outFeatures, beta: bias == nil ? 0 : 1)
                }
            }
        }
        return out
    }

    /// Row-major `C = alpha · op(A) · op(B) + beta · C` through `dloral_sgemm` (CKernels): fused
    /// multiply-add chains over blocks of k in a fixed order (dloral_kernels.h), so the result is
    /// the same on every kernel path (AVX2, NEON, scalar) and for any `DLORAL_THREADS`.
    /// - Parameters:
    ///   - m, n, k: `op(A)` is `m×k`, `op(B)` is `k×n`, `C` is `m×n`.
    ///   - transposeA: when true, `A` is stored `k×m` and used transposed.
    ///   - transposeB: when true, `B` is stored `n×k` and used transposed.
    ///   - beta: 0 does not read `C`.
    static func sgemm(
        _ kernels: Kernels, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
        c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float = 0
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm extents \(m)×\(n)×\(k)")
        precondition(
            lda >= (transposeA ? m : k) && ldb >= (transposeB ? k : n) && ldc >= n,
            "sgemm leading dimensions \(lda), \(ldb), \(ldc) too small for \(m)×\(n)×\(k)")
        dloral_sgemm(
            kernels.handle, transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// `sgemm` with either operand possibly binary16 (`aHalf` / `bHalf`), widened exactly as it
    /// is packed (`dloral_sgemm_typed`): the bits of `sgemm` on the widened matrix.
    static func sgemm(
        _ kernels: Kernels, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafeRawPointer, aHalf: Bool = false, lda: Int, transposeA: Bool = false,
        b: UnsafeRawPointer, bHalf: Bool = false, ldb: Int, transposeB: Bool = false,
        c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float = 0
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm extents \(m)×\(n)×\(k)")
        precondition(
            lda >= (transposeA ? m : k) && ldb >= (transposeB ? k : n) && ldc >= n,
            "sgemm leading dimensions \(lda), \(ldb), \(ldc) too small for \(m)×\(n)×\(k)")
        dloral_sgemm_typed(
            kernels.handle, transposeA ? 1 : 0, transposeB ? 1 : 0, aHalf ? 1 : 0, bHalf ? 1 : 0, m, n, k, alpha,
            a, lda, b, ldb, beta, c, ldc)
    }
}
