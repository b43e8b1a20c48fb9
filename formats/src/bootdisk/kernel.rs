//! Finding the kernel and initrd an image ships in `/boot` (`vmlinuz-VERSION`,
//! `initrd.img-VERSION`), as Debian's kernel packages and initramfs-tools install them.
//! The `/vmlinuz` symlink is preferred when present, but not needed.

use crate::ExportError;
use imgbuild_store::tarball::{EntryKind, MergedTree};

/// Where the image's kernel and initrd are (paths relative to the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    /// The kernel release (`6.1.0-28-amd64`).
    pub version: String,
    /// `boot/vmlinuz-VERSION`.
    pub kernel: String,
    /// Its size in bytes.
    pub kernel_size: u64,
    /// `boot/initrd.img-VERSION`, if the image has one.
    pub initrd: Option<String>,
    /// Its size in bytes (0 without one).
    pub initrd_size: u64,
}

impl KernelFiles {
    /// Kernel plus initrd bytes.
    pub fn bytes(&self) -> u64 {
        self.kernel_size + self.initrd_size
    }
}

/// Finds the kernel: the `/vmlinuz` symlink's target if it is a `boot/vmlinuz-*` file,
/// else the highest-versioned `boot/vmlinuz-*`.
pub fn find_kernel(tree: &MergedTree) -> Result<KernelFiles, ExportError> {
    let from_link = ["vmlinuz", "boot/vmlinuz"].iter().find_map(|link| {
        let EntryKind::Symlink(target) = &tree.get(link)?.kind else {
            return None;
        };
        let name = target.rsplit('/').next()?;
        let version = name.strip_prefix("vmlinuz-")?;
        let path = format!("boot/vmlinuz-{version}");
        (tree.get(&path)?.kind == EntryKind::File).then(|| version.to_owned())
    });
    let version = match from_link {
        Some(v) => v,
        None => tree
            .iter()
            .filter(|m| m.kind == EntryKind::File && m.parent() == "boot")
            .filter_map(|m| m.name().strip_prefix("vmlinuz-"))
            .max_by(|a, b| version_cmp(a, b))
            .map(str::to_owned)
            .ok_or(ExportError::NoKernel)?,
    };
    let kernel = format!("boot/vmlinuz-{version}");
    let kernel_size = tree.get(&kernel).map_or(0, |m| m.size);
    let initrd = format!("boot/initrd.img-{version}");
    let (initrd, initrd_size) = match tree.get(&initrd) {
        Some(m) if m.kind == EntryKind::File => (Some(initrd), m.size),
        _ => (None, 0),
    };
    Ok(KernelFiles {
        version,
        kernel,
        kernel_size,
        initrd,
        initrd_size,
    })
}

/// Compares kernel releases: runs of digits numerically, everything else as text.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(&c) = chars.peek() {
            let digit = c.is_ascii_digit();
            let mut run = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_digit() != digit {
                    break;
                }
                run.push(c);
                chars.next();
            }
            out.push(if digit {
                (run.parse().unwrap_or(u64::MAX), String::new())
            } else {
                (0, run)
            });
        }
        out
    }
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgbuild_store::tarball::{EntryMeta, TarWriter};
    use std::io;

    fn tree(entries: &[EntryMeta]) -> MergedTree {
        let mut w = TarWriter::new(Vec::new());
        for e in entries {
            let data = vec![0u8; e.size as usize];
            w.append(e, &mut data.as_slice()).unwrap();
        }
        let bytes = w.finish().unwrap();
        MergedTree::build([bytes.as_slice()]).unwrap()
    }

    fn file(path: &str, size: u64) -> EntryMeta {
        let mut m = EntryMeta::new(path, EntryKind::File, 0o644, 0);
        m.size = size;
        m
    }

    #[test]
    fn picks_the_newest_kernel_without_a_symlink() {
        let t = tree(&[
            file("boot/vmlinuz-6.1.0-9-amd64", 10),
            file("boot/vmlinuz-6.1.0-28-amd64", 20),
            file("boot/initrd.img-6.1.0-28-amd64", 5),
        ]);
        let k = find_kernel(&t).unwrap();
        assert_eq!(k.version, "6.1.0-28-amd64");
        assert_eq!(k.initrd.as_deref(), Some("boot/initrd.img-6.1.0-28-amd64"));
        assert_eq!(k.bytes(), 25);
    }

    #[test]
    fn follows_the_vmlinuz_symlink() {
        let t = tree(&[
            file("boot/vmlinuz-6.1.0-9-amd64", 10),
            file("boot/vmlinuz-6.1.0-28-amd64", 20),
            EntryMeta::new(
                "vmlinuz",
                EntryKind::Symlink("boot/vmlinuz-6.1.0-9-amd64".into()),
                0o777,
                0,
            ),
        ]);
        let k = find_kernel(&t).unwrap();
        assert_eq!(k.version, "6.1.0-9-amd64");
        assert_eq!(k.initrd, None);
    }

    #[test]
    fn no_kernel_says_what_to_install() {
        let t = tree(&[EntryMeta::dir("boot", 0)]);
        let err = find_kernel(&t).unwrap_err().to_string();
        assert!(err.contains("linux-image-amd64"), "{err}");
        let _ = io::empty();
    }
}
