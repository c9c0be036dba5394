import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// References written by Tools/fixtures/make_vae_tiling_references.py with upstream DLoRAL's own
/// VAEHook (its split_tiles and its tiled forward, run by PyTorch on the tiny VAE).
enum VAETilingFixture {
    static let folder: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/vae_tiling")

    static func file(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: folder.appendingPathComponent(name).path)
    }

    /// The tile size recorded in a reference's metadata.
    static func tile(_ file: SafetensorsFile) throws -> Int {
        let meta = try #require(file.tensors.metadata["vae_tiling"])
        return try #require(try StrictJSONParser.parse(meta)["tile"]?.intValue)
    }

    /// `frames_u8 / 255 * 2 - 1` in float, as the script computes it.
    static func frames(_ file: SafetensorsFile) throws -> Tensor {
        let view = try #require(file.tensors["input.frames_u8"])
        #expect(view.dtype == .uint8)
        let bytes = try #require(view.contiguousBytes)
        let values = (0..<view.elementCount).map { Float(bytes[$0]) / 255 * 2 - 1 }
        return Tensor(shape: view.shape, data: values)
    }
}

@Suite("VAE tiling as upstream's VAEHook")
struct VAETilingTests {
    @Test("the tile grid is upstream's split_tiles for every size of the table")
    func grids() throws {
        let json = try JSONValue.read(path: VAETilingFixture.folder.appendingPathComponent("grids.json").path)
        let cases = try #require(json["grids"]?.arrayValue)
        #expect(cases.count >= 10)
        for entry in cases {
            let name = try #require(entry["name"]?.stringValue)
            let (h, w) = (try #require(entry["height"]?.intValue), try #require(entry["width"]?.intValue))
            let (tile, pad) = (try #require(entry["tile"]?.intValue), try #require(entry["pad"]?.intValue))
            let isDecoder = try #require(entry["is_decoder"]?.boolValue)
            #expect(pad == (isDecoder ? VAETileGrid.decoderPad : VAETileGrid.encoderPad), "\(name)")
            let grid = VAETileGrid(height: h, width: w, tile: tile, pad: pad, isDecoder: isDecoder)
            let expected = try #require(entry["tiles"]?.arrayValue).map { t in
                (try #require(t["input"]?.intArray), try #require(t["output"]?.intArray))
            }
            #expect(grid.tiles.count == expected.count, "\(name)")
            for (got, want) in zip(grid.tiles, expected) {
                #expect([got.input.x1, got.input.x2, got.input.y1, got.input.y2] == want.0, "\(name) input")
                #expect([got.output.x1, got.output.x2, got.output.y1, got.output.y2] == want.1, "\(name) output")
            }
            #expect(VAETileGrid.isTiled(height: h, width: w, tile: tile, pad: pad) == entry["tiled"]?.boolValue, "\(name)")
        }
    }

    @Test("get_best_tile_size: hand-computed values")
    func bestTileSize() {
        #expect(VAETileGrid.bestTileSize(608, upper: 1024) == 608)   // a multiple of 32
        #expect(VAETileGrid.bestTileSize(600, upper: 1024) == 608)   // up to the next multiple of 32
        #expect(VAETileGrid.bestTileSize(100, upper: 104) == 104)    // 128 > 104, 112 > 104, then 104
        #expect(VAETileGrid.bestTileSize(37, upper: 37) == 37)       // nothing above fits
        #expect(VAETileGrid.bestTileSize(-12, upper: 224) == 0)      // Python's modulo of a negative size
    }

    @Test("tiled encoder: latents as upstream's VAEHook in PyTorch, to float32 rounding")
    func encoder() throws {
        let weights = try #require(VAEFixture.weights)
        let config = try #require(VAEFixture.config)
        let reference = try VAETilingFixture.file("encoder.safetensors")
        let frames = try VAETilingFixture.frames(reference)
        let tile = try VAETilingFixture.tile(reference)
        let (h, w) = (frames.shape[2], frames.shape[3])
        #expect(VAETileGrid(height: h, width: w, tile: tile, pad: VAETileGrid.encoderPad, isDecoder: false).tiles.count == 6)
        let encoder = try VAEEncoder(table: weights.tensors, config: config)
        let latents = encoder(frames, tileSize: tile)
        // PyTorch's float32 run and the same in float64. The tiny VAE's quant_conv has a gain: its
        // latents reach ~9, where float32's own rounding is ~1e-5 (PyTorch's float32 run is 1.04e-5
        // from its float64 run; the untiled engine is 1.5e-5 from PyTorch in VAETests). So the bound
        // against the exact values is 1e-5 or PyTorch float32's own error with a margin of half of it.
        let exact = try Tensor.load("output.latents_float64", from: reference.tensors)
        let float32 = try Tensor.load("output.latents", from: reference.tensors)
        #expect(latents.shape == exact.shape)
        let error = latents.maxAbsDifference(exact)
        let error32 = latents.maxAbsDifference(float32)
        let torchOwn = float32.maxAbsDifference(exact)
        print("tiled VAE encoder: max abs error \(error) against float64 (PyTorch float32: \(torchOwn)), \(error32) against float32 (max |ref| \(exact.maxAbs))")
        #expect(error <= max(1e-5, 1.5 * torchOwn))
        #expect(error32 <= 2e-5)
        // Tiling changes the result (attention and convolutions see only their tile): the reference
        // is not the untiled forward.
        #expect(encoder(frames).maxAbsDifference(exact) > 1e-2)
    }

    @Test("tiled decoder: frames within 1e-5 of upstream's VAEHook in PyTorch")
    func decoder() throws {
        let weights = try #require(VAEFixture.weights)
        let config = try #require(VAEFixture.config)
        let reference = try VAETilingFixture.file("decoder.safetensors")
        let latents = try Tensor.load("input.latents", from: reference.tensors)
        let expected = try Tensor.load("output.frames", from: reference.tensors)
        let tile = try VAETilingFixture.tile(reference)
        let decoder = try VAEDecoder(table: weights.tensors, config: config)
        let frames = decoder(latents, tileSize: tile)
        #expect(frames.shape == expected.shape)
        let error = frames.maxAbsDifference(expected)
        print("tiled VAE decoder: max abs error \(error) (max |ref| \(expected.maxAbs))")
        #expect(error <= 1e-5)
        #expect(decoder(latents).maxAbsDifference(expected) > 1e-2)
    }

    @Test("an input that fits in tile + 2·pad runs untiled, bit for bit the plain call")
    func untiled() throws {
        let weights = try #require(VAEFixture.weights)
        let config = try #require(VAEFixture.config)
        let frames = try VAETilingFixture.frames(try VAETilingFixture.file("encoder.safetensors"))
        let latents = try Tensor.load("input.latents", from: try VAETilingFixture.file("decoder.safetensors").tensors)
        let encoder = try VAEEncoder(table: weights.tensors, config: config)
        let decoder = try VAEDecoder(table: weights.tensors, config: config)
        func same(_ a: Tensor, _ b: Tensor) -> Bool {
            a.shape == b.shape && zip(a.data, b.data).allSatisfy { $0.bitPattern == $1.bitPattern }
        }
        // 96 × 112 frames: untiled up to max(H, W) = tile + 64, tiled one pixel beyond.
        let plainLatents = encoder(frames)
        #expect(same(encoder(frames, tileSize: 48), plainLatents))
        #expect(same(encoder(frames, tileSize: 1024), plainLatents))
        #expect(!same(encoder(frames, tileSize: 40), plainLatents))
        // 8 × 28 latents: untiled up to tile + 22.
        let plainFrames = decoder(latents)
        #expect(same(decoder(latents, tileSize: 6), plainFrames))
        #expect(same(decoder(latents, tileSize: 224), plainFrames))
        #expect(!same(decoder(latents, tileSize: 5), plainFrames))
    }

    @Test("a W8A8 file's integer layers run tiled: nearer upstream's tiled output than the untiled run")
    func integerLayers() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("dloral-vae-tiling-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let merged = work.appendingPathComponent("merged").path
        let dlrt = work.appendingPathComponent("w8a8.dlrt").path
        let m = try ReportTests.tool(
            "dloral-convert", ["merge", "--base", "Tests/Fixtures/tiny/base", "--lora", "Tests/Fixtures/tiny/model.pkl", "--output", merged])
        try #require(m.status == 0, "\(m.stderr)")
        let q = try ReportTests.tool(
            "dloral-convert", ["quantize", merged, "--weights", "int8", "--activations", "int8", "--output", dlrt])
        try #require(q.status == 0, "\(q.stderr)")
        let model = try RuntimeModel(file: try DLRTFile(path: dlrt))
        #expect(model.integerLayers.keys.contains { $0.contains("encoder.down_blocks.0.resnets.0.conv1") })
        #expect(model.integerLayers.keys.contains { $0.contains("decoder.up_blocks.0.resnets.0.conv1") })
        let config = VAEConfig(json: try #require(model.configs["vae"]))
        let encoder = try VAEEncoder(table: model.vae, config: config)
        let decoder = try VAEDecoder(table: model.vae, config: config)

        // The tiny model's W8A8 noise is as large as what tiling changes at a few pixels, so the
        // check is on the root mean square: the tiled W8A8 output is nearer upstream's tiled output
        // than the untiled W8A8 output is (measured: 0.065 against 0.209 for the latents, 0.0112
        // against 0.0214 for the frames).
        func rms(_ a: Tensor, _ b: Tensor) -> Float {
            Float((zip(a.data, b.data).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(a.count)).squareRoot())
        }
        let encoderReference = try VAETilingFixture.file("encoder.safetensors")
        let frames = try VAETilingFixture.frames(encoderReference)
        let latents = try Tensor.load("output.latents", from: encoderReference.tensors)
        let tiledLatents = encoder(frames, tileSize: try VAETilingFixture.tile(encoderReference))
        let (near, far) = (rms(tiledLatents, latents), rms(encoder(frames), latents))
        print("W8A8 tiled VAE encoder: rms \(near) from upstream's tiled latents; untiled \(far)")
        #expect(near * 1.5 < far)

        let decoderReference = try VAETilingFixture.file("decoder.safetensors")
        let z = try Tensor.load("input.latents", from: decoderReference.tensors)
        let decoded = try Tensor.load("output.frames", from: decoderReference.tensors)
        let tiledFrames = decoder(z, tileSize: try VAETilingFixture.tile(decoderReference))
        let (nearFrames, farFrames) = (rms(tiledFrames, decoded), rms(decoder(z), decoded))
        print("W8A8 tiled VAE decoder: rms \(nearFrames) from upstream's tiled frames; untiled \(farFrames)")
        #expect(nearFrames * 1.5 < farFrames)
    }

    @Test("combined GroupNorm statistics: the pixel-weighted mean of the tiles' means and variances")
    func combinedStatistics() {
        // Two tiles of one image, 2 channels in 1 group: tile A 1×2 pixels, tile B 1×1 pixel.
        let a = Tensor(shape: [1, 2, 1, 2], data: [1, 3, 5, 7])  // mean 4, variance 5
        let b = Tensor(shape: [1, 2, 1, 1], data: [2, 4])        // mean 3, variance 1
        let s = GroupNormStatistics.combining([a, b], groups: 1, eps: 0.5)
        // Weights 2/3 and 1/3: mean 11/3, variance 11/3 (the pooled variance would differ).
        #expect(abs(s.mean[0] - 11.0 / 3.0) < 1e-6)
        #expect(abs(s.rstd[0] - Float(1 / (11.0 / 3.0 + 0.5).squareRoot())) < 1e-6)
    }

    @Test("the integer convolution's channels-last GroupNorm takes the same combined statistics")
    func channelsLastStatistics() {
        let x = Tensor(shape: [2, 4, 3, 5], data: (0..<120).map { Float(($0 * 37) % 23) / 7 - 1 })
        let statistics = GroupNormStatistics(groups: 2, mean: [0.5, -0.25, 1, 0], rstd: [2, 0.75, 1.5, 1])
        let weight = Tensor(shape: [4], data: [1, -2, 0.5, 3])
        let bias = Tensor(shape: [4], data: [0, 1, -1, 0.25])
        let nchw = Ops.groupNorm(x, statistics: statistics, weight: weight, bias: bias, silu: true)
        let nhwc = Ops.groupNormNHWC(x, groups: 2, weight: weight, bias: bias, eps: 1e-6, silu: true, statistics: statistics)
        var transposed = [Float](repeating: 0, count: 120)
        for n in 0..<2 { for c in 0..<4 { for p in 0..<15 { transposed[(n * 4 + c) * 15 + p] = nhwc.data[(n * 15 + p) * 4 + c] } } }
        #expect(zip(transposed, nchw.data).allSatisfy { $0.bitPattern == $1.bitPattern })
        // The closed form of one element: image 1, channel 3 (group 1), pixel 0.
        let v = x.data[(1 * 4 + 3) * 15]
        let t = ((v - 0) * 1) * 3 + 0.25
        #expect(abs(nchw.data[(1 * 4 + 3) * 15] - t / (1 + exp(-t))) < 1e-6)
    }
}
