#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal, read-only zip reader over a mapped file, enough for PyTorch checkpoints.
///
/// It reads the central directory (with zip64 end records and extra fields, which checkpoints
/// over 4 GB use) and finds each entry's data through its local header. Only stored (method 0)
/// entries can be read, and they are read in place: `data(of:)` and `storage(of:)` point into the
/// mapping without copying, which is what `torch.save` writes. Every offset and length is
/// bounds-checked; an entry name that is absolute or has a `..` component makes the whole
/// archive `.unsafe`.
public struct ZipArchive: Sendable {
    /// One central-directory record.
    public struct Entry: Sendable {
        public let name: String
        /// 0 = stored, 8 = deflate, …
        public let method: UInt16
        public let flags: UInt16
        public let crc32: UInt32
        public let compressedSize: Int
        public let uncompressedSize: Int
        public let localHeaderOffset: Int

        public var isStored: Bool { method == 0 }
    }

    public let file: MappedFile
    public var path: String { file.path }
    /// Entries in central-directory order.
    public let entries: [Entry]
    private let index: [String: Int]
    /// Where the central directory starts; entry data must lie before it.
    public let centralDirectoryOffset: Int

    static let eocdSignature: UInt32 = 0x0605_4b50
    static let zip64LocatorSignature: UInt32 = 0x0706_4b50
    static let zip64EOCDSignature: UInt32 = 0x0606_4b50
    static let centralSignature: UInt32 = 0x0201_4b50
    static let localSignature: UInt32 = 0x0403_4b50

    public init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        func malformed(_ message: String) -> FormatError { FormatError(.malformed, file: path, message) }

        // End of central directory: 22 bytes + comment, within the last 64 KiB + 22 bytes.
        let size = file.count
        guard size >= 22 else {
            throw malformed("\(size) bytes is too short for a zip archive (truncated, or not a PyTorch zip checkpoint)")
        }
        var eocd = -1
        var candidate = size - 22
        let lowest = max(0, size - 22 - 0xFFFF)
        while candidate >= lowest {
            if file.loadLE(UInt32.self, at: candidate) == ZipArchive.eocdSignature {
                let commentLength = Int(file.loadLE(UInt16.self, at: candidate + 20))
                if candidate + 22 + commentLength == size {
                    eocd = candidate
                    break
                }
            }
            candidate -= 1
        }
        guard eocd >= 0 else {
            throw malformed("no zip end-of-central-directory record at the end of the file (truncated, or not a zip archive)")
        }
        let diskNumber = Int(file.loadLE(UInt16.self, at: eocd + 4))
        let centralDisk = Int(file.loadLE(UInt16.self, at: eocd + 6))
        var entryCount = Int(file.loadLE(UInt16.self, at: eocd + 10))
        var centralSize = Int(file.loadLE(UInt32.self, at: eocd + 12))
        var centralOffset = Int(file.loadLE(UInt32.self, at: eocd + 16))

        // Zip64: a locator right before the EOCD points at the zip64 end record.
        if eocd >= 20, file.loadLE(UInt32.self, at: eocd - 20) == ZipArchive.zip64LocatorSignature {
            let recordOffset64 = file.loadLE(UInt64.self, at: eocd - 20 + 8)
            guard recordOffset64 <= UInt64(eocd - 20), Int(recordOffset64) + 56 <= eocd - 20 else {
                throw malformed("zip64 end-of-central-directory locator points outside the file (offset \(recordOffset64))")
            }
            let record = Int(recordOffset64)
            guard file.loadLE(UInt32.self, at: record) == ZipArchive.zip64EOCDSignature else {
                throw malformed("zip64 end-of-central-directory record missing at offset \(record)")
            }
            guard file.loadLE(UInt32.self, at: record + 16) == 0, file.loadLE(UInt32.self, at: record + 20) == 0 else {
                throw FormatError(.unsupported, file: path, "multi-disk (split) zip archives are not supported")
            }
            let count64 = file.loadLE(UInt64.self, at: record + 32)
            let size64 = file.loadLE(UInt64.self, at: record + 40)
            let offset64 = file.loadLE(UInt64.self, at: record + 48)
            guard count64 <= UInt64(size), size64 <= UInt64(size), offset64 <= UInt64(size) else {
                throw malformed("zip64 end record has impossible values (entries \(count64), directory \(size64) bytes at \(offset64)) for a \(size)-byte file")
            }
            entryCount = Int(count64)
            centralSize = Int(size64)
            centralOffset = Int(offset64)
        } else if diskNumber != 0 || centralDisk != 0 {
            throw FormatError(.unsupported, file: path, "multi-disk (split) zip archives are not supported")
        }
        guard centralOffset <= size, centralSize <= size - centralOffset, centralOffset + centralSize <= eocd else {
            throw malformed("central directory (\(centralSize) bytes at offset \(centralOffset)) lies outside the \(size)-byte file (truncated?)")
        }
        guard entryCount <= centralSize / 46 else {
            throw malformed("central directory claims \(entryCount) entries but holds only \(centralSize) bytes")
        }

        var entries: [Entry] = []
        entries.reserveCapacity(entryCount)
        var index: [String: Int] = [:]
        var cursor = centralOffset
        let end = centralOffset + centralSize
        for number in 0..<entryCount {
            guard cursor + 46 <= end, file.loadLE(UInt32.self, at: cursor) == ZipArchive.centralSignature else {
                throw malformed("central directory record \(number) at offset \(cursor) is missing or cut short")
            }
            let flags = file.loadLE(UInt16.self, at: cursor + 8)
            let method = file.loadLE(UInt16.self, at: cursor + 10)
            let crc = file.loadLE(UInt32.self, at: cursor + 16)
            var compressed = UInt64(file.loadLE(UInt32.self, at: cursor + 20))
            var uncompressed = UInt64(file.loadLE(UInt32.self, at: cursor + 24))
            let nameLength = Int(file.loadLE(UInt16.self, at: cursor + 28))
            let extraLength = Int(file.loadLE(UInt16.self, at: cursor + 30))
            let commentLength = Int(file.loadLE(UInt16.self, at: cursor + 32))
            var disk = UInt32(file.loadLE(UInt16.self, at: cursor + 34))
            var localOffset = UInt64(file.loadLE(UInt32.self, at: cursor + 42))
            let recordEnd = cursor + 46 + nameLength + extraLength + commentLength
            guard recordEnd <= end else {
                throw malformed("central directory record \(number) runs past the end of the directory")
            }
            let nameBytes = UnsafeRawBufferPointer(rebasing: file.bytes[(cursor + 46)..<(cursor + 46 + nameLength)])
            guard let name = String(validating: nameBytes, as: UTF8.self) else {
                throw malformed("entry \(number) has a name that is not valid UTF-8")
            }

            // Zip64 extended information: only the saturated fields are present, in this order.
            var extra = cursor + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let tag = file.loadLE(UInt16.self, at: extra)
                let length = Int(file.loadLE(UInt16.self, at: extra + 2))
                let body = extra + 4
                guard body + length <= extraEnd else {
                    throw malformed("entry '\(name)': extra field runs past its record")
                }
                if tag == 0x0001 {
                    var field = body
                    func next64() throws -> UInt64 {
                        guard field + 8 <= body + length else {
                            throw malformed("entry '\(name)': zip64 extra field is too short for the values it must hold")
                        }
                        defer { field += 8 }
                        return file.loadLE(UInt64.self, at: field)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next64() }
                    if compressed == 0xFFFF_FFFF { compressed = try next64() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next64() }
                    if disk == 0xFFFF {
                        guard field + 4 <= body + length else {
                            throw malformed("entry '\(name)': zip64 extra field is too short for the values it must hold")
                        }
                        disk = file.loadLE(UInt32.self, at: field)
                    }
                }
                extra = body + length
            }
            guard disk == 0 else {
                throw FormatError(.unsupported, file: path, "entry '\(name)' lives on disk \(disk); multi-disk zip archives are not supported")
            }
            guard compressed <= UInt64(size), uncompressed <= UInt64(Int.max), localOffset <= UInt64(size) else {
                throw malformed("entry '\(name)' has impossible sizes or offset (\(compressed) bytes at \(localOffset)) for a \(size)-byte file")
            }
            try ZipArchive.checkSafeName(name, path: path)
            guard index[name] == nil else {
                throw malformed("entry '\(name)' appears twice in the central directory")
            }
            index[name] = entries.count
            entries.append(
                Entry(
                    name: name, method: method, flags: flags, crc32: crc, compressedSize: Int(compressed),
                    uncompressedSize: Int(uncompressed), localHeaderOffset: Int(localOffset)))
            cursor = recordEnd
        }
        self.entries = entries
        self.index = index
        self.centralDirectoryOffset = centralOffset
    }

    /// Rejects names that could address something outside an extraction folder.
    static func checkSafeName(_ name: String, path: String) throws {
        let unsafe: String?
        if name.isEmpty {
            unsafe = "is empty"
        } else if name.hasPrefix("/") || name.hasPrefix("\\") {
            unsafe = "is an absolute path"
        } else if name.count >= 2, name.dropFirst().first == ":" {
            unsafe = "starts with a drive letter"
        } else if name.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "/" || $0 == "\\" })
            .contains(where: { $0 == ".." })
        {
            unsafe = "has a '..' path component"
        } else if name.utf8.contains(0) {
            unsafe = "contains a NUL byte"
        } else {
            unsafe = nil
        }
        if let unsafe {
            throw FormatError(
                .unsafe, file: path,
                "zip entry name '\(name)' \(unsafe); an archive that points outside itself is refused")
        }
    }

    public func entry(named name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    /// File offset of the entry's data, read from its local header.
    public func dataOffset(of entry: Entry) throws -> Int {
        let path = file.path
        let local = entry.localHeaderOffset
        func le<T: FixedWidthInteger>(_ header: [UInt8], _: T.Type, _ at: Int) -> T {
            header.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: T.self)) }
        }
        guard local <= file.count - 30, let header = file.read(at: local, count: 30),
            le(header, UInt32.self, 0) == ZipArchive.localSignature
        else {
            throw FormatError(
                .malformed, file: path,
                "entry '\(entry.name)': no local header at offset \(local) (truncated or corrupted archive)")
        }
        let nameLength = Int(le(header, UInt16.self, 26))
        let extraLength = Int(le(header, UInt16.self, 28))
        let start = local + 30 + nameLength + extraLength
        guard start <= file.count else {
            throw FormatError(.malformed, file: path, "entry '\(entry.name)': local header runs past the end of the file (truncated?)")
        }
        let localName = file.read(at: local + 30, count: nameLength) ?? []
        guard localName.elementsEqual(entry.name.utf8) else {
            throw FormatError(
                .malformed, file: path,
                "entry '\(entry.name)': local header names it '\(String(decoding: localName, as: UTF8.self))'; the archive is inconsistent")
        }
        guard entry.compressedSize <= file.count - start else {
            throw FormatError(
                .malformed, file: path,
                "entry '\(entry.name)': \(entry.compressedSize) bytes of data at offset \(start) run past the end of the \(file.count)-byte file (truncated?)")
        }
        return start
    }

    /// Asks the kernel to start reading the local headers of `entries` now, all at once.
    ///
    /// Finding an entry's data means reading its local header, one page per entry scattered
    /// over the file. On a cold cache, touching them one by one costs a disk round trip each
    /// (seconds for a checkpoint with thousands of tensors); issuing them together lets the disk
    /// serve them in parallel. Purely advisory: nothing is read into our memory.
    public func prefetchLocalHeaders(of entries: [Entry]) {
        guard let base = file.bytes.baseAddress, !entries.isEmpty else { return }
        let page = max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)
        var lastPage = -1
        for entry in entries.sorted(by: { $0.localHeaderOffset < $1.localHeaderOffset }) {
            let start = entry.localHeaderOffset / page * page
            guard start != lastPage, start < file.count else { continue }
            lastPage = start
            let length = min(2 * page, file.count - start)
            _ = madvise(UnsafeMutableRawPointer(mutating: base + start), length, MADV_WILLNEED)
        }
    }

    /// The entry's bytes in place. Only stored entries can be read.
    public func data(of entry: Entry) throws -> UnsafeRawBufferPointer {
        try checkReadable(entry)
        let start = try dataOffset(of: entry)
        return UnsafeRawBufferPointer(rebasing: file.bytes[start..<(start + entry.uncompressedSize)])
    }

    /// A zero-copy tensor storage over the entry's bytes.
    public func storage(of entry: Entry) throws -> TensorStorage {
        try checkReadable(entry)
        let start = try dataOffset(of: entry)
        return TensorStorage(file: file, offset: start, count: entry.uncompressedSize, origin: "\(file.path):\(entry.name)")
    }

    private func checkReadable(_ entry: Entry) throws {
        guard entry.flags & 1 == 0 else {
            throw FormatError(.unsupported, file: file.path, "entry '\(entry.name)' is encrypted; encrypted zip entries are not supported")
        }
        guard entry.isStored else {
            let method = entry.method == 8 ? "deflate" : "method \(entry.method)"
            throw FormatError(
                .unsupported, file: file.path,
                "entry '\(entry.name)' is compressed (\(method)); only stored (uncompressed) entries are read, as torch.save writes them — re-save the checkpoint with torch.save")
        }
        guard entry.compressedSize == entry.uncompressedSize else {
            throw FormatError(
                .malformed, file: file.path,
                "entry '\(entry.name)' is stored but its sizes disagree (\(entry.compressedSize) vs \(entry.uncompressedSize) bytes)")
        }
    }

    /// CRC-32 (IEEE) of `bytes`, to check small entries we parse.
    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        crcTable.withUnsafeBufferPointer { table in
            for byte in bytes {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
        }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
}
