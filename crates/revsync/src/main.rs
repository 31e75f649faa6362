//! The `revsync` command: a thin layer over the library (see `cli/`).

mod cli;

// The receive path allocates per field of every notification; glibc's allocator was a sixth
// of the CPU profile of `bench ingest`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
