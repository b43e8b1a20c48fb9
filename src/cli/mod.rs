//! Argument parsing and dispatch.

mod build;
mod failure;
mod generate;
mod inspect;
mod lock;
mod progress;
mod push;
mod registry_args;
mod run;
mod store_cmd;
mod units;

pub(crate) use failure::Failure;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// Declarative, reproducible image builds.
///
/// One TOML recipe describes a Linux userland as ordered steps; imgbuild builds it into a
/// content-addressed store, step by cached step, and exports the same image as an OCI
/// layout, an OCI or docker archive, a flattened rootfs tar, a bootable raw or qcow2 disk, or an
/// initramfs; `imgbuild run` boots the last three in QEMU.
///
/// Bases come from scratch, rootfs tarballs, OCI layouts, registries or the Debian
/// archive (resolved by imgbuild itself and pinned in a lock file); `run` steps execute in
/// a namespace sandbox without network.
///
/// Examples:
///   imgbuild build recipes/hello.toml --format oci --format docker-archive
///   imgbuild build recipes/debian-minimal.toml --locked --json
///   imgbuild store gc --keep-recent 7d
#[derive(Debug, Parser)]
#[command(
    name = "imgbuild",
    version,
    propagate_version = true,
    max_term_width = 100,
    verbatim_doc_comment
)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The store directory [default: $XDG_CACHE_HOME/imgbuild or ~/.cache/imgbuild].
    #[arg(long, global = true, env = "IMGBUILD_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    /// How to show a build's progress on stderr: auto (tty on a terminal, else plain), tty
    /// (live spinners with each step's last output lines), plain (a line per step) or
    /// json (one event per line).
    #[arg(
        long,
        global = true,
        env = "IMGBUILD_PROGRESS",
        value_enum,
        value_name = "MODE",
        default_value = "auto"
    )]
    progress: progress::ProgressMode,
    /// Print nothing but errors and the result (the full log is still in the store).
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a recipe and export the image.
    ///
    /// Every step is looked up in the store by its cache key first; only misses run.
    /// Outputs land in the output directory as <name>.oci (layout directory),
    /// <name>.oci.tar, <name>.docker.tar or <name>.rootfs.tar.
    ///
    /// Examples:
    ///   imgbuild build recipes/hello.toml
    ///   imgbuild build app.toml --format oci-archive --format tar -o dist/
    ///   SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) imgbuild build app.toml --json
    ///   imgbuild build app.toml --push registry.example.com/team/app:1.0
    ///   imgbuild build app.toml --cache-from reg.example/app:cache --cache-to reg.example/app:cache
    #[command(verbatim_doc_comment)]
    Build(build::BuildArgs),
    /// Show a recipe's plan (every step's cache key and whether it is cached), or a built image.
    ///
    /// Examples:
    ///   imgbuild inspect recipes/hello.toml
    ///   imgbuild inspect hello:latest --json
    #[command(verbatim_doc_comment)]
    Inspect(inspect::InspectArgs),
    /// Resolve a recipe's inputs and write its lock file (RECIPE with .lock): the Debian
    /// packages, a registry base's manifest digest, and the bootloader packages of disks.
    ///
    /// A build uses the lock when it matches the recipe and rewrites it when the recipe
    /// changed; `build --locked` fails instead, for CI. With a lock, packages are fetched
    /// by hash and no index is read, so the result is the same on any machine; a package
    /// gone from the mirror is fetched from the snapshot server at the lock's Release date.
    ///
    /// Examples:
    ///   imgbuild lock recipes/debian-minimal.toml
    ///   imgbuild lock recipes/debian-minimal.toml --update     # take newer packages
    #[command(verbatim_doc_comment)]
    Lock(lock::LockArgs),
    /// Push an image from the store or an OCI layout directory to a registry.
    ///
    /// Blobs the registry already has are not sent again; uploads stream from disk.
    /// Credentials: IMGBUILD_REGISTRY_USER/IMGBUILD_REGISTRY_PASSWORD, else the Docker config.
    ///
    /// Examples:
    ///   imgbuild push hello:1.0 registry.example.com/team/hello:1.0
    ///   imgbuild push out/hello.oci:1.0 localhost:5000/hello:1.0 --insecure-registry localhost:5000
    #[command(verbatim_doc_comment)]
    Push(push::PushArgs),
    /// Boot a qcow2, raw or initramfs in QEMU with the serial console on this terminal.
    ///
    /// Given a recipe, builds it first (--format qcow2 by default). Uses KVM when it
    /// really works here, else TCG; OVMF (UEFI) for UEFI-only disks or with --uefi, SeaBIOS
    /// otherwise. The disk is opened with snapshot=on: the artifact is never modified.
    /// The guest has a virtio NIC on QEMU's user-mode network (DHCP, NAT to the host's
    /// network); -p forwards host ports to it. Ctrl-A X quits QEMU.
    ///
    /// Examples:
    ///   imgbuild run recipes/debian-vm.toml
    ///   imgbuild run recipes/debian-server.toml -p 2222:22   # then ssh -p 2222 admin@127.0.0.1
    ///   imgbuild run out/debian-vm.qcow2 --uefi --cpus 2 --memory 2048
    ///   imgbuild run out/busybox.initramfs.cpio.zst --timeout 60 --expect "login:"
    #[command(verbatim_doc_comment)]
    Run(run::RunArgs),
    /// Look after the store: list, measure, verify, collect garbage.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Print a shell completion script.
    ///
    /// Examples:
    ///   imgbuild completions bash > /etc/bash_completion.d/imgbuild
    ///   imgbuild completions zsh > "${fpath[1]}/_imgbuild"
    ///   imgbuild completions fish > ~/.config/fish/completions/imgbuild.fish
    #[command(verbatim_doc_comment)]
    Completions(generate::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command with --dir.
    ///
    /// Examples:
    ///   imgbuild man | man -l -
    ///   imgbuild man --dir /usr/local/share/man/man1
    #[command(verbatim_doc_comment)]
    Man(generate::ManArgs),
}

/// Parses the command line (exiting on a usage error as clap does); the flag is true
/// when the command was given `--json`, so that a failure is reported as JSON too.
pub(crate) fn parse() -> (Cli, bool) {
    let matches = Cli::command().try_get_matches().unwrap_or_else(|e| {
        // Without matches, `--json` is looked for among the raw arguments.
        if e.use_stderr() && std::env::args_os().any(|a| a == "--json") {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
            println!("{:#}", Failure::user(message).to_json());
        }
        e.exit()
    });
    let json = wants_json(&matches);
    let cli =
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    (cli, json)
}

fn wants_json(matches: &ArgMatches) -> bool {
    matches!(matches.try_get_one::<bool>("json"), Ok(Some(true)))
        || matches.subcommand().is_some_and(|(_, sub)| wants_json(sub))
}

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> Result<(), Failure> {
    // These need no store.
    match &cli.command {
        Command::Completions(args) => return generate::completions(args),
        Command::Man(args) => return generate::man(args),
        _ => {}
    }
    let display = progress::Display {
        mode: cli.global.progress,
        quiet: cli.global.quiet,
    };
    let store_dir = store_dir(cli.global.store)?;
    match cli.command {
        Command::Build(args) => build::run(&store_dir, display, args),
        Command::Inspect(args) => inspect::run(&store_dir, args),
        Command::Lock(args) => lock::run(&store_dir, display, args),
        Command::Push(args) => push::run(&store_dir, args),
        Command::Run(args) => run::run(&store_dir, display, args),
        Command::Store(cmd) => store_cmd::run(&store_dir, cmd),
        Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}

fn store_dir(flag: Option<PathBuf>) -> Result<PathBuf, Failure> {
    if let Some(dir) = flag {
        // Overlay mounts and sandboxes need absolute paths.
        return std::path::absolute(&dir)
            .map_err(|e| Failure::user(format!("--store {}: {e}", dir.display())));
    }
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(cache).join("imgbuild"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache/imgbuild")),
        None => Err(Failure::user(
            "no store directory: pass --store DIR or set IMGBUILD_STORE",
        )),
    }
}

/// Prints one JSON document to stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}
