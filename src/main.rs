use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    themis::cli::main(themis::cli::Cli::parse()).await
}
