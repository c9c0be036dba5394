import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// DLoRAL's latent tiling against values written by Tools/fixtures/make_tiling_references.py
/// (upstream's grid loop and `_gaussian_weights` followed step by step; its weights were checked
/// against upstream's own function; the blend computed in torch as upstream does and checked
/// against numpy).
@Suite("latent tiling")
struct LatentTilingTests {
    static let folder = ReportTests.root.appendingPathComponent("Tests/Fixtures/tiling")

    static func fixture() throws -> (json: [String: Any], table: TensorTable) {
        let data = try Data(contentsOf: folder.appendingPathComponent("grids.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let table = try SafetensorsFile(path: folder.appendingPathComponent("tiling.safetensors").path).table
        return (json, table)
    }

    static func doubles(_ view: TensorView) throws -> [Double] {
        #expect(view.dtype == .float64)
        let bytes = try #require(view.contiguousBytes)
        return (0..<view.elementCount).map { bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Double.self) }
    }

    @Test func gridsAreUpstreams() throws {
        let grids = try #require(try Self.fixture().json["grids"] as? [[String: Any]])
        #expect(grids.count >= 15)
        var tiled = 0
        for g in grids {
            let (h, w, tile, overlap) = (g["h"] as! Int, g["w"] as! Int, g["tile"] as! Int, g["overlap"] as! Int)
            let expected = (g["offsets"] as! [[Int]]).map { ($0[0], $0[1]) }
            #expect(LatentTileGrid.problem(height: h, width: w, tile: tile, overlap: overlap) == nil)
            let grid = LatentTileGrid(height: h, width: w, tile: tile, overlap: overlap)
            let label = "latent \(h)×\(w), tile \(tile), overlap \(overlap)"
            #expect(grid.isTiled == (g["tiled"] as! Bool), "\(label)")
            #expect(grid.tile == (g["tile_used"] as! Int), "\(label)")
            #expect(grid.offsets.count == expected.count, "\(label)")
            #expect(grid.offsets.elementsEqual(expected) { $0.y == $1.0 && $0.x == $1.1 }, "\(label): \(grid.offsets) vs \(expected)")
            #expect(grid.columns * grid.rows == expected.count, "\(label)")
            if grid.isTiled { tiled += 1 }
            // Every latent pixel is covered (upstream divides by the contributors).
            var covered = [Bool](repeating: false, count: h * w)
            let side = grid.isTiled ? grid.tile : 0
            for (y, x) in grid.offsets where grid.isTiled {
                for r in y..<(y + side) { for c in x..<(x + side) { covered[r * w + c] = true } }
            }
            #expect(!grid.isTiled || covered.allSatisfy { $0 }, "\(label)")
        }
        #expect(tiled >= 10)
    }

    /// Upstream's default 1280×720 case, by hand: latent 90×160 (area 14400 > 96²), the tile
    /// shrinks to 90, x starts at 0 and 58 until 58 + 90 ≥ 160 needs a third, moved to 160 − 90.
    @Test func upstreamDefaultAt720p() {
        let grid = LatentTileGrid(height: 90, width: 160, tile: 96, overlap: 32)
        #expect(grid.isTiled && grid.tile == 90)
        #expect(grid.offsets.map { [$0.y, $0.x] } == [[0, 0], [0, 58], [0, 70]])
        let untiled = LatentTileGrid(height: 64, width: 128, tile: 96, overlap: 32)
        #expect(!untiled.isTiled && untiled.offsets.count == 1)
    }

    @Test func gaussianWeightsAreUpstreams() throws {
        let (json, table) = try Self.fixture()
        let sizes = try #require(json["weights"] as? [[Int]])
        #expect(sizes.count >= 6)
        var exact = 0, total = 0
        for size in sizes {
            let (width, height) = (size[0], size[1])
            let view = try #require(table["weights.\(width)x\(height)"])
            #expect(view.shape == [height, width])
            let expected = try Self.doubles(view)
            let weights = LatentTileGrid.gaussianWeights(width: width, height: height)
            #expect(weights.count == expected.count)
            for (a, b) in zip(weights, expected) {
                total += 1
                if a.bitPattern == b.bitPattern { exact += 1; continue }
                // numpy's exp and the C library's may differ in the last bit.
                #expect(a.nextUp == b || a.nextDown == b, "\(width)×\(height): \(a) vs \(b)")
            }
        }
        #expect(total > 10_000)
        #expect(exact * 10 >= total * 9, "only \(exact) of \(total) weights are bit-exact")
    }

    /// The asymmetry upstream has: in a 6×6 tile the x midpoint is 2.5 (columns 2 and 3 weigh the
    /// same), the y midpoint 3 (row 3 weighs most, rows 2 and 4 the same).
    @Test func gaussianWeightsMidpoints() {
        let w = LatentTileGrid.gaussianWeights(width: 6, height: 6)
        #expect(w[3 * 6 + 2] == w[3 * 6 + 3])
        #expect(w[2 * 6 + 2] == w[4 * 6 + 2])
        #expect(w[3 * 6 + 2] > w[2 * 6 + 2])
        #expect(w[0] < w[5 * 6 + 0])  // row 0 is 3 from the midpoint, row 5 only 2
        // Closed form at the centre of a 1×1 tile: x midpoint 0, y midpoint 0.5 → exp(-12.5)/sqrt(0.02π).
        let one = LatentTileGrid.gaussianWeights(width: 1, height: 1)
        let expected = (1 / (0.02 * Double.pi).squareRoot()) * (exp(-12.5) / (0.02 * Double.pi).squareRoot())
        #expect(abs(one[0] - expected) <= 1e-15 * expected)
    }

    @Test func blendIsUpstreams() throws {
        let (json, table) = try Self.fixture()
        let blends = try #require(json["blends"] as? [[String: Any]])
        #expect(blends.count >= 2)
        for b in blends {
            let name = b["name"] as! String
            let (h, w, tile, overlap, channels) = (b["h"] as! Int, b["w"] as! Int, b["tile"] as! Int, b["overlap"] as! Int, b["channels"] as! Int)
            let grid = LatentTileGrid(height: h, width: w, tile: tile, overlap: overlap)
            #expect(grid.isTiled)
            let predTiles = Tensor(try #require(table["blend.\(name).pred_tiles"]))
            let encTiles = Tensor(try #require(table["blend.\(name).enc_tiles"]))
            #expect(predTiles.shape == [grid.offsets.count, channels, grid.tile, grid.tile])
            var blender = LatentTileBlender(grid: grid, channels: channels)
            let size = channels * grid.tile * grid.tile
            for i in 0..<grid.offsets.count {
                let shape = [1, channels, grid.tile, grid.tile]
                blender.add(prediction: Tensor(shape: shape, data: Array(predTiles.data[(i * size)..<((i + 1) * size)])),
                            encoded: Tensor(shape: shape, data: Array(encTiles.data[(i * size)..<((i + 1) * size)])))
            }
            let (pred, enc) = blender.finish()
            let expectedPred = Tensor(try #require(table["blend.\(name).pred"]))
            let expectedEnc = Tensor(try #require(table["blend.\(name).enc"]))
            let expectedX0 = Tensor(try #require(table["blend.\(name).x0"]))
            #expect(pred.shape == [1, channels, h, w])
            #expect(pred.data.map(\.bitPattern) == expectedPred.data.map(\.bitPattern), "\(name): pred max diff \(pred.maxAbsDifference(expectedPred))")
            #expect(enc.data.map(\.bitPattern) == expectedEnc.data.map(\.bitPattern), "\(name): enc max diff \(enc.maxAbsDifference(expectedEnc))")
            #expect(zip(enc.data, pred.data).map { ($0 - $1).bitPattern } == expectedX0.data.map(\.bitPattern), "\(name): x0")
        }
    }

    @Test func optionsAreValidated() throws {
        try TilingOptions().validate()
        try TilingOptions.untiled.validate()
        try TilingOptions(latentTile: 1, latentOverlap: 0, vaeEncoderTile: 1, vaeDecoderTile: 1).validate()
        func error(_ options: TilingOptions) -> TilingOptionError? {
            do { try options.validate() } catch let e as TilingOptionError { return e } catch { return nil }
            return nil
        }
        #expect(error(TilingOptions(latentTile: 0))?.option == "--latent-tile")
        #expect(error(TilingOptions(latentTile: -5))?.option == "--latent-tile")
        #expect(error(TilingOptions(latentTile: TilingOptions.maximumTile + 1))?.option == "--latent-tile")
        #expect(error(TilingOptions(latentTile: 96, latentOverlap: 96))?.option == "--latent-overlap")
        #expect(error(TilingOptions(latentTile: 96, latentOverlap: -1))?.option == "--latent-overlap")
        #expect(error(TilingOptions(vaeEncoderTile: 0))?.option == "--vae-encoder-tile")
        #expect(error(TilingOptions(vaeDecoderTile: 0))?.option == "--vae-decoder-tile")
        let overlap = error(TilingOptions(latentTile: 96, latentOverlap: 96))
        #expect(overlap?.description.hasPrefix("--latent-overlap is 96") == true, "\(String(describing: overlap))")
    }

    /// Where upstream's grid loop would never end: the tile shrinks below the overlap.
    @Test func overlapBeyondTheShrunkenTileIsRefused() throws {
        let options = TilingOptions()  // 96 / 32
        // 24×500 latent (frames 4000×192): area 12000 > 96², tile shrinks to 24 ≤ overlap 32.
        #expect(LatentTileGrid.problem(height: 24, width: 500, tile: 96, overlap: 32) != nil)
        do {
            try options.validate(latentHeight: 24, latentWidth: 500)
            Issue.record("expected an error")
        } catch let error as TilingOptionError {
            #expect(error.option == "--latent-overlap")
            #expect(error.description.contains("use --latent-overlap 23 or less"), "\(error)")
            #expect(error.description.contains("4000×192"), "\(error)")
        }
        // Untiled by area, or a shrunken tile still above the overlap: fine.
        try options.validate(latentHeight: 20, latentWidth: 200)
        try options.validate(latentHeight: 33, latentWidth: 500)
        try TilingOptions.untiled.validate(latentHeight: 135, latentWidth: 240)
        #expect(!LatentTileGrid(height: 135, width: 240, tile: TilingOptions.untiled.latentTile, overlap: 0).isTiled)
    }

    @Test func optionsRoundTripThroughJSON() throws {
        let options = TilingOptions(latentTile: 48, latentOverlap: 8, vaeEncoderTile: 512, vaeDecoderTile: 64)
        let decoded = try JSONDecoder().decode(TilingOptions.self, from: JSONEncoder().encode(options))
        #expect(decoded == options)
        #expect(TilingOptions() == TilingOptions(latentTile: 96, latentOverlap: 32, vaeEncoderTile: 1024, vaeDecoderTile: 224))
    }
}

/// `DLoRALPipeline.restorePair` on the tiny fixture's fp32 `.dlrt` (merged and quantized by the
/// CLI as ReportTests does): with a tile covering the latent it is `run` bit for bit; tiled, it
/// is the Gaussian blend (checked against numpy above) of the pair run on each tile's frames and
/// latents.
@Suite("tiled pipeline", .serialized)
struct TiledPipelineTests {
    static let work: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-tiles-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// The tiny fixture merged and quantized to fp32 (and a copy without its CFR), once per test process.
    static let dlrt: Result<String, any Error> = Result { try makeDLRT("tiny", withCFR: true) }
    static let dlrtWithoutCFR: Result<String, any Error> = Result { try makeDLRT("tiny-nocfr", withCFR: false) }

    struct SetupError: Error { let message: String }

    static func makeDLRT(_ name: String, withCFR: Bool) throws -> String {
        let merged = work.appendingPathComponent("\(name)-merged")
        let dlrt = work.appendingPathComponent("\(name).dlrt").path
        let m = try ReportTests.tool("dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged.path])
        guard m.status == 0 else { throw SetupError(message: "dloral-convert merge failed: \(m.stderr)") }
        if !withCFR { try FileManager.default.removeItem(at: merged.appendingPathComponent("cfr")) }
        let q = try ReportTests.tool("dloral-convert", ["quantize", merged.path, "--weights", "fp32", "--output", dlrt])
        guard q.status == 0 else { throw SetupError(message: "dloral-convert quantize failed: \(q.stderr)") }
        return dlrt
    }

    static func pipeline(withCFR: Bool = true) throws -> DLoRALPipeline {
        try DLoRALPipeline(model: RuntimeModel(file: DLRTFile(path: try (withCFR ? dlrt : dlrtWithoutCFR).get())))
    }

    static func inputs(_ name: String = "reference_full") throws -> (frames: Tensor, prompt: Tensor) {
        let table = try SafetensorsFile(path: ReportTests.root.appendingPathComponent("Tests/Fixtures/tiny/\(name).safetensors").path).table
        return (Tensor(try #require(table["input.frames"])), Tensor(try #require(table["input.prompt_embeds"])))
    }

    static func batch(_ x: Tensor, _ range: Range<Int>) -> Tensor {
        let size = x.count / x.shape[0]
        return Tensor(shape: [range.count] + x.shape.dropFirst(), data: Array(x.data[(range.lowerBound * size)..<(range.upperBound * size)]))
    }

    static func crop(_ x: Tensor, y: Int, x x0: Int, side: Int) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var data: [Float] = []
        for plane in 0..<(n * c) {
            for row in y..<(y + side) {
                let start: Int = (plane * h + row) * w + x0
                data.append(contentsOf: x.data[start..<(start + side)])
            }
        }
        return Tensor(shape: [n, c, side, side], data: data)
    }

    static func channels(_ x: Tensor, _ range: Range<Int>) -> Tensor {
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        var data: [Float] = []
        for b in 0..<n {
            let start: Int = (b * c + range.lowerBound) * plane
            data.append(contentsOf: x.data[start..<(start + range.count * plane)])
        }
        return Tensor(shape: [n, range.count] + x.shape.dropFirst(2), data: data)
    }

    static func bits(_ x: Tensor?) -> [UInt32]? { x?.data.map(\.bitPattern) }

    @Test func coveringTileIsRun() throws {
        let pipeline = try Self.pipeline()
        let (frames, prompt) = try Self.inputs()  // 3 frames of 64×320: latent 8×40 (area 320)
        let run = try pipeline.run(frames: frames, promptEmbeds: prompt)
        let latents = pipeline.encode(frames, tiling: TilingOptions())
        #expect(Self.bits(latents) == Self.bits(run.latents))
        // 18² = 324 ≥ 320: untiled by area although 18 < 40.
        for tiling in [TilingOptions.untiled, TilingOptions(), TilingOptions(latentTile: 18, latentOverlap: 4)] {
            for pair in 0..<2 {
                let out = try pipeline.restorePair(frames: Self.batch(frames, pair..<(pair + 2)), latents: Self.batch(latents, pair..<(pair + 2)),
                                                   promptEmbeds: prompt, tiling: tiling)
                let label = "pair \(pair), tile \(tiling.latentTile)"
                #expect(out.unetInput?.shape == [1, 8, 8, 40], "\(label)")
                #expect(Self.bits(out.unetInput) == Self.bits(Self.batch(try #require(run.unetInput), pair..<(pair + 1))), "\(label)")
                #expect(Self.bits(out.unetOutput) == Self.bits(Self.batch(run.unetOutput, pair..<(pair + 1))), "\(label)")
                #expect(Self.bits(out.x0) == Self.bits(Self.batch(run.x0, pair..<(pair + 1))), "\(label)")
                #expect(out.frames.shape == [1, 3, 64, 320])
                #expect(Self.bits(out.frames) == Self.bits(Self.batch(run.frames, pair..<(pair + 1))), "\(label)")
            }
        }
    }

    /// Tile 6, overlap 2 on the 8×40 latent: 10 × 2 tiles of 6×6 (frames 48×48). Each tile run as
    /// its own pair (untiled restorePair on the cropped frames and latents) and blended gives
    /// the tiled result. Without a CFR the tiles' latents go to the UNet unaligned, as in `run`.
    @Test(arguments: [true, false]) func tiledPairIsTheBlendOfItsTiles(withCFR: Bool) throws {
        let pipeline = try Self.pipeline(withCFR: withCFR)
        let (allFrames, prompt) = try Self.inputs()
        let frames = Self.batch(allFrames, 1..<3)
        let latents = pipeline.encode(frames, tiling: .untiled)
        let tiling = TilingOptions(latentTile: 6, latentOverlap: 2)
        let out = try pipeline.restorePair(frames: frames, latents: latents, promptEmbeds: prompt, tiling: tiling)
        #expect(out.unetInput == nil)
        #expect(out.unetOutput.shape == [1, 4, 8, 40] && out.x0.shape == [1, 4, 8, 40] && out.frames.shape == [1, 3, 64, 320])
        #expect(out.frames.data.allSatisfy { $0 >= -1 && $0 <= 1 })

        let grid = LatentTileGrid(height: 8, width: 40, tile: 6, overlap: 2)
        #expect(grid.offsets.count == 20)
        var blender = LatentTileBlender(grid: grid, channels: 4)
        for (y, x) in grid.offsets {
            let tile = try pipeline.restorePair(
                frames: Self.crop(frames, y: 8 * y, x: 8 * x, side: 48), latents: Self.crop(latents, y: y, x: x, side: 6),
                promptEmbeds: prompt, tiling: .untiled)
            blender.add(prediction: tile.unetOutput, encoded: Self.channels(try #require(tile.unetInput), 4..<8))
        }
        let (pred, enc) = blender.finish()
        #expect(Self.bits(out.unetOutput) == Self.bits(pred))
        #expect(out.x0.data.map(\.bitPattern) == zip(enc.data, pred.data).map { ($0 - $1).bitPattern })
        // Tiling changes the result (the CFR's flow and the UNet see less context; for the tiny
        // model by up to 1.3 in PyTorch too), so the comparison above is not an untiled one.
        let untiled = try pipeline.restorePair(frames: frames, latents: latents, promptEmbeds: prompt, tiling: .untiled)
        #expect(out.unetOutput.maxAbsDifference(untiled.unetOutput) > 0.01)
    }

    /// Against Tools/reference/latent_tiling.py driving the tiny model in PyTorch
    /// (Tools/fixtures/make_tiled_pair_reference.py): 48×80 frames, latent 6×10, tile 4, overlap
    /// 1, so 3 × 2 tiles per pair (measured: frames within 1e-5, unet_output 4e-6, x0 1.5e-5).
    @Test func tiledPairsMatchPyTorch() throws {
        let pipeline = try Self.pipeline()
        let (frames, prompt) = try Self.inputs("reference_full_48x80")
        let reference = try SafetensorsFile(path: LatentTilingTests.folder.appendingPathComponent("tiny_tiled_48x80.safetensors").path).table
        func expected(_ name: String) throws -> Tensor { Tensor(try #require(reference["output.\(name)"])) }
        let tiling = TilingOptions(latentTile: 4, latentOverlap: 1)
        let latents = pipeline.encode(frames, tiling: tiling)
        #expect(latents.maxAbsDifference(try expected("latents")) <= 1e-4)
        #expect(LatentTileGrid(height: 6, width: 10, tile: 4, overlap: 1).offsets.count == 6)
        for pair in 0..<2 {
            let out = try pipeline.restorePair(frames: Self.batch(frames, pair..<(pair + 2)), latents: Self.batch(latents, pair..<(pair + 2)),
                                               promptEmbeds: prompt, tiling: tiling)
            #expect(out.unetInput == nil)
            for (name, tensor) in [("unet_output", out.unetOutput), ("x0", out.x0), ("frames", out.frames)] {
                let want = Self.batch(try expected(name), pair..<(pair + 1))
                #expect(tensor.shape == want.shape)
                let difference = tensor.maxAbsDifference(want)
                #expect(difference <= 1e-4, "pair \(pair) \(name): max abs \(difference)")
            }
        }
    }

    @Test func badPairsAreRefused() throws {
        let pipeline = try Self.pipeline()
        let (allFrames, prompt) = try Self.inputs()
        let frames = Self.batch(allFrames, 0..<2)
        let latents = pipeline.encode(frames, tiling: .untiled)
        // Tile 10 shrinks to the latent's 8 rows, which an overlap of 8 cannot be smaller than.
        #expect(throws: TilingOptionError.self) {
            try pipeline.restorePair(frames: frames, latents: latents, promptEmbeds: prompt, tiling: TilingOptions(latentTile: 10, latentOverlap: 8))
        }
        #expect(throws: TilingOptionError.self) {
            try pipeline.restorePair(frames: frames, latents: latents, promptEmbeds: prompt, tiling: TilingOptions(latentTile: 0))
        }
        for (f, l, p) in [(allFrames, latents, prompt), (frames, Self.batch(latents, 0..<1), prompt),
                          (frames, Self.crop(latents, y: 0, x: 0, side: 8), prompt),
                          (frames, latents, Tensor(zeros: [1, 77, 5]))] {
            do {
                _ = try pipeline.restorePair(frames: f, latents: l, promptEmbeds: p, tiling: TilingOptions())
                Issue.record("expected an error for frames \(f.shape), latents \(l.shape), prompt \(p.shape)")
            } catch let error as FormatError {
                #expect(error.description.contains("tiny.dlrt"), "\(error)")
            }
        }
    }
}
