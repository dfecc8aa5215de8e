//! Thin entry point: parse the command line and hand over to [`bulletin::cli`].

/// See Cargo.toml: mimalloc instead of glibc malloc for the per-message buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    bulletin::cli::main()
}
