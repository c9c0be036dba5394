/// Element types that appear in Stable Diffusion and LoRA checkpoints.
///
/// Raw values are the safetensors spellings, which are also what `inspect --json` prints.
public enum DType: String, CaseIterable, Sendable, Codable {
    case float64 = "F64"
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int64 = "I64"
    case int32 = "I32"
    case int16 = "I16"
    case int8 = "I8"
    case uint8 = "U8"
    case bool = "BOOL"

    /// Size of one element in bytes.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// True for the floating-point types (the ones a merge or quantizer operates on).
    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16: return true
        default: return false
        }
    }
}

/// Overflow-checked element count of a shape; `nil` when a dimension is negative or the
/// product of the dimensions, a zero dimension counted as 1, does not fit in `Int`.
///
/// A zero dimension makes the count 0 whatever the others are, but strides and the sizes of
/// sub-shapes (rows × columns of a matrix view) are still products of the other dimensions, so
/// `[0, 2^40, 2^40]` must be refused here rather than overflow (and trap) later.
public func checkedElementCount(_ shape: [Int]) -> Int? {
    var count = 1
    var extent = 1
    for dim in shape {
        guard dim >= 0 else { return nil }
        let (product, overflow) = extent.multipliedReportingOverflow(by: max(dim, 1))
        if overflow { return nil }
        extent = product
        count = dim == 0 ? 0 : count * dim  // count ≤ extent: cannot overflow
    }
    return count
}

/// Overflow-checked byte count of a tensor; `nil` on overflow.
public func checkedByteCount(_ shape: [Int], _ dtype: DType) -> Int? {
    guard let count = checkedElementCount(shape) else { return nil }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
    return overflow ? nil : bytes
}
