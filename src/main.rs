//! The `imgbuild` command line: a thin layer over the builder, store and formats crates.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    // Without root, everything runs as root of a user namespace mapped to the invoking
    // user's subuid range, so sandboxed steps can own files as any user (as buildah does).
    // Without a subuid range only steps that need the sandbox fail, and they say why.
    if imgbuild_builder::sandbox::IdMap::for_current_user().is_ok() {
        if let Err(e) = imgbuild_builder::sandbox::reexec_in_user_namespace() {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            std::process::ExitCode::from(failure.code)
        }
    }
}
