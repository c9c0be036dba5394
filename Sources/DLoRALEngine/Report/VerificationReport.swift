import DLoRALFormats
import Foundation

/// The visual report of `dloral-verify --report <folder>`: per output frame a PNG triptych
/// (reference | engine | error heatmap with its scale bar) and an `index.html` with the tables.
public struct VerificationReport {
    public var model: String
    public var reference: String
    public var scheme: String
    public var thresholds: VerificationThresholds
    public var stages: [StageMetrics]
    public var temporal: StageMetrics?
    public var passed: Bool
    /// Engine frames [T, 3, H, W] in [-1, 1].
    public var engineFrames: Tensor
    /// The reference's `output.frames`, if it has them.
    public var referenceFrames: Tensor?

    public init(model: String, reference: String, scheme: String, thresholds: VerificationThresholds,
                stages: [StageMetrics], temporal: StageMetrics?, passed: Bool,
                engineFrames: Tensor, referenceFrames: Tensor?) {
        self.model = model
        self.reference = reference
        self.scheme = scheme
        self.thresholds = thresholds
        self.stages = stages
        self.temporal = temporal
        self.passed = passed
        self.engineFrames = engineFrames
        self.referenceFrames = referenceFrames
    }

    /// Per-frame numbers shown next to each triptych.
    public struct FrameSummary: Sendable {
        public var index: Int
        public var file: String
        public var width: Int
        public var height: Int
        /// Largest per-pixel max-over-channels |engine − reference| (infinity if any is not finite).
        public var maxError: Double
        /// PSNR over the [-1, 1] range.
        public var psnrDB: Double
    }

    /// Throws unless `path` is absent or a folder (checked before the engine runs).
    public static func checkFolder(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw FormatError(.io, file: path, "exists and is not a folder; --report needs a folder")
        }
    }

    /// Writes `frame_<t>.png` for each output frame, then `index.html` (each file atomically).
    /// Creates `folder` when needed. Returns the frame summaries.
    @discardableResult
    public func write(to folder: String) throws -> [FrameSummary] {
        try Self.checkFolder(folder)
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw FormatError(.io, file: folder, "cannot create the report folder: \(error.localizedDescription)")
        }
        var summaries: [FrameSummary] = []
        var note: String?
        if let referenceFrames, referenceFrames.shape == engineFrames.shape, engineFrames.rank == 4,
           engineFrames.shape[1] == 3 {
            let scale = Self.heatmapScale(engine: engineFrames, reference: referenceFrames)
            for t in 0..<engineFrames.shape[0] {
                let made = Self.triptych(engine: engineFrames, reference: referenceFrames, frame: t, scale: scale)
                let file = "frame_\(t).png"
                try PNGWriter.write(made.image, to: folder + "/" + file)
                summaries.append(FrameSummary(index: t, file: file, width: made.image.width, height: made.image.height,
                                              maxError: made.maxError, psnrDB: made.psnrDB))
            }
        } else if let referenceFrames {
            note = "No pictures: engine frames \(engineFrames.shape) and reference output.frames \(referenceFrames.shape) differ in shape."
        } else {
            note = "No pictures: the reference has no output.frames."
        }
        let html = html(frames: summaries, note: note,
                        scale: referenceFrames.map { Self.heatmapScale(engine: engineFrames, reference: $0) })
        let writer = try AtomicFileWriter(path: folder + "/index.html")
        try writer.write(html)
        try writer.commit()
        return summaries
    }

    // MARK: - Pictures

    /// The heatmap's full scale: the largest finite per-pixel error over all frames, so colours
    /// compare across frames (0 for an exact match: the heatmap is then all dark).
    static func heatmapScale(engine: Tensor, reference: Tensor) -> Double {
        guard engine.shape == reference.shape else { return 0 }
        var largest = 0.0
        for i in engine.data.indices {
            let d = Double(abs(engine.data[i] - reference.data[i]))
            if d.isFinite { largest = max(largest, d) }
        }
        return largest
    }

    /// A [-1, 1] value as an 8-bit channel: (x + 1) / 2 · 255, rounded, clamped (NaN → 0).
    public static func byte(_ x: Float) -> UInt8 {
        let v = ((Double(x) + 1) / 2 * 255).rounded()
        guard !v.isNaN else { return 0 }
        return UInt8(min(max(v, 0), 255))
    }

    /// Frame `t` of a [T, 3, H, W] tensor as an image.
    public static func frameImage(_ frames: Tensor, frame t: Int) -> RGBImage {
        let (h, w) = (frames.shape[2], frames.shape[3])
        let plane = h * w, base = t * 3 * plane
        var pixels = [UInt8](repeating: 0, count: plane * 3)
        for p in 0..<plane {
            for c in 0..<3 { pixels[p * 3 + c] = byte(frames.data[base + c * plane + p]) }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    static let margin = 4, gap = 4, barWidth = 8, tickLength = 3, titleHeight = 9
    static let background = RGB(255, 255, 255), ink = RGB(0, 0, 0)

    /// The integer upscale for a frame of `height` whose triptych is `width` wide: about 200 px
    /// tall, at most 2400 px wide, at most 3×.
    static func upscale(width: Int, height: Int) -> Int {
        var factor = height >= 200 ? 1 : height >= 100 ? 2 : 3
        while factor > 1, width * factor > 2400 { factor -= 1 }
        return factor
    }

    /// A tick label: 0, 0.031, 3.1e-05.
    static func label(_ value: Double) -> String {
        value == 0 ? "0" : String(format: "%.2g", value)
    }

    /// reference | engine | |error| heatmap with a vertical scale bar (0 at the bottom, `scale`
    /// at the top, ticks at quarters), upscaled when the frames are small.
    public static func triptych(engine: Tensor, reference: Tensor, frame t: Int, scale: Double)
        -> (image: RGBImage, maxError: Double, psnrDB: Double) {
        let (h, w) = (engine.shape[2], engine.shape[3])
        let plane = h * w, base = t * 3 * plane
        var heat = RGBImage(width: w, height: h)
        var maxError = 0.0, sumSq = 0.0
        for p in 0..<plane {
            var e = 0.0
            var finite = true
            for c in 0..<3 {
                let d = Double(engine.data[base + c * plane + p]) - Double(reference.data[base + c * plane + p])
                if !d.isFinite { finite = false }
                e = max(e, abs(d))
                sumSq += d * d
            }
            if !finite { e = .infinity }
            maxError = max(maxError, e)
            heat[p % w, p / w] = finite ? Colormap.viridis(scale > 0 ? e / scale : 0) : Colormap.nonFinite
        }
        let mse = sumSq / Double(max(3 * plane, 1))
        let psnr = mse == 0 ? Double.infinity : mse.isNaN ? -Double.infinity : 10 * log10(4 / mse)

        let ticks = [1.0, 0.75, 0.5, 0.25, 0.0]
        let labels = ticks.map { label($0 * scale) }
        let labelWidth = labels.map(PixelFont.width).max() ?? 0
        let panelY = margin + titleHeight
        let barX = margin + 3 * w + 3 * gap
        let width = barX + barWidth + tickLength + 2 + labelWidth + margin
        let height = panelY + h + margin
        var image = RGBImage(width: width, height: height, fill: background)
        let titles = ["REFERENCE", "ENGINE", "|ERROR|"]
        for (i, panel) in [frameImage(reference, frame: t), frameImage(engine, frame: t), heat].enumerated() {
            let x = margin + i * (w + gap)
            image.paste(panel, x: x, y: panelY)
            PixelFont.draw(titles[i], into: &image, x: x, y: margin, color: ink)
        }
        // Scale bar: top row is the full scale, bottom row zero.
        for y in 0..<h {
            let fraction = h > 1 ? Double(h - 1 - y) / Double(h - 1) : 0
            image.fillRect(x: barX, y: panelY + y, width: barWidth, height: 1, Colormap.viridis(fraction))
        }
        for (tick, text) in zip(ticks, labels) {
            let y = panelY + Int(((1 - tick) * Double(h - 1)).rounded())
            image.fillRect(x: barX + barWidth, y: y, width: tickLength, height: 1, ink)
            let labelY = min(max(y - PixelFont.glyphHeight / 2, panelY - 2), panelY + h - PixelFont.glyphHeight + 2)
            PixelFont.draw(text, into: &image, x: barX + barWidth + tickLength + 2, y: labelY, color: ink)
        }
        PixelFont.draw("MAX", into: &image, x: barX, y: margin, color: ink)
        return (image.upscaled(by: upscale(width: width, height: h)), maxError, psnr)
    }

    // MARK: - HTML

    static func escape(_ text: String) -> String {
        var out = ""
        for ch in text {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(ch)
            }
        }
        return out
    }

    static func number(_ v: Double, _ format: String) -> String {
        v == .infinity ? "inf" : v == -.infinity ? "-inf" : v.isNaN ? "nan" : String(format: format, v)
    }

    func html(frames: [FrameSummary], note: String?, scale: Double?) -> String {
        var rows = ""
        for m in stages + (temporal.map { [$0] } ?? []) {
            let result = m.passed ? "pass" : "FAIL: " + m.failures.joined(separator: "; ")
            rows += "<tr class=\"\(m.passed ? "pass" : "fail")\"><td>\(Self.escape(m.stage))</td>"
                + "<td>\(MetricFormat.error(m.maxAbs))</td><td>\(MetricFormat.error(m.meanAbs))</td>"
                + "<td>\(MetricFormat.cosine(m.cosine))</td><td>\(MetricFormat.decibels(m.psnrDB))</td>"
                + "<td>\(Self.escape(result))</td></tr>\n"
        }
        var figures = ""
        for f in frames {
            figures += """
                <figure id="frame-\(f.index)">
                <img src="\(f.file)" width="\(f.width)" height="\(f.height)" alt="output frame \(f.index): reference, engine, error heatmap">
                <figcaption>output frame \(f.index) — PSNR \(Self.number(f.psnrDB, "%.2f")) dB, max |error| \(Self.number(f.maxError, "%.4g"))</figcaption>
                </figure>

                """
        }
        let heatmapNote = scale.map {
            "Heatmap: per-pixel max over R, G, B of |engine − reference| (values in [-1, 1]), viridis from 0 (dark purple) "
                + "to \(Self.number($0, "%.4g")) (yellow), the largest error over all frames, shared by every frame; "
                + "magenta marks non-finite engine values. Pictures are upscaled (nearest) when the frames are small."
        } ?? ""
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>dloral-verify report: \(Self.escape(PathName.last(model)))</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
            table { border-collapse: collapse; margin: 0.5em 0 1em; }
            th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; font-variant-numeric: tabular-nums; }
            th { background: #f0f0f0; }
            td:first-child, td:last-child { text-align: left; }
            tr.fail td { background: #fde8e8; }
            .verdict { font-weight: bold; color: \(passed ? "#1a7f37" : "#c62828"); }
            figure { margin: 1em 0; }
            img { max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ddd; }
            code { background: #f4f4f4; padding: 0 0.2em; }
            </style>
            </head>
            <body>
            <h1>dloral-verify report</h1>
            <p>Model <code>\(Self.escape(model))</code>, reference <code>\(Self.escape(reference))</code>.</p>
            <p>Result: <span class="verdict">\(passed ? "passed" : "FAILED")</span>; scheme <code>\(Self.escape(scheme))</code>; thresholds: \(Self.escape(thresholds.summary)).</p>
            <h2>Stages</h2>
            <table>
            <tr><th>stage</th><th>max_abs</th><th>mean_abs</th><th>cosine</th><th>psnr_db</th><th>result</th></tr>
            \(rows)</table>
            <h2>Frames</h2>
            <p>Each picture: reference | engine | error heatmap with its scale bar.</p>
            <p>\(Self.escape(note ?? heatmapNote))</p>
            \(figures)</body>
            </html>

            """
    }
}
