//! Installing Debian packages, as mmdebstrap does: the base's packages are first unpacked
//! straight into a layer (so that a shell and dpkg exist), then dpkg runs in the sandbox so
//! that every maintainer script runs and dpkg's database lists every package as installed;
//! the two layers are squashed into one. A `packages` step on top of a Debian system runs
//! dpkg in the sandbox directly. On a base without dpkg (variant `custom`), packages are
//! only unpacked: no maintainer scripts run, as with apko.

use super::sandboxed::run_to_layer;
use super::StepError;
use crate::debian::deb::Deb;
use crate::debian::LockedPackage;
use crate::sandbox::{self, OutputLine};
use crate::sources::debian::AptFile;
use imgbuild_store::tarball::{read_meta, EntryKind, EntryMeta, TarWriter};
use imgbuild_store::{Compression, Digest, LayerRecord, MergeError, Store};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::PathBuf;

/// Top-level directories that live under `/usr` on a merged-/usr system (bookworm and later).
const MERGED_USR: [&str; 4] = ["bin", "sbin", "lib", "lib64"];

/// What an installation needs: the packages and where their `.deb`s are.
pub(crate) struct Install<'a> {
    pub packages: &'a [LockedPackage],
    pub debs: &'a BTreeMap<String, PathBuf>,
    pub essential: &'a BTreeSet<String>,
    pub epoch: u64,
    pub compression: Compression,
}

/// Unpacks the packages' data into one layer, `/bin`, `/sbin`, `/lib` and `/lib64` merged
/// into `/usr`, with the files dpkg needs to start.
pub(crate) fn unpack_layer(
    store: &Store,
    number: usize,
    install: &Install<'_>,
    merged_usr_links: bool,
) -> Result<LayerRecord, StepError> {
    let io_err = |source| StepError::Io {
        step: number,
        source,
    };
    let deb_err = |e: crate::debian::deb::DebError| StepError::Sandbox {
        step: number,
        message: e.to_string(),
    };
    let epoch = install.epoch;
    let mut layer = store
        .layer_writer(install.compression)
        .map_err(|source| StepError::Store {
            step: number,
            source,
        })?;
    {
        let mut tar = TarWriter::new(&mut layer);
        let mut dirs = BTreeSet::new();
        if merged_usr_links {
            tar.append(&EntryMeta::dir("usr", epoch), &mut io::empty())
                .map_err(io_err)?;
            dirs.insert("usr".to_owned());
            for top in MERGED_USR {
                let link =
                    EntryMeta::new(top, EntryKind::Symlink(format!("usr/{top}")), 0o777, epoch);
                tar.append(&link, &mut io::empty()).map_err(io_err)?;
                tar.append(
                    &EntryMeta::dir(format!("usr/{top}"), epoch),
                    &mut io::empty(),
                )
                .map_err(io_err)?;
                dirs.insert(format!("usr/{top}"));
            }
            for (dir, mode) in [
                ("var", 0o755),
                ("var/lib", 0o755),
                ("var/lib/dpkg", 0o755),
                ("var/lib/dpkg/info", 0o755),
                ("var/lib/dpkg/updates", 0o755),
            ] {
                tar.append(
                    &EntryMeta::new(dir, EntryKind::Dir, mode, epoch),
                    &mut io::empty(),
                )
                .map_err(io_err)?;
                dirs.insert(dir.to_owned());
            }
            for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
                tar.append(
                    &EntryMeta::new(file, EntryKind::File, 0o644, epoch),
                    &mut io::empty(),
                )
                .map_err(io_err)?;
            }
            let arch = EntryMeta {
                size: 6,
                ..EntryMeta::new("var/lib/dpkg/arch", EntryKind::File, 0o644, epoch)
            };
            tar.append(&arch, &mut &b"amd64\n"[..]).map_err(io_err)?;
        }
        let window = (rayon::current_num_threads() * 2).max(4);
        for chunk in install.packages.chunks(window) {
            // Decompressed in parallel, a window at a time (memory bounded by the window's
            // largest packages), then written in the packages' order: the same bytes.
            let tars = chunk
                .par_iter()
                .map(|package| data_tar(&install.debs[&package.sha256]))
                .collect::<Vec<_>>();
            for (package, tar_bytes) in chunk.iter().zip(tars) {
                let tar_bytes = tar_bytes.map_err(deb_err)?;
                let mut data = tar::Archive::new(&tar_bytes[..]);
                for entry in data.entries().map_err(io_err)? {
                    let mut entry = entry.map_err(io_err)?;
                    let mut meta = read_meta(&mut entry).map_err(|e| StepError::Sandbox {
                        step: number,
                        message: format!("{}: {e}", package.name),
                    })?;
                    if meta.path.is_empty() {
                        continue;
                    }
                    if merged_usr_links {
                        let top = meta.path.split('/').next().unwrap_or_default();
                        if MERGED_USR.contains(&top) {
                            if meta.path == top {
                                continue;
                            }
                            meta.path = format!("usr/{}", meta.path);
                        }
                        if let EntryKind::Hardlink(target) = &mut meta.kind {
                            let top = target.split('/').next().unwrap_or_default();
                            if MERGED_USR.contains(&top) {
                                *target = format!("usr/{target}");
                            }
                        }
                    }
                    if meta.is_dir() && !dirs.insert(meta.path.clone()) {
                        continue;
                    }
                    meta.mtime = meta.mtime.min(epoch);
                    tar.append(&meta, &mut entry).map_err(io_err)?;
                }
            }
        }
        tar.finish().map_err(io_err)?;
    }
    layer.commit(store).map_err(|source| StepError::Store {
        step: number,
        source,
    })
}

/// The decompressed data tarball of the `.deb` at `path`.
fn data_tar(path: &std::path::Path) -> Result<Vec<u8>, crate::debian::deb::DebError> {
    let deb = Deb::open(path)?;
    let mut bytes = Vec::new();
    deb.data()?
        .into_inner()
        .read_to_end(&mut bytes)
        .map_err(|source| crate::debian::deb::DebError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// The shell script that installs the `.deb`s mounted under `/run/secrets` with dpkg:
/// `essential` first, then `rest`, then `kernels` in a run of their own.
///
/// dpkg runs with `--force-unsafe-io`: it skips its fsync of every unpacked file, which on
/// the sandbox's overlay costs much and buys nothing (a failed step leaves no layer). It is
/// a command-line option only: nothing of it stays in the image.
///
/// The kernels come last so that their initramfs is generated once: installed with the
/// rest, the kernel's postinst hook generates it and the `update-initramfs` trigger, which
/// the rest activated, generates it again at the end of the run. Installed after the rest's
/// run (whose trigger then finds no kernel and does nothing), only the postinst hook
/// generates it, with every other package configured, as the trigger would have.
fn dpkg_script(essential: &[String], rest: &[String], kernels: &[String], epoch: u64) -> String {
    let quote = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("/run/secrets/{id}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut script = format!(
        "set -e\n\
         export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH={epoch}\n\
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d\n\
         chmod 755 /usr/sbin/policy-rc.d\n"
    );
    for ids in [essential, rest, kernels] {
        if !ids.is_empty() {
            script.push_str(&format!(
                "dpkg --force-depends --force-unsafe-io --install {}\n",
                quote(ids)
            ));
        }
    }
    script.push_str(
        "dpkg --force-unsafe-io --configure --pending\n\
         rm -f /usr/sbin/policy-rc.d\n\
         audit=$(dpkg --audit)\n\
         if [ -n \"$audit\" ]; then echo \"$audit\" >&2; exit 1; fi\n\
         # What differs from run to run and means nothing.\n\
         rm -f /var/log/dpkg.log /var/log/alternatives.log /var/log/bootstrap.log\n\
         rm -rf /var/log/apt/* /var/cache/apt/*.bin /var/cache/ldconfig/aux-cache /var/lib/dpkg/*-old /var/cache/debconf/*-old\n\
         if [ -e /etc/machine-id ]; then : > /etc/machine-id; fi\n",
    );
    script
}

/// Whether a package is a kernel image (`linux-image-*`, the metapackages too): installed
/// in a dpkg run of its own, after the rest (see [`dpkg_script`]).
fn is_kernel(name: &str) -> bool {
    name.starts_with("linux-image-")
}

/// Secret ids for `.deb`s: their file names made safe.
fn deb_ids(
    install: &Install<'_>,
    names: &[&LockedPackage],
) -> (Vec<String>, BTreeMap<String, PathBuf>) {
    let mut ids = Vec::new();
    let mut files = BTreeMap::new();
    for p in names {
        let id = format!("{}_{}.deb", p.name.replace('+', "_"), &p.sha256[..12]);
        files.insert(id.clone(), install.debs[&p.sha256].clone());
        ids.push(id);
    }
    (ids, files)
}

/// Runs dpkg in the sandbox over `below` to install the packages, as one layer.
pub(crate) fn dpkg_layer(
    store: &Store,
    number: usize,
    below: &[Digest],
    install: &Install<'_>,
    on_line: &mut dyn FnMut(&OutputLine<'_>),
) -> Result<LayerRecord, StepError> {
    let (essential, rest): (Vec<&LockedPackage>, Vec<&LockedPackage>) = install
        .packages
        .iter()
        .partition(|p| install.essential.contains(&p.name));
    let (kernels, rest): (Vec<&LockedPackage>, Vec<&LockedPackage>) =
        rest.into_iter().partition(|p| is_kernel(&p.name));
    let (essential_ids, mut secrets) = deb_ids(install, &essential);
    let (rest_ids, more) = deb_ids(install, &rest);
    secrets.extend(more);
    let (kernel_ids, more) = deb_ids(install, &kernels);
    secrets.extend(more);
    let mut step = sandbox::Step::shell(
        format!("step {number}"),
        dpkg_script(&essential_ids, &rest_ids, &kernel_ids, install.epoch),
    );
    step.secrets = secrets;
    run_to_layer(
        store,
        number,
        below,
        &step,
        install.epoch,
        install.compression,
        on_line,
    )
}

/// Bootstraps a Debian base: unpack, configure with dpkg, squash into one layer.
pub(crate) fn bootstrap_layer(
    store: &Store,
    install: &Install<'_>,
    on_line: &mut dyn FnMut(&OutputLine<'_>),
) -> Result<LayerRecord, StepError> {
    // The two intermediate layers are read back at once and never exported: not worth compressing.
    let scratch = Install {
        compression: Compression::None,
        ..*install
    };
    let unpacked = unpack_layer(store, 0, &scratch, true)?;
    let configured = dpkg_layer(
        store,
        0,
        std::slice::from_ref(&unpacked.diff_id),
        &scratch,
        on_line,
    )?;
    squash(
        store,
        &[unpacked.diff_id, configured.diff_id],
        install.epoch,
        install.compression,
    )
}

/// The layer `below` with `files` added (root-owned, 0644, parents 0755, at `epoch`), as
/// one layer: a bootstrap with its apt configuration.
pub(crate) fn with_files(
    store: &Store,
    below: &Digest,
    files: &[AptFile],
    epoch: u64,
    compression: Compression,
) -> Result<LayerRecord, StepError> {
    let added = files_layer(store, files, epoch)?;
    squash(store, &[below.clone(), added.diff_id], epoch, compression)
}

/// A layer of root-owned 0644 files (and their 0755 parent directories), at `epoch`.
fn files_layer(store: &Store, files: &[AptFile], epoch: u64) -> Result<LayerRecord, StepError> {
    let store_err = |source| StepError::Store { step: 0, source };
    let io_err = |source| StepError::Io { step: 0, source };
    let mut layer = store.layer_writer(Compression::None).map_err(store_err)?;
    {
        let mut tar = TarWriter::new(&mut layer);
        let mut dirs = BTreeSet::new();
        for f in files {
            let mut parent = String::new();
            for part in f.path.split('/').take(f.path.split('/').count() - 1) {
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(part);
                if dirs.insert(parent.clone()) {
                    tar.append(&EntryMeta::dir(parent.clone(), epoch), &mut io::empty())
                        .map_err(io_err)?;
                }
            }
            let meta = EntryMeta::file(f.path.clone(), f.content.len() as u64, epoch);
            tar.append(&meta, &mut &f.content[..]).map_err(io_err)?;
        }
        tar.finish().map_err(io_err)?;
    }
    layer.commit(store).map_err(store_err)
}

/// Merges layers into one.
fn squash(
    store: &Store,
    layers: &[Digest],
    _epoch: u64,
    compression: Compression,
) -> Result<LayerRecord, StepError> {
    let store_err = |source| StepError::Store { step: 0, source };
    let read_err = |e: imgbuild_store::tarball::LayerReadError| StepError::Sandbox {
        step: 0,
        message: e.to_string(),
    };
    let open = || -> Result<Vec<Box<dyn io::Read + Send>>, StepError> {
        layers
            .iter()
            .map(|d| store.open_layer(d).map_err(store_err))
            .collect()
    };
    let tree = store.merged_tree(layers).map_err(|e| match e {
        MergeError::Store(source) => store_err(source),
        MergeError::Layer { source, .. } => read_err(source),
    })?;
    let mut layer = store.layer_writer(compression).map_err(store_err)?;
    {
        let mut tar = TarWriter::new(&mut layer);
        tree.stream(open()?, &mut tar).map_err(read_err)?;
        tar.finish()
            .map_err(|source| StepError::Io { step: 0, source })?;
    }
    layer.commit(store).map_err(store_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn kernels_are_installed_in_a_dpkg_run_after_the_rest() {
        let script = dpkg_script(
            &ids(&["base.deb"]),
            &ids(&["initramfs.deb", "udev.deb"]),
            &ids(&["linux-image.deb"]),
            0,
        );
        let runs: Vec<&str> = script.lines().filter(|l| l.starts_with("dpkg ")).collect();
        assert_eq!(
            runs,
            [
                "dpkg --force-depends --force-unsafe-io --install /run/secrets/base.deb",
                "dpkg --force-depends --force-unsafe-io --install /run/secrets/initramfs.deb /run/secrets/udev.deb",
                "dpkg --force-depends --force-unsafe-io --install /run/secrets/linux-image.deb",
                "dpkg --force-unsafe-io --configure --pending",
            ]
        );
        assert!(is_kernel("linux-image-amd64"));
        assert!(is_kernel("linux-image-6.1.0-50-amd64"));
        assert!(!is_kernel("linux-base"));
        assert!(!is_kernel("linux-headers-amd64"));
    }

    #[test]
    fn no_run_for_an_empty_set() {
        let script = dpkg_script(&[], &ids(&["a.deb"]), &[], 0);
        assert_eq!(script.matches("--install").count(), 1);
    }
}
