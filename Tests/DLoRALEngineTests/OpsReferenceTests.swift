import DLoRALEngine
import DLoRALFormats
import Foundation
import Testing

/// One case of `Tests/Fixtures/ops/ops.safetensors`, written by PyTorch: inputs `<name>.x`
/// (and `<name>.<arg>`), expected output `<name>.y`, listed in `__metadata__["cases"]`.
struct OpCase: Sendable, CustomTestStringConvertible {
    let name: String
    let op: String
    let params: JSONValue

    var testDescription: String { "\(name) (\(op))" }
}

/// The PyTorch reference file, read once.
enum OpsFixture {
    static let path: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/ops/ops.safetensors").path

    static let file: SafetensorsFile? = try? SafetensorsFile(path: path)

    /// Every case the metadata lists; empty when the file is absent (the closed-form tests
    /// still run).
    static let cases: [OpCase] = {
        guard let file, let text = file.tensors.metadata["cases"],
            let list = (try? StrictJSONParser.parse(text))?.arrayValue
        else { return [] }
        return list.compactMap { entry in
            guard let name = entry["name"]?.stringValue, let op = entry["op"]?.stringValue else { return nil }
            return OpCase(name: name, op: op, params: entry["params"] ?? .object([]))
        }
    }()

    static func tensor(_ c: OpCase, _ arg: String) throws -> Tensor {
        guard let file else { throw EngineError.missingTensor(name: "\(c.name).\(arg) (no fixture file)") }
        return try Tensor.load("\(c.name).\(arg)", from: file.tensors)
    }
}

/// How closely an op must match PyTorch.
enum Tolerance {
    /// Bit-for-bit (pure data movement).
    case exact
    /// Within one ulp of the output's largest magnitude (a fixed-order sum and one division).
    case ulp
    /// `1e-5 × max(1, max|y|)`: float rounding in reductions and transcendental functions.
    case rounding
    /// `rounding` plus two ulps of the largest argument given to sin/cos. For timestep
    /// embeddings `t · freq` is itself only resolved to `ulp(t)` in float32 (6.1e-5 at t = 999),
    /// and libms differ by an ulp in `exp(freq)`, so no float32 implementation can promise more.
    case sinusoid(maxArgument: Float)

    func bound(for expected: Tensor) -> Float {
        switch self {
        case .exact: return 0
        case .ulp: return expected.maxAbs.ulp
        case .rounding: return 1e-5 * max(1, expected.maxAbs)
        case let .sinusoid(maxArgument): return 1e-5 * max(1, expected.maxAbs) + 2 * maxArgument.ulp
        }
    }
}

@Suite("Ops against PyTorch")
struct OpsReferenceTests {
    @Test("the reference file lists its cases")
    func fixturePresent() {
        #expect(OpsFixture.file != nil, "missing \(OpsFixture.path)")
        #expect(!OpsFixture.cases.isEmpty)
    }

    @Test("op matches PyTorch", arguments: OpsFixture.cases)
    func matchesPyTorch(_ c: OpCase) throws {
        guard let (actual, tolerance) = try run(c) else {
            withKnownIssue("\(c.op) is not implemented in DLoRALEngine yet") {
                Issue.record("no engine op for '\(c.op)' (case \(c.name))")
            }
            return
        }
        let expected = try OpsFixture.tensor(c, "y")
        #expect(actual.shape == expected.shape, "\(c.name): shape")
        guard actual.shape == expected.shape else { return }
        let error = actual.maxAbsDifference(expected)
        let bound = tolerance.bound(for: expected)
        print("[ops] \(c.name) \(c.op): max abs error \(error) (bound \(bound), max|y| \(expected.maxAbs))")
        #expect(error <= bound, "\(c.name): max abs error \(error) > \(bound)")
    }

    /// Runs the engine op for a case; nil when the engine has no such op.
    func run(_ c: OpCase) throws -> (Tensor, Tolerance)? {
        let x = try OpsFixture.tensor(c, "x")
        let p = c.params
        func arg(_ name: String) throws -> Tensor { try OpsFixture.tensor(c, name) }
        func optionalArg(_ name: String) -> Tensor? { try? OpsFixture.tensor(c, name) }
        switch c.op {
        case "group_norm":
            let groups = try int(p, "groups")
            return (Ops.groupNorm(x, groups: groups, weight: optionalArg("weight"), bias: optionalArg("bias"),
                                  eps: try float(p, "eps")), .rounding)
        case "layer_norm":
            return (Ops.layerNorm(x, weight: optionalArg("weight"), bias: optionalArg("bias"),
                                  eps: try float(p, "eps")), .rounding)
        case "silu":
            return (Ops.silu(x), .rounding)
        case "gelu":
            return (Ops.gelu(x), .rounding)
        case "geglu":
            return (Ops.geglu(x), .rounding)
        case "softmax":
            return (Ops.softmax(x, axis: p["dim"]?.intValue ?? -1), .rounding)
        case "attention":
            let q = optionalArg("q") ?? x
            return (Ops.attention(q: q, k: try arg("k"), v: try arg("v"), heads: try int(p, "heads")), .rounding)
        case "conv2d":
            return (Ops.conv2d(x, weight: try arg("weight"), bias: optionalArg("bias"),
                               stride: try pair(p, "stride", default: 1),
                               padding: try pair(p, "padding", default: 0)), .rounding)
        case "upsample_nearest2x", "upsample_nearest_size":
            let size = p["size"] == nil ? (x.shape[2] * 2, x.shape[3] * 2) : try pair(p, "size", default: 0)
            return (Ops.upsampleNearest(x, to: size), .exact)
        case "avg_pool2x":
            return (Ops.avgPool2x(x), .ulp)
        case "interp_bicubic":
            return (Ops.interpolateBicubic(x, size: try pair(p, "size", default: 0),
                                           alignCorners: p["align_corners"]?.boolValue ?? false,
                                           scaleFactor: scaleFactor(p)), .rounding)
        case "interp_bilinear":
            return (Ops.interpolateBilinear(x, size: try pair(p, "size", default: 0),
                                            alignCorners: p["align_corners"]?.boolValue ?? false,
                                            scaleFactor: scaleFactor(p)), .rounding)
        case "grid_sample":
            return (Ops.gridSample(x, grid: try arg("grid"), paddingMode: try padding(p),
                                   alignCorners: p["align_corners"]?.boolValue ?? true), .rounding)
        case "flow_warp":
            return (Ops.flowWarp(x, flow: try arg("flow"), paddingMode: try padding(p)), .rounding)
        case "timestep_embedding":
            return (Ops.timestepEmbedding(
                x, dim: try int(p, "dim"), flipSinToCos: p["flip_sin_to_cos"]?.boolValue ?? true,
                downscaleFreqShift: Float(p["downscale_freq_shift"]?.doubleValue ?? 0),
                maxPeriod: Float(p["max_period"]?.doubleValue ?? 10000)), .sinusoid(maxArgument: x.maxAbs))
        case "cfr_attention":
            let weights = Ops.CrossFrameAttentionWeights(
                queryWeight: try arg("query_conv.weight"), queryBias: optionalArg("query_conv.bias"),
                keyWeight: try arg("key_conv.weight"), keyBias: optionalArg("key_conv.bias"),
                valueWeight: try arg("value_conv.weight"), valueBias: optionalArg("value_conv.bias"),
                thresholdWeight: try arg("threshold_fc.weight"), thresholdBias: optionalArg("threshold_fc.bias"),
                outputWeight: try arg("proj_out.weight"), outputBias: optionalArg("proj_out.bias"))
            let y = Ops.crossFrameAttention(
                current: x, previous: try arg("prev"), weights: weights, heads: try int(p, "heads"),
                temperature: try float(p, "temperature"))
            return (y, .rounding)
        default:
            return nil
        }
    }
}

/// A parameter the case needs is absent or has the wrong type.
struct BadParameter: Error, CustomStringConvertible {
    let key: String
    var description: String { "case parameter '\(key)' is missing or malformed" }
}

private func int(_ p: JSONValue, _ key: String) throws -> Int {
    guard let value = p[key]?.intValue else { throw BadParameter(key: key) }
    return value
}

private func float(_ p: JSONValue, _ key: String) throws -> Float {
    guard let value = p[key]?.doubleValue else { throw BadParameter(key: key) }
    return Float(value)
}

/// An `int` or `[int, int]` parameter, as PyTorch accepts for stride, padding and size.
private func pair(_ p: JSONValue, _ key: String, default value: Int) throws -> (Int, Int) {
    guard let item = p[key] else { return (value, value) }
    if let single = item.intValue { return (single, single) }
    guard let list = item.arrayValue, list.count == 2, let a = list[0].intValue, let b = list[1].intValue
    else { throw BadParameter(key: key) }
    return (a, b)
}

private func scaleFactor(_ p: JSONValue) -> (Double, Double)? {
    guard let item = p["scale_factor"] else { return nil }
    if let single = item.doubleValue { return (single, single) }
    if let list = item.arrayValue, list.count == 2, let a = list[0].doubleValue, let b = list[1].doubleValue {
        return (a, b)
    }
    return nil
}

private func padding(_ p: JSONValue) throws -> Ops.GridPadding {
    guard let mode = Ops.GridPadding(rawValue: p["padding_mode"]?.stringValue ?? "zeros") else {
        throw BadParameter(key: "padding_mode")
    }
    return mode
}
