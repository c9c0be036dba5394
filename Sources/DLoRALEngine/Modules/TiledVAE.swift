// The VAE encoder and decoder tiled as upstream DLoRAL tiles them (its `VAEHook`, default
// non-fast mode): the image is split into tiles with a margin (`pad`) on every side, the network
// runs on each tile alone, except that every GroupNorm normalises every tile with statistics
// combined over all tiles; each finished tile, cropped to its part, goes into the result.
// Images that fit in one tile (plus its margins) run untiled. quant_conv / post_quant_conv and
// the scaling stay outside the tiling, as in diffusers, where the hook replaces
// `encoder.forward` / `decoder.forward`.

/// One step of a VAE half's network (diffusers `Encoder` / `Decoder` without quant_conv /
/// post_quant_conv), in the order of VAEHook's task queue. The untiled forward runs the list on
/// the whole image; the tiled one runs each step on every tile before the next step, because a
/// GroupNorm step needs the statistics of all tiles.
enum VAEStep: Sendable {
    /// A convolution (conv_in).
    case conv(BlocksConv2d)
    /// GroupNorm → SiLU → convolution (a resnet's norm1 / conv1 and norm2 / conv2, norm_out /
    /// conv_out).
    case normalizedConv(BlocksGroupNorm, BlocksConv2d)
    /// Keeps the input of a resnet for its residual.
    case saveResidual
    /// Adds the kept input (through the resnet's 1×1 shortcut when it has one) to the result.
    case addResidual(shortcut: BlocksConv2d?)
    case downsample(Downsample2D)
    case upsample(Upsample2D)
    /// The mid-block attention, its group_norm included; on a tile it attends within the tile.
    case attention(VAEAttentionBlock)

    /// The GroupNorm of the step, whose statistics are shared between tiles.
    var groupNorm: BlocksGroupNorm? {
        switch self {
        case let .normalizedConv(norm, _): return norm
        case let .attention(block): return block.groupNorm
        default: return nil
        }
    }

    /// A VAE `ResnetBlock2D` (no time embedding): `x + conv2(silu(norm2(conv1(silu(norm1(x))))))`
    /// with `x` through the shortcut when the channels change.
    static func resnet(_ block: ResnetBlock2D) -> [VAEStep] {
        precondition(block.timeEmbeddingProjection == nil, "a VAE resnet has no time embedding")
        return [
            .saveResidual, .normalizedConv(block.norm1, block.conv1), .normalizedConv(block.norm2, block.conv2),
            .addResidual(shortcut: block.shortcut),
        ]
    }

    /// `UNetMidBlock2D`: resnet, then (attention, resnet).
    static func midBlock(_ block: VAEMidBlock) -> [VAEStep] {
        var steps = resnet(block.resnets[0])
        if let attention = block.attentions.first { steps.append(.attention(attention)) }
        steps += resnet(block.resnets[1])
        return steps
    }

    /// The step on one tensor.
    /// - Parameters:
    ///   - statistics: for a GroupNorm step, the statistics to use instead of `x`'s own.
    ///   - residuals: the inputs kept by `saveResidual`, innermost last.
    func apply(_ x: Tensor, statistics: GroupNormStatistics?, residuals: inout [Tensor]) -> Tensor {
        switch self {
        case let .conv(conv):
            return conv(x)
        case let .normalizedConv(norm, conv):
            return conv(normalizing: x, with: norm, silu: true, statistics: statistics)
        case .saveResidual:
            residuals.append(x)
            return x
        case let .addResidual(shortcut):
            let input = residuals.removeLast()
            return blocksAdd(shortcut.map { $0(input) } ?? input, x)
        case let .downsample(down):
            return down(x)
        case let .upsample(up):
            return up(x)
        case let .attention(block):
            return block(x, statistics: statistics)
        }
    }

    /// The steps on a whole image batch, each GroupNorm with the batch's own statistics.
    static func run(_ steps: [VAEStep], on x: Tensor) -> Tensor {
        var residuals: [Tensor] = []
        var h = x
        for step in steps { h = step.apply(h, statistics: nil, residuals: &residuals) }
        return h
    }

    /// The steps on tiles of the same images, every step on all tiles before the next; each
    /// GroupNorm normalises every tile with the statistics of all tiles combined
    /// (`BlocksGroupNorm.statistics(combining:)`).
    static func run(_ steps: [VAEStep], onTiles input: [Tensor]) -> [Tensor] {
        var tiles = input
        var residuals = [[Tensor]](repeating: [], count: tiles.count)
        for step in steps {
            let statistics = step.groupNorm.map { $0.statistics(combining: tiles) }
            for t in tiles.indices {
                tiles[t] = step.apply(tiles[t], statistics: statistics, residuals: &residuals[t])
            }
        }
        return tiles
    }
}

/// VAEHook's split of an image (encoder: pixels, decoder: latents) into tiles.
public struct VAETileGrid: Sendable, Equatable {
    /// A box `[x1, x2) × [y1, y2)`.
    public typealias Box = (x1: Int, x2: Int, y1: Int, y2: Int)

    /// The margin around every tile: 32 pixels for the encoder, 11 latents for the decoder.
    public static let encoderPad = 32
    public static let decoderPad = 11

    public let height: Int
    public let width: Int
    public let tile: Int
    public let pad: Int
    public let isDecoder: Bool
    /// Tile rows and columns.
    public let rows: Int
    public let columns: Int
    /// The size of a tile without its margins, after `bestTileSize`.
    public let tileHeight: Int
    public let tileWidth: Int
    /// Row-major over the tiles. `input`: the region of the input the tile runs on (its part with
    /// the margins, clipped to the image). `output`: the region of the result it fills (scaled by
    /// 8 for the decoder, divided by 8 for the encoder).
    public let tiles: [(input: Box, output: Box)]

    /// Whether an image of this size is tiled: VAEHook runs it untiled when
    /// `max(height, width) <= tile + 2·pad`.
    public static func isTiled(height: Int, width: Int, tile: Int, pad: Int) -> Bool {
        max(height, width) > tile + 2 * pad
    }

    /// Whether `tile` can be used: positive, and for the encoder a multiple of 8, so that every
    /// tile starts on the 8-pixel grid of the latents (otherwise VAEHook's crop of a tile does not
    /// fit its region of the result).
    public static func isValidTile(_ tile: Int, isDecoder: Bool) -> Bool {
        tile > 0 && (isDecoder || tile % 8 == 0)
    }

    /// VAEHook's `get_best_tile_size`: `lower` rounded up to a multiple of 32, 16, 8, 4 or 2 (the
    /// first that does not exceed `upper`), else `lower`.
    public static func bestTileSize(_ lower: Int, upper: Int) -> Int {
        var divider = 32
        while divider >= 2 {
            let remainder = pythonModulo(lower, divider)
            if remainder == 0 { return lower }
            let candidate = lower - remainder + divider
            if candidate <= upper { return candidate }
            divider /= 2
        }
        return lower
    }

    /// VAEHook's `split_tiles(height, width)` with its `tile_size`, `pad` and `is_decoder`.
    public init(height: Int, width: Int, tile: Int, pad: Int, isDecoder: Bool) {
        precondition(tile > 0, "VAE tile size \(tile) must be positive")
        self.height = height
        self.width = width
        self.tile = tile
        self.pad = pad
        self.isDecoder = isDecoder
        rows = max(Self.ceilDivide(height - 2 * pad, tile), 1)
        columns = max(Self.ceilDivide(width - 2 * pad, tile), 1)
        tileHeight = Self.bestTileSize(Self.ceilDivide(height - 2 * pad, rows), upper: tile)
        tileWidth = Self.bestTileSize(Self.ceilDivide(width - 2 * pad, columns), upper: tile)
        func scale(_ v: Int) -> Int { isDecoder ? v * 8 : Self.floorDivide(v, 8) }
        var tiles: [(input: Box, output: Box)] = []
        for i in 0..<rows {
            for j in 0..<columns {
                let x1 = pad + j * tileWidth, x2 = min(pad + (j + 1) * tileWidth, width)
                let y1 = pad + i * tileHeight, y2 = min(pad + (i + 1) * tileHeight, height)
                // Tiles at the image border take the border too.
                let output: Box = (
                    scale(x1 > pad ? x1 : 0), scale(x2 < width - pad ? x2 : width),
                    scale(y1 > pad ? y1 : 0), scale(y2 < height - pad ? y2 : height)
                )
                let input: Box = (max(0, x1 - pad), min(width, x2 + pad), max(0, y1 - pad), min(height, y2 + pad))
                tiles.append((input, output))
            }
        }
        self.tiles = tiles
    }

    /// The part of a finished tile (the network's output on `tiles[index].input`, of
    /// `outputHeight` × `outputWidth`) that goes into `tiles[index].output`: VAEHook's
    /// `crop_valid_region`, rows then columns, each `[start, end)`.
    public func validRegion(
        of index: Int, outputHeight: Int, outputWidth: Int
    ) -> (y1: Int, y2: Int, x1: Int, x2: Int) {
        let (input, output) = tiles[index]
        func scale(_ v: Int) -> Int { isDecoder ? v * 8 : Self.floorDivide(v, 8) }
        return (
            output.y1 - scale(input.y1), outputHeight + output.y2 - scale(input.y2),
            output.x1 - scale(input.x1), outputWidth + output.x2 - scale(input.x2)
        )
    }

    public static func == (a: VAETileGrid, b: VAETileGrid) -> Bool {
        a.height == b.height && a.width == b.width && a.tile == b.tile && a.pad == b.pad
            && a.isDecoder == b.isDecoder && a.tiles.count == b.tiles.count
            && zip(a.tiles, b.tiles).allSatisfy { $0.input == $1.input && $0.output == $1.output }
    }

    // Python's integer arithmetic (the split works on sizes that can be smaller than 2·pad).
    static func ceilDivide(_ a: Int, _ b: Int) -> Int { -floorDivide(-a, b) }
    static func floorDivide(_ a: Int, _ b: Int) -> Int {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }
    static func pythonModulo(_ a: Int, _ b: Int) -> Int { a - floorDivide(a, b) * b }
}

extension VAEStep {
    /// The steps over the grid's tiles of `x` `[N, C, H, W]`, one image at a time (the statistics
    /// are per image, so the images are independent and only one image's tiles are held), each
    /// finished tile cropped into the result `[N, C', H·8 or H/8, W·8 or W/8]`.
    static func run(_ steps: [VAEStep], on x: Tensor, grid: VAETileGrid) -> Tensor {
        let (n, channels, height, width) = x.nchw("tiled VAE")
        precondition(height == grid.height && width == grid.width, "tiled VAE: \(x.shape) against a \(grid.height)×\(grid.width) grid")
        let outHeight = grid.isDecoder ? height * 8 : height / 8
        let outWidth = grid.isDecoder ? width * 8 : width / 8
        var result: Tensor? = nil
        for image in 0..<n {
            let input = grid.tiles.map { tile in
                crop(x, image: image, channels: channels, y: tile.input.y1..<tile.input.y2, x: tile.input.x1..<tile.input.x2)
            }
            let finished = run(steps, onTiles: input)
            for (index, tile) in finished.enumerated() {
                let (_, c, th, tw) = tile.nchw("tiled VAE tile")
                if result == nil { result = Tensor(zeros: [n, c, outHeight, outWidth]) }
                let region = grid.validRegion(of: index, outputHeight: th, outputWidth: tw)
                let output = grid.tiles[index].output
                precondition(
                    region.y2 - region.y1 == output.y2 - output.y1 && region.x2 - region.x1 == output.x2 - output.x1,
                    "tiled VAE: tile \(index)'s output \(tile.shape) does not fit its region \(output) (tile size \(grid.tile))")
                paste(tile, rows: region.y1, columns: region.x1, into: &result!, image: image, box: output)
            }
        }
        return result!
    }

    /// `x[image, :, y, x]` as `[1, C, y.count, x.count]`.
    static func crop(_ x: Tensor, image: Int, channels: Int, y: Range<Int>, x columns: Range<Int>) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        var out = Tensor(zeros: [1, channels, y.count, columns.count])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                var d = 0
                for c in 0..<channels {
                    for row in y {
                        let s = ((image * channels + c) * height + row) * width + columns.lowerBound
                        for i in 0..<columns.count { dst[d + i] = src[s + i] }
                        d += columns.count
                    }
                }
            }
        }
        return out
    }

    /// `result[image, :, box] = tile[0, :, rows…, columns…]` (the box's size).
    static func paste(_ tile: Tensor, rows: Int, columns: Int, into result: inout Tensor, image: Int, box: VAETileGrid.Box) {
        let (c, th, tw) = (tile.shape[1], tile.shape[2], tile.shape[3])
        let (height, width) = (result.shape[2], result.shape[3])
        let (boxHeight, boxWidth) = (box.y2 - box.y1, box.x2 - box.x1)
        tile.data.withUnsafeBufferPointer { src in
            result.data.withUnsafeMutableBufferPointer { dst in
                for ch in 0..<c {
                    for r in 0..<boxHeight {
                        let s = (ch * th + rows + r) * tw + columns
                        let d = ((image * c + ch) * height + box.y1 + r) * width + box.x1
                        for i in 0..<boxWidth { dst[d + i] = src[s + i] }
                    }
                }
            }
        }
    }
}

extension VAEEncoder {
    /// As `callAsFunction(frames)`, with the encoder network tiled as VAEHook tiles it (`tileSize`
    /// pixels, margin 32) when `max(H, W) > tileSize + 64`; untiled (the same bits as
    /// `callAsFunction(frames)`) otherwise. `tileSize` must satisfy
    /// `VAETileGrid.isValidTile(_:isDecoder: false)`.
    public func callAsFunction(_ frames: Tensor, tileSize: Int) -> Tensor {
        let (_, _, height, width) = frames.nchw("VAEEncoder")
        let pad = VAETileGrid.encoderPad
        guard VAETileGrid.isTiled(height: height, width: width, tile: tileSize, pad: pad) else { return self(frames) }
        let grid = VAETileGrid(height: height, width: width, tile: tileSize, pad: pad, isDecoder: false)
        return scaled(mean(ofMoments: quantized(VAEStep.run(steps, on: frames, grid: grid))))
    }
}

extension VAEDecoder {
    /// As `callAsFunction(latents)`, with the decoder network tiled as VAEHook tiles it (`tileSize`
    /// latents, margin 11) when `max(h, w) > tileSize + 22`; untiled (the same bits as
    /// `callAsFunction(latents)`) otherwise. `tileSize` must be positive.
    public func callAsFunction(_ latents: Tensor, tileSize: Int) -> Tensor {
        let (_, _, height, width) = latents.nchw("VAEDecoder")
        let pad = VAETileGrid.decoderPad
        guard VAETileGrid.isTiled(height: height, width: width, tile: tileSize, pad: pad) else { return self(latents) }
        let grid = VAETileGrid(height: height, width: width, tile: tileSize, pad: pad, isDecoder: true)
        return VAEStep.run(steps, on: postQuantized(unscaled(latents)), grid: grid)
    }
}
