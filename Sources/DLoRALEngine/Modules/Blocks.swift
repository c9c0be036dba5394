import DLoRALFormats

// Building blocks shared by the VAE and (later) the UNet, mirroring diffusers' modules of the
// same names. Each is built from a `TensorTable` of canonical (diffusers) weight names and a
// name prefix such as `encoder.down_blocks.0.resnets.0` (no trailing dot).

/// Joins a module prefix and a parameter name with a dot (an empty prefix adds none).
@inline(__always)
func blocksName(_ prefix: String, _ name: String) -> String {
    prefix.isEmpty ? name : prefix + "." + name
}

/// `a + b` elementwise for tensors of the same shape (written into a new tensor, on all cores).
func blocksAdd(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "add: \(a.shape) vs \(b.shape)")
    return Tensor(shape: a.shape) { dst in
        a.data.withUnsafeBufferPointer { x in
            b.data.withUnsafeBufferPointer { y in
                let (out, left, right) = (dst.baseAddress, x.baseAddress, y.baseAddress)
                Ops.parallelRanges(dst.count, work: dst.count) { lo, hi in
                    for i in lo..<hi { out![i] = left![i] + right![i] }
                }
            }
        }
    }
}

/// A layer's weight: fp32 activations with an fp32 or fp16 weight read in place (int8 weights
/// without integer activations are dequantized to fp32 once), or an int8 matrix used in place
/// with integer activations.
public enum BlocksWeight: Sendable {
    case float(FloatWeight)
    case integer(IntegerWeight)

    /// Loads `name`: the integer form when the table's view is an int8 rows matrix whose layer has
    /// an activation precision, fp32 otherwise.
    static func load(_ name: String, from table: TensorTable) throws -> BlocksWeight {
        guard let view = table[name] else { throw EngineError.missingTensor(name: name) }
        if let integer = IntegerWeight(view, name: name) { return .integer(integer) }
        return .float(FloatWeight(view))
    }

    /// An integer weight whose layer quantizes its activations to int8 per row (one scale per
    /// output channel: the projections whose attention logits run in int8, Formats/dlrt.md §4.2).
    public var int8RowActivations: Bool {
        if case .integer(let weight) = self { return weight.activations == .int8 && weight.block == 0 }
        return false
    }

    /// The PyTorch shape.
    public var shape: [Int] {
        switch self {
        case .float(let weight): return weight.shape
        case .integer(let weight): return weight.info.logicalShape
        }
    }
}

/// A `torch.nn.Conv2d` (groups 1, dilation 1) with its weights.
public struct BlocksConv2d: Sendable {
    public let kernel: BlocksWeight
    public let bias: Tensor?
    public let stride: (Int, Int)
    public let padding: (Int, Int)

    /// Loads `<prefix>.weight` and, when present, `<prefix>.bias`.
    public init(
        table: TensorTable, prefix: String, stride: (Int, Int) = (1, 1), padding: (Int, Int)? = nil
    ) throws {
        kernel = try BlocksWeight.load(blocksName(prefix, "weight"), from: table)
        let shape = kernel.shape
        guard shape.count == 4 else {
            throw EngineError.shapeMismatch(
                operation: "conv2d \(prefix)", expected: "[O, C, kh, kw]", actual: shape)
        }
        let biasName = blocksName(prefix, "bias")
        bias = table[biasName] == nil ? nil : try Tensor.load(biasName, from: table)
        self.stride = stride
        // Default: "same" padding for odd kernels at stride 1 (kernel / 2).
        self.padding = padding ?? (shape[2] / 2, shape[3] / 2)
    }


    public var inChannels: Int { kernel.shape[1] }
    public var outChannels: Int { kernel.shape[0] }

    /// `self(norm(x, silu: silu, statistics: statistics))`. On the integer path (outside
    /// calibration) the GroupNorm writes its output channels-last for the convolution in the same
    /// pass, instead of NCHW and a transposed copy: the same bits, one pass over the activation fewer.
    public func callAsFunction(
        normalizing x: Tensor, with norm: BlocksGroupNorm, silu: Bool, statistics: GroupNormStatistics? = nil
    ) -> Tensor {
        if case .integer(let weight) = kernel, ActivationProbe.current == nil, x.rank == 4 {
            // Normalised channels-last band by band, as the integer layer reads it: the same bits.
            return Ops.conv2d(normalizing: x, groups: norm.groups, scale: norm.weight, shift: norm.bias, eps: norm.eps,
                              silu: silu, statistics: statistics, weight: weight, bias: bias, stride: stride, padding: padding)
        }
        if case .float(let weight) = kernel, x.rank == 4 {
            // The normalised input is made band by band, never whole: the same bits.
            return Ops.conv2d(normalizing: x, groups: norm.groups, scale: norm.weight, shift: norm.bias, eps: norm.eps,
                              silu: silu, statistics: statistics, weight: weight, bias: bias, stride: stride, padding: padding)
        }
        return self(norm(x, silu: silu, statistics: statistics))
    }

    /// `self(Ops.upsampleNearest(x, to: size))`. The upsampled input is gathered band by band from
    /// `x` and never made whole (except to calibrate an integer layer): the same bits, without an
    /// activation four times the size of `x`.
    public func callAsFunction(upsampling x: Tensor, to size: (h: Int, w: Int)) -> Tensor {
        switch kernel {
        case .integer(let weight) where ActivationProbe.current == nil && x.rank == 4:
            return Ops.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, upsampledTo: size)
        case .float(let weight) where x.rank == 4:
            return Ops.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, upsampledTo: size)
        default:
            return self(Ops.upsampleNearest(x, to: size))
        }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch kernel {
        case .float(let weight):
            return Ops.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
        case .integer(let weight):
            if let probe = ActivationProbe.current {
                return probe.measure(weight) {
                    Ops.conv2d(x, weight: $0, bias: bias, stride: stride, padding: padding)
                }
            }
            return Ops.conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
        }
    }
}

/// A `torch.nn.Linear` with its weights.
public struct BlocksLinear: Sendable {
    public let kernel: BlocksWeight
    public let bias: Tensor?

    public init(table: TensorTable, prefix: String) throws {
        kernel = try BlocksWeight.load(blocksName(prefix, "weight"), from: table)
        guard kernel.shape.count == 2 else {
            throw EngineError.shapeMismatch(operation: "linear \(prefix)", expected: "[out, in]", actual: kernel.shape)
        }
        let biasName = blocksName(prefix, "bias")
        bias = table[biasName] == nil ? nil : try Tensor.load(biasName, from: table)
    }

    public var outFeatures: Int { kernel.shape[0] }
    public var inFeatures: Int { kernel.shape[1] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch kernel {
        case .float(let weight): return Ops.linear(x, weight: weight, bias: bias)
        case .integer(let weight):
            if let probe = ActivationProbe.current {
                return probe.measure(weight) { Ops.linear(x, weight: $0, bias: bias) }
            }
            return Ops.linear(x, weight: weight, bias: bias)
        }
    }
}

/// A `torch.nn.GroupNorm` with its affine weights.
public struct BlocksGroupNorm: Sendable {
    public let weight: Tensor?
    public let bias: Tensor?
    public let groups: Int
    public let eps: Float

    public init(table: TensorTable, prefix: String, groups: Int, eps: Float) throws {
        let w = blocksName(prefix, "weight")
        let b = blocksName(prefix, "bias")
        weight = table[w] == nil ? nil : try Tensor.load(w, from: table)
        bias = table[b] == nil ? nil : try Tensor.load(b, from: table)
        guard weight != nil || bias != nil else { throw EngineError.missingTensor(name: w) }
        let channels = (weight ?? bias)!.count
        guard groups > 0, channels % groups == 0 else {
            throw EngineError.shapeMismatch(
                operation: "GroupNorm \(prefix) with \(groups) groups (norm_num_groups)",
                expected: "a channel count divisible by \(groups)", actual: [channels])
        }
        self.groups = groups
        self.eps = eps
    }

    /// - Parameters:
    ///   - silu: apply SiLU in the same pass (GroupNorm → SiLU).
    ///   - statistics: the mean and rstd to normalise with instead of `x`'s own (a tiled VAE's
    ///     statistics over all tiles); nil for `torch.nn.GroupNorm` itself.
    public func callAsFunction(_ x: Tensor, silu: Bool = false, statistics: GroupNormStatistics? = nil) -> Tensor {
        if let statistics {
            precondition(statistics.groups == groups, "GroupNorm with \(groups) groups given statistics of \(statistics.groups)")
            return Ops.groupNorm(x, statistics: statistics, weight: weight, bias: bias, silu: silu)
        }
        return Ops.groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps, silu: silu)
    }

    /// The statistics of `tiles` (parts of the same images) combined as VAEHook combines them; see
    /// `GroupNormStatistics.combining`.
    public func statistics(combining tiles: [Tensor]) -> GroupNormStatistics {
        GroupNormStatistics.combining(tiles, groups: groups, eps: eps)
    }
}

/// diffusers `ResnetBlock2D` (time_embedding_norm "default", output_scale_factor 1, SiLU):
/// `norm1 → SiLU → conv1 → (+ time_emb_proj(SiLU(temb)) per channel) → norm2 → SiLU → (dropout)
/// → conv2`, plus the input (through `conv_shortcut`, 1×1, when the table has one).
public struct ResnetBlock2D: Sendable {
    public let norm1: BlocksGroupNorm
    public let conv1: BlocksConv2d
    public let timeEmbeddingProjection: BlocksLinear?
    public let norm2: BlocksGroupNorm
    public let conv2: BlocksConv2d
    public let shortcut: BlocksConv2d?

    /// - Parameters:
    ///   - prefix: e.g. `encoder.down_blocks.0.resnets.0`.
    ///   - groups, eps: GroupNorm parameters for both norms (VAE: config groups, 1e-6).
    /// `time_emb_proj` and `conv_shortcut` are used when present in `table`.
    public init(table: TensorTable, prefix: String, groups: Int, eps: Float) throws {
        norm1 = try BlocksGroupNorm(table: table, prefix: blocksName(prefix, "norm1"), groups: groups, eps: eps)
        conv1 = try BlocksConv2d(table: table, prefix: blocksName(prefix, "conv1"))
        norm2 = try BlocksGroupNorm(table: table, prefix: blocksName(prefix, "norm2"), groups: groups, eps: eps)
        conv2 = try BlocksConv2d(table: table, prefix: blocksName(prefix, "conv2"))
        let temb = blocksName(prefix, "time_emb_proj")
        timeEmbeddingProjection =
            table[blocksName(temb, "weight")] == nil ? nil : try BlocksLinear(table: table, prefix: temb)
        let sc = blocksName(prefix, "conv_shortcut")
        shortcut =
            table[blocksName(sc, "weight")] == nil
            ? nil : try BlocksConv2d(table: table, prefix: sc, padding: (0, 0))
        if shortcut == nil && conv1.inChannels != conv2.outChannels {
            throw EngineError.missingTensor(name: blocksName(sc, "weight"))
        }
    }

    public var inChannels: Int { conv1.inChannels }
    public var outChannels: Int { conv2.outChannels }

    /// - Parameters:
    ///   - x: `[N, Cin, H, W]`.
    ///   - timeEmbedding: `[N, E]` or `[1, E]` (broadcast over the batch); ignored when the block
    ///     has no `time_emb_proj`, required when it has one.
    /// - Returns: `[N, Cout, H, W]`.
    public func callAsFunction(_ x: Tensor, timeEmbedding: Tensor? = nil) -> Tensor {
        var h = conv1(normalizing: x, with: norm1, silu: true)
        if let projection = timeEmbeddingProjection {
            guard let timeEmbedding else { preconditionFailure("ResnetBlock2D with time_emb_proj needs a time embedding") }
            let t = projection(Ops.silu(timeEmbedding))  // [N or 1, Cout]
            let (n, c, hh, ww) = h.nchw("ResnetBlock2D")
            precondition(t.rank == 2 && t.shape[1] == c && (t.shape[0] == n || t.shape[0] == 1),
                         "time embedding projection \(t.shape) does not fit \(h.shape)")
            let plane = hh * ww
            h.data.withUnsafeMutableBufferPointer { dst in
                for b in 0..<n {
                    let row = t.shape[0] == 1 ? 0 : b
                    for ch in 0..<c {
                        let v = t.data[row * c + ch]
                        let base = (b * c + ch) * plane
                        for i in base..<(base + plane) { dst[i] += v }
                    }
                }
            }
        }
        h = conv2(normalizing: h, with: norm2, silu: true)
        let residual = shortcut.map { $0(x) } ?? x
        return blocksAdd(residual, h)
    }
}

/// diffusers `Downsample2D` with a convolution (3×3, stride 2).
public struct Downsample2D: Sendable {
    public enum Padding: Sendable, Equatable {
        /// VAE (`padding=0`): zero-pad right and bottom by one, then convolve without padding.
        case asymmetric
        /// UNet (`padding=1`): symmetric padding inside the convolution.
        case symmetric(Int)
    }

    public let conv: BlocksConv2d
    public let padding: Padding

    /// Loads `<prefix>.conv.{weight,bias}`.
    public init(table: TensorTable, prefix: String, padding: Padding) throws {
        let p: (Int, Int)
        switch padding {
        case .asymmetric: p = (0, 0)
        case let .symmetric(v): p = (v, v)
        }
        conv = try BlocksConv2d(table: table, prefix: blocksName(prefix, "conv"), stride: (2, 2), padding: p)
        self.padding = padding
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        switch padding {
        case .asymmetric: return conv(Self.padRightBottom(x))
        case .symmetric: return conv(x)
        }
    }

    /// `F.pad(x, (0, 1, 0, 1))` with zeros.
    static func padRightBottom(_ x: Tensor) -> Tensor {
        let (n, c, h, w) = x.nchw("Downsample2D pad")
        let (ho, wo) = (h + 1, w + 1)
        var out = Tensor(zeros: [n, c, ho, wo])
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for plane in 0..<(n * c) {
                    for y in 0..<h {
                        let s = plane * h * w + y * w
                        let d = plane * ho * wo + y * wo
                        for i in 0..<w { dst[d + i] = src[s + i] }
                    }
                }
            }
        }
        return out
    }
}

/// diffusers `Upsample2D` with a convolution: nearest ×2 (or to an explicit size), then 3×3 conv
/// with padding 1.
public struct Upsample2D: Sendable {
    public let conv: BlocksConv2d

    /// Loads `<prefix>.conv.{weight,bias}`.
    public init(table: TensorTable, prefix: String) throws {
        conv = try BlocksConv2d(table: table, prefix: blocksName(prefix, "conv"), padding: (1, 1))
    }

    /// - Parameter size: output spatial size before the conv; nil for ×2.
    public func callAsFunction(_ x: Tensor, size: (h: Int, w: Int)? = nil) -> Tensor {
        let (_, _, h, w) = x.nchw("Upsample2D")
        let target = size ?? (h * 2, w * 2)
        return conv(upsampling: x, to: target)
    }
}
