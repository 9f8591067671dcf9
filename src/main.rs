use std::process::ExitCode;

use clap::Parser;

mod cli;

/// mimalloc: many small short-lived allocations per case (JSON values, events); it is
/// faster than the system allocator here and returns freed memory to the OS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    cli::main(cli::Cli::parse()).await
}
