import DLoRALFormats

/// `.dlrt` files forged as an attacker would: new metadata, the header re-signed as
/// Formats/dlrt.md §1 defines the digest, so only the reader's checks of what the metadata says
/// can refuse the file.
enum DLRTForgery {
    /// `bytes` with its metadata replaced by `text` (padded with spaces to the old length when
    /// shorter) and the header digest recomputed over the new header and metadata.
    static func resealed(_ bytes: [UInt8], header: DLRTHeader, metadata text: String) -> [UInt8] {
        var metadata = Array(text.utf8)
        metadata += [UInt8](repeating: 0x20, count: max(0, header.metadataBytes - metadata.count))
        var forged = header
        forged.metadataBytes = metadata.count
        forged.digest = metadata.withUnsafeBytes { forged.computeDigest(metadata: $0) }
        var copy = bytes
        copy.replaceSubrange(0..<128, with: forged.encoded())
        copy.replaceSubrange(128..<(128 + metadata.count), with: metadata)
        return copy
    }
}
