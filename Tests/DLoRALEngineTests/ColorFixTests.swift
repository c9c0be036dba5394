import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// One colour-fix case of Tests/Fixtures/footage/color.safetensors (torch through
/// Tools/reference/frames.py, upstream's arithmetic).
struct ColorFixCase: Sendable, CustomTestStringConvertible {
    let name: String
    let mode: ColorFixMode
    var testDescription: String { "\(name) \(mode.rawValue)" }

    static let all: [ColorFixCase] = FootageFixture.cases(FootageFixture.color, "color").flatMap { c in
        guard let name = c["name"]?.stringValue else { return [ColorFixCase]() }
        return [ColorFixCase(name: name, mode: .adain), ColorFixCase(name: name, mode: .wavelet)]
    }
}

@Suite("colour fix (upstream's AdaIN and wavelet)")
struct ColorFixTests {
    @Test func fixturePresent() {
        #expect(FootageFixture.color != nil)
        #expect(ColorFixCase.all.count == 8)
    }

    /// Within one level of torch, on at most 0.5 % of the bytes.
    ///
    /// Exact equality is not expected: both implementations compute in float32 in upstream's
    /// order, but torch sums the channel means (AdaIN) and the nine products of the dilated
    /// convolution (wavelet) in its own order (vectorised partial sums, oneDNN's kernel), so
    /// intermediate values can differ in the last bit. After `* 255` such a difference changes
    /// the truncated byte only when the value sits within about 1e-5 of an integer, and then by
    /// exactly one.
    @Test(arguments: ColorFixCase.all)
    func matchesTorch(_ c: ColorFixCase) throws {
        let target = try FootageFixture.image(FootageFixture.color, "color.\(c.name).target")
        let source = try FootageFixture.image(FootageFixture.color, "color.\(c.name).source")
        let expected = try FootageFixture.image(FootageFixture.color, "color.\(c.name).\(c.mode.rawValue)")
        let actual = ColorFix.apply(c.mode, target: target, source: source)
        #expect(actual.width == expected.width && actual.height == expected.height)
        var differing = 0, largest = 0
        for (a, e) in zip(actual.pixels, expected.pixels) where a != e {
            differing += 1
            largest = max(largest, abs(Int(a) - Int(e)))
        }
        let fraction = Double(differing) / Double(expected.pixels.count)
        print("colour fix \(c.name) \(c.mode.rawValue): \(differing) of \(expected.pixels.count) bytes differ from torch, by at most \(largest)")
        #expect(largest <= 1)
        #expect(fraction <= 0.005)
        // The fix does something: the result is not the target (the fixtures shift colours).
        #expect(actual != target)
    }

    /// AdaIN multiplies a channel's deviations by std(source) / std(target): a target of levels
    /// {100, 110} (std 7.07 levels) and a source of {100, 125} (17.68) give a gain of 2.5, so one
    /// level before the fix may become 3 after it (truncation adds up to one); hand-computed.
    @Test func levelBoundFollowsTheAdaINGain() {
        func image(_ a: UInt8, _ b: UInt8) -> RGBImage {
            RGBImage(width: 2, height: 1, pixels: [a, a, a, b, b, b])
        }
        let (target, source) = (image(100, 110), image(100, 125))
        #expect(ColorFix.levelBound(.adain, target: target, source: source, enlarged: false) == 3)
        #expect(ColorFix.levelBound(.adain, target: source, source: target, enlarged: false) == 1)
        #expect(ColorFix.levelBound(.adain, target: target, source: source, enlarged: true) == 4)
        #expect(ColorFix.levelBound(.none, target: target, source: source, enlarged: false) == 1)
        #expect(ColorFix.levelBound(.wavelet, target: target, source: source, enlarged: false) == 2)
    }

    @Test func noneReturnsTheTarget() {
        var target = RGBImage(width: 3, height: 2, fill: RGB(10, 200, 30))
        target[1, 1] = RGB(0, 1, 2)
        let source = RGBImage(width: 5, height: 5, fill: RGB(90, 90, 90))
        #expect(ColorFix.apply(.none, target: target, source: source) == target)
    }

    /// Closed form: AdaIN moves each channel's mean and standard deviation to the source's. The
    /// target has levels 40 and 120 and the source 100 and 220, each on half of 16 pixels: the
    /// means are 80 and 160, the deviations ±40 and ±60 levels, and without eps 40 → 100 and
    /// 120 → 220. The eps (1e-5 on variances of 0.02625 and 0.05905 in [0, 1] units) makes the
    /// ratio of the deviations sqrt(0.059064 / 0.026257) = 1.49982 instead of 1.5, pulling both
    /// towards the mean by 40 × 0.00018 ≈ 0.007 levels: 100.007 truncates to 100, 219.993 to 219.
    @Test func adainMatchesClosedForm() {
        var target = RGBImage(width: 4, height: 4, fill: RGB(40, 40, 40))
        var source = RGBImage(width: 4, height: 4, fill: RGB(100, 100, 100))
        for y in 0..<4 {
            for x in 0..<4 where (x + y) % 2 == 0 {
                target[x, y] = RGB(120, 120, 120)
                source[x, y] = RGB(220, 220, 220)
            }
        }
        let fixed = ColorFix.apply(.adain, target: target, source: source)
        for y in 0..<4 {
            for x in 0..<4 {
                #expect(fixed[x, y] == ((x + y) % 2 == 0 ? RGB(219, 219, 219) : RGB(100, 100, 100)))
            }
        }
    }

    /// Closed form: the wavelet fix of a constant target against a constant source is the
    /// source (the target's high band is zero, the source's low band is the constant), up to
    /// float rounding of the blur sums, which can only leave a value a hair under the level and
    /// truncate it to one below.
    @Test func waveletOfConstantsIsTheSource() {
        let target = RGBImage(width: 19, height: 7, fill: RGB(12, 34, 56))
        let source = RGBImage(width: 19, height: 7, fill: RGB(200, 150, 100))
        let fixed = ColorFix.apply(.wavelet, target: target, source: source)
        for (f, s) in zip(fixed.pixels, source.pixels) { #expect(f == s || f == s - 1) }
    }
}
