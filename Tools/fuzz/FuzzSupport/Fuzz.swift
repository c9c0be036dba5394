import DLoRALFormats

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What every fuzz target shares: the input goes to a real file (the readers map files by path,
/// so the target exercises exactly what the tools run), and an input must either be read or be
/// refused with a `FormatError`. Anything else (another error type, a trap, a signal, an ASan
/// report, a timeout) is a finding.
public enum Fuzz {
    /// A private folder of this process for the inputs: under `$DLORAL_FUZZ_TMP` if set, else
    /// /dev/shm (a tmpfs, so writing an input costs no disk I/O), else /tmp.
    public static let folder: String = {
        var parent = "/tmp"
        if let chosen = getenv("DLORAL_FUZZ_TMP") {
            parent = String(cString: chosen)
        } else if access("/dev/shm", W_OK) == 0 {
            parent = "/dev/shm"
        }
        var template = Array("\(parent)/dloral-fuzz-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            fatalError("cannot create a folder for fuzz inputs under \(parent): \(String(cString: strerror(errno)))")
        }
        let path = String(cString: template)
        createdFolder = path
        atexit { Fuzz.removeFolder() }
        return path
    }()

    nonisolated(unsafe) private static var createdFolder: String?

    private static func removeFolder() {
        guard let folder = createdFolder, let dir = opendir(folder) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink("\(folder)/\(name)") }
        }
        closedir(dir)
        rmdir(folder)
    }

    /// Writes `bytes` to `<folder>/<name>` (replacing it) and returns the path.
    @discardableResult
    public static func write(_ bytes: UnsafeRawBufferPointer, name: String) -> String {
        let path = "\(folder)/\(name)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { fatalError("cannot write the fuzz input \(path): \(String(cString: strerror(errno)))") }
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { fatalError("cannot write the fuzz input \(path): \(String(cString: strerror(errno)))") }
            done += n
        }
        close(fd)
        return path
    }

    @discardableResult
    public static func write(_ bytes: [UInt8], name: String) -> String {
        bytes.withUnsafeBytes { write($0, name: name) }
    }

    /// Runs a reader on the input: a `FormatError` is the expected refusal of a bad input; any
    /// other error means a reader let something through that it should have described.
    public static func expectReadOrRefused(_ what: String, _ body: () throws -> Void) {
        do {
            try body()
        } catch is FormatError {
        } catch {
            fatalError("\(what) threw \(type(of: error)), not a FormatError: \(error)")
        }
    }

    /// Reads every element of a tensor the reader handed out (its bytes must lie inside the
    /// mapping or allocation), converting small ones to Float as the tools do; returns a value
    /// derived from the bytes so the reads are not optimised away.
    @discardableResult
    public static func touch(_ view: TensorView, elementLimit: Int = 1 << 16) -> Float {
        if view.elementCount <= elementLimit {
            return view.toFloat32().reduce(0) { $0 + ($1.isFinite ? $1 : 0) }
        }
        guard let bytes = view.contiguousBytes, let first = bytes.first, let last = bytes.last else { return 0 }
        return Float(first) + Float(last)
    }

    /// The CRC-32 of zip and PNG (the same polynomial).
    public static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        Array(bytes).withUnsafeBytes { ZipArchive.crc32($0) }
    }
}

extension Fuzz {
    /// A zip archive of stored entries, as torch.save writes them (no compression, no zip64).
    public static func storedZip(_ entries: [(name: String, data: [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        func put16(_ v: Int, _ into: inout [UInt8]) { into += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func put32(_ v: UInt32, _ into: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { into += $0 } }
        for (name, data) in entries {
            let offset = UInt32(out.count)
            let crc = data.withUnsafeBytes { ZipArchive.crc32($0) }
            let nameBytes = Array(name.utf8)
            put32(0x0403_4B50, &out)
            put16(20, &out); put16(0, &out); put16(0, &out); put16(0, &out); put16(0, &out)
            put32(crc, &out); put32(UInt32(data.count), &out); put32(UInt32(data.count), &out)
            put16(nameBytes.count, &out); put16(0, &out)
            out += nameBytes
            out += data
            put32(0x0201_4B50, &central)
            put16(20, &central); put16(20, &central); put16(0, &central); put16(0, &central)
            put16(0, &central); put16(0, &central)
            put32(crc, &central); put32(UInt32(data.count), &central); put32(UInt32(data.count), &central)
            put16(nameBytes.count, &central); put16(0, &central); put16(0, &central)
            put16(0, &central); put16(0, &central); put32(0, &central); put32(offset, &central)
            central += nameBytes
        }
        let centralOffset = UInt32(out.count)
        out += central
        put32(0x0605_4B50, &out)
        put16(0, &out); put16(0, &out); put16(entries.count, &out); put16(entries.count, &out)
        put32(UInt32(central.count), &out); put32(centralOffset, &out); put16(0, &out)
        return out
    }

    /// The input for a target's seed-writing mode: when `DLORAL_FUZZ_WRITE_SEEDS` names a
    /// folder, the target writes its generated seeds there and exits (from LLVMFuzzerInitialize).
    public static var seedFolder: String? {
        getenv("DLORAL_FUZZ_WRITE_SEEDS").map { String(cString: $0) }
    }
}

/// libFuzzer's driver (compiler-rt, FuzzerDriver.cpp), for the targets' entry points.
@_silgen_name("LLVMFuzzerRunDriver")
func llvmFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

extension Fuzz {
    /// Runs libFuzzer on `callback`. SwiftPM links an executable target with its `main` renamed
    /// to `<module>_main`, which each target defines by calling this.
    public static func main(
        _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32 {
        var argc = argc
        var argv = argv
        return llvmFuzzerRunDriver(&argc, &argv, callback)
    }
}
