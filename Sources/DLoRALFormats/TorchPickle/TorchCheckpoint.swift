/// A PyTorch zip checkpoint (`torch.save`, PyTorch ≥ 1.6: `model.pkl`, `.bin`, `.pt`, `.pth`,
/// `.ckpt`), read without executing anything.
///
/// Layout: a stored zip whose single top folder (`archive/`, or the file's stem) holds
/// `data.pkl` (the object tree), `byteorder`, and `data/<key>` (one entry per storage). The
/// pickle goes through `Unpickler`'s allow-list; storages become zero-copy views into the mapped
/// file, so opening a multi-gigabyte checkpoint maps it and reads only the pickle and the zip
/// directory.
public struct TorchCheckpoint: Sendable {
    public let path: String
    public let file: MappedFile
    public let archive: ZipArchive
    /// The archive's top folder including the slash (e.g. "archive/"), or "" if there is none.
    public let archivePrefix: String
    /// The unpickled object tree.
    public let root: PickleValue

    /// Largest pickle we parse (the object tree; tensor bytes live outside it).
    public static let pickleLimitBytes = 1 << 30

    public init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        let path = file.path
        self.path = path
        self.file = file
        try TorchCheckpoint.rejectLegacyFormats(file)
        let archive = try ZipArchive(file: file)
        self.archive = archive

        // torch names the top folder after the first entry; data.pkl must be in it.
        let prefix: String
        if let first = archive.entries.first, let slash = first.name.firstIndex(of: "/"),
            archive.entry(named: first.name[...slash] + "data.pkl") != nil
        {
            prefix = String(first.name[...slash])
        } else if let found = archive.entries.first(where: {
            $0.name.hasSuffix("/data.pkl") && $0.name.filter { $0 == "/" }.count == 1
        }) {
            prefix = String(found.name.dropLast("data.pkl".count))
        } else if archive.entry(named: "data.pkl") != nil {
            prefix = ""
        } else {
            throw FormatError(
                .invalidModel, file: path,
                "zip archive has no <folder>/data.pkl; it is not a PyTorch checkpoint written by torch.save")
        }
        archivePrefix = prefix

        if let order = archive.entry(named: prefix + "byteorder") {
            let text = String(decoding: try archive.data(of: order), as: UTF8.self)
                .trimmingCharacters(inWhitespace: true)
            switch text {
            case "little": break
            case "big":
                throw FormatError(
                    .unsupported, file: path,
                    "checkpoint was saved on a big-endian machine (\(order.name) says 'big'); only little-endian checkpoints are read")
            default:
                throw FormatError(.malformed, file: path, "\(order.name) says '\(text.prefix(20))'; expected 'little' or 'big'")
            }
        }

        let pickleEntry = archive.entry(named: prefix + "data.pkl")!
        guard pickleEntry.uncompressedSize <= TorchCheckpoint.pickleLimitBytes else {
            throw FormatError(
                .malformed, file: path,
                "\(pickleEntry.name) is \(pickleEntry.uncompressedSize) bytes; object trees over \(TorchCheckpoint.pickleLimitBytes) bytes are refused")
        }
        let pickle = try archive.data(of: pickleEntry)
        guard ZipArchive.crc32(pickle) == pickleEntry.crc32 else {
            throw FormatError(.malformed, file: path, "\(pickleEntry.name) fails its CRC-32 check; the file is corrupted")
        }

        // Storage entries' local headers are read as the pickle names them; start them all now.
        archive.prefetchLocalHeaders(of: archive.entries.filter { $0.name.hasPrefix(prefix + "data/") })

        var storages: [String: TensorStorage] = [:]
        let loader: (PickleItem) throws -> PickleItem = { pid in
            try TorchCheckpoint.loadStorage(pid, archive: archive, prefix: prefix, cache: &storages)
        }
        root = try Unpickler.unpickle(pickle, file: path, entry: pickleEntry.name, persistentLoad: loader)
    }

    /// Older `torch.save` formats are a bare pickle stream or a tar; both would need the
    /// legacy loader and are refused clearly rather than as "not a zip".
    private static func rejectLegacyFormats(_ file: MappedFile) throws {
        let bytes = file.bytes
        if bytes.count >= 2, bytes[0] == 0x80, bytes[1] <= 5 {
            throw FormatError(
                .unsupported, file: file.path,
                "legacy (pre-1.6 or _use_new_zipfile_serialization=False) torch.save format; load it in PyTorch and save it again with torch.save to get the zip format")
        }
        if bytes.count >= 263, Array(bytes[257..<262]) == Array("ustar".utf8) {
            throw FormatError(
                .unsupported, file: file.path,
                "tar-based legacy torch.save format (PyTorch < 0.4); load it in PyTorch and save it again with torch.save")
        }
        if bytes.count >= 4, !(bytes[0] == 0x50 && bytes[1] == 0x4B) {
            let head = bytes.prefix(8).map { String($0, radix: 16) }.joined(separator: " ")
            throw FormatError(
                .malformed, file: file.path,
                "not a PyTorch zip checkpoint: it starts with bytes [\(head)], not a zip header ('PK')")
        }
    }

    /// `('storage', storage_type, key, location, numel)` → the zip entry `<prefix>data/<key>`.
    static func loadStorage(
        _ pid: PickleItem, archive: ZipArchive, prefix: String, cache: inout [String: TensorStorage]
    ) throws -> PickleItem {
        let path = archive.path
        guard let parts = pid.sequence, parts.count == 5, parts[0].string == "storage" else {
            throw FormatError(
                .malformed, file: path,
                "persistent id is a \(pid.kindName), not ('storage', type, key, location, numel) as torch.save writes")
        }
        guard case let .global(type) = parts[1], case let .storageClass(dtype) = type.kind else {
            throw FormatError(.malformed, file: path, "persistent id names a \(parts[1].kindName) where a torch storage type belongs")
        }
        guard let key = parts[2].string, let numel = parts[4].int, numel >= 0 else {
            throw FormatError(.malformed, file: path, "persistent id for a storage needs a string key and a non-negative element count")
        }
        let entryName = prefix + "data/" + key
        let storage: TensorStorage
        if let cached = cache[key] {
            storage = cached
        } else {
            guard let entry = archive.entry(named: entryName) else {
                throw FormatError(
                    .malformed, file: path,
                    "storage '\(key)' should be in zip entry '\(entryName)', which the archive does not contain (truncated or incomplete checkpoint)")
            }
            storage = try archive.storage(of: entry)
            cache[key] = storage
        }
        guard let needed = checkedByteCount([numel], dtype), needed <= storage.bytes.count else {
            throw FormatError(
                .malformed, file: path,
                "storage '\(key)' declares \(numel) × \(dtype.rawValue) elements but entry '\(entryName)' holds only \(storage.bytes.count) bytes")
        }
        return .storage(StorageRef(key: key, dtype: dtype, numel: numel, storage: storage))
    }

    // MARK: Access

    /// The value at a key path of dict keys (list/tuple elements by decimal index).
    public func value(at keyPath: [String]) -> PickleValue? {
        var current = root
        for component in keyPath {
            if let next = current[component] {
                current = next
            } else if let i = Int(component), let next = current[i] {
                current = next
            } else {
                return nil
            }
        }
        return current
    }

    /// The tensors under a key path, named relative to it (state dicts keep their names).
    /// - Throws: `.invalidModel` naming the file and the missing key.
    public func tensors(at keyPath: [String] = []) throws -> TensorTable {
        guard let value = value(at: keyPath) else {
            let keys = root.dictKeys.prefix(12).joined(separator: ", ")
            throw FormatError(
                .invalidModel, file: path,
                "no '\(keyPath.joined(separator: "/"))' in the checkpoint (top-level keys: \(keys.isEmpty ? "none" : keys))")
        }
        return TorchCheckpoint.flatten(value, prefix: "")
    }

    /// Every tensor in the checkpoint, by dotted key path.
    public var tensors: TensorTable { TorchCheckpoint.flatten(root, prefix: "") }

    /// Nested dicts/lists/tuples of tensors → dotted names. Dict keys are used verbatim (a state
    /// dict's `conv_in.weight` stays as it is); list and tuple elements use their index. A name
    /// reached twice keeps its first tensor.
    public static func flatten(_ value: PickleValue, prefix: String) -> TensorTable {
        var table = TensorTable()
        flatten(value, prefix: prefix, into: &table)
        return table
    }

    private static func flatten(_ value: PickleValue, prefix: String, into table: inout TensorTable) {
        func join(_ component: String) -> String { prefix.isEmpty ? component : prefix + "." + component }
        switch value {
        case let .tensor(view):
            if table[prefix] == nil { table.set(prefix, view) }
        case let .dict(pairs):
            for (k, v) in pairs { flatten(v, prefix: join(k.pathComponent), into: &table) }
        case let .list(items), let .tuple(items):
            for (i, v) in items.enumerated() { flatten(v, prefix: join(String(i)), into: &table) }
        default:
            break
        }
    }
}

extension String {
    fileprivate func trimmingCharacters(inWhitespace: Bool) -> String {
        let scalars = unicodeScalars
        var start = scalars.startIndex
        var end = scalars.endIndex
        while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
        while end > start, scalars[scalars.index(before: end)].properties.isWhitespace { end = scalars.index(before: end) }
        return String(scalars[start..<end])
    }
}
