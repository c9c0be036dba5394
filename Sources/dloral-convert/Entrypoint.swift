import DLoRALCLI

@main
enum Entrypoint {
    static func main() { ConvertCommand.main() }
}
