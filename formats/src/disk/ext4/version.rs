//! Detecting the installed mke2fs version (`mke2fs -V`).

use std::path::Path;
use std::process::Command;

use super::Ext4Error;

/// Oldest e2fsprogs whose `mke2fs -d` accepts a tar archive.
pub const MIN_VERSION: (u32, u32, u32) = (1, 47, 1);

/// The version of the mke2fs found by [`super::find_mke2fs`].
pub fn mke2fs_version() -> Result<(u32, u32, u32), Ext4Error> {
    version_of(&super::find_mke2fs()?)
}

fn version_of(mke2fs: &Path) -> Result<(u32, u32, u32), Ext4Error> {
    let out = Command::new(mke2fs).arg("-V").env("LC_ALL", "C").output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_version(&text).ok_or(Ext4Error::UnknownVersion { output: text })
}

/// Fails with [`Ext4Error::TooOld`] below [`MIN_VERSION`].
pub(crate) fn require_supported(mke2fs: &Path) -> Result<(), Ext4Error> {
    let v = version_of(mke2fs)?;
    if v < MIN_VERSION {
        return Err(Ext4Error::TooOld {
            found: format!("{}.{}.{}", v.0, v.1, v.2),
        });
    }
    Ok(())
}

/// Parses `mke2fs 1.47.2 (1-Jan-2025)`; a missing patch level counts as 0.
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.split("mke2fs ").nth(1)?;
    let word = rest.split_whitespace().next()?;
    let mut nums = word.split('.').map(|n| {
        let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = nums.next()??;
    let minor = nums.next()??;
    let patch = nums.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("mke2fs 1.47.2 (1-Jan-2025)\n\tUsing EXT2FS Library version 1.47.2"),
            Some((1, 47, 2))
        );
        assert_eq!(
            parse_version("mke2fs 1.47.0 (5-Feb-2023)"),
            Some((1, 47, 0))
        );
        assert_eq!(parse_version("mke2fs 1.48 (1-Jan-2026)"), Some((1, 48, 0)));
        assert_eq!(parse_version("something else"), None);
        assert!((1, 47, 0) < MIN_VERSION && (1, 47, 1) >= MIN_VERSION);
    }

    #[test]
    fn installed_mke2fs_is_new_enough() {
        let v = mke2fs_version().unwrap_or_else(|e| panic!("{e} (Debian package e2fsprogs)"));
        assert!(
            v >= MIN_VERSION,
            "mke2fs {v:?} is too old: install e2fsprogs >= 1.47.1 from bookworm-backports"
        );
    }
}
