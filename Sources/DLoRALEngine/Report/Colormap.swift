/// A perceptually uniform colour ramp for error heatmaps: viridis (dark purple → teal →
/// yellow), from ten samples of matplotlib's table, linearly interpolated.
public enum Colormap {
    /// viridis at 0, 1/9, …, 1.
    public static let viridisStops: [RGB] = [
        RGB(0x44, 0x01, 0x54), RGB(0x48, 0x28, 0x78), RGB(0x3E, 0x4A, 0x89), RGB(0x31, 0x68, 0x8E),
        RGB(0x26, 0x82, 0x8E), RGB(0x1F, 0x9E, 0x89), RGB(0x35, 0xB7, 0x79), RGB(0x6D, 0xCD, 0x59),
        RGB(0xB4, 0xDE, 0x2C), RGB(0xFD, 0xE7, 0x25),
    ]

    /// Colour for errors that are not finite (NaN or infinity in the engine output).
    public static let nonFinite = RGB(255, 0, 255)

    /// The colour of `t` in [0, 1] (clamped; NaN gives `nonFinite`).
    public static func viridis(_ t: Double) -> RGB {
        guard !t.isNaN else { return nonFinite }
        let x = min(max(t, 0), 1) * Double(viridisStops.count - 1)
        let i = min(Int(x), viridisStops.count - 2)
        let f = x - Double(i)
        let a = viridisStops[i], b = viridisStops[i + 1]
        func mix(_ p: UInt8, _ q: UInt8) -> UInt8 {
            UInt8((Double(p) + (Double(q) - Double(p)) * f).rounded())
        }
        return RGB(mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b))
    }
}

/// A 3×5 pixel font for the labels drawn into report images (digits, a few capitals, signs).
enum PixelFont {
    static let glyphHeight = 5
    /// Horizontal distance between characters (3 pixels and a space).
    static let advance = 4

    private static let glyphs: [Character: [UInt8]] = [
        "0": [0b111, 0b101, 0b101, 0b101, 0b111], "1": [0b010, 0b110, 0b010, 0b010, 0b111],
        "2": [0b111, 0b001, 0b111, 0b100, 0b111], "3": [0b111, 0b001, 0b111, 0b001, 0b111],
        "4": [0b101, 0b101, 0b111, 0b001, 0b001], "5": [0b111, 0b100, 0b111, 0b001, 0b111],
        "6": [0b111, 0b100, 0b111, 0b101, 0b111], "7": [0b111, 0b001, 0b001, 0b001, 0b001],
        "8": [0b111, 0b101, 0b111, 0b101, 0b111], "9": [0b111, 0b101, 0b111, 0b001, 0b111],
        ".": [0b000, 0b000, 0b000, 0b000, 0b010], "-": [0b000, 0b000, 0b111, 0b000, 0b000],
        "+": [0b000, 0b010, 0b111, 0b010, 0b000], "|": [0b010, 0b010, 0b010, 0b010, 0b010],
        " ": [0, 0, 0, 0, 0],
        "A": [0b010, 0b101, 0b111, 0b101, 0b101], "C": [0b111, 0b100, 0b100, 0b100, 0b111],
        "E": [0b111, 0b100, 0b111, 0b100, 0b111], "F": [0b111, 0b100, 0b110, 0b100, 0b100],
        "G": [0b111, 0b100, 0b101, 0b101, 0b111], "I": [0b111, 0b010, 0b010, 0b010, 0b111],
        "M": [0b101, 0b111, 0b111, 0b101, 0b101], "N": [0b110, 0b101, 0b101, 0b101, 0b101],
        "O": [0b111, 0b101, 0b101, 0b101, 0b111], "R": [0b110, 0b101, 0b110, 0b101, 0b101],
        "X": [0b101, 0b101, 0b010, 0b101, 0b101],
    ]

    /// Width in pixels of `text` (without the trailing space).
    static func width(_ text: String) -> Int { max(text.count * advance - 1, 0) }

    /// Draws `text` (upper-cased; unknown characters left blank) with its top-left at (x, y).
    static func draw(_ text: String, into image: inout RGBImage, x: Int, y: Int, color: RGB) {
        for (n, character) in text.uppercased().enumerated() {
            guard let rows = glyphs[character] else { continue }
            for (row, bits) in rows.enumerated() {
                for column in 0..<3 where bits & (0b100 >> UInt8(column)) != 0 {
                    let px = x + n * advance + column, py = y + row
                    if px >= 0, px < image.width, py >= 0, py < image.height { image[px, py] = color }
                }
            }
        }
    }
}
