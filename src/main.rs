fn main() -> std::process::ExitCode {
    rust_claw::cli::main()
}
