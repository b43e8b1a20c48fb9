//! Bootloader binaries for bootable disks, taken from Debian packages fetched into the
//! store through [`crate::debian`] like any other package, never from the host.
//!
//! | firmware | package | file | becomes |
//! |---|---|---|---|
//! | UEFI | `systemd-boot-efi` | `usr/lib/systemd/boot/efi/systemd-bootx64.efi` | `EFI/BOOT/BOOTX64.EFI` |
//! | UEFI (arm64) | `systemd-boot-efi:arm64` | `usr/lib/systemd/boot/efi/systemd-bootaa64.efi` | `EFI/BOOT/BOOTAA64.EFI` |
//! | BIOS | `syslinux-common` | `usr/lib/syslinux/mbr/gptmbr.bin` | MBR boot code |
//! | BIOS | `syslinux-common` | `usr/lib/syslinux/modules/bios/ldlinux.c32` | `/ldlinux.c32` on the ESP |
//! | BIOS | `syslinux` | `usr/bin/syslinux` | the installer, run on the disk file |
//!
//! The packages are resolved from the recipe's Debian mirror and suite when it has one,
//! else from bookworm on [`crate::debian::DEFAULT_MIRROR`], for the image's architecture
//! (arm64 disks boot under UEFI only: no syslinux for them).
//! [`resolve`] pins the UEFI and BIOS sets for `recipe.lock` (`[[boot_package]]`);
//! [`fetch_pinned`] fetches what a disk needs of them without touching the indices.
//!
//! Resolving means parsing the suite's whole `Packages` index (over a second), so the
//! result is remembered in the store's `boot-assets` bucket, keyed by the request and the
//! SHA-256 of the verified `InRelease`: a new Release resolves again, an unchanged one
//! costs one small signed download.

use crate::debian::fetch::{fetch_debs_or_snapshot, FetchError};
use crate::debian::http::Http;
pub use crate::debian::lock::LockedBootPackage;
use crate::debian::release::{fetch_release, ReleaseOptions};
use crate::debian::{
    deb::{Deb, DebError},
    resolve_from_mirror, DebianError, DebianFrom, LockedPackage, DEFAULT_MIRROR,
};
use crate::sources::debian::StoreCache;
use imgbuild_store::{Bucket, Digest, Store};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The suite used when the recipe does not start from Debian.
pub const DEFAULT_SUITE: &str = "bookworm";

/// The UEFI bootloader's package.
pub const SYSTEMD_BOOT_PACKAGE: &str = "systemd-boot-efi";
/// The BIOS bootloader's packages.
pub const SYSLINUX_PACKAGES: [&str; 2] = ["syslinux", "syslinux-common"];

const SYSTEMD_BOOT_EFI: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
const SYSTEMD_BOOT_EFI_ARM64: &str = "usr/lib/systemd/boot/efi/systemd-bootaa64.efi";
const GPTMBR: &str = "usr/lib/syslinux/mbr/gptmbr.bin";
const LDLINUX_C32: &str = "usr/lib/syslinux/modules/bios/ldlinux.c32";
const SYSLINUX_BIN: &str = "usr/bin/syslinux";

/// The Debian packages a disk booting under UEFI and/or BIOS needs.
pub fn packages(uefi: bool, bios: bool) -> Vec<String> {
    let mut out = Vec::new();
    if uefi {
        out.push(SYSTEMD_BOOT_PACKAGE.to_owned());
    }
    if bios {
        out.extend(SYSLINUX_PACKAGES.map(str::to_owned));
    }
    out
}

/// Whether disks of the Debian architecture `arch` can boot under legacy BIOS (amd64
/// only; arm64 boots under UEFI alone).
pub fn has_bios(arch: &str) -> bool {
    arch == "amd64"
}

/// The bootloader packages of `wanted` that exist for `arch`: syslinux only for amd64.
pub fn for_architecture(wanted: &[String], arch: &str) -> Vec<String> {
    wanted
        .iter()
        .filter(|p| has_bios(arch) || !SYSLINUX_PACKAGES.contains(&p.as_str()))
        .cloned()
        .collect()
}

/// Fetching or reading the bootloader packages failed.
#[derive(Debug, thiserror::Error)]
pub enum BootAssetsError {
    /// Resolving the packages against the mirror failed.
    #[error("resolving the bootloader packages {packages:?}: {source}")]
    Resolve {
        /// The packages.
        packages: Vec<String>,
        /// Why.
        #[source]
        source: DebianError,
    },
    /// Downloading a package failed.
    #[error("downloading the bootloader packages: {0}")]
    Fetch(#[from] FetchError),
    /// A package could not be read.
    #[error("reading a bootloader package: {0}")]
    Deb(#[from] DebError),
    /// A package lacks a file it should have.
    #[error("{package} has no {path}; pin a version that ships it")]
    MissingFile {
        /// The package.
        package: String,
        /// The file.
        path: &'static str,
    },
    /// Storing a package in the store failed.
    #[error("storing a bootloader package in the store: {0}")]
    Store(#[from] imgbuild_store::StoreError),
}

impl BootAssetsError {
    /// True when the user has to fix something (the mirror, keyring or suite of the
    /// recipe's Debian base, a pinned version); false for an unreachable mirror.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Resolve { source, .. } => source.is_user_error(),
            Self::Fetch(e) => e.is_user_error(),
            Self::Deb(e) => e.is_user_error(),
            Self::MissingFile { .. } => true,
            Self::Store(e) => e.is_user_error(),
        }
    }
}

/// The bootloader binaries and the packages they came from.
#[derive(Debug, Clone, Default)]
pub struct FetchedBootFiles {
    /// `systemd-bootx64.efi` (`systemd-bootaa64.efi` for arm64).
    pub systemd_boot: Option<Vec<u8>>,
    /// `gptmbr.bin`.
    pub gptmbr: Option<Vec<u8>>,
    /// `ldlinux.c32` (BIOS).
    pub ldlinux_c32: Option<Vec<u8>>,
    /// The `syslinux` installer binary.
    pub syslinux_installer: Option<Vec<u8>>,
    /// The exact packages used, for the lock.
    pub packages: Vec<LockedPackage>,
}

/// The recipe's Debian source for bootloaders: its mirror and suite with only the
/// bootloader packages requested, or bookworm on the default mirror; for the Debian
/// architecture `arch` (the image's).
pub fn source(from: Option<&DebianFrom>, arch: &str) -> DebianFrom {
    let mut src = from.cloned().unwrap_or_else(|| DebianFrom {
        suite: DEFAULT_SUITE.to_owned(),
        variant: "custom".to_owned(),
        mirror: DEFAULT_MIRROR.to_owned(),
        components: vec!["main".to_owned()],
        keyring: None,
        architecture: "amd64".to_owned(),
        snapshot: None,
        updates: false,
        security: false,
        apt: false,
        sources: Vec::new(),
    });
    src.variant = "custom".to_owned();
    src.architecture = arch.to_owned();
    // Bootloaders come from the main suite alone (their packages are fetched from it).
    src.updates = false;
    src.security = false;
    src.sources.clear();
    src
}

/// Resolves every bootloader package of the architecture `arch` (the UEFI and, for
/// amd64, the BIOS set) against the recipe's Debian source (see [`source`]), for
/// `recipe.lock`: nothing is downloaded but the `InRelease` and, unless remembered, the
/// indices.
pub fn resolve(
    store: &Store,
    from: Option<&DebianFrom>,
    arch: &str,
) -> Result<Vec<LockedBootPackage>, BootAssetsError> {
    let wanted = packages(true, has_bios(arch));
    let src = source(from, arch);
    let cache = StoreCache(store);
    let http = Http::new();
    let resolve_err = |source| BootAssetsError::Resolve {
        packages: wanted.clone(),
        source,
    };
    let release = fetch_release(
        &http,
        &src.mirror,
        &src.suite,
        src.keyring_path(),
        &ReleaseOptions::default(),
    )
    .map_err(|e| resolve_err(DebianError::Release(e)))?;
    let remembered = remembered_path(store, &src, &wanted, &release.inrelease_sha256);
    let pin = |locked: &[LockedPackage], date: &str| -> Vec<LockedBootPackage> {
        locked
            .iter()
            .map(|p| LockedBootPackage::new(p, &src.mirror, &src.suite, date))
            .collect()
    };
    if let Some(locked) = fs_err::read(&remembered)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<LockedPackage>>(&b).ok())
    {
        return Ok(pin(&locked, &release.date));
    }
    let resolved = resolve_from_mirror(&http, &src, &wanted, &cache, &ReleaseOptions::default())
        .map_err(resolve_err)?;
    let locked: Vec<LockedPackage> = resolved
        .lock
        .packages
        .into_iter()
        .filter(|p| wanted.contains(&p.name))
        .collect();
    remember(&remembered, &locked);
    Ok(pin(&locked, &resolved.release.date))
}

/// Where the resolution of `wanted` against the Release `inrelease_sha256` is remembered.
fn remembered_path(
    store: &Store,
    src: &DebianFrom,
    wanted: &[String],
    inrelease_sha256: &str,
) -> PathBuf {
    let key = format!(
        "{}\n{}\n{}\n{}\n{}\n{inrelease_sha256}",
        src.mirror,
        src.suite,
        src.components.join(" "),
        src.architecture,
        wanted.join(" ")
    );
    store
        .bucket(Bucket::BootAssets)
        .join(format!("{}.json", Digest::of(key.as_bytes()).hex()))
}

/// Remembers a resolution; a failure only costs a resolution next time.
fn remember(path: &Path, locked: &[LockedPackage]) {
    let Ok(json) = serde_json::to_vec_pretty(locked) else {
        return;
    };
    let Some(dir) = path.parent() else { return };
    if fs_err::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) {
        if std::io::Write::write_all(&mut tmp, &json).is_ok() {
            let _ = tmp.persist(path);
        }
    }
}

/// Fetches the pinned packages that `uefi`/`bios` need into the store (from the mirror
/// they were resolved from, or from the recipe's snapshot server when the mirror no
/// longer has them; always checked by hash) and unpacks the bootloaders: systemd-boot for
/// the architecture its package was pinned for. Reads no index.
pub fn fetch_pinned(
    store: &Store,
    from: Option<&DebianFrom>,
    pinned: &[LockedBootPackage],
    uefi: bool,
    bios: bool,
) -> Result<FetchedBootFiles, BootAssetsError> {
    let wanted = packages(uefi, bios);
    let pinned: Vec<&LockedBootPackage> =
        pinned.iter().filter(|p| wanted.contains(&p.name)).collect();
    let locked: Vec<LockedPackage> = pinned.iter().map(|p| p.package()).collect();
    let Some(first) = pinned.first() else {
        return Ok(FetchedBootFiles::default());
    };
    let cache = StoreCache(store);
    let snapshot = source(from, &first.architecture).snapshot(&first.release_date);
    let paths = fetch_debs_or_snapshot(
        &Http::new(),
        &first.mirror,
        Some(&snapshot),
        &locked,
        &cache,
        3,
    )?;
    let mut out = FetchedBootFiles {
        packages: locked.clone(),
        ..FetchedBootFiles::default()
    };
    for (pkg, path) in locked.iter().zip(&paths) {
        let want: &[&'static str] = match pkg.name.as_str() {
            SYSTEMD_BOOT_PACKAGE if pkg.architecture == "arm64" => &[SYSTEMD_BOOT_EFI_ARM64],
            SYSTEMD_BOOT_PACKAGE => &[SYSTEMD_BOOT_EFI],
            "syslinux-common" => &[GPTMBR, LDLINUX_C32],
            "syslinux" => &[SYSLINUX_BIN],
            _ => &[],
        };
        let mut files = extract(path, want)?;
        for file in want {
            let bytes = files
                .remove(*file)
                .ok_or_else(|| BootAssetsError::MissingFile {
                    package: pkg.name.clone(),
                    path: file,
                })?;
            let slot = match *file {
                SYSTEMD_BOOT_EFI | SYSTEMD_BOOT_EFI_ARM64 => &mut out.systemd_boot,
                GPTMBR => &mut out.gptmbr,
                LDLINUX_C32 => &mut out.ldlinux_c32,
                _ => &mut out.syslinux_installer,
            };
            *slot = Some(bytes);
        }
    }
    Ok(out)
}

/// Reads the files at `want` (relative paths) from a `.deb`'s data.
fn extract(deb: &Path, want: &[&str]) -> Result<BTreeMap<String, Vec<u8>>, BootAssetsError> {
    let mut found = BTreeMap::new();
    if want.is_empty() {
        return Ok(found);
    }
    let io = |source| DebError::Io {
        path: deb.to_owned(),
        source,
    };
    let pkg = Deb::open(deb)?;
    let mut data = pkg.data()?;
    for entry in data.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_owned();
        if want.contains(&path.as_str()) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io)?;
            found.insert(path, bytes);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_follow_the_firmware() {
        assert_eq!(packages(true, false), ["systemd-boot-efi"]);
        assert_eq!(packages(false, true), ["syslinux", "syslinux-common"]);
        assert_eq!(packages(true, true).len(), 3);
        assert!(packages(false, false).is_empty());
        let all = packages(true, true);
        assert_eq!(for_architecture(&all, "arm64"), ["systemd-boot-efi"]);
        assert_eq!(for_architecture(&all, "amd64"), all);
    }

    #[test]
    fn the_recipes_mirror_is_used_without_its_base_set() {
        assert_eq!(source(None, "amd64").suite, DEFAULT_SUITE);
        assert_eq!(source(None, "arm64").architecture, "arm64");
        let mut from = source(None, "amd64");
        from.suite = "trixie".into();
        from.mirror = "http://mirror.example/debian".into();
        from.variant = "minbase".into();
        let src = source(Some(&from), "amd64");
        assert_eq!(
            (src.suite.as_str(), src.variant.as_str()),
            ("trixie", "custom")
        );
        assert_eq!(src.mirror, "http://mirror.example/debian");
    }
}
