import DLoRALFormats

/// State dicts saved with `torch.save` (`.bin`, `.pt`, `.ckpt`): the tensors of the top-level
/// dict, or of its `state_dict` entry (Lightning / LDM `.ckpt`).
enum TorchStateDict {
    static func read(path: String) throws -> TensorTable {
        let checkpoint = try TorchCheckpoint(path: path)
        return stateDict(of: checkpoint)
    }

    static func stateDict(of checkpoint: TorchCheckpoint) -> TensorTable {
        if let inner = checkpoint.root["state_dict"], inner.dictValue != nil {
            return TorchCheckpoint.flatten(inner, prefix: "")
        }
        return TorchCheckpoint.flatten(checkpoint.root, prefix: "")
    }
}

/// PyTorch zip checkpoints: DLoRAL's model.pkl, or a plain state dict of any dialect.
enum TorchCheckpointReader {
    static func read(path: String) throws -> LoadedCheckpoint {
        let checkpoint = try TorchCheckpoint(path: path)
        if DLoRALCheckpointReader.recognises(checkpoint.root) {
            return try DLoRALCheckpointReader.read(checkpoint)
        }
        var result = LoadedCheckpoint(path: path, format: .torchZip, dialect: .diffusers)
        result.files = [path]
        return try SafetensorsClassifier.classify(TorchStateDict.stateDict(of: checkpoint), path: path, into: result)
    }
}
