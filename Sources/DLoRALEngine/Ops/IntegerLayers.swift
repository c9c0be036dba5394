import CKernels
import Foundation
import DLoRALFormats

/// An int8 weight matrix used in place from the `.dlrt` mapping (`rows_k32`, one scale per output
/// channel, or per output channel and block of K), with the precision its layer quantizes
/// activations to (per row, or per row and block: Formats/dlrt.md §4.1, §4.3).
public struct IntegerWeight: @unchecked Sendable {
    /// Keeps the mapping (or decompressed copy) alive; `rows` points into it.
    let view: TensorView
    let rows: UnsafePointer<Int8>
    public let info: Int8RowsInfo
    public private(set) var activations: DLRTActivations
    /// The weight's name in its component's table (`down_blocks.0.resnets.0.conv1.weight`).
    public let name: String

    /// nil when `view` is not an int8 rows view whose layer has integer activations.
    init?(_ view: TensorView, name: String) {
        guard let info = view.int8Rows, let activations = info.activations,
            let bytes = view.contiguousBytes, let base = bytes.baseAddress,
            bytes.count == (info.logicalShape.first ?? 0) * info.kPadded
        else { return nil }
        self.view = view
        self.rows = base.assumingMemoryBound(to: Int8.self)
        self.info = info
        self.activations = activations
        self.name = name
    }

    /// The same weight run at another activation precision.
    func with(_ activations: DLRTActivations) -> IntegerWeight {
        var copy = self
        copy.activations = activations
        return copy
    }

    var bits: Int32 { activations == .int8 ? 8 : 16 }
    var outputs: Int { info.logicalShape[0] }
    /// Columns per scale along K (`int8_block`: 32 or 64); 0 for one scale per output channel.
    public var block: Int { info.block }
}

extension Ops {
    /// How many parts `count` items of `work` multiply-adds in all are split into: one below about
    /// 4 M (starting the pool's threads costs more), else one per pool thread (DLORAL_THREADS).
    static func parts(_ count: Int, work: Int) -> Int {
        work < 1 << 22 ? 1 : min(ThreadPool.threads, count)
    }

    /// Splits `0..<count` into `parts(count, work:)` contiguous parts and runs `body` on each
    /// concurrently (inline for small work).
    static func parallelRanges(_ count: Int, work: Int, _ body: (Int, Int) -> Void) {
        parallelRanges(count, parts: parts(count, work: work), body)
    }

    /// Splits `0..<count` into `parts` contiguous parts (at most `count`) and runs `body` on each,
    /// concurrently on the thread pool.
    static func parallelRanges(_ count: Int, parts wanted: Int, _ body: (Int, Int) -> Void) {
        let parts = max(1, min(wanted, count))
        if parts <= 1 {
            body(0, count)
            return
        }
        ThreadPool.forEach(parts) { part in
            body(count * part / parts, count * (part + 1) / parts)
        }
    }

    /// Runs `body` with the weights prepared once for a layer call of `count` rows that
    /// `parallelRanges(count, work:)` splits (the threads packing a share each: at the amx level
    /// packed for the tiles; below it, int8 activations as VNNI panels and block scales as int16
    /// panels), or with nil where the kernel level has nothing to prepare.
    ///
    /// `body` gets the number of parts to split the rows into: no part gets fewer rows than the
    /// kernels want (`dloral_int_min_rows`: at the amx level, one thread on the tiles beats two on
    /// a kernel without them for a 4×4 latent's 16 pixels).
    static func withPreparedWeights(
        _ kernels: Kernels, _ weight: IntegerWeight, rows count: Int, work: Int, _ body: (OpaquePointer?, Int) -> Void
    ) {
        let wanted = parts(count, work: work)
        let parts = max(1, min(wanted, count / max(1, Int(dloral_int_min_rows(kernels.handle)))))
        let outputs = weight.info.logicalShape[0]
        let prepared = weight.block > 0
            ? dloral_int_block_weights_new(kernels.handle, count / parts, outputs, weight.info.kPadded, weight.rows)
            : dloral_int_weights_new(kernels.handle, weight.bits, count / parts, outputs, weight.info.kPadded, weight.rows)
        defer { dloral_int_weights_free(prepared) }
        if let prepared {
            parallelRanges(dloral_int_weights_pieces(prepared), parts: wanted) { first, end in
                dloral_int_weights_pack(prepared, first, end)
            }
        }
        body(prepared, parts)
    }

    /// Bytes of input a band of output rows reads at most (at least one band row) where a
    /// convolution makes its input as it goes: channels-last for the integer layers, normalised or
    /// upsampled for the float ones. A band at a time keeps that copy small instead of a second
    /// copy of the whole input (943 MB for a 256-channel 1280×720 decoder activation).
    nonisolated(unsafe) static var bandBytes = 64 << 20

    /// `conv2d` with int8 weights and activations quantized per output pixel to int8 or int16
    /// (the row of the im2col matrix), int32 accumulation, dequantized with bias.
    ///
    /// - Parameter upsampledTo: convolve `upsampleNearest(x, to:)` without making it: each band's
    ///   rows are gathered from `x` (the decoder's upsamplers; the same bits).
    public static func conv2d(
        _ x: Tensor, weight: IntegerWeight, bias: Tensor?,
        stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), upsampledTo size: (h: Int, w: Int)? = nil
    ) -> Tensor {
        let (n, c, sourceH, sourceW) = x.nchw("conv2d")
        let (h, w) = size ?? (sourceH, sourceW)
        precondition(size == nil || ((sourceH > 0 || h == 0) && (sourceW > 0 || w == 0)), "conv2d upsampling \(sourceH)×\(sourceW) to \(h)×\(w)")
        let kernels = Kernels.current
        return x.data.withUnsafeBufferPointer { src in
            guard size != nil else {
                // The image rows of the band in one transpose, on all cores.
                return bandedIntegerConv(kernels, n: n, c: c, h: h, w: w, weight: weight, bias: bias, stride: stride, padding: padding) {
                    image, y0, rows, band in
                    let plane = src.baseAddress! + image * c * h * w + y0 * w
                    parallelRanges(rows * w, work: c * rows * w * 4) { p0, p1 in
                        dloral_chw_to_hwc_pixels(kernels.handle, c, h * w, plane, band, p0, p1)
                    }
                }
            }
            let rowMap = (0..<h).map { nearestSource($0, input: sourceH, output: h) }
            let columnMap = (0..<w).map { nearestSource($0, input: sourceW, output: w) }
            var sourceRow = [Float](repeating: 0, count: sourceW * c)
            return bandedIntegerConv(kernels, n: n, c: c, h: h, w: w, weight: weight, bias: bias, stride: stride, padding: padding) {
                image, y0, rows, band in
                let plane = src.baseAddress! + image * c * sourceH * sourceW
                for r in 0..<rows {
                    let row = band + r * w * c
                    // A row repeats its predecessor's when both come from the same source row.
                    if r > 0, rowMap[y0 + r] == rowMap[y0 + r - 1] {
                        row.update(from: row - w * c, count: w * c)
                        continue
                    }
                    sourceRow.withUnsafeMutableBufferPointer { line in
                        dloral_chw_to_hwc_pixels(kernels.handle, c, sourceH * sourceW, plane + rowMap[y0 + r] * sourceW, line.baseAddress!, 0, sourceW)
                        for ox in 0..<w {
                            (row + ox * c).update(from: line.baseAddress! + columnMap[ox] * c, count: c)
                        }
                    }
                }
            }
        }
    }

    /// `conv2d(groupNormNHWC(x, …))` without making the normalised input whole: the statistics
    /// come from all of `x` (or `statistics`), then each band's rows are normalised channels-last
    /// as they are read (`dloral_group_norm_nhwc` on those pixels: the same bits).
    public static func conv2d(
        normalizing x: Tensor, groups: Int, scale: Tensor?, shift: Tensor?, eps: Float, silu: Bool,
        statistics: GroupNormStatistics? = nil,
        weight: IntegerWeight, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
    ) -> Tensor {
        let (n, c, h, w) = x.nchw("conv2d")
        let statistics = groupNormStatistics(x, groups: groups, eps: eps, given: statistics, weight: scale, bias: shift)
        // Per image and channel, its group's mean and rstd, as dloral_group_norm_nhwc takes them.
        let channelsPerGroup = c / groups, plane = h * w
        let group = { (index: Int) in index / c * groups + index % c / channelsPerGroup }
        let means = (0..<n * c).map { statistics.mean[group($0)] }, rstds = (0..<n * c).map { statistics.rstd[group($0)] }
        let kernels = Kernels.current
        return x.data.withUnsafeBufferPointer { src in
            return withOptionalPointer(scale) { scales in
                withOptionalPointer(shift) { shifts in
                    means.withUnsafeBufferPointer { m in
                        rstds.withUnsafeBufferPointer { r in
                            bandedIntegerConv(kernels, n: n, c: c, h: h, w: w, weight: weight, bias: bias, stride: stride, padding: padding) {
                                image, y0, rows, band in
                                let base = src.baseAddress! + image * c * plane + y0 * w
                                parallelRanges(rows * w, work: c * rows * w * 8) { p0, p1 in
                                    dloral_group_norm_nhwc(kernels.handle, c, plane, base, m.baseAddress! + image * c, r.baseAddress! + image * c,
                                                           scales, shifts, silu ? 1 : 0, band, p0, p1)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// An integer convolution of an input made channels-last band by band: for each band of at
    /// most `bandBytes` of input rows, `fill(image, y0, rows, band)` writes input rows
    /// y0 ..< y0 + rows channels-last at `band` (rows `w · c` apart); padding rows are zeros
    /// written here. Each band's output pixels are a run of the image's, each quantized from its
    /// own im2col row as over the whole image (the same bits).
    private static func bandedIntegerConv(
        _ kernels: Kernels, n: Int, c: Int, h: Int, w: Int, weight: IntegerWeight, bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
        fill: (Int, Int, Int, UnsafeMutablePointer<Float>) -> Void
    ) -> Tensor {
        precondition(weight.block == 0 || weight.activations == .int8, "\(weight.name): block scales run int8 activations only")
        let shape = integerConvShape(n: n, c: c, h: h, w: w, weight: weight, stride: stride, padding: padding)
        let (kh, sh, ph) = (weight.info.logicalShape[2], stride.0, padding.0)
        let (ho, wo) = (shape[2], shape[3])
        let rowBytes = max(1, c * w * MemoryLayout<Float>.size)
        let bandRows = max(1, min(ho, (bandBytes / rowBytes - kh) / sh + 1))
        var band = [Float](repeating: 0, count: ((bandRows - 1) * sh + kh) * w * c)
        return Tensor(shape: shape) { dst in
            guard dst.count > 0 else { return }
            band.withUnsafeMutableBufferPointer { band in
                for image in 0..<n {
                    let output = dst.baseAddress! + image * dst.count / n
                    for oy0 in Swift.stride(from: 0, to: ho, by: bandRows) {
                        let oy1 = min(ho, oy0 + bandRows)
                        let first = oy0 * sh - ph, rows = (oy1 - 1) * sh + kh - oy0 * sh
                        let y0 = max(0, first), y1 = max(y0, min(h, first + rows))
                        band.baseAddress!.update(repeating: 0, count: (y0 - first) * w * c)
                        (band.baseAddress! + (y1 - first) * w * c).update(repeating: 0, count: (rows - (y1 - first)) * w * c)
                        if y1 > y0 { fill(image, y0, y1 - y0, band.baseAddress! + (y0 - first) * w * c) }
                        integerConvImage(
                            kernels, UnsafePointer(band.baseAddress!), c: c, h: rows, w: w, weight: weight, bias: bias,
                            stride: stride, padding: (0, padding.1), outputRows: (ho, wo),
                            output: output + oy0 * wo, pixels: (oy1 - oy0) * wo)
                    }
                }
            }
        }
    }

    /// `conv2d` on the integer path for an input already channels-last, `[N, H, W, C]` (from
    /// `groupNormNHWC`); the output is NCHW, and bit for bit that of `conv2d` on the NCHW input.
    public static func conv2d(
        nhwc x: Tensor, weight: IntegerWeight, bias: Tensor?,
        stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
    ) -> Tensor {
        precondition(x.rank == 4, "conv2d(nhwc:) expects [N, H, W, C], got \(x.shape)")
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let kernels = Kernels.current
        return Tensor(shape: integerConvShape(n: n, c: c, h: h, w: w, weight: weight, stride: stride, padding: padding)) { dst in
            guard dst.count > 0 else { return }
            x.data.withUnsafeBufferPointer { src in
                for image in 0..<n {
                    integerConvImage(
                        kernels, src.baseAddress! + image * c * h * w, c: c, h: h, w: w, weight: weight, bias: bias,
                        stride: stride, padding: padding, output: dst.baseAddress! + image * dst.count / n)
                }
            }
        }
    }

    /// The NCHW output shape of an integer conv2d, checking the weight against the input.
    private static func integerConvShape(
        n: Int, c: Int, h: Int, w: Int, weight: IntegerWeight, stride: (Int, Int), padding: (Int, Int)
    ) -> [Int] {
        let shape = weight.info.logicalShape
        precondition(shape.count == 4 && shape[1] == c, "integer conv2d weight \(shape) does not take \(c) input channels")
        let (o, kh, kw) = (shape[0], shape[2], shape[3])
        let (sh, sw) = stride
        let (ph, pw) = padding
        precondition(h + 2 * ph >= kh && w + 2 * pw >= kw, "conv2d kernel \(kh)×\(kw) larger than padded \(h)×\(w)")
        return [n, o, (h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1]
    }

    /// One channels-last image through the integer layer, its output pixels split over the cores;
    /// writes every element of the image's NCHW output, or the first `pixels` of each channel's
    /// plane of `outputRows` (a band of an image whose planes are that size).
    private static func integerConvImage(
        _ kernels: Kernels, _ input: UnsafePointer<Float>, c: Int, h: Int, w: Int, weight: IntegerWeight, bias: Tensor?,
        stride: (Int, Int), padding: (Int, Int), outputRows: (Int, Int)? = nil,
        output: UnsafeMutablePointer<Float>, pixels bandPixels: Int? = nil
    ) {
        let shape = weight.info.logicalShape
        let (o, kh, kw) = (shape[0], shape[2], shape[3])
        if let bias { precondition(bias.count == o, "conv2d bias has \(bias.count) elements for \(o) outputs") }
        let (sh, sw) = stride
        let (ph, pw) = padding
        let (ho, wo) = outputRows ?? ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1)
        let pixels = bandPixels ?? ho * wo
        let work = pixels * o * c * kh * kw
        withOptionalPointer(bias) { b in
            withPreparedWeights(kernels, weight, rows: pixels, work: work) { prepared, parts in
                parallelRanges(pixels, parts: parts) { p0, p1 in
                    var geometry = dloral_conv_geometry(
                        c: c, h: h, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, ho: ho, wo: wo)
                    var weights = dloral_int_layer_weights(
                        n: o, kp: weight.info.kPadded, rows: weight.rows, scales: weight.info.scales, bias: b)
                    let status = weight.block > 0  // §4.3
                        ? dloral_int_block_conv2d(kernels.handle, weight.block, &geometry, input, &weights, output, p0, p1, prepared)
                        : dloral_int_conv2d(kernels.handle, weight.bits, &geometry, input, &weights, output, p0, p1, prepared)
                    precondition(status == 0, "integer conv2d \(weight.name): out of memory for its scratch buffers")
                }
            }
        }
    }

    /// `linear` with int8 weights and activations quantized per row (token) to int8 or int16.
    public static func linear(_ x: Tensor, weight: IntegerWeight, bias: Tensor?) -> Tensor {
        let shape = weight.info.logicalShape
        precondition(x.rank >= 1 && shape.count == 2, "integer linear: x \(x.shape), weight \(shape)")
        precondition(weight.block == 0 || weight.activations == .int8, "\(weight.name): block scales run int8 activations only")
        let inFeatures = x.shape[x.rank - 1]
        let outFeatures = shape[0]
        precondition(shape[1] == inFeatures, "linear weight \(shape) does not take \(inFeatures) features")
        if let bias { precondition(bias.count == outFeatures, "linear bias has \(bias.count) elements for \(outFeatures)") }
        var outShape = x.shape
        outShape[outShape.count - 1] = outFeatures
        let rows = inFeatures == 0 ? 0 : x.count / inFeatures
        guard rows > 0, outFeatures > 0 else { return Tensor(zeros: outShape) }
        let kernels = Kernels.current
        // Every element is written by the epilogue: no zero fill first.
        return Tensor(shape: outShape) { y in
            x.data.withUnsafeBufferPointer { a in
                withOptionalPointer(bias) { b in
                    let work = rows * outFeatures * inFeatures
                    withPreparedWeights(kernels, weight, rows: rows, work: work) { prepared, parts in
                        parallelRanges(rows, parts: parts) { r0, r1 in
                            var weights = dloral_int_layer_weights(
                                n: outFeatures, kp: weight.info.kPadded, rows: weight.rows, scales: weight.info.scales,
                                bias: b)
                            let status = weight.block > 0  // §4.3
                                ? dloral_int_block_linear(kernels.handle, weight.block, inFeatures, a.baseAddress!, inFeatures, &weights,
                                                          y.baseAddress!, outFeatures, r0, r1, prepared)
                                : dloral_int_linear(kernels.handle, weight.bits, inFeatures, a.baseAddress!, inFeatures, &weights,
                                                    y.baseAddress!, outFeatures, r0, r1, prepared)
                            precondition(status == 0, "integer linear \(weight.name): out of memory for its scratch buffers")
                        }
                    }
                }
            }
        }
    }
}
