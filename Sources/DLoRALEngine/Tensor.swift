import DLoRALFormats

/// An owned, contiguous fp32 tensor in row-major order.
///
/// Images are NCHW (`[B, C, H, W]`), token sequences `[B, T, C]`, as in PyTorch. The engine's
/// operations take and return these by value; storage is a Swift array, so copies are lazy.
public struct Tensor: Sendable, Equatable {
    /// Extent of each axis, outermost first.
    public internal(set) var shape: [Int]
    /// Elements in row-major order; `data.count == shape.reduce(1, *)`.
    public internal(set) var data: [Float]

    /// A tensor over `data` with `shape`.
    /// - Precondition: the element counts agree and no extent is negative.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
        precondition(
            shape.reduce(1, *) == data.count,
            "shape \(shape) holds \(shape.reduce(1, *)) elements, data has \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// A tensor of `shape` filled with `value`.
    public init(repeating value: Float, shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
        self.shape = shape
        self.data = [Float](repeating: value, count: shape.reduce(1, *))
    }

    /// A tensor of `shape` whose every element `fill` writes (the storage is not zeroed first, so
    /// big activations are touched once, not twice).
    /// - Precondition: `fill` writes all `shape.reduce(1, *)` elements.
    init(shape: [Int], fill: (UnsafeMutableBufferPointer<Float>) -> Void) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
        let count = shape.reduce(1, *)
        self.shape = shape
        self.data = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(buffer)
            initialized = count
        }
    }

    /// A tensor of zeros of `shape`.
    public init(zeros shape: [Int]) {
        self.init(repeating: 0, shape: shape)
    }

    /// Copies a formats-layer view (any dtype, contiguous or strided) into fp32, then lets the
    /// kernel drop the view's pages if it maps a file (they are read again if touched later).
    public init(_ view: TensorView) {
        if let rows = view.int8Rows, let bytes = view.contiguousBytes, let base = bytes.baseAddress {
            // An int8 rows_k32 weight: ŵ = q · s in the PyTorch layout.
            self.shape = rows.logicalShape
            self.data = rows.dequantize(base.assumingMemoryBound(to: Int8.self))
        } else {
            self.shape = view.shape
            self.data = view.toFloat32()
        }
        view.storage.releasePages()
    }

    /// Loads tensor `name` from `table`.
    /// - Throws: `EngineError.missingTensor` when the table has no such name.
    public static func load(_ name: String, from table: TensorTable) throws -> Tensor {
        guard let view = table[name] else { throw EngineError.missingTensor(name: name) }
        return Tensor(view)
    }

    /// Number of elements.
    public var count: Int { data.count }

    /// Number of axes.
    public var rank: Int { shape.count }

    /// The same elements viewed with `newShape`; one extent may be `-1` (inferred).
    /// - Throws: `EngineError.shapeMismatch` when the element counts cannot agree.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var resolved = newShape
        let inferred = newShape.indices.filter { newShape[$0] == -1 }
        let known = newShape.filter { $0 != -1 }
        guard inferred.count <= 1, known.allSatisfy({ $0 >= 0 }) else {
            throw EngineError.shapeMismatch(
                operation: "reshape", expected: "at most one -1 and no other negative extent",
                actual: newShape)
        }
        let knownCount = known.reduce(1, *)
        if let axis = inferred.first {
            guard knownCount > 0, count % knownCount == 0 else {
                throw EngineError.shapeMismatch(
                    operation: "reshape", expected: "a shape dividing \(count) elements", actual: newShape)
            }
            resolved[axis] = count / knownCount
        }
        guard resolved.reduce(1, *) == count else {
            throw EngineError.shapeMismatch(
                operation: "reshape", expected: "\(count) elements (from \(shape))", actual: newShape)
        }
        return Tensor(shape: resolved, data: data)
    }

    /// Largest absolute element (0 for an empty tensor).
    public var maxAbs: Float {
        data.reduce(0) { max($0, abs($1)) }
    }

    /// Largest absolute elementwise difference from `other`, which must have the same shape.
    /// NaN anywhere makes the result NaN, so a comparison against a tolerance fails.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(shape == other.shape, "comparing \(shape) with \(other.shape)")
        var worst: Float = 0
        for i in 0..<count {
            let d = abs(data[i] - other.data[i])
            if d.isNaN { return .nan }
            worst = max(worst, d)
        }
        return worst
    }

    /// Splits an NCHW shape into its four extents.
    /// - Precondition: the tensor has rank 4.
    func nchw(_ operation: String) -> (n: Int, c: Int, h: Int, w: Int) {
        precondition(rank == 4, "\(operation) expects an NCHW tensor, got shape \(shape)")
        return (shape[0], shape[1], shape[2], shape[3])
    }
}

/// Errors the engine reports for bad inputs it did not create itself.
public enum EngineError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A tensor the caller named is absent from the table it was looked up in.
    case missingTensor(name: String)
    /// An input's shape does not fit the operation; `expected` says what would.
    case shapeMismatch(operation: String, expected: String, actual: [Int])

    public var description: String {
        switch self {
        case let .missingTensor(name):
            return "tensor '\(name)' is not in the file"
        case let .shapeMismatch(operation, expected, actual):
            return "\(operation): got shape \(actual), expected \(expected)"
        }
    }
}
