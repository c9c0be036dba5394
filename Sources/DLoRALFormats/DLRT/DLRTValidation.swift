/// The checks `DLRTFile` makes when opening, beyond the header (Formats/dlrt.md §1, §3, §3.1, §4):
/// every byte of the file is either digested (header, metadata, regions) or padding that must be
/// zero, and the metadata must mean something this reader can run.
extension DLRTFile {
    /// The metadata object's own keys (§3); returns the tensor list.
    static func checkTopLevel(_ metadata: JSONValue, file: String) throws -> [JSONValue] {
        func fail(_ message: String) -> FormatError { FormatError(.malformed, file: file, message) }
        guard metadata.objectValue != nil else { throw fail("metadata is not a JSON object") }
        guard metadata["format"] == .string("dlrt") else {
            throw fail("metadata \"format\" is \(metadata["format"]?.serialized() ?? "missing"), expected \"dlrt\"; not a .dlrt file")
        }
        guard let list = metadata["tensors"]?.arrayValue else { throw fail("metadata has no \"tensors\" list") }
        guard !list.isEmpty else { throw fail("metadata lists no tensors; the file holds no model") }
        guard metadata["provenance"]?.objectValue != nil else { throw fail("metadata \"provenance\" must be an object") }
        switch metadata["default_prompt_embeds"] {
        case .null?, .string?: break
        default: throw fail("metadata \"default_prompt_embeds\" must be a tensor name or null")
        }
        return list
    }

    /// The data (and scales) regions of an entry whose values this reader does not know: the
    /// region fields are defined for every entry, so they still take part in the layout checks.
    static func regions(of json: JSONValue, file: String, tensor: String) throws -> [(DLRTRegion, String)] {
        func region(_ object: JSONValue, _ what: String) throws -> (DLRTRegion, String) {
            guard let offset = object["offset"]?.intValue, offset >= 0, let bytes = object["bytes"]?.intValue, bytes >= 0,
                let digest = object["sha256"]?.stringValue, isDigest(digest)
            else {
                throw FormatError(.malformed, file: file, tensor: tensor, "\(what) region needs offset, bytes and sha256")
            }
            return (DLRTRegion(offset: offset, bytes: bytes, sha256: digest), what)
        }
        var out = [try region(json, "data")]
        if let scales = json["scales"], scales != .null { out.append(try region(scales, "scales")) }
        return out
    }

    /// §1, §3.1: the regions, in list order (each tensor's data, then its scales), follow one
    /// another from payload_offset, each at the next multiple of 64; the file ends at the first
    /// multiple of 64 after the last. Every byte not in the header, the metadata or a region is
    /// padding and must be zero, so a changed byte anywhere is caught on open or by a digest.
    static func checkLayout(_ regions: [(region: DLRTRegion, what: String, tensor: String)], header h: DLRTHeader, file: MappedFile) throws {
        let path = file.path
        func zero(_ start: Int, _ end: Int, _ what: String) throws {
            guard start < end else { return }
            let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[start..<end])
            if let i = bytes.firstIndex(where: { $0 != 0 }) {
                throw FormatError(.malformed, file: path, "byte \(start + i) (\(what)) is not zero; the file is damaged; do not use it")
            }
        }
        try zero(h.metadataOffset + h.metadataBytes, h.payloadOffset, "padding after the metadata")
        var next = h.payloadOffset
        var end = h.payloadOffset
        for (region, what, tensor) in regions {
            guard region.offset % DLRT.alignmentBytes == 0, region.offset >= h.payloadOffset, region.bytes <= file.count - region.offset else {
                throw FormatError(.malformed, file: path, tensor: tensor,
                                  "\(what) region \(region.offset)+\(region.bytes) is misaligned or outside the payload (\(h.payloadOffset)..<\(file.count))")
            }
            guard region.offset == next else {
                let how = region.offset < next ? "overlaps the previous region or is out of list order" : "leaves a gap after the previous region"
                throw FormatError(.malformed, file: path, tensor: tensor,
                                  "\(what) region at \(region.offset) \(how); regions follow one another in list order, so it must start at \(next)")
            }
            try zero(end, region.offset, "padding before the \(what) of '\(tensor)'")
            end = region.offset + region.bytes
            next = DLRT.alignUp(end)
        }
        guard h.fileBytes == next else {
            throw FormatError(.malformed, file: path,
                              "the file has \(h.fileBytes) bytes but its last region ends at \(end), so it must end at \(next) (the next multiple of 64); bytes were added or removed")
        }
        try zero(end, next, "padding after the last region")
    }

    /// §3: a config object for the UNet, and for the VAE and the CFR when the file holds their
    /// tensors. Their values are checked against the tensors by `validateConfigs`
    /// (DLRTConfigCheck.swift).
    static func checkConfigs(_ configs: JSONValue?, entries: [DLRTTensorEntry], file: String) throws {
        guard let configs, configs.objectValue != nil else {
            throw FormatError(.malformed, file: file, "metadata \"configs\" must be an object with the unet, vae and cfr configs")
        }
        let present = Set(entries.map { String($0.name.prefix { $0 != "." }) })
        for component in ["unet", "vae", "cfr"] where component == "unet" || present.contains(component) {
            guard configs[component]?.objectValue != nil else {
                throw FormatError(.malformed, file: file, "metadata \"configs\" has no \"\(component)\" object; the file holds \(component) tensors and cannot run without it")
            }
        }
    }

    /// §3, §4: the quantization block holds known values, and the tensors are stored as it says.
    static func checkQuantization(_ quantization: JSONValue?, entries: [DLRTTensorEntry], file: String) throws {
        func fail(_ message: String, tensor: String? = nil) -> FormatError {
            FormatError(.malformed, file: file, tensor: tensor, "\(message); the metadata is damaged or forged; do not use this file")
        }
        guard let q = quantization, q.objectValue != nil else { throw fail("metadata \"quantization\" must be an object") }
        func value(_ key: String, _ allowed: [String], optional: Bool = false) throws -> String? {
            guard let v = q[key] else {
                if optional { return nil }
                throw fail("quantization has no \"\(key)\" (one of \(allowed.joined(separator: ", ")))")
            }
            guard let text = v.stringValue, allowed.contains(text) else {
                throw fail("quantization \"\(key)\" is \(v.serialized()), not one of \(allowed.joined(separator: ", "))")
            }
            return text
        }
        // value() admits only the enums' spellings, so the force-unwraps hold.
        let weights = DLRTWeights(rawValue: try value("weights", DLRTWeights.allCases.map(\.rawValue))!)!
        let granularity = DLRTGranularity(rawValue: try value("int8_granularity", DLRTGranularity.allCases.map(\.rawValue))!)!
        let activations = try value("activations", DLRTActivationPolicy.allCases.map(\.rawValue), optional: true)
            .map { DLRTActivationPolicy(rawValue: $0)! } ?? .fp32
        guard let keep = q["keep"]?.arrayValue, keep.allSatisfy({ $0.stringValue != nil }) else {
            throw fail("quantization \"keep\" must be a list of globs")
        }
        guard q["policy"]?.stringValue != nil else { throw fail("quantization \"policy\" must be a string") }
        for entry in entries {
            switch (weights, entry.dtype, entry.scheme) {
            case (.fp32, .float16, _), (.fp32, _, .int8Channel), (.fp32, _, .int8Block), (.fp16, _, .int8Channel), (.fp16, _, .int8Block):
                throw fail("\(entry.dtype.rawValue) \(entry.scheme.rawValue) storage in a file whose weights are \(weights.rawValue)", tensor: entry.name)
            case (.int8, _, .int8Channel) where granularity != .channel,
                 (.int8, _, .int8Block) where granularity == .channel || granularity.block != entry.block,
                 (.int8, .float16, _):
                throw fail("\(entry.dtype.rawValue) \(entry.scheme.rawValue)\(entry.block > 0 ? " of block \(entry.block)" : "") in a file of int8 weights with granularity \(granularity.rawValue)", tensor: entry.name)
            default: break
            }
            if entry.activations != nil && activations == .fp32 {
                throw fail("integer activations on a tensor of a file whose activations are fp32", tensor: entry.name)
            }
        }
    }

    /// Baked-in prompt embeddings are one F32 [1, tokens ≥ 1, C] tensor (§3, §4).
    static func checkPromptEmbeds(_ entry: DLRTTensorEntry, file: String) throws {
        guard entry.dtype == .float32, entry.scheme == .none, entry.shape.count == 3, entry.shape[0] == 1, entry.shape[1] >= 1, entry.shape[2] >= 1 else {
            throw FormatError(.malformed, file: file, tensor: entry.name,
                              "default prompt embeddings of shape \(entry.shape) \(entry.dtype.rawValue); expected F32 [1, tokens ≥ 1, C]")
        }
    }
}
