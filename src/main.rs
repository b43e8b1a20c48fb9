//! The `imgbuild` command line: a thin layer over the builder, store and formats crates.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            std::process::ExitCode::from(failure.code)
        }
    }
}
