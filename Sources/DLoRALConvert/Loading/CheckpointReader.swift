import DLoRALFormats

/// Opens any supported checkpoint file or folder and reads it under canonical names.
///
/// Recognition is by content, not by file name alone: a zip is a PyTorch checkpoint, a file
/// whose first 8 bytes give a JSON header length is safetensors, and so on; folders are told
/// apart by what they contain.
public enum CheckpointReader {
    /// Reads `path`.
    /// - Parameter variant: prefer `diffusion_pytorch_model.<variant>.safetensors` in diffusers folders.
    /// - Throws: `FormatError` naming the file and the problem.
    public static func open(_ path: String, variant: String? = nil) throws -> LoadedCheckpoint {
        guard FileSystem.exists(path) else {
            throw FormatError(.io, file: path, "no such file or folder")
        }
        if FileSystem.isDirectory(path) {
            return try openFolder(path, variant: variant)
        }
        return try openFile(path)
    }

    static func openFolder(_ path: String, variant: String?) throws -> LoadedCheckpoint {
        if FileSystem.exists(FileSystem.join(path, "adapter_config.json")) {
            return try LoRAFileReader.readPeftFolder(path)
        }
        if DiffusersFolderReader.recognises(path) {
            return try DiffusersFolderReader.read(path: path, variant: variant)
        }
        let onnxFiles = FileSystem.contents(path).filter { $0.hasSuffix(".onnx") }
            + FileSystem.contents(FileSystem.join(path, "unet")).filter { $0.hasSuffix(".onnx") }.map { "unet/" + $0 }
        if onnxFiles.count == 1 {
            return try ONNXCheckpointReader.read(path: FileSystem.join(path, onnxFiles[0]))
        }
        throw FormatError(
            .unsupported, file: path,
            "not a recognised model folder: expected unet/ and vae/ subfolders or a config.json (diffusers), adapter_config.json (peft LoRA), or one .onnx model")
    }

    static func openFile(_ path: String) throws -> LoadedCheckpoint {
        let head = try FileSystem.prefix(path, count: 16)
        if head.count >= 4, head[0] == 0x50, head[1] == 0x4B, head[2] == 0x03 || head[2] == 0x05 {
            return try TorchCheckpointReader.read(path: path)
        }
        if DLRTFile.looksLikeDLRT(head) || path.hasSuffix(".dlrt") {
            return try DLRTCheckpointReader.read(path: path)
        }
        if path.hasSuffix(".index.json") {
            var result = LoadedCheckpoint(path: path, format: .safetensorsSharded, dialect: .diffusers)
            let table = try ShardedSafetensors.read(indexPath: path, files: &result.files)
            return try SafetensorsClassifier.classify(table, path: path, into: result)
        }
        if path.hasSuffix(".onnx") {
            return try ONNXCheckpointReader.read(path: path)
        }
        if path.hasSuffix(".safetensors") || (head.count >= 9 && head[8] == UInt8(ascii: "{")) {
            let file = try SafetensorsFile(path: path)
            var result = LoadedCheckpoint(path: path, format: .safetensors, dialect: .diffusers)
            result.files.append(path)
            return try SafetensorsClassifier.classify(file.table, path: path, into: result)
        }
        if path.hasSuffix(".pkl") || path.hasSuffix(".pt") || path.hasSuffix(".pth") || path.hasSuffix(".ckpt")
            || path.hasSuffix(".bin")
        {
            throw FormatError(
                .unsupported, file: path,
                "not a PyTorch zip checkpoint (no zip signature); legacy (pre-1.6) pickles are not read — re-save with torch.save in the default zip format, or convert to safetensors")
        }
        throw FormatError(
            .unsupported, file: path,
            "not a recognised checkpoint: expected safetensors, a PyTorch zip checkpoint (.pkl/.bin/.pt/.ckpt), ONNX (.onnx), a sharded .safetensors.index.json, a .dlrt runtime file, or a model folder")
    }
}
