//! Thin entry point: parse the command line and hand over to [`bulletin::cli`].

fn main() -> std::process::ExitCode {
    bulletin::cli::main()
}
