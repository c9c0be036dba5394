import DLoRALCLI

@main
enum Entrypoint {
    static func main() { VerifyCommand.main() }
}
