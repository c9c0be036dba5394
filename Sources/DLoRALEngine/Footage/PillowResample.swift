import Foundation

/// Pillow's `Image.resize` for 8-bit RGB images, reproduced bit for bit so that frames prepared
/// here are the frames upstream DLoRAL prepares with Pillow.
///
/// Pillow's convolution resampler (libImaging/Resample.c) works in two separable passes. For
/// each output position it places a filter window on the input, weighs the input samples with
/// the filter (stretched by the scale factor when shrinking, so that it also low-passes),
/// normalises the weights to sum 1 in double precision, and converts them to signed fixed point
/// with 22 fractional bits (32 bits minus 8 for the sample minus 2 for overshoot). The pass sums
/// `sample × weight` in integers starting from one half (so the final shift rounds to nearest),
/// shifts the fraction away and clamps to 0…255. One pass runs into an 8-bit intermediate, then
/// the other (`verticallyFirst` says which order); each runs only when that side changes size,
/// and an unchanged size returns the image as it is. Equality with Pillow therefore depends on every
/// one of these steps, including the double-precision weight arithmetic in Pillow's order.
public enum PillowResample {
    /// Pillow's `Resampling.BICUBIC` (Keys' cubic with a = -0.5, support 2) and
    /// `Resampling.LANCZOS` (sinc windowed by sinc(x/3), support 3).
    public enum Filter: Sendable {
        case bicubic, lanczos

        var support: Double {
            switch self {
            case .bicubic: return 2
            case .lanczos: return 3
            }
        }

        /// The filter kernel, in Pillow's operation order (the double rounding must match).
        func weight(_ x: Double) -> Double {
            switch self {
            case .bicubic:
                let a = -0.5
                let x = x < 0 ? -x : x
                if x < 1 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
                if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
                return 0
            case .lanczos:
                guard -3.0 <= x && x < 3.0 else { return 0 }
                return Filter.sinc(x) * Filter.sinc(x / 3)
            }
        }

        private static func sinc(_ x: Double) -> Double {
            if x == 0 { return 1 }
            let t = x * Double.pi
            return sin(t) / t
        }
    }

    /// Fractional bits of the fixed-point weights: 32 bits less 8 for the sample and 2 spare
    /// for sums above 1 or below 0 (Pillow's PRECISION_BITS).
    static let precisionBits = 32 - 8 - 2

    /// The weights of one pass: for output position `i`, input samples
    /// `first[i] ..< first[i] + count[i]` with weights `weights[i * stride ..< i * stride + count[i]]`.
    struct Coefficients {
        var first: [Int]
        var count: [Int]
        var stride: Int
        var weights: [Int32]
    }

    /// Pillow's `precompute_coeffs` followed by its 8-bit fixed-point conversion, for the whole
    /// input side `0 ..< inSize` mapped to `outSize` samples.
    static func coefficients(inSize: Int, outSize: Int, filter: Filter) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        let stride = Int(support.rounded(.up)) * 2 + 1
        let inverseFilterScale = 1.0 / filterScale
        var first = [Int](repeating: 0, count: outSize)
        var count = [Int](repeating: 0, count: outSize)
        var weights = [Int32](repeating: 0, count: outSize * stride)
        var row = [Double](repeating: 0, count: stride)
        let one = Double(1 << precisionBits)
        for i in 0..<outSize {
            let center = (Double(i) + 0.5) * scale
            // C's (int) conversion truncates toward zero, as Int(_:) does.
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), inSize)
            let n = hi - lo
            var total = 0.0
            for k in 0..<n {
                let w = filter.weight((Double(k + lo) - center + 0.5) * inverseFilterScale)
                row[k] = w
                total += w
            }
            if total != 0 {
                for k in 0..<n { row[k] /= total }
            }
            for k in 0..<n {
                let w = row[k]
                weights[i * stride + k] = Int32(w < 0 ? (-0.5 + w * one) : (0.5 + w * one))
            }
            first[i] = lo
            count[i] = n
        }
        return Coefficients(first: first, count: count, stride: stride, weights: weights)
    }

    /// Pillow's `Image.resize(size, resample)` of an RGB image.
    /// - Precondition: `width`, `height` ≥ 1 (Pillow raises for empty sizes).
    public static func resize(_ image: RGBImage, width: Int, height: Int, filter: Filter) -> RGBImage {
        precondition(width >= 1 && height >= 1, "resize to \(width)×\(height): sides must be at least 1")
        precondition(image.width >= 1 && image.height >= 1, "resize of an empty \(image.width)×\(image.height) image")
        if width == image.width && height == image.height { return image }

        let vertical = coefficients(inSize: image.height, outSize: height, filter: filter)
        if verticallyFirst(from: (image.width, image.height), to: (width, height)) {
            let rows = verticalPass(image.pixels, width: image.width, outHeight: height, vertical)
            guard width != image.width else { return RGBImage(width: width, height: height, pixels: rows) }
            let horizontal = coefficients(inSize: image.width, outSize: width, filter: filter)
            let pixels = horizontalPass(rows, inWidth: image.width, rows: 0..<height, outWidth: width, horizontal)
            return RGBImage(width: width, height: height, pixels: pixels)
        }
        var source = image.pixels
        var rows = vertical
        if width != image.width {
            // Only the input rows the vertical pass reads are resampled horizontally.
            let firstRow = vertical.first[0]
            let lastRow = vertical.first[height - 1] + vertical.count[height - 1]
            let horizontal = coefficients(inSize: image.width, outSize: width, filter: filter)
            source = horizontalPass(
                image.pixels, inWidth: image.width, rows: firstRow..<lastRow, outWidth: width, horizontal)
            rows.first = vertical.first.map { $0 - firstRow }
        }
        // With an unchanged height those rows are all rows (the window of row i covers i).
        if height == image.height { return RGBImage(width: width, height: height, pixels: source) }
        let pixels = verticalPass(source, width: width, outHeight: height, rows)
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// Pillow 13 runs the vertical pass first when the height shrinks by more than twice as
    /// many pixels as the width does (a cheaper first pass); otherwise horizontal then
    /// vertical. The order matters for the result because the intermediate is rounded to
    /// 8 bits. (Established against Pillow 13.0.0 over thousands of random size pairs: the
    /// rule classifies every case where the two orders differ.)
    static func verticallyFirst(from input: (width: Int, height: Int), to output: (width: Int, height: Int)) -> Bool {
        output.height < input.height && input.height - output.height > 2 * (input.width - output.width)
    }

    /// The final rounding of a pass: the accumulator started at one half, so dropping the
    /// fraction rounds to nearest; then clamp to the 8-bit range.
    @inline(__always)
    static func clip8(_ sum: Int32) -> UInt8 {
        let v = sum >> Int32(precisionBits)
        return v < 0 ? 0 : (v > 255 ? 255 : UInt8(truncatingIfNeeded: v))
    }

    static func horizontalPass(
        _ input: [UInt8], inWidth: Int, rows: Range<Int>, outWidth: Int, _ c: Coefficients
    ) -> [UInt8] {
        let half = Int32(1) << Int32(precisionBits - 1)
        var output = [UInt8](repeating: 0, count: rows.count * outWidth * 3)
        input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { weights in
                    for (outRow, y) in rows.enumerated() {
                        let line = y * inWidth * 3
                        let outLine = outRow * outWidth * 3
                        for x in 0..<outWidth {
                            let lo = c.first[x], n = c.count[x]
                            let k = x * c.stride
                            var r = half, g = half, b = half
                            var p = line + lo * 3
                            for t in 0..<n {
                                let w = weights[k + t]
                                r &+= Int32(src[p]) &* w
                                g &+= Int32(src[p + 1]) &* w
                                b &+= Int32(src[p + 2]) &* w
                                p += 3
                            }
                            let o = outLine + x * 3
                            dst[o] = clip8(r)
                            dst[o + 1] = clip8(g)
                            dst[o + 2] = clip8(b)
                        }
                    }
                }
            }
        }
        return output
    }

    static func verticalPass(_ input: [UInt8], width: Int, outHeight: Int, _ c: Coefficients) -> [UInt8] {
        let half = Int32(1) << Int32(precisionBits - 1)
        let rowLength = width * 3
        var output = [UInt8](repeating: 0, count: outHeight * rowLength)
        var sums = [Int32](repeating: 0, count: rowLength)
        input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                sums.withUnsafeMutableBufferPointer { acc in
                    for y in 0..<outHeight {
                        for i in 0..<rowLength { acc[i] = half }
                        let lo = c.first[y], n = c.count[y]
                        for t in 0..<n {
                            let w = c.weights[y * c.stride + t]
                            let line = (lo + t) * rowLength
                            for i in 0..<rowLength { acc[i] &+= Int32(src[line + i]) &* w }
                        }
                        let o = y * rowLength
                        for i in 0..<rowLength { dst[o + i] = clip8(acc[i]) }
                    }
                }
            }
        }
        return output
    }
}
