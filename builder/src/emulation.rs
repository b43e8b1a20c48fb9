//! Foreign-architecture builds: whether a platform's code can run on this host, and the
//! kernel's binfmt_misc handler that runs it through qemu-user when it cannot.
//!
//! File steps, Debian unpacking and exports never run the image's code; `run` and
//! `packages` steps and a Debian bootstrap's `dpkg --configure` do. For another
//! architecture those need a binfmt_misc handler whose magic matches that architecture's
//! ELF executables, registered with the fix-binary flag (`F`): the kernel then opens the
//! interpreter when the handler is registered, so it is found from inside the sandbox's
//! namespaces and new root, where its path does not exist. qemu-user-static's handlers
//! (registered by binfmt-support or systemd-binfmt) have it.

use std::path::{Path, PathBuf};

/// Where the kernel lists binfmt_misc handlers.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Overrides [`BINFMT_DIR`] (for tests).
pub const BINFMT_DIR_ENV: &str = "IMGBUILD_BINFMT_DIR";

/// The Debian name of the architecture imgbuild runs on (`amd64`, `arm64`, ...).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// True when code built for `architecture` (a Debian name) cannot run natively here.
pub fn needs_emulation(architecture: &str) -> bool {
    architecture != host_architecture()
}

/// True for the kinds of step that run the image's own programs (and so need emulation
/// on another architecture): `run` and `packages`.
pub fn runs_image_code(kind: &str) -> bool {
    matches!(kind, "run" | "packages")
}

/// The binfmt_misc directory to read: `$IMGBUILD_BINFMT_DIR`, else [`BINFMT_DIR`].
pub fn binfmt_dir() -> PathBuf {
    std::env::var_os(BINFMT_DIR_ENV).map_or_else(|| PathBuf::from(BINFMT_DIR), PathBuf::from)
}

/// A registered binfmt_misc handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// Its name (the file in the binfmt_misc directory).
    pub name: String,
    /// The interpreter it runs (`/usr/libexec/qemu-binfmt/aarch64-binfmt-P`).
    pub interpreter: String,
    /// Whether it has the fix-binary flag.
    pub fix_binary: bool,
}

/// Why a foreign architecture's code cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    /// imgbuild does not know the architecture's ELF machine.
    #[error("imgbuild cannot run `{architecture}` code on this {host} host: it knows the ELF machine of amd64 and arm64 only")]
    Unknown {
        /// The architecture.
        architecture: String,
        /// This host's.
        host: &'static str,
    },
    /// No enabled handler matches the architecture's executables.
    #[error(
        "building for {architecture} on this {host} host runs `run` and `packages` steps (and a Debian bootstrap) under qemu-user, but no binfmt_misc handler for {architecture} executables is registered in {}",
        dir.display()
    )]
    NoHandler {
        /// The architecture.
        architecture: String,
        /// This host's.
        host: &'static str,
        /// Where handlers were looked for.
        dir: PathBuf,
    },
    /// A handler matches, but without the fix-binary flag.
    #[error("the binfmt_misc handler `{name}` for {architecture} ({interpreter}) is registered without the fix-binary flag (F), so the build sandbox, which has its own root, cannot find its interpreter")]
    NotFixBinary {
        /// The architecture.
        architecture: String,
        /// The handler.
        name: String,
        /// Its interpreter.
        interpreter: String,
    },
}

impl EmulationError {
    /// What to do.
    pub fn help(&self) -> String {
        match self {
            Self::Unknown { .. } => {
                "build for linux/amd64 or linux/arm64, or on a host of that architecture".into()
            }
            Self::NoHandler { .. } => {
                "install qemu-user-static and binfmt-support (`apt-get install qemu-user-static \
                 binfmt-support`), which register the handlers with the fix-binary flag; check \
                 with `update-binfmts --display`"
                    .into()
            }
            Self::NotFixBinary { name, .. } => format!(
                "re-register it with the F flag: `update-binfmts --disable {name}` and install \
                 qemu-user-static (its handlers have F), or write the handler again with flags \
                 `F` to /proc/sys/fs/binfmt_misc/register"
            ),
        }
    }
}

/// The ELF `e_machine` of an architecture's executables.
fn elf_machine(architecture: &str) -> Option<u16> {
    match architecture {
        "amd64" => Some(0x3e),
        "arm64" => Some(0xb7),
        _ => None,
    }
}

/// The enabled handler in `dir` that runs 64-bit little-endian ELF executables of
/// `architecture`, which must have the fix-binary flag.
pub fn find_handler(dir: &Path, architecture: &str) -> Result<Handler, EmulationError> {
    let machine = elf_machine(architecture).ok_or_else(|| EmulationError::Unknown {
        architecture: architecture.to_owned(),
        host: host_architecture(),
    })?;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    let mut found: Option<Handler> = None;
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "register" || name == "status" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Some(handler) = parse_handler(&name, &text, machine) {
            if handler.fix_binary {
                return Ok(handler);
            }
            found.get_or_insert(handler);
        }
    }
    match found {
        Some(h) => Err(EmulationError::NotFixBinary {
            architecture: architecture.to_owned(),
            name: h.name,
            interpreter: h.interpreter,
        }),
        None => Err(EmulationError::NoHandler {
            architecture: architecture.to_owned(),
            host: host_architecture(),
            dir: dir.to_owned(),
        }),
    }
}

/// A handler file's content, when it is enabled and matches ELF executables of `machine`.
fn parse_handler(name: &str, text: &str, machine: u16) -> Option<Handler> {
    let mut lines = text.lines();
    if lines.next()? != "enabled" {
        return None;
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
    };
    if field("offset ").unwrap_or("0") != "0" {
        return None;
    }
    let magic = hex_bytes(field("magic ")?)?;
    let mask = match field("mask ") {
        Some(m) => hex_bytes(m)?,
        None => vec![0xff; magic.len()],
    };
    // An ELF64 little-endian executable for `machine`, with the bytes the mask keeps.
    let mut elf = [0u8; 20];
    elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
    elf[6] = 1;
    elf[16] = 2;
    elf[18..20].copy_from_slice(&machine.to_le_bytes());
    if magic.len() < 20 || mask.len() < magic.len() {
        return None;
    }
    let matches = (0..20).all(|i| elf[i] & mask[i] == magic[i] & mask[i]);
    if !matches {
        return None;
    }
    Some(Handler {
        name: name.to_owned(),
        interpreter: field("interpreter ").unwrap_or_default().to_owned(),
        fix_binary: field("flags:").is_some_and(|f| f.contains('F')),
    })
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What qemu-user-static registers on Debian for aarch64.
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn qemu_user_static_handler_is_found_for_arm64_only() {
        let dir = dir_with(&[
            ("register", ""),
            ("status", "enabled\n"),
            ("qemu-aarch64", AARCH64),
        ]);
        let h = find_handler(dir.path(), "arm64").unwrap();
        assert_eq!(h.name, "qemu-aarch64");
        assert!(h.fix_binary);
        assert!(matches!(
            find_handler(dir.path(), "amd64"),
            Err(EmulationError::NoHandler { .. })
        ));
    }

    #[test]
    fn a_handler_without_fix_binary_or_disabled_is_refused() {
        let no_f = AARCH64.replace("flags: POCF", "flags: OC");
        let dir = dir_with(&[("qemu-aarch64", &no_f)]);
        let e = find_handler(dir.path(), "arm64").unwrap_err();
        assert!(matches!(e, EmulationError::NotFixBinary { .. }), "{e}");
        assert!(e.help().contains("qemu-user-static"));
        let disabled = AARCH64.replace("enabled", "disabled");
        let dir = dir_with(&[("qemu-aarch64", &disabled)]);
        assert!(matches!(
            find_handler(dir.path(), "arm64"),
            Err(EmulationError::NoHandler { .. })
        ));
    }

    #[test]
    fn an_empty_or_missing_directory_has_no_handler() {
        let dir = tempfile::tempdir().unwrap();
        let e = find_handler(dir.path(), "arm64").unwrap_err();
        assert!(e.to_string().contains("no binfmt_misc handler"), "{e}");
        assert!(e
            .help()
            .contains("apt-get install qemu-user-static binfmt-support"));
        assert!(find_handler(&dir.path().join("missing"), "arm64").is_err());
        assert!(matches!(
            find_handler(dir.path(), "mips64el"),
            Err(EmulationError::Unknown { .. })
        ));
    }

    #[test]
    fn the_host_runs_its_own_architecture() {
        assert!(!needs_emulation(host_architecture()));
    }
}
