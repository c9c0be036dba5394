import CZstd

/// zstd compression with the byte-shuffle filter of §5.
public enum DLRTCodec {
    /// zstd level used by the writer (fixed, so output is reproducible).
    public static let level: Int32 = 3

    /// Output byte j·n + i = input byte i·e + j.
    public static func shuffle(_ input: UnsafeRawBufferPointer, elementBytes e: Int) -> [UInt8] {
        let n = input.count / e
        var out = [UInt8](repeating: 0, count: input.count)
        out.withUnsafeMutableBytes { o in
            for j in 0..<e {
                let base = j * n
                for i in 0..<n { o[base + i] = input[i * e + j] }
            }
        }
        return out
    }

    public static func unshuffle(_ input: UnsafeRawBufferPointer, elementBytes e: Int) -> [UInt8] {
        let n = input.count / e
        var out = [UInt8](repeating: 0, count: input.count)
        out.withUnsafeMutableBytes { o in
            for j in 0..<e {
                let base = j * n
                for i in 0..<n { o[i * e + j] = input[base + i] }
            }
        }
        return out
    }

    public static func compress(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { ZSTD_compress($0.baseAddress, bound, input.baseAddress, input.count, level) }
        precondition(ZSTD_isError(written) == 0, "zstd compression failed")
        out.removeLast(bound - written)
        return out
    }

    /// Decompresses one frame that must expand to exactly `rawBytes`; nil if it does not.
    public static func decompress(_ input: UnsafeRawBufferPointer, rawBytes: Int) -> [UInt8]? {
        let declared = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        guard declared == UInt64(rawBytes) else { return nil }
        var out = [UInt8](repeating: 0, count: rawBytes)
        let got = out.withUnsafeMutableBytes { ZSTD_decompress($0.baseAddress, rawBytes, input.baseAddress, input.count) }
        guard ZSTD_isError(got) == 0, got == rawBytes else { return nil }
        return out
    }
}
