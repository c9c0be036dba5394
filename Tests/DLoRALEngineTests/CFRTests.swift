import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// The tiny CFR fixtures written by Tools/fixtures/generate.py (PyTorch, dloral_cfr.py):
/// `cfr.safetensors` (DLoRAL `state_dict_bpp`, inference subset), `cfr_debug.safetensors`
/// (`debug.{lq_frames,flows,aligned_prev,fused,latents}`) and `reference_full.safetensors`
/// (`input.frames`, [3, 3, 64, 320] in [-1, 1]).
enum CFRFixture {
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny")

    static func open(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: directory.appendingPathComponent(name).path)
    }

    static let weights: Result<SafetensorsFile, Error> = Result { try open("cfr.safetensors") }
    static let debug: Result<SafetensorsFile, Error> = Result { try open("cfr_debug.safetensors") }
    static let reference: Result<SafetensorsFile, Error> = Result { try open("reference_full.safetensors") }

    static func model() throws -> CrossFrameRetrieval {
        try CrossFrameRetrieval(from: weights.get().tensors)
    }

    static func debugTensor(_ name: String) throws -> Tensor {
        try Tensor.load("debug.\(name)", from: debug.get().tensors)
    }

    static func frames() throws -> Tensor {
        try Tensor.load("input.frames", from: reference.get().tensors)
    }

    /// `x[index]` along the first axis, keeping it (`x[index:index+1]`).
    static func item(_ x: Tensor, _ index: Int) throws -> Tensor {
        let size = x.shape.dropFirst().reduce(1, *)
        var shape = x.shape
        shape[0] = 1
        return Tensor(shape: shape, data: Array(x.data[(index * size)..<((index + 1) * size)]))
    }

    static func concat(_ parts: [Tensor]) -> Tensor {
        var shape = parts[0].shape
        shape[0] = parts.count
        return Tensor(shape: shape, data: parts.flatMap(\.data))
    }
}

/// Bounds: the brief's 1e-4 absolute for every stage, flows included. (SpyNet's 30 7×7
/// convolutions over 6 coarse-to-fine levels could amplify float32 summation-order differences,
/// but the measured flow error is below 1e-6 px, so no looser bound is needed.)
enum CFRTolerance {
    static let absolute: Float = 1e-4
    static func flows(_ expected: Tensor) -> Float { absolute }
}

@Suite("Cross-Frame Retrieval against PyTorch")
struct CFRTests {
    @Test("weights load with DLoRAL's names")
    func loads() throws {
        let model = try CFRFixture.model()
        #expect(model.heads == 9)
        #expect(model.attention.queryWeight.shape == [576, 4, 1, 1])
        #expect(model.attention.thresholdWeight.shape == [1, 64])
    }

    @Test("a missing SpyNet tensor is reported by name")
    func missingTensor() throws {
        var table = try CFRFixture.weights.get().tensors
        table.remove("spynet.basic_module.3.basic_module.2.conv.weight")
        #expect(throws: EngineError.missingTensor(name: "spynet.basic_module.3.basic_module.2.conv.weight")) {
            _ = try SpyNet(from: table)
        }
    }

    @Test("LQ frames: bicubic ×1/8 (scale_factor 0.125)")
    func lqFrames() throws {
        let expected = try CFRFixture.debugTensor("lq_frames")
        let actual = CrossFrameRetrieval.downsampleLQ(try CFRFixture.frames())
        #expect(actual.shape == expected.shape)
        let error = actual.maxAbsDifference(expected)
        print("CFR lq_frames max abs error: \(error) (max |y| \(expected.maxAbs))")
        #expect(error <= CFRTolerance.absolute)
    }

    @Test("SpyNet flows on the reference LQ frames")
    func flows() throws {
        let model = try CFRFixture.model()
        let lq = try CFRFixture.debugTensor("lq_frames")
        let expected = try CFRFixture.debugTensor("flows")
        let actual = model.flows(lq: lq)
        #expect(actual.shape == expected.shape)
        #expect(actual.shape == [2, 2, 8, 40])
        let error = actual.maxAbsDifference(expected)
        print("CFR flows max abs error: \(error) (max |flow| \(expected.maxAbs))")
        #expect(error <= CFRTolerance.flows(expected))
        // The flow is non-trivial (else the test would prove little).
        #expect(expected.maxAbs > 0.1)
    }

    @Test("SpyNet.flow pair by pair equals the batched flows")
    func flowPerPair() throws {
        let model = try CFRFixture.model()
        let lq = try CFRFixture.debugTensor("lq_frames")
        let expected = try CFRFixture.debugTensor("flows")
        for t in 1..<3 {
            let flow = model.spynet.flow(ref: try CFRFixture.item(lq, t), supp: try CFRFixture.item(lq, t - 1))
            #expect(flow.shape == [1, 2, 8, 40])
            #expect(flow.maxAbsDifference(try CFRFixture.item(expected, t - 1)) <= CFRTolerance.flows(expected))
        }
    }

    @Test("aligned previous latent: warp of debug.latents[t−1] by debug.flows")
    func alignedPrevious() throws {
        let model = try CFRFixture.model()
        let latents = try CFRFixture.debugTensor("latents")
        let flows = try CFRFixture.debugTensor("flows")
        let expected = try CFRFixture.debugTensor("aligned_prev")
        var parts: [Tensor] = []
        for t in 1..<3 {
            parts.append(model.align(previous: try CFRFixture.item(latents, t - 1), flow: try CFRFixture.item(flows, t - 1)))
        }
        let actual = CFRFixture.concat(parts)
        let error = actual.maxAbsDifference(expected)
        print("CFR aligned_prev max abs error: \(error) (max |y| \(expected.maxAbs))")
        #expect(error <= CFRTolerance.absolute)
    }

    @Test("fused latent: attention on debug.latents[t] and debug.aligned_prev")
    func fused() throws {
        let model = try CFRFixture.model()
        let latents = try CFRFixture.debugTensor("latents")
        let aligned = try CFRFixture.debugTensor("aligned_prev")
        let expected = try CFRFixture.debugTensor("fused")
        var parts: [Tensor] = []
        for t in 1..<3 {
            parts.append(model.fuse(current: try CFRFixture.item(latents, t), alignedPrevious: try CFRFixture.item(aligned, t - 1)))
        }
        let actual = CFRFixture.concat(parts)
        let error = actual.maxAbsDifference(expected)
        let delta = CFRFixture.concat([try CFRFixture.item(latents, 1), try CFRFixture.item(latents, 2)])
            .maxAbsDifference(expected)
        print("CFR fused max abs error: \(error) (max |y| \(expected.maxAbs), attention contribution \(delta))")
        #expect(error <= CFRTolerance.absolute)
        #expect(delta > 10 * CFRTolerance.absolute, "the attention should change the latent measurably")
    }

    @Test("whole chain from input.frames and debug.latents")
    func wholeChain() throws {
        let model = try CFRFixture.model()
        let frames = try CFRFixture.frames()
        let latents = try CFRFixture.debugTensor("latents")
        let result = model.run(frames: frames, latents: latents)
        let stages: [(String, Tensor, Float)] = [
            ("lq_frames", result.lq, CFRTolerance.absolute),
            ("flows", result.flows, CFRTolerance.flows(try CFRFixture.debugTensor("flows"))),
            ("aligned_prev", result.aligned, CFRTolerance.absolute),
            ("fused", result.fused, CFRTolerance.absolute),
        ]
        for (name, actual, bound) in stages {
            let expected = try CFRFixture.debugTensor(name)
            #expect(actual.shape == expected.shape, "\(name)")
            let error = actual.maxAbsDifference(expected)
            print("CFR chain \(name) max abs error: \(error)")
            #expect(error <= bound, "\(name): \(error) > \(bound)")
        }
        // The per-pair entry point agrees with the batched run.
        let step = model.step(
            previousFrame: try CFRFixture.item(frames, 0), currentFrame: try CFRFixture.item(frames, 1),
            previousLatent: try CFRFixture.item(latents, 0), currentLatent: try CFRFixture.item(latents, 1))
        #expect(step.fused.maxAbsDifference(try CFRFixture.item(result.fused, 0)) <= 1e-6)
    }
}
