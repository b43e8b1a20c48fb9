//! The `imgbuild` command line: a thin layer over the builder, store and formats crates.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    let (args, json) = cli::parse();
    // Without root, everything runs as root of a user namespace mapped to the invoking
    // user's subuid range, so sandboxed steps can own files as any user (as buildah does).
    // Without a subuid range only steps that need the sandbox fail, and they say why.
    if imgbuild_builder::sandbox::IdMap::for_current_user().is_ok() {
        if let Err(e) = imgbuild_builder::sandbox::reexec_in_user_namespace() {
            return fail(&cli::Failure::user(e.to_string()), json);
        }
    }
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => fail(&failure, json),
    }
}

/// Reports `failure` on stderr and, for `--json`, as one JSON object on stdout.
fn fail(failure: &cli::Failure, json: bool) -> std::process::ExitCode {
    eprintln!("error: {}", failure.message);
    if json && !failure.reported {
        println!("{:#}", failure.to_json());
    }
    std::process::ExitCode::from(failure.code)
}
