import DLoRALFormats

/// Everything that decides the pixels `dloral-run` writes, besides the model and the prompt: how
/// frames are prepared (upstream's ×upscale, small inputs enlarged to process_size / upscale),
/// the latent and VAE tiling, and the colour fix. A reference made by Tools/reference records
/// these as its `dloral_run_options` metadata.
public struct RunOptions: Sendable, Equatable, Codable {
    public var tiling: TilingOptions
    public var colorFix: ColorFixMode
    public var preparation: FramePreparation

    public init(tiling: TilingOptions = TilingOptions(), colorFix: ColorFixMode = .adain,
                preparation: FramePreparation = FramePreparation()) {
        self.tiling = tiling
        self.colorFix = colorFix
        self.preparation = preparation
    }

    enum CodingKeys: String, CodingKey {
        case upscale, processSize = "process_size", latentTile = "latent_tile", latentOverlap = "latent_overlap"
        case vaeEncoderTile = "vae_encoder_tile", vaeDecoderTile = "vae_decoder_tile", colorFix = "color_fix"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        tiling = TilingOptions(latentTile: try c.decode(Int.self, forKey: .latentTile),
                               latentOverlap: try c.decode(Int.self, forKey: .latentOverlap),
                               vaeEncoderTile: try c.decode(Int.self, forKey: .vaeEncoderTile),
                               vaeDecoderTile: try c.decode(Int.self, forKey: .vaeDecoderTile))
        colorFix = try c.decode(ColorFixMode.self, forKey: .colorFix)
        preparation = FramePreparation(upscale: try c.decode(Int.self, forKey: .upscale),
                                       processSize: try c.decode(Int.self, forKey: .processSize))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(preparation.upscale, forKey: .upscale)
        try c.encode(preparation.processSize, forKey: .processSize)
        try c.encode(tiling.latentTile, forKey: .latentTile)
        try c.encode(tiling.latentOverlap, forKey: .latentOverlap)
        try c.encode(tiling.vaeEncoderTile, forKey: .vaeEncoderTile)
        try c.encode(tiling.vaeDecoderTile, forKey: .vaeDecoderTile)
        try c.encode(colorFix, forKey: .colorFix)
    }

    /// The options as the JSON object `dloral-run --json` prints and references record.
    public var json: JSONValue {
        .object([
            ("upscale", .int(preparation.upscale)), ("process_size", .int(preparation.processSize)),
            ("latent_tile", .int(tiling.latentTile)), ("latent_overlap", .int(tiling.latentOverlap)),
            ("vae_encoder_tile", .int(tiling.vaeEncoderTile)), ("vae_decoder_tile", .int(tiling.vaeDecoderTile)),
            ("color_fix", .string(colorFix.rawValue)),
        ])
    }

    /// Reads a reference's `dloral_run_options` object; every key is required (a reference that
    /// leaves one out cannot say what it ran).
    public init(json: JSONValue, file: String) throws {
        func integer(_ key: String, least: Int) throws -> Int {
            guard let value = json[key]?.intValue else {
                throw FormatError(.invalidModel, file: file, "metadata dloral_run_options has no integer \"\(key)\"; a reference made by Tools/reference/make_reference.py records every run option")
            }
            guard value >= least else {
                throw FormatError(.invalidModel, file: file, "metadata dloral_run_options \"\(key)\" is \(value); expected at least \(least)")
            }
            return value
        }
        let mode = json["color_fix"]?.stringValue
        // Upstream names "no colour fix" nofix.
        guard let mode, let colorFix = ColorFixMode(rawValue: mode == "nofix" ? "none" : mode) else {
            throw FormatError(.invalidModel, file: file, "metadata dloral_run_options \"color_fix\" is \(mode.map { "'\($0)'" } ?? "missing"); expected one of \(ColorFixMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.init(
            tiling: TilingOptions(latentTile: try integer("latent_tile", least: 1), latentOverlap: try integer("latent_overlap", least: 0),
                                  vaeEncoderTile: try integer("vae_encoder_tile", least: 1), vaeDecoderTile: try integer("vae_decoder_tile", least: 1)),
            colorFix: colorFix,
            preparation: FramePreparation(upscale: try integer("upscale", least: 1), processSize: try integer("process_size", least: 1)))
        if let problem = problem {
            throw FormatError(.invalidModel, file: file, "metadata dloral_run_options: \(problem)")
        }
    }

    /// Why these options cannot run, or nil (an overlap as large as the tile would never advance
    /// the tile grid).
    public var problem: String? {
        do { try tiling.validate() } catch { return "\(error)" }
        if preparation.upscale < 1 || preparation.upscale > 16 { return "--upscale is \(preparation.upscale); it must be 1 to 16" }
        if preparation.processSize < 1 || preparation.processSize > 1 << 16 { return "--process-size is \(preparation.processSize); it must be 1 to 65536" }
        return nil
    }
}

/// `--frames START:END`: the output frames START … END−1 (by the index of the current frame of
/// each pair). Frame 0 has no output (it is only ever the previous frame), so START 0 means 1;
/// frame START−1 is read as the previous frame, so shards that tile a clip give exactly the
/// frames of one run. END may be left out (to the end of the clip).
public struct FrameRange: Sendable, Equatable {
    public var start: Int
    public var end: Int?

    public init(start: Int, end: Int?) {
        self.start = start
        self.end = end
    }

    /// Parses "START:END" or "START:"; nil with the reason otherwise.
    public static func parse(_ text: String) -> Result<FrameRange, FrameRangeError> {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = Int(parts[0]), start >= 0 else {
            return .failure(FrameRangeError(message: "--frames takes START:END (output frames START to END−1, e.g. 1:50) or START: (to the end), with START ≥ 0; got '\(text)'"))
        }
        if parts[1].isEmpty { return .success(FrameRange(start: start, end: nil)) }
        guard let end = Int(parts[1]) else {
            return .failure(FrameRangeError(message: "--frames END in '\(text)' is not a whole number; use START:END or START:"))
        }
        guard end > max(start, 1) else {
            return .failure(FrameRangeError(message: "--frames \(text) holds no output frame: END must be greater than START (and than 1: frame 0 has no output of its own)"))
        }
        return .success(FrameRange(start: start, end: end))
    }

    /// The output frames of a clip of `count` frames: START (at least 1) up to min(END, count).
    /// - Throws: when START is past the clip's last frame.
    public func outputs(of count: Int, file: String) throws -> Range<Int> {
        let first = max(start, 1)
        guard first < count else {
            throw FormatError(.invalidModel, file: file, "has \(count) frames (0 to \(count - 1)); --frames \(start):\(end.map(String.init) ?? "") starts past its last frame")
        }
        return first..<min(end ?? count, count)
    }

    public var description: String { "\(start):\(end.map(String.init) ?? "")" }
}

public struct FrameRangeError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
