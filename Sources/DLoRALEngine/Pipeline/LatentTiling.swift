import Foundation

// DLoRAL's latent tiling (upstream `Generator_eval.forward` and `_gaussian_weights` in
// src/DLoRAL_model.py): a pair whose latent has more than tile² pixels runs the CFR and the UNet
// tile by tile, and the tiles' UNet outputs and fused latents are blended with Gaussian weights.
// Reference: Tools/reference/latent_tiling.py.

/// The tile sizes a restoration runs with: DLoRAL's latent tiling and the VAE tiling (VAEHook).
/// Defaults are upstream's (`--latent_tiled_size 96 --latent_tiled_overlap 32
/// --vae_encoder_tiled_size 1024 --vae_decoder_tiled_size 224`).
public struct TilingOptions: Sendable, Equatable, Codable {
    /// Latent tile side; a latent of more than latentTile² pixels is tiled.
    public var latentTile = 96
    /// Latent pixels neighbouring tiles share.
    public var latentOverlap = 32
    /// VAE encoder tile side in frame pixels (tiled when a side exceeds it + 2 × 32).
    public var vaeEncoderTile = 1024
    /// VAE decoder tile side in latent pixels (tiled when a side exceeds it + 2 × 11).
    public var vaeDecoderTile = 224

    public init(latentTile: Int = 96, latentOverlap: Int = 32, vaeEncoderTile: Int = 1024, vaeDecoderTile: Int = 224) {
        self.latentTile = latentTile
        self.latentOverlap = latentOverlap
        self.vaeEncoderTile = vaeEncoderTile
        self.vaeDecoderTile = vaeDecoderTile
    }

    /// The largest tile any option takes: larger sizes could overflow the grid arithmetic, and no
    /// frame is that large.
    public static let maximumTile = Int(Int32.max)

    /// No tiling at any size: what `run(frames:promptEmbeds:)` and `dloral-verify` did before
    /// tiling existed.
    public static let untiled = TilingOptions(
        latentTile: maximumTile, latentOverlap: 0, vaeEncoderTile: maximumTile, vaeDecoderTile: maximumTile)

    /// Checks the options on their own (before any frame is read).
    /// - Throws: `TilingOptionError` naming the offending option.
    public func validate() throws {
        for (option, value) in [("--latent-tile", latentTile), ("--vae-encoder-tile", vaeEncoderTile),
                                ("--vae-decoder-tile", vaeDecoderTile)] {
            guard value >= 1, value <= Self.maximumTile else {
                throw TilingOptionError(option: option, "is \(value); it must be between 1 and \(Self.maximumTile)")
            }
        }
        guard latentOverlap >= 0, latentOverlap < latentTile else {
            throw TilingOptionError(
                option: "--latent-overlap",
                "is \(latentOverlap); it must be at least 0 and smaller than --latent-tile (\(latentTile)), or the tiles would not advance across the latent")
        }
    }

    /// Checks the latent tiling for a latent of `height` × `width` (frames of 8× that): upstream
    /// shrinks the tile to the latent's shorter side, and when the overlap is not smaller than
    /// that shrunken tile its grid never ends (upstream DLoRAL loops forever there).
    /// - Throws: `TilingOptionError` for `--latent-overlap`, saying which values work.
    public func validate(latentHeight height: Int, latentWidth width: Int) throws {
        try validate()
        guard height >= 1, width >= 1 else {
            throw TilingOptionError(option: "--latent-tile", "cannot tile an empty \(width)×\(height) latent")
        }
        guard LatentTileGrid.isTiled(height: height, width: width, tile: latentTile) else { return }
        let shrunk = min(latentTile, height, width)
        guard latentOverlap < shrunk else {
            throw TilingOptionError(
                option: "--latent-overlap",
                "is \(latentOverlap), but a \(width)×\(height) latent (frames of \(8 * width)×\(8 * height)) is tiled with "
                    + "tiles of \(shrunk) (more than --latent-tile² latent pixels, and the tile shrinks to the latent's shorter "
                    + "side), which the overlap must be smaller than; use --latent-overlap \(shrunk - 1) or less")
        }
    }
}

/// A tiling option that cannot work, with the option's command-line name.
public struct TilingOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The command-line option, e.g. `--latent-overlap`.
    public let option: String
    /// What is wrong and what to use instead (without the option's name).
    public let reason: String

    public init(option: String, _ reason: String) {
        self.option = option
        self.reason = reason
    }

    public var description: String { "\(option) \(reason)" }
}

/// Where DLoRAL puts its latent tiles, as upstream's `Generator_eval.forward` computes them.
///
/// A latent of `height` × `width` is tiled only when `height · width > tile²` (an area test: a
/// 64×128 latent is not tiled with tile 96). The tile then shrinks to the shorter side. Along x,
/// tiles start every `tile − overlap` pixels until one reaches the edge; the last one is moved
/// to end exactly at the edge (`width − tile`), and likewise along y.
public struct LatentTileGrid: Sendable, Equatable {
    /// The tile side actually used (`min(tile, height, width)` when tiled, the given tile otherwise).
    public let tile: Int
    /// Top-left corners of the tiles in upstream's order: x (its "rows") outer, y (its "cols")
    /// inner. One tile at (0, 0) covering the latent when untiled.
    public let offsets: [(y: Int, x: Int)]
    /// False when `height · width <= tile²`: the pair runs whole.
    public let isTiled: Bool
    /// Tiles along x and along y (upstream's `grid_rows`, `grid_cols`).
    public let columns: Int
    public let rows: Int
    public let height: Int
    public let width: Int

    /// - Precondition: `problem(height:width:tile:overlap:)` is nil (check it first; upstream's
    ///   grid loops forever otherwise).
    public init(height: Int, width: Int, tile: Int, overlap: Int) {
        if let problem = Self.problem(height: height, width: width, tile: tile, overlap: overlap) {
            preconditionFailure("LatentTileGrid: \(problem)")
        }
        self.height = height
        self.width = width
        guard Self.isTiled(height: height, width: width, tile: tile) else {
            self.tile = tile
            offsets = [(0, 0)]
            isTiled = false
            columns = 1
            rows = 1
            return
        }
        let tile = min(tile, height, width)
        // Upstream's counting loops: tiles until the next start + tile reaches the edge.
        func count(_ side: Int) -> Int {
            var n = 0, reached = 0
            while reached < side {
                reached = max(n * tile - overlap * n, 0) + tile
                n += 1
            }
            return n
        }
        let columns = count(width), rows = count(height)
        var offsets: [(y: Int, x: Int)] = []
        offsets.reserveCapacity(columns * rows)
        for column in 0..<columns {
            for row in 0..<rows {
                // Upstream only recomputes the offsets when the tile is not the very last one, but
                // that one gets both offsets from the edge rules below, so nothing carries over.
                var x = max(column * tile - overlap * column, 0)
                var y = max(row * tile - overlap * row, 0)
                if column == columns - 1 { x = width - tile }
                if row == rows - 1 { y = height - tile }
                offsets.append((y, x))
            }
        }
        self.tile = tile
        self.offsets = offsets
        self.isTiled = true
        self.columns = columns
        self.rows = rows
    }

    /// `height · width > tile²`, without overflow for huge tiles.
    static func isTiled(height: Int, width: Int, tile: Int) -> Bool {
        let (area, overflow) = height.multipliedReportingOverflow(by: width)
        let (square, squareOverflow) = tile.multipliedReportingOverflow(by: tile)
        if squareOverflow { return false }
        return overflow || area > square
    }

    /// Why upstream's grid cannot be built for these values, or nil.
    public static func problem(height: Int, width: Int, tile: Int, overlap: Int) -> String? {
        guard height >= 1, width >= 1 else { return "the latent is \(width)×\(height); it must not be empty" }
        guard tile >= 1 else { return "the latent tile is \(tile); it must be at least 1" }
        guard overlap >= 0 else { return "the latent overlap is \(overlap); it must be at least 0" }
        guard isTiled(height: height, width: width, tile: tile) else { return nil }
        let shrunk = min(tile, height, width)
        guard overlap < shrunk else {
            return "the overlap \(overlap) is not smaller than the tile \(shrunk) a \(width)×\(height) latent is tiled with "
                + "(the tile shrinks to the latent's shorter side): the tiles would not advance"
        }
        return nil
    }

    public static func == (a: LatentTileGrid, b: LatentTileGrid) -> Bool {
        a.tile == b.tile && a.isTiled == b.isTiled && a.height == b.height && a.width == b.width
            && a.offsets.elementsEqual(b.offsets) { $0.y == $1.y && $0.x == $1.x }
    }

    /// Upstream's `_gaussian_weights(width, height)`: the outer product of two Gaussians with
    /// variance 0.01 over the tile's relative position, row-major `[height][width]`. The x
    /// midpoint is `(width − 1) / 2` but the y midpoint is `height / 2`, as upstream has it (so
    /// the weights are not symmetric in y).
    public static func gaussianWeights(width: Int, height: Int) -> [Double] {
        let variance = 0.01
        let norm = (2 * Double.pi * variance).squareRoot()
        func probabilities(_ count: Int, midpoint: Double) -> [Double] {
            (0..<count).map { i in
                let d = Double(i) - midpoint
                return exp(-d * d / Double(count * count) / (2 * variance)) / norm
            }
        }
        let x = probabilities(width, midpoint: Double(width - 1) / 2)
        let y = probabilities(height, midpoint: Double(height) / 2)
        var weights = [Double](repeating: 0, count: width * height)
        for row in 0..<height {
            for column in 0..<width { weights[row * width + column] = y[row] * x[column] }
        }
        return weights
    }
}

/// Upstream's blend of the tiles' UNet outputs and fused latents: each tile adds its values
/// times the (float64) Gaussian weights into float32 accumulators, as torch does for
/// `float32_slice += float32_tile * float64_weights` (the product and the sum in float64, the sum
/// rounded to float32), and the weights into the contributor sums; the result is each
/// accumulator divided (in float32) by its contributors.
public struct LatentTileBlender: Sendable {
    public let grid: LatentTileGrid
    public let channels: Int
    let weights: [Double]
    var prediction: [Float]
    var encoded: [Float]
    /// One plane: upstream's contributor tensor has the same values in every channel.
    var contributors: [Float]
    /// Tiles added so far (they must come in the grid's order).
    public private(set) var added = 0

    public init(grid: LatentTileGrid, channels: Int) {
        self.grid = grid
        self.channels = channels
        weights = LatentTileGrid.gaussianWeights(width: grid.tile, height: grid.tile)
        let plane = grid.height * grid.width
        prediction = [Float](repeating: 0, count: channels * plane)
        encoded = prediction
        contributors = [Float](repeating: 0, count: plane)
    }

    /// Adds the next tile: its UNet output and its fused latent, `[1, channels, tile, tile]` each.
    public mutating func add(prediction tilePrediction: Tensor, encoded tileEncoded: Tensor) {
        let tile = grid.tile
        precondition(added < grid.offsets.count, "LatentTileBlender: more tiles than the grid's \(grid.offsets.count)")
        precondition(tilePrediction.shape == [1, channels, tile, tile] && tileEncoded.shape == tilePrediction.shape,
                     "LatentTileBlender: tiles \(tilePrediction.shape), \(tileEncoded.shape); expected [1, \(channels), \(tile), \(tile)]")
        let (y0, x0) = grid.offsets[added]
        let (h, w) = (grid.height, grid.width)
        for channel in 0..<channels {
            for row in 0..<tile {
                let source = (channel * tile + row) * tile
                let target = (channel * h + y0 + row) * w + x0
                for column in 0..<tile {
                    let weight = weights[row * tile + column]
                    let i = target + column
                    prediction[i] = Float(Double(prediction[i]) + Double(tilePrediction.data[source + column]) * weight)
                    encoded[i] = Float(Double(encoded[i]) + Double(tileEncoded.data[source + column]) * weight)
                }
            }
        }
        for row in 0..<tile {
            for column in 0..<tile {
                let i = (y0 + row) * w + x0 + column
                contributors[i] = Float(Double(contributors[i]) + weights[row * tile + column])
            }
        }
        added += 1
    }

    /// The blended UNet output and fused latent, `[1, channels, height, width]` each.
    /// - Precondition: every tile of the grid was added.
    public func finish() -> (prediction: Tensor, encoded: Tensor) {
        precondition(added == grid.offsets.count, "LatentTileBlender: \(added) of \(grid.offsets.count) tiles added")
        let plane = grid.height * grid.width
        var prediction = prediction, encoded = encoded
        for channel in 0..<channels {
            for p in 0..<plane {
                prediction[channel * plane + p] /= contributors[p]
                encoded[channel * plane + p] /= contributors[p]
            }
        }
        let shape = [1, channels, grid.height, grid.width]
        return (Tensor(shape: shape, data: prediction), Tensor(shape: shape, data: encoded))
    }
}

extension Tensor {
    /// `x[:, :, y : y + height, x : x + width]` of an NCHW tensor.
    func crop(y: Int, x: Int, height: Int, width: Int) -> Tensor {
        let (n, c, h, w) = nchw("crop")
        precondition(y >= 0 && x >= 0 && y + height <= h && x + width <= w,
                     "crop \(height)×\(width) at (\(y), \(x)) of \(shape)")
        if y == 0, x == 0, height == h, width == w { return self }
        var out = [Float]()
        out.reserveCapacity(n * c * height * width)
        for plane in 0..<(n * c) {
            for row in 0..<height {
                let start = (plane * h + y + row) * w + x
                out.append(contentsOf: data[start..<(start + width)])
            }
        }
        return Tensor(shape: [n, c, height, width], data: out)
    }

    /// Channels `range` of an NCHW tensor.
    func channels(_ range: Range<Int>) -> Tensor {
        let (n, c, h, w) = nchw("channels")
        let plane = h * w
        var out = [Float]()
        out.reserveCapacity(n * range.count * plane)
        for batch in 0..<n {
            out.append(contentsOf: data[((batch * c + range.lowerBound) * plane)..<((batch * c + range.upperBound) * plane)])
        }
        return Tensor(shape: [n, range.count, h, w], data: out)
    }
}
