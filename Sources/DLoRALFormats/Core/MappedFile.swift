#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file; tensor views point into it without copying.
///
/// The mapping is private and read-only, so nothing we do can modify an input file.
public final class MappedFile: @unchecked Sendable {
    /// The path as given by the caller (used in error messages).
    public let path: String
    /// The mapped bytes (empty for an empty file).
    public let bytes: UnsafeRawBufferPointer

    private let mappedLength: Int
    /// Kept open for `read(at:count:)`.
    private let descriptor: Int32
    /// This mapping's entry in the SIGBUS handler's table (-1 if none).
    private var guardSlot: Int32 = -1

    /// Maps `path` read-only.
    /// - Throws: `FormatError` (`.io`) naming the file if it cannot be opened or mapped.
    public init(path: String) throws {
        self.path = path
        let fd = try RegularFile.open(path)
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw FormatError(.io, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        let length = Int(info.st_size)
        mappedLength = length
        descriptor = fd
        if length == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let base = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            close(fd)
            throw FormatError(.io, file: path, "cannot map \(length) bytes: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: base, count: length)
        // If the file shrinks (or its storage fails) while mapped, touching the lost pages
        // raises SIGBUS; the handler reports this file and exits 2 instead of crashing.
        guardSlot = FileGuard.mapped(bytes, path: path)
    }

    deinit {
        FileGuard.unmapped(guardSlot)
        if mappedLength > 0, let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), mappedLength)
        }
        close(descriptor)
    }

    /// Reads `count` bytes at `offset` with pread(2), through the page cache rather than the
    /// mapping, so scattered metadata reads (zip local headers) do not make whole fault-around
    /// windows of a multi-GB file resident. Nil if the range is outside the file or unreadable.
    public func read(at offset: Int, count: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, offset <= self.count - count else { return nil }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            done += n
        }
        return out
    }

    public var count: Int { bytes.count }

    /// Reads a little-endian integer at `offset`; the caller has checked the bounds.
    @inlinable
    public func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

extension MappedFile {
    /// Tells the kernel we are done with the pages under `range` (a part of this mapping), so a
    /// streaming pass over a multi-GB file does not keep it all resident. The mapping is private
    /// and never written, so the pages are simply read again from the file if touched later.
    public func releasePages(_ range: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, let start = range.baseAddress, range.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        // The mapping starts on a page boundary; widen the range outwards to whole pages.
        let lower = max(Int(bitPattern: start) / page * page, Int(bitPattern: base))
        let upper = min(Int(bitPattern: start) + range.count, Int(bitPattern: base) + count)
        guard upper > lower else { return }
        madvise(UnsafeMutableRawPointer(bitPattern: lower), upper - lower, Int32(MADV_DONTNEED))
    }
}

extension TensorStorage {
    /// Releases the resident pages of this storage if it is a region of a mapped file.
    public func releasePages() {
        (owner as? MappedFile)?.releasePages(bytes)
    }
}
