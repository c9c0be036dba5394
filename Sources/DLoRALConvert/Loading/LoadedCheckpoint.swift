import Collections
import DLoRALFormats

/// The container format a checkpoint was read from.
public enum CheckpointFormat: String, Sendable {
    case safetensors
    case safetensorsSharded = "safetensors-sharded"
    case torchZip = "torch-zip"
    case onnx
    case diffusersFolder = "diffusers-folder"
    case ldm
    case peftFolder = "peft-folder"
    case dlrt
}

/// The naming convention the file's tensors used before canonicalisation.
public enum NamingDialect: String, Sendable {
    case diffusers
    case ldm
    case onnx
    case dloral
    case peft
    case kohya
    case diffusersLoRA = "diffusers-lora"
    case cfr
}

/// A checkpoint in any supported form, read under canonical names.
///
/// Model tensors are named `<component>.<diffusers name>` (`unet.conv_in.weight`,
/// `vae.encoder.conv_in.bias`, `cfr.spynet.basic_module.0.basic_module.0.weight`); LoRA pairs are
/// kept apart as `LoRAModule`s. Nothing is copied: every view points into the mapped inputs.
public struct LoadedCheckpoint: Sendable {
    public var path: String
    public var format: CheckpointFormat
    public var dialect: NamingDialect
    /// Base / model tensors under canonical names.
    public var tensors = TensorTable()
    /// LoRA pairs, canonical module names.
    public var lora: [LoRAModule] = []
    public var adapters: [LoRAAdapter] = []
    /// `config.json` of each component, as read or inferred.
    public var configs: OrderedDictionary<ModelComponent, JSONValue> = [:]
    /// Components whose config was inferred from tensor shapes (no config.json).
    public var inferredConfigs: Set<ModelComponent> = []
    /// Tensors we read but could not place, with the reason.
    public var unrecognized: [(name: String, reason: String)] = []
    /// Free-form facts for `inspect` (DLoRAL module lists and ranks, ONNX opset, …).
    public var notes: OrderedDictionary<String, JSONValue> = [:]
    /// Every file read, for provenance.
    public var files: [String] = []
    /// The runtime file, when the checkpoint is a `.dlrt` (its tensors are listed from metadata).
    public var dlrt: DLRTFile?

    public init(path: String, format: CheckpointFormat, dialect: NamingDialect) {
        self.path = path
        self.format = format
        self.dialect = dialect
    }

    /// Components present among the tensors (and `lora` if there are LoRA pairs).
    public var kinds: [String] {
        let names = dlrt.map { $0.entries.map(\.name) } ?? tensors.names
        var present = ModelComponent.allCases.filter { c in
            names.contains { $0.hasPrefix(c.rawValue + ".") }
        }.map(\.rawValue)
        if !lora.isEmpty { present.append("lora") }
        return present
    }

    /// Tensors of one component with the prefix removed.
    public func tensors(of component: ModelComponent) -> TensorTable {
        var table = TensorTable()
        let prefix = component.rawValue + "."
        for (name, view) in tensors.tensors where name.hasPrefix(prefix) {
            table.set(String(name.dropFirst(prefix.count)), view)
        }
        return table
    }
}
