import DLoRALConvert
import DLoRALFormats
import Testing

/// Closed-form checks of the int8 rule in Formats/dlrt.md §4.
@Suite("int8 quantizer")
struct Int8QuantizerTests {
    /// Row 0: max |w| = 2, s = 2/127; 1/s = 63.5 rounds half-to-even to 64, −2/s = −127,
    /// 0.5/s = 31.75 → 32. Row 1 is all zero: s = 1, q = 0. K = 3 pads to 32 columns.
    @Test func linearRowsByHand() {
        let r = Int8Quantizer.quantize([1, -2, 0.5, 0, 0, 0], shape: [2, 3], block: 0)
        #expect(r.k == 3 && r.kPadded == 32)
        #expect(r.scales == [Float(2) / Float(127), 1])
        #expect(Array(r.rows[0..<4]).map { Int8(bitPattern: $0) } == [64, -127, 32, 0])
        #expect(r.rows[32..<64].allSatisfy { $0 == 0 })
        #expect(r.rows.count == 64)
    }

    /// A Conv2d weight [N=1, C=2, KH=1, KW=2]: W[0, c, 0, x] goes to column x·C + c.
    @Test func convColumnsAreKernelMajorChannelsLast() {
        // torch order: c0x0, c0x1, c1x0, c1x1 = 10, 20, 30, 40 (max 40 → s = 40/127)
        let r = Int8Quantizer.quantize([10, 20, 30, 40], shape: [1, 2, 1, 2], block: 0)
        let s = Float(40) / Float(127)
        let expect = [Float(10), 30, 20, 40].map { Int8(($0 / s).rounded(.toNearestOrEven)) }
        #expect(Array(r.rows[0..<4]).map { Int8(bitPattern: $0) } == expect)
        #expect(expect == [32, 95, 64, 127])
    }

    /// Blocks of 32 along the padded K have their own scale.
    @Test func blocksHaveTheirOwnScales() {
        var w = [Float](repeating: 0.5, count: 40)
        w[35] = 4
        let r = Int8Quantizer.quantize(w, shape: [1, 40], block: 32)
        #expect(r.kPadded == 64)
        #expect(r.scales == [Float(0.5) / Float(127), Float(4) / Float(127)])
        #expect(r.rows[0] == 127 && r.rows[35] == 127 && r.rows[32] == 16)
        #expect(r.rows[40..<64].allSatisfy { $0 == 0 })
    }
}
