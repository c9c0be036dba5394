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
        precondition(weight.shape.count == 4, "conv2d weight must be [O, C, kh, kw], got \(weight.shape)")
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        precondition(weight.shape[1] == c, "conv2d weight \(weight.shape) does not take \(c) input channels")
        if let bias { precondition(bias.count == o, "conv2d bias has \(bias.count) elements for \(o) outputs") }
        let (sh, sw) = stride
        let (ph, pw) = padding
        precondition(sh > 0 && sw > 0 && ph >= 0 && pw >= 0, "conv2d stride \(stride) / padding \(padding)")
        let ho = (h + 2 * ph - kh) / sh + 1
        let wo = (w + 2 * pw - kw) / sw + 1
        precondition(h + 2 * ph >= kh && w + 2 * pw >= kw, "conv2d kernel \(kh)×\(kw) larger than padded \(h)×\(w)")
        let k = c * kh * kw
        let columnsPerImage = ho * wo
        let direct = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0
        var geometry = dloral_conv_geometry(
            c: c, h: h, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, ho: ho, wo: wo)
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
                                m: o, n: columnsPerImage, k: k, a: wt, aHalf: half, lda: k,
                                b: input, ldb: columnsPerImage, c: output, ldc: columnsPerImage, beta: beta)
                        } else {
                            // Implicit GEMM: the im2col matrix is gathered into the GEMM's packed
                            // panels by the threads that use them, never stored.
                            dloral_sconv2d(half ? 1 : 0, o, wt, &geometry, input, beta, output)
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
        x.data.withUnsafeBufferPointer { a in
            weight.withElements { b, half in
                out.data.withUnsafeMutableBufferPointer { c in
                    sgemm(
                        m: rows, n: outFeatures, k: inFeatures, a: a.baseAddress!, lda: inFeatures,
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
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
        c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float = 0
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm extents \(m)×\(n)×\(k)")
        precondition(
            lda >= (transposeA ? m : k) && ldb >= (transposeB ? k : n) && ldc >= n,
            "sgemm leading dimensions \(lda), \(ldb), \(ldc) too small for \(m)×\(n)×\(k)")
        dloral_sgemm(
            transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// `sgemm` with either operand possibly binary16 (`aHalf` / `bHalf`), widened exactly as it
    /// is packed (`dloral_sgemm_typed`): the bits of `sgemm` on the widened matrix.
    static func sgemm(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafeRawPointer, aHalf: Bool = false, lda: Int, transposeA: Bool = false,
        b: UnsafeRawPointer, bHalf: Bool = false, ldb: Int, transposeB: Bool = false,
        c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float = 0
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm extents \(m)×\(n)×\(k)")
        precondition(
            lda >= (transposeA ? m : k) && ldb >= (transposeB ? k : n) && ldc >= n,
            "sgemm leading dimensions \(lda), \(ldb), \(ldc) too small for \(m)×\(n)×\(k)")
        dloral_sgemm_typed(
            transposeA ? 1 : 0, transposeB ? 1 : 0, aHalf ? 1 : 0, bHalf ? 1 : 0, m, n, k, alpha,
            a, lda, b, ldb, beta, c, ldc)
    }
}
