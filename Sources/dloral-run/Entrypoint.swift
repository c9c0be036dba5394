import DLoRALCLI

@main
enum Entrypoint {
    static func main() { RunCommand.main() }
}
