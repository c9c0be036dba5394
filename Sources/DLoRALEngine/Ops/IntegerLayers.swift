import CKernels
import Dispatch
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
    /// Worker threads for the integer layers (both cores here).
    static let integerThreads = max(1, min(8, ProcessInfo.processInfo.activeProcessorCount))

    /// Splits `0..<count` into at most `integerThreads` contiguous parts and runs `body` on each
    /// concurrently (inline for small work).
    static func parallelRanges(_ count: Int, work: Int, _ body: (Int, Int) -> Void) {
        parallelRanges(count, parts: work < 1 << 22 ? 1 : min(integerThreads, count), body)
    }

    /// Splits `0..<count` into `parts` contiguous parts (at most `count`) and runs `body` on each,
    /// concurrently.
    static func parallelRanges(_ count: Int, parts wanted: Int, _ body: (Int, Int) -> Void) {
        let parts = max(1, min(wanted, count))
        if parts <= 1 {
            body(0, count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: parts) { part in
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
        _ weight: IntegerWeight, rows count: Int, work: Int, _ body: (OpaquePointer?, Int) -> Void
    ) {
        let wanted = work < 1 << 22 ? 1 : min(integerThreads, count)
        let parts = max(1, min(wanted, count / max(1, Int(dloral_int_min_rows()))))
        let outputs = weight.info.logicalShape[0]
        let prepared = weight.block > 0
            ? dloral_int_block_weights_new(count / parts, outputs, weight.info.kPadded, weight.rows)
            : dloral_int_weights_new(weight.bits, count / parts, outputs, weight.info.kPadded, weight.rows)
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
        precondition(weight.block == 0 || weight.activations == .int8, "\(weight.name): block scales run int8 activations only")
        let (h, w) = size ?? (sourceH, sourceW)
        precondition(size == nil || ((sourceH > 0 || h == 0) && (sourceW > 0 || w == 0)), "conv2d upsampling \(sourceH)×\(sourceW) to \(h)×\(w)")
        let rowMap = size.map { _ in (0..<h).map { nearestSource($0, input: sourceH, output: h) } }
        let columnMap = size.map { _ in (0..<w).map { nearestSource($0, input: sourceW, output: w) } }
        let shape = integerConvShape(n: n, c: c, h: h, w: w, weight: weight, stride: stride, padding: padding)
        let (kh, sh, ph) = (weight.info.logicalShape[2], stride.0, padding.0)
        let (ho, wo) = (shape[2], shape[3])
        // Output rows per band, and the input rows (padding rows included, as zeros) they read.
        let rowBytes = max(1, c * w * MemoryLayout<Float>.size)
        let bandRows = max(1, min(ho, (bandBytes / rowBytes - kh) / sh + 1))
        let bandCapacity = (bandRows - 1) * sh + kh
        var band = [Float](repeating: 0, count: bandCapacity * w * c)
        var sourceRow = [Float](repeating: 0, count: size == nil ? 0 : sourceW * c)
        return Tensor(shape: shape) { dst in
            guard dst.count > 0 else { return }
            x.data.withUnsafeBufferPointer { src in
                band.withUnsafeMutableBufferPointer { band in
                    for image in 0..<n {
                        let plane = src.baseAddress! + image * c * sourceH * sourceW
                        let output = dst.baseAddress! + image * dst.count / n
                        for oy0 in Swift.stride(from: 0, to: ho, by: bandRows) {
                            let oy1 = min(ho, oy0 + bandRows)
                            let first = oy0 * sh - ph, count = (oy1 - 1) * sh + kh - (oy0 * sh)
                            for r in 0..<count {
                                let row = band.baseAddress! + r * w * c
                                let y = first + r
                                if y < 0 || y >= h {
                                    row.update(repeating: 0, count: w * c)
                                } else if let rowMap, let columnMap {
                                    // Nearest upsampling: a row repeats its predecessor's when
                                    // both come from the same source row.
                                    if r > 0, y > 0, rowMap[y] == rowMap[y - 1] {
                                        row.update(from: row - w * c, count: w * c)
                                        continue
                                    }
                                    sourceRow.withUnsafeMutableBufferPointer { line in
                                        dloral_chw_to_hwc_pixels(c, sourceH * sourceW, plane + rowMap[y] * sourceW, line.baseAddress!, 0, sourceW)
                                        for ox in 0..<w {
                                            (row + ox * c).update(from: line.baseAddress! + columnMap[ox] * c, count: c)
                                        }
                                    }
                                }
                            }
                            if rowMap == nil {
                                // The image rows of the band in one transpose, on all cores.
                                let y0 = max(0, first), y1 = min(h, first + count)
                                if y1 > y0 {
                                    let target = band.baseAddress! + (y0 - first) * w * c
                                    parallelRanges((y1 - y0) * w, work: c * (y1 - y0) * w * 4) { p0, p1 in
                                        dloral_chw_to_hwc_pixels(c, h * w, plane + y0 * w, target, p0, p1)
                                    }
                                }
                            }
                            integerConvImage(
                                UnsafePointer(band.baseAddress!), c: c, h: count, w: w, weight: weight, bias: bias,
                                stride: stride, padding: (0, padding.1), outputRows: (ho, wo),
                                output: output + oy0 * wo, pixels: (oy1 - oy0) * wo)
                        }
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
        return Tensor(shape: integerConvShape(n: n, c: c, h: h, w: w, weight: weight, stride: stride, padding: padding)) { dst in
            guard dst.count > 0 else { return }
            x.data.withUnsafeBufferPointer { src in
                for image in 0..<n {
                    integerConvImage(
                        src.baseAddress! + image * c * h * w, c: c, h: h, w: w, weight: weight, bias: bias,
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
        _ input: UnsafePointer<Float>, c: Int, h: Int, w: Int, weight: IntegerWeight, bias: Tensor?,
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
            withPreparedWeights(weight, rows: pixels, work: work) { prepared, parts in
                parallelRanges(pixels, parts: parts) { p0, p1 in
                    let (kp, rows, scales) = (weight.info.kPadded, weight.rows, weight.info.scales)
                    let status = weight.block > 0  // §4.3
                        ? dloral_int_block_conv2d(weight.block, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo, input,
                                                  o, kp, rows, scales, b, output, p0, p1, prepared)
                        : dloral_int_conv2d(weight.bits, c, h, w, kh, kw, sh, sw, ph, pw, ho, wo, input,
                                            o, kp, rows, scales, b, output, p0, p1, prepared)
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
        // Every element is written by the epilogue: no zero fill first.
        return Tensor(shape: outShape) { y in
            x.data.withUnsafeBufferPointer { a in
                withOptionalPointer(bias) { b in
                    let work = rows * outFeatures * inFeatures
                    withPreparedWeights(weight, rows: rows, work: work) { prepared, parts in
                        parallelRanges(rows, parts: parts) { r0, r1 in
                            let (kp, weights, scales) = (weight.info.kPadded, weight.rows, weight.info.scales)
                            let status = weight.block > 0  // §4.3
                                ? dloral_int_block_linear(weight.block, inFeatures, a.baseAddress!, inFeatures, outFeatures,
                                                          kp, weights, scales, b, y.baseAddress!, outFeatures, r0, r1, prepared)
                                : dloral_int_linear(weight.bits, inFeatures, a.baseAddress!, inFeatures, outFeatures,
                                                    kp, weights, scales, b, y.baseAddress!, outFeatures, r0, r1, prepared)
                            precondition(status == 0, "integer linear \(weight.name): out of memory for its scratch buffers")
                        }
                    }
                }
            }
        }
    }
}
