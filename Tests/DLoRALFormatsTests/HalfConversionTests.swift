import DLoRALFormats
import Foundation
import Testing

@Suite("fp16 → fp32 conversion")
struct HalfConversionTests {
    /// The value of a half from its fields, in Double arithmetic (IEEE 754 binary16: sign,
    /// 5-bit exponent biased by 15, 10-bit fraction), then narrowed; nil for NaN.
    static func closedForm(_ h: UInt16) -> Double? {
        let negative = h & 0x8000 != 0
        let exponent = Int(h >> 10) & 0x1F
        let fraction = Double(h & 0x3FF)
        let magnitude: Double
        switch exponent {
        case 0: magnitude = fraction * pow(2, -24)
        case 31:
            if fraction != 0 { return nil }
            magnitude = .infinity
        default: magnitude = (1 + fraction / 1024) * pow(2, Double(exponent - 15))
        }
        return negative ? -magnitude : magnitude
    }

    @Test("every one of the 65,536 halves")
    func everyHalf() {
        var mismatches: [String] = []
        for bits in 0...UInt16.max {
            let got = HalfConversion.floatBits(fromHalf: bits)
            let expected: UInt32
            if let value = Self.closedForm(bits) {
                expected = Float(value).bitPattern
                // Exact: widening back gives the same Double.
                if Double(Float(bitPattern: got)) != value && !value.isInfinite { mismatches.append("0x\(String(bits, radix: 16)) inexact") }
            } else {
                // NaN: sign and payload kept, quiet bit set (what vcvtph2ps and FCVT give).
                expected = UInt32(bits & 0x8000) << 16 | 0x7FC0_0000 | UInt32(bits & 0x3FF) << 13
            }
            if got != expected {
                mismatches.append("0x\(String(bits, radix: 16)): 0x\(String(got, radix: 16)) != 0x\(String(expected, radix: 16))")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    @Test("tensor views convert aligned and unaligned fp16 alike")
    func tensorViewPaths() throws {
        let halves: [UInt16] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xC000, 0x7BFF, 0x7C00, 0xFC00, 0x7C01, 0x7E00, 0xFDFF]
        let expected = halves.map { HalfConversion.floatBits(fromHalf: $0) }
        // Aligned: the contiguous fast path.
        let aligned = TensorView(dtype: .float16, shape: [halves.count], storage: .copying(halves, origin: "test"))
        #expect(aligned.toFloat32().map(\.bitPattern) == expected)
        // One byte in: every element read unaligned.
        var bytes: [UInt8] = [0xAA]
        for h in halves { bytes += [UInt8(h & 0xFF), UInt8(h >> 8)] }
        let unaligned = TensorView(dtype: .float16, shape: [halves.count], storage: .copying(bytes, origin: "test"), byteOffset: 1)
        #expect(unaligned.toFloat32().map(\.bitPattern) == expected)
    }
}
