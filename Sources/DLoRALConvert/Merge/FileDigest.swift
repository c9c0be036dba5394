import Foundation
import Crypto
import DLoRALFormats
#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 of whole input files, for provenance records.
public enum FileDigest {
    /// Hex SHA-256 and size of `path`, read sequentially in 8 MiB blocks (through the page
    /// cache, not a mapping, so hashing a 3.5 GB file does not grow our resident memory).
    public static func sha256(path: String) throws -> (hex: String, bytes: Int) {
        let fd = try RegularFile.open(path, purpose: "open to hash")
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        var hasher = SHA256()
        let blockBytes = 8 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockBytes, alignment: 64)
        defer { buffer.deallocate() }
        var total = 0
        while true {
            let n = read(fd, buffer.baseAddress, blockBytes)
            if n < 0 {
                if errno == EINTR { continue }
                throw FormatError(.io, file: path, "read failed while hashing: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += n
        }
        let digest = hasher.finalize()
        return (digest.map { String(format: "%02x", $0) }.joined(), total)
    }
}
