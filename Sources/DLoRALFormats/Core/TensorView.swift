/// What an int8 `rows_k32` weight view needs besides its bytes: its scales (one per output channel
/// for `int8_channel`, one per output channel and block for `int8_block`) and the precision its
/// layer quantizes activations to.
public struct Int8RowsInfo: Sendable {
    /// The weight's PyTorch shape ([N, C] or [N, C, KH, KW]).
    public let logicalShape: [Int]
    /// K = product of `logicalShape[1...]`, and K padded to a multiple of 32.
    public let k: Int
    public let kPadded: Int
    /// Columns per scale along K for `int8_block` (32 or 64); 0 for `int8_channel`.
    public let block: Int
    /// float32 scales: one per row (output channel), or [rows][kPadded / block] with a block.
    public let scales: [Float]
    /// nil: the engine dequantizes and runs this layer with fp32 activations.
    public var activations: DLRTActivations?

    public init(logicalShape: [Int], k: Int, kPadded: Int, block: Int = 0, scales: [Float], activations: DLRTActivations?) {
        self.logicalShape = logicalShape
        self.k = k
        self.kPadded = kPadded
        self.block = block
        self.scales = scales
        self.activations = activations
    }

    /// ŵ = q · s in the logical (PyTorch) layout.
    public func dequantize(_ q: UnsafePointer<Int8>) -> [Float] {
        Int8Rows.dequantize(q, shape: logicalShape, k: k, kPadded: kPadded, block: block, scales: scales)
    }
}

/// A typed, shaped window onto tensor bytes, without copying them.
///
/// Most views are contiguous row-major. PyTorch pickles can also describe strided views with a
/// storage offset; those keep their element strides and are made contiguous only on conversion.
public struct TensorView: Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let storage: TensorStorage
    /// Byte offset of element 0 within `storage`.
    public let byteOffset: Int
    /// Element strides, row-major contiguous unless the source said otherwise.
    public let strides: [Int]
    /// Set when the view is the int8 `rows_k32` matrix of a `.dlrt` weight ([N, Kp] int8): its
    /// logical shape, scales and activation precision (Formats/dlrt.md §4).
    public var int8Rows: Int8RowsInfo?

    /// A contiguous view; the caller has checked that the bytes fit.
    public init(dtype: DType, shape: [Int], storage: TensorStorage, byteOffset: Int = 0) {
        self.init(
            dtype: dtype, shape: shape, storage: storage, byteOffset: byteOffset,
            strides: TensorView.contiguousStrides(shape))
    }

    /// A possibly strided view; the caller has checked that every addressed element fits.
    public init(dtype: DType, shape: [Int], storage: TensorStorage, byteOffset: Int, strides: [Int]) {
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
        self.byteOffset = byteOffset
        self.strides = strides
    }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running *= max(shape[axis], 1)
        }
        return strides
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Bytes of the tensor's elements (as stored, contiguous).
    public var byteCount: Int { elementCount * dtype.byteSize }

    public var isContiguous: Bool {
        elementCount <= 1 || strides == TensorView.contiguousStrides(shape)
            || zip(shape, zip(strides, TensorView.contiguousStrides(shape))).allSatisfy {
                $0.0 == 1 || $0.1.0 == $0.1.1
            }
    }

    /// The raw bytes of a contiguous view, pointing into the storage (no copy).
    public var contiguousBytes: UnsafeRawBufferPointer? {
        guard isContiguous else { return nil }
        guard let base = storage.bytes.baseAddress else {
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
        return UnsafeRawBufferPointer(start: base + byteOffset, count: byteCount)
    }

    /// Byte offset (within storage) of each element in row-major order.
    func forEachElementOffset(_ body: (Int) -> Void) {
        let count = elementCount
        if count == 0 { return }
        if isContiguous {
            let size = dtype.byteSize
            for i in 0..<count { body(byteOffset + i * size) }
            return
        }
        var index = [Int](repeating: 0, count: shape.count)
        for _ in 0..<count {
            var element = 0
            for axis in 0..<shape.count { element += index[axis] * strides[axis] }
            body(byteOffset + element * dtype.byteSize)
            var axis = shape.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < shape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
    }

    /// Copies the elements, in row-major order, as contiguous bytes of the same dtype.
    public func contiguousData() -> [UInt8] {
        if let bytes = contiguousBytes { return [UInt8](bytes) }
        var out = [UInt8]()
        out.reserveCapacity(byteCount)
        let size = dtype.byteSize
        let base = storage.bytes
        forEachElementOffset { offset in
            for b in 0..<size { out.append(base[offset + b]) }
        }
        return out
    }

    /// Converts every element to `Float` (row-major). Integers and bools convert exactly where
    /// `Float` can hold them.
    public func toFloat32() -> [Float] {
        var out = [Float](repeating: 0, count: elementCount)
        out.withUnsafeMutableBufferPointer { convert(into: $0) }
        return out
    }

    /// Converts into a caller-provided buffer of `elementCount` floats.
    public func convert(into out: UnsafeMutableBufferPointer<Float>) {
        precondition(out.count >= elementCount)
        guard let base = storage.bytes.baseAddress else { return }
        if isContiguous {
            let start = base + byteOffset
            let count = elementCount
            switch dtype {
            case .float32 where Int(bitPattern: start) % MemoryLayout<Float>.alignment == 0:
                out.baseAddress!.update(
                    from: UnsafeRawPointer(start).assumingMemoryBound(to: Float.self), count: count)
                return
            case .float16 where Int(bitPattern: start) % MemoryLayout<UInt16>.alignment == 0:
                HalfConversion.convert(count, from: UnsafeRawPointer(start).assumingMemoryBound(to: UInt16.self), to: out.baseAddress!)
                return
            default:
                for i in 0..<count { out[i] = Self.load(dtype, start, i * dtype.byteSize) }
                return
            }
        }
        var i = 0
        forEachElementOffset { offset in
            out[i] = Self.load(dtype, base, offset)
            i += 1
        }
    }

    @inline(__always)
    static func load(_ dtype: DType, _ base: UnsafeRawPointer, _ offset: Int) -> Float {
        switch dtype {
        case .float32:
            return base.loadUnaligned(fromByteOffset: offset, as: Float.self)
        case .float64:
            return Float(base.loadUnaligned(fromByteOffset: offset, as: Double.self))
        case .float16:
            return HalfConversion.float(fromHalf: base.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        case .bfloat16:
            let bits = UInt32(base.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) << 16
            return Float(bitPattern: bits)
        case .int64:
            return Float(base.loadUnaligned(fromByteOffset: offset, as: Int64.self))
        case .int32:
            return Float(base.loadUnaligned(fromByteOffset: offset, as: Int32.self))
        case .int16:
            return Float(base.loadUnaligned(fromByteOffset: offset, as: Int16.self))
        case .int8:
            return Float(base.loadUnaligned(fromByteOffset: offset, as: Int8.self))
        case .uint8:
            return Float(base.loadUnaligned(fromByteOffset: offset, as: UInt8.self))
        case .bool:
            return base.loadUnaligned(fromByteOffset: offset, as: UInt8.self) != 0 ? 1 : 0
        }
    }
}
