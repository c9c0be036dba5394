/// The bytes a tensor view points into: a region of a mapped file, or memory we own.
///
/// Views hold a reference to their storage, so the mapping or allocation lives as long as any
/// view of it does.
public final class TensorStorage: @unchecked Sendable {
    /// The storage's bytes.
    public let bytes: UnsafeRawBufferPointer
    /// Where the bytes come from, for messages (a path, or a path plus an entry name).
    public let origin: String

    let owner: AnyObject?
    private let ownsAllocation: Bool

    /// A zero-copy region of a mapped file.
    public init(file: MappedFile, offset: Int, count: Int, origin: String? = nil) {
        precondition(offset >= 0 && count >= 0 && offset + count <= file.count)
        let base = file.bytes.baseAddress.map { $0 + offset }
        self.bytes = UnsafeRawBufferPointer(start: count == 0 ? nil : base, count: count)
        self.origin = origin ?? file.path
        self.owner = file
        self.ownsAllocation = false
    }

    /// A copy of `source` in memory we own (for data that is not in a mappable file).
    public init(copying source: UnsafeRawBufferPointer, origin: String) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: max(source.count, 1), alignment: 64)
        if source.count > 0 { buffer.copyMemory(from: source) }
        self.bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: source.count)
        self.origin = origin
        self.owner = nil
        self.ownsAllocation = true
    }

    /// A copy of `array`'s bytes.
    public static func copying<T>(_ array: [T], origin: String) -> TensorStorage {
        array.withUnsafeBytes { TensorStorage(copying: $0, origin: origin) }
    }

    deinit {
        if ownsAllocation, let base = bytes.baseAddress {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        }
    }
}
