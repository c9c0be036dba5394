import DLoRALFormats

/// Reads diffusers model folders: `unet/`, `vae/` (and our `cfr/`), each with `config.json` and
/// weights as `.safetensors`, sharded `.safetensors.index.json`, `.fp16` variants or `.bin`.
enum DiffusersFolderReader {
    /// Weight file names a component folder may hold, in order of preference.
    static func weightCandidates(variant: String?) -> [String] {
        var names: [String] = []
        let bases = ["diffusion_pytorch_model", "model"]
        if let variant {
            for base in bases {
                names += ["\(base).\(variant).safetensors", "\(base).safetensors.index.\(variant).json",
                          "\(base).\(variant).safetensors.index.json", "\(base).\(variant).bin"]
            }
        }
        for base in bases {
            names += ["\(base).safetensors", "\(base).safetensors.index.json", "\(base).bin"]
        }
        for base in bases {
            names += ["\(base).fp16.safetensors", "\(base).safetensors.index.fp16.json",
                      "\(base).fp16.safetensors.index.json", "\(base).fp16.bin"]
        }
        return names
    }

    /// True if `path` looks like a diffusers pipeline folder or a single component folder.
    static func recognises(_ path: String) -> Bool {
        if FileSystem.exists(FileSystem.join(path, "model_index.json")) { return true }
        for component in ["unet", "vae", "cfr"] where FileSystem.isDirectory(FileSystem.join(path, component)) {
            return true
        }
        return componentFolderWeights(path, variant: nil) != nil
    }

    static func componentFolderWeights(_ folder: String, variant: String?) -> String? {
        for name in weightCandidates(variant: variant) {
            let candidate = FileSystem.join(folder, name)
            if FileSystem.exists(candidate) { return candidate }
        }
        return nil
    }

    /// Reads a pipeline folder (or one component folder) into canonical names.
    static func read(path: String, variant: String? = nil) throws -> LoadedCheckpoint {
        var result = LoadedCheckpoint(path: path, format: .diffusersFolder, dialect: .diffusers)
        var componentFolders: [(ModelComponent, String)] = []
        for component in [ModelComponent.unet, .vae, .cfr] {
            let folder = FileSystem.join(path, component.rawValue)
            if FileSystem.isDirectory(folder) { componentFolders.append((component, folder)) }
        }
        if componentFolders.isEmpty {
            // A single component folder: its config names the class.
            let config = try readConfig(folder: path)
            guard let component = component(ofConfig: config) else {
                throw FormatError(.invalidModel, file: FileSystem.join(path, "config.json"),
                                  "unknown _class_name; expected UNet2DConditionModel, AutoencoderKL or DLoRALCFR")
            }
            componentFolders = [(component, path)]
        }
        for (component, folder) in componentFolders {
            guard let weights = componentFolderWeights(folder, variant: variant) else {
                throw FormatError(.io, file: folder,
                                  "no weights found; expected diffusion_pytorch_model.safetensors (or a sharded .safetensors.index.json, a .fp16 variant, or .bin)")
            }
            let table = try readWeights(weights, into: &result)
            for (name, view) in table.tensors {
                try result.tensors.insert("\(component.rawValue).\(name)", view, file: weights)
            }
            let configPath = FileSystem.join(folder, "config.json")
            if FileSystem.exists(configPath) {
                result.configs[component] = try JSONValue.read(path: configPath)
                result.files.append(configPath)
            } else if let inferred = inferConfig(component, table) {
                result.configs[component] = inferred
                result.inferredConfigs.insert(component)
            }
        }
        return result
    }

    static func readConfig(folder: String) throws -> JSONValue {
        let configPath = FileSystem.join(folder, "config.json")
        guard FileSystem.exists(configPath) else {
            throw FormatError(.io, file: folder, "not a model folder: no unet/ or vae/ subfolder and no config.json")
        }
        return try JSONValue.read(path: configPath)
    }

    static func component(ofConfig config: JSONValue) -> ModelComponent? {
        switch config["_class_name"]?.stringValue {
        case "UNet2DConditionModel": return .unet
        case "AutoencoderKL": return .vae
        case "DLoRALCFR": return .cfr
        default: return nil
        }
    }

    static func inferConfig(_ component: ModelComponent, _ table: TensorTable) -> JSONValue? {
        switch component {
        case .unet: return ConfigInference.unetConfig(table)
        case .vae: return ConfigInference.vaeConfig(table)
        default: return nil
        }
    }

    /// Reads one weights file of any kind a component folder holds (names as stored).
    static func readWeights(_ path: String, into result: inout LoadedCheckpoint) throws -> TensorTable {
        if path.hasSuffix(".json") {
            return try ShardedSafetensors.read(indexPath: path, files: &result.files)
        }
        result.files.append(path)
        if path.hasSuffix(".bin") {
            return try TorchStateDict.read(path: path)
        }
        return try SafetensorsFile(path: path).table
    }
}

/// Sharded safetensors: `*.safetensors.index.json` with a `weight_map` of tensor → shard file.
enum ShardedSafetensors {
    static func read(indexPath: String, files: inout [String]) throws -> TensorTable {
        let index = try JSONValue.read(path: indexPath)
        files.append(indexPath)
        guard let weightMap = index["weight_map"]?.objectValue else {
            throw FormatError(.malformed, file: indexPath, "no \"weight_map\" object; expected {\"weight_map\": {tensor: shard file}}")
        }
        guard !weightMap.isEmpty else {
            throw FormatError(.malformed, file: indexPath, "\"weight_map\" is empty: the index lists no tensor; expected {\"weight_map\": {tensor: shard file}}")
        }
        let folder = indexPath.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        var shards: [String: SafetensorsFile] = [:]
        var table = TensorTable()
        var claimed: [String: Set<String>] = [:]
        for (name, value) in weightMap {
            guard let shardName = value.stringValue, FileSystem.isPlainFileName(shardName) else {
                throw FormatError(.unsafe, file: indexPath, tensor: name,
                                  "shard must be a file name in the same folder, got \(value.serialized())")
            }
            let shardPath = FileSystem.join(folder.isEmpty ? "." : folder, shardName)
            if shards[shardName] == nil {
                shards[shardName] = try SafetensorsFile(path: shardPath)
                files.append(shardPath)
            }
            guard let view = shards[shardName]!.table[name] else {
                throw FormatError(.malformed, file: shardPath, tensor: name, "listed in \(indexPath) but not in this shard")
            }
            claimed[shardName, default: []].insert(name)
            try table.insert(name, view, file: indexPath)
        }
        for (shardName, shard) in shards {
            for name in shard.table.names where !(claimed[shardName]?.contains(name) ?? false) {
                throw FormatError(.malformed, file: FileSystem.join(folder, shardName), tensor: name,
                                  "present in the shard but missing from \(indexPath)'s weight_map")
            }
        }
        return table
    }
}
