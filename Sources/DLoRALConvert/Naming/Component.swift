/// The parts of a DLoRAL model; canonical tensor names are `<component>.<diffusers name>`.
public enum ModelComponent: String, CaseIterable, Sendable, Codable {
    case unet
    case vae
    case cfr
    case textEncoder = "text_encoder"
}
