// STAND-INS — DELETE THIS FILE WHEN h-prep (Footage/) AND h-tiles (Pipeline/LatentTiling.swift,
// DLoRALPipeline.encode / restorePair) ARE MERGED. They only let Run/ compile against the names of
// INTERFACES.md meanwhile: sizes are right, pixels are NOT upstream's (nearest-neighbour instead of
// Pillow's filters, no colour fix, no tiling). Nothing here is done.
import DLoRALFormats

public struct FramePreparation: Sendable, Equatable {
    public var upscale = 4
    public var processSize = 512
    public init(upscale: Int = 4, processSize: Int = 512) {
        self.upscale = upscale
        self.processSize = processSize
    }

    public func preparedSize(width: Int, height: Int) -> (width: Int, height: Int, enlarged: Bool) {
        var (w, h) = (width, height)
        let least = processSize / upscale
        let enlarged = w < least || h < least
        if enlarged {
            let scale = Double(least) / Double(min(w, h))
            (w, h) = (Int(scale * Double(w)), Int(scale * Double(h)))
        }
        let (uw, uh) = (w * upscale, h * upscale)
        return (uw - uw % 8, uh - uh % 8, enlarged)
    }

    public func prepare(_ image: RGBImage) -> PreparedFrame {
        let size = preparedSize(width: image.width, height: image.height)
        var out = RGBImage(width: size.width, height: size.height, fill: RGB(0, 0, 0))
        for y in 0..<size.height {
            for x in 0..<size.width {
                out[x, y] = image[min(x * image.width / size.width, image.width - 1), min(y * image.height / size.height, image.height - 1)]
            }
        }
        return PreparedFrame(image: out, originalWidth: image.width, originalHeight: image.height, enlarged: size.enlarged)
    }

    public func finish(_ output: RGBImage, for frame: PreparedFrame) -> RGBImage {
        guard frame.enlarged else { return output }
        let (w, h) = (frame.originalWidth * upscale, frame.originalHeight * upscale)
        var out = RGBImage(width: w, height: h, fill: RGB(0, 0, 0))
        for y in 0..<h {
            for x in 0..<w { out[x, y] = output[min(x * output.width / w, output.width - 1), min(y * output.height / h, output.height - 1)] }
        }
        return out
    }

    public static func modelInput(_ image: RGBImage) -> Tensor {
        let plane = image.width * image.height
        var data = [Float](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            for c in 0..<3 { data[c * plane + i] = Float(image.pixels[i * 3 + c]) / 255 * 2 - 1 }
        }
        return Tensor(shape: [1, 3, image.height, image.width], data: data)
    }

    public static func outputImage(_ frames: Tensor, frame: Int) -> RGBImage {
        let (h, w) = (frames.shape[2], frames.shape[3])
        let plane = h * w
        var pixels = [UInt8](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            for c in 0..<3 {
                let x = frames.data[(frame * 3 + c) * plane + i] * 0.5 + 0.5
                pixels[i * 3 + c] = UInt8(max(0, min(255, x * 255)))
            }
        }
        return RGBImage(width: w, height: h, pixels: pixels)
    }
}

public struct PreparedFrame: Sendable {
    public var image: RGBImage
    public var originalWidth: Int
    public var originalHeight: Int
    public var enlarged: Bool
}

public enum ColorFixMode: String, Sendable, CaseIterable, Codable { case adain, wavelet, none }

public enum ColorFix {
    public static func apply(_ mode: ColorFixMode, target: RGBImage, source: RGBImage) -> RGBImage { target }
}

public struct TilingOptions: Sendable, Equatable, Codable {
    public var latentTile = 96, latentOverlap = 32, vaeEncoderTile = 1024, vaeDecoderTile = 224
    public init(latentTile: Int = 96, latentOverlap: Int = 32, vaeEncoderTile: Int = 1024, vaeDecoderTile: Int = 224) {
        (self.latentTile, self.latentOverlap, self.vaeEncoderTile, self.vaeDecoderTile) = (latentTile, latentOverlap, vaeEncoderTile, vaeDecoderTile)
    }
    public static let untiled = TilingOptions(latentTile: Int.max / 4, latentOverlap: 0, vaeEncoderTile: Int.max / 4, vaeDecoderTile: Int.max / 4)
}

extension DLoRALPipeline {
    public func encode(_ frames: Tensor, tiling: TilingOptions) -> Tensor { encoder(frames) }

    public func restorePair(frames: Tensor, latents: Tensor, promptEmbeds: Tensor, tiling: TilingOptions) throws -> Outputs {
        let aligned: Tensor, fused: Tensor
        if let cfr {
            let out = cfr.run(frames: frames, latents: latents)
            (aligned, fused) = (out.aligned, out.fused)
        } else {
            (aligned, fused) = (latents.frames(0..<1), latents.frames(1..<2))
        }
        let unetInput = Tensor.concatenateChannels(aligned, fused)
        let unetOutput = try unet(unetInput, timestep: Self.timestep, encoderHiddenStates: promptEmbeds)
        var x0 = fused
        for i in x0.data.indices { x0.data[i] -= unetOutput.data[i] }
        return Outputs(latents: latents, unetInput: unetInput, unetOutput: unetOutput, x0: x0, frames: VAEDecoder.clampFrames(decoder(x0)))
    }
}
