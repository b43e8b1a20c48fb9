//! `imgbuild completions SHELL` and `imgbuild man`: generated from the command line's own
//! definition, so they never disagree with `--help`.

use super::Failure;
use clap::{Args, CommandFactory};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write one page per command (imgbuild.1, imgbuild-build.1, ...) into DIR instead of
    /// printing imgbuild(1).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "imgbuild", &mut script);
    write_stdout(&script)
}

pub(crate) fn man(args: &ManArgs) -> Result<(), Failure> {
    let cmd = super::Cli::command();
    if let Some(dir) = &args.dir {
        fs_err::create_dir_all(dir).map_err(|e| Failure::user(e.to_string()))?;
        return clap_mangen::generate_to(cmd, dir).map_err(|e| {
            Failure::user(format!(
                "cannot write the man pages into {}: {e}",
                dir.display()
            ))
        });
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .map_err(|e| Failure::internal(format!("cannot render the man page: {e}")))?;
    write_stdout(&page)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::internal(format!("cannot write to stdout: {e}")))
}
