import Crypto
import Foundation

/// Constants and records of the `.dlrt` runtime file (Formats/dlrt.md, version 1.2). Writers
/// stamp the lowest minor version a file needs (`DLRTWriter`); this reader knows 1.0 to 1.2 and
/// accepts newer 1.x files, ignoring what it does not know (Formats/dlrt.md §6).
public enum DLRT {
    public static let magic: [UInt8] = [0x89, 0x44, 0x4C, 0x52, 0x54, 0x0D, 0x0A, 0x1A]
    public static let majorVersion: UInt16 = 1
    /// The newest minor version this code writes (1.1: per-tensor `activations`; 1.2: on
    /// `int8_block` tensors too).
    public static let minorVersion: UInt16 = 2
    public static let headerBytes = 128
    /// Every data and scales region starts on a multiple of this.
    public static let alignmentBytes = 64
    /// Columns of an int8 `rows_k32` matrix are padded to a multiple of this.
    public static let rowPaddingColumns = 32

    public static func alignUp(_ value: Int, _ alignment: Int = alignmentBytes) -> Int {
        (value + alignment - 1) / alignment * alignment
    }

    public static func hex(_ digest: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
        hex(SHA256.hash(data: bytes))
    }
}

/// The fixed 128-byte header (§2).
public struct DLRTHeader: Equatable, Sendable {
    public var major: UInt16 = DLRT.majorVersion
    public var minor: UInt16 = 0
    public var fileBytes = 0
    public var metadataOffset = DLRT.headerBytes
    public var metadataBytes = 0
    public var payloadOffset = 0
    public var payloadBytes = 0
    public var flags: UInt64 = 0
    public var digest = [UInt8](repeating: 0, count: 32)

    public init() {}

    /// The first 96 bytes (everything the digest covers of the header).
    public func digestedPrefix() -> [UInt8] {
        var out = DLRT.magic
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) } }
        put(major)
        put(minor)
        put(UInt32(DLRT.headerBytes))
        put(UInt64(fileBytes))
        put(UInt64(metadataOffset))
        put(UInt64(metadataBytes))
        put(UInt64(payloadOffset))
        put(UInt64(payloadBytes))
        put(flags)
        out.append(contentsOf: [UInt8](repeating: 0, count: 32))
        return out
    }

    public func encoded() -> [UInt8] { digestedPrefix() + digest }

    /// SHA-256 of the header's first 96 bytes followed by the metadata (§2).
    public func computeDigest(metadata: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        digestedPrefix().withUnsafeBytes { hasher.update(bufferPointer: $0) }
        hasher.update(bufferPointer: metadata)
        return Array(hasher.finalize())
    }
}

/// Precision of the activations an int8 layer multiplies its weights with (§4.1, version 1.1).
public enum DLRTActivations: String, Sendable, CaseIterable {
    /// Quantized per row to int8 (int8 × int8 products).
    case int8
    /// Quantized per row to int16 (int16 × int8 products, exact).
    case int16
}

/// How a file's weights are stored, as a whole (`quantization.weights`, §4). Case order is the
/// order messages list them in.
public enum DLRTWeights: String, Sendable, CaseIterable {
    case int8, fp16, fp32
}

/// The granularity of int8 weights' scales (`quantization.int8_granularity`, §4): one scale per
/// output channel, or one per output channel and block of 32 or 64 along K.
public enum DLRTGranularity: String, Sendable, CaseIterable {
    case channel, block32, block64

    /// Elements per scale along K (0: one scale per output channel).
    public var block: Int {
        switch self {
        case .channel: return 0
        case .block32: return 32
        case .block64: return 64
        }
    }
}

/// How the int8 layers of a file run their activations (`quantization.activations`, §4.1):
/// `fp32` against the dequantized weights, `int8` or `int16` on every layer, or `auto`
/// (chosen per layer by calibration; each tensor entry then names its own precision).
public enum DLRTActivationPolicy: String, Sendable, CaseIterable {
    case fp32, int8, int16, auto
}

/// How a tensor's elements are stored.
public enum DLRTScheme: String, Sendable {
    case none
    case int8Channel = "int8_channel"
    case int8Block = "int8_block"
}

public enum DLRTLayout: String, Sendable {
    /// Row-major in the logical shape.
    case torch
    /// int8 [N][Kp], K in (kh, kw, in) order, zero-padded (§4).
    case rowsK32 = "rows_k32"
}

public enum DLRTCompression: String, Sendable {
    case none
    case zstd
    case zstdShuffle = "zstd_shuffle"
}

/// A byte range of the file with its digest.
public struct DLRTRegion: Equatable, Sendable {
    public var offset: Int
    public var bytes: Int
    public var sha256: String
    public init(offset: Int, bytes: Int, sha256: String) {
        self.offset = offset
        self.bytes = bytes
        self.sha256 = sha256
    }
}

/// One entry of the metadata's `tensors` list (§3.1).
public struct DLRTTensorEntry: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var dtype: DType
    public var scheme: DLRTScheme
    public var layout: DLRTLayout
    public var block = 0
    public var k = 0
    public var kPadded = 0
    /// The stored data region (filled in by the writer).
    public var data = DLRTRegion(offset: 0, bytes: 0, sha256: "")
    public var rawBytes: Int
    public var compression: DLRTCompression
    public var scales: DLRTRegion?
    public var scalesShape: [Int] = []
    public var sqnrDB: Double?
    /// int8 weights (1.1): the activation precision the engine quantizes this layer's input to,
    /// or nil for fp32 activations against the dequantized weights (§4.1).
    public var activations: DLRTActivations?

    public init(name: String, shape: [Int], dtype: DType, scheme: DLRTScheme, layout: DLRTLayout,
                data: DLRTRegion = DLRTRegion(offset: 0, bytes: 0, sha256: ""), rawBytes: Int, compression: DLRTCompression) {
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.scheme = scheme
        self.layout = layout
        self.data = data
        self.rawBytes = rawBytes
        self.compression = compression
    }

    /// Rows of the stored matrix (rows_k32) — the output channels.
    public var rows: Int { shape.first ?? 1 }

    public func json(sqnrText: String? = nil) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("name", .string(name)),
            ("shape", .array(shape.map { .int($0) })),
            ("dtype", .string(dtype.rawValue)),
            ("scheme", .string(scheme.rawValue)),
            ("layout", .string(layout.rawValue)),
            ("block", .int(block)),
            ("k", .int(k)),
            ("k_padded", .int(kPadded)),
            ("offset", .int(data.offset)),
            ("bytes", .int(data.bytes)),
            ("raw_bytes", .int(rawBytes)),
            ("compression", .string(compression.rawValue)),
            ("sha256", .string(data.sha256)),
        ]
        if let scales {
            pairs.append(("scales", .object([
                ("dtype", .string("F32")),
                ("shape", .array(scalesShape.map { .int($0) })),
                ("offset", .int(scales.offset)),
                ("bytes", .int(scales.bytes)),
                ("sha256", .string(scales.sha256)),
            ])))
        } else {
            pairs.append(("scales", .null))
        }
        pairs.append(("sqnr_db", sqnrText.map { .number($0) } ?? sqnrDB.map { .number(Self.formatDB($0)) } ?? .null))
        if let activations { pairs.append(("activations", .string(activations.rawValue))) }
        return .object(pairs)
    }

    /// SQNR printed with 4 decimals (stable text for identical inputs).
    public static func formatDB(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        let scaled = (value * 10_000).rounded()
        // Beyond Int's range (|value| ≳ 9.2e14: only a forged file says so) C's formatting is exact enough.
        guard abs(scaled) < 0x1p62 else { return String(format: "%.4f", value) }
        let sign = scaled < 0 ? "-" : ""
        let magnitude = Int(abs(scaled))
        let fraction = String(magnitude % 10_000)
        return "\(sign)\(magnitude / 10_000).\(String(repeating: "0", count: 4 - fraction.count))\(fraction)"
    }
}
