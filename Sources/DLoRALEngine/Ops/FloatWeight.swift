import DLoRALFormats

/// A conv or linear weight for the fp32 path, read where it lies: fp32 and fp16 tensors of a
/// mapped `.dlrt` (or safetensors) are used in place, fp16 widened exactly as the GEMM packs it
/// (`dloral_sgemm_typed`), so no fp32 copy of the model is ever made. Tensors built in memory
/// (tests, the CFR) and other dtypes (bf16, strided pickle views, unaligned data) hold an fp32
/// array instead.
public struct FloatWeight: @unchecked Sendable {
    /// The PyTorch shape (`[O, C, kh, kw]` or `[out, in]`).
    public let shape: [Int]
    private let storage: Storage

    private enum Storage {
        case array([Float])
        /// Elements in a formats-layer storage, which `owner` keeps alive (the mapping).
        case inPlace(UnsafeRawPointer, half: Bool, owner: TensorStorage)
    }

    /// An fp32 tensor already in memory.
    public init(_ tensor: Tensor) {
        shape = tensor.shape
        storage = .array(tensor.data)
    }

    /// In place when `view` is a contiguous, aligned fp32 or fp16 tensor; otherwise widened or
    /// dequantized into an fp32 array (`Tensor.init(_:)`).
    public init(_ view: TensorView) {
        shape = view.int8Rows?.logicalShape ?? view.shape
        if view.int8Rows == nil, view.dtype == .float32 || view.dtype == .float16,
            let bytes = view.contiguousBytes, let base = bytes.baseAddress,
            Int(bitPattern: base) % view.dtype.byteSize == 0
        {
            storage = .inPlace(base, half: view.dtype == .float16, owner: view.storage)
        } else {
            storage = .array(Tensor(view).data)
        }
    }

    /// Whether the elements are read in place from a file's storage rather than held as a copy.
    public var isInPlace: Bool {
        if case .inPlace = storage { return true }
        return false
    }

    /// Calls `body` with the first element and whether elements are binary16 (else fp32): the
    /// operand for `Ops.sgemm(…aHalf:/bHalf:)`.
    func withElements<R>(_ body: (UnsafeRawPointer, Bool) -> R) -> R {
        switch storage {
        case .array(let values):
            return values.withUnsafeBytes { body($0.baseAddress ?? UnsafeRawPointer(bitPattern: 64)!, false) }
        case .inPlace(let base, let half, let owner):
            return withExtendedLifetime(owner) { body(base, half) }
        }
    }
}
