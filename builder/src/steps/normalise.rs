//! Reproducible Debian installs: after a `run` or `packages` step on a dpkg system (an
//! image with `var/lib/dpkg/status`), what the step changed is normalised before it
//! becomes the layer, as mkosi and mmdebstrap do (docs/recipe.md, "Reproducible by
//! default"):
//!
//! * `etc/machine-id` is left empty (systemd initialises it on first boot) and
//!   `var/lib/dbus/machine-id` becomes a link to `/etc/machine-id`;
//! * SSH host keys (`etc/ssh/ssh_host_*`) are removed and, when openssh-server is
//!   installed, a unit that runs `ssh-keygen -A` on first boot is installed and enabled;
//! * `var/lib/systemd/random-seed`, `var/cache/ldconfig/aux-cache`, logs under `var/log`
//!   (`*.log`, `*.log.*`) and backups (`etc/passwd-` and the like, `*-old` of dpkg and
//!   debconf) are removed;
//! * "last password change" days in `etc/shadow` after `SOURCE_DATE_EPOCH` are set to its
//!   day (left empty, aging off, when that day is 0).
//!
//! Only the step's own entries change: a removed path that a lower layer has becomes a
//! whiteout, one that no lower has is dropped. The result depends only on the upper dir,
//! the lowers and the epoch, so the step's key covers it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::sandbox::{UpperEntry, UpperKind};
use imgbuild_store::tarball::EntryKind;

const FILE: UpperKind = UpperKind::Entry(EntryKind::File);

/// The first-boot unit that generates SSH host keys.
pub(crate) const SSH_KEYS_UNIT: &str = "etc/systemd/system/imgbuild-ssh-host-keys.service";
/// Its `multi-user.target.wants` link (what `systemctl enable` makes).
pub(crate) const SSH_KEYS_WANTS: &str =
    "etc/systemd/system/multi-user.target.wants/imgbuild-ssh-host-keys.service";
const SSH_KEYS_UNIT_TEXT: &str = "\
# Installed by imgbuild: SSH host keys are not part of the image (every copy would share
# them); they are generated on first boot.
[Unit]
Description=Generate SSH host keys on first boot
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service ssh.socket

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
";

/// Backups that shadow's tools leave beside the files they edit.
const ETC_BACKUPS: [&str; 6] = [
    "etc/passwd-",
    "etc/shadow-",
    "etc/group-",
    "etc/gshadow-",
    "etc/subuid-",
    "etc/subgid-",
];

/// A step's entries after [`normalise`], with the content of the files whose data is no
/// longer what the upper dir holds (by path).
#[derive(Debug, Default)]
pub(crate) struct Normalised {
    pub entries: Vec<UpperEntry>,
    pub content: BTreeMap<String, Vec<u8>>,
}

/// Normalises a step's upper entries (sorted by path) run over `lowers` (lowest first);
/// unchanged unless the image is a dpkg system.
pub(crate) fn normalise(
    entries: Vec<UpperEntry>,
    lowers: &[PathBuf],
    epoch: u64,
) -> io::Result<Normalised> {
    let mut out = Normalised {
        entries,
        content: BTreeMap::new(),
    };
    let Some(status) = dpkg_status(&out.entries, lowers)? else {
        return Ok(out);
    };
    let whiteout_or_drop = |e: &UpperEntry| -> Option<UpperEntry> {
        in_lowers(lowers, &e.path).then(|| UpperEntry {
            path: e.path.clone(),
            kind: UpperKind::Whiteout,
            mode: 0,
            uid: 0,
            gid: 0,
            xattrs: BTreeMap::new(),
            mtime: 0,
            host_path: PathBuf::new(),
            size: 0,
        })
    };
    let paths: Vec<String> = out
        .entries
        .iter()
        .filter(|e| {
            !matches!(
                e.kind,
                UpperKind::Entry(EntryKind::Dir) | UpperKind::OpaqueDir | UpperKind::Whiteout
            )
        })
        .map(|e| e.path.clone())
        .collect();
    for path in paths {
        if is_noise(&path) {
            let i = detach(&mut out.entries, &path);
            match whiteout_or_drop(&out.entries[i]) {
                Some(w) => out.entries[i] = w,
                None => {
                    out.entries.remove(i);
                }
            }
        } else if path == "var/lib/dbus/machine-id" {
            let i = detach(&mut out.entries, &path);
            let e = &mut out.entries[i];
            e.kind = UpperKind::Entry(EntryKind::Symlink("/etc/machine-id".into()));
            e.size = 0;
            e.mode = 0o777;
            e.xattrs.clear();
        } else if path == "etc/machine-id" {
            if let Some(e) = file_entry(&out.entries, &path) {
                if e.size > 0 {
                    out.content.insert(path, Vec::new());
                }
            }
        } else if path == "etc/shadow" {
            if let Some(e) = file_entry(&out.entries, &path) {
                let text = fs_err::read_to_string(&e.host_path)?;
                if let Some(clamped) = clamp_last_change(&text, epoch / 86_400) {
                    out.content.insert(path, clamped.into_bytes());
                }
            }
        }
    }
    if is_installed(&status, "openssh-server") {
        add_ssh_keys_unit(&mut out, lowers, epoch);
    }
    for e in &mut out.entries {
        if let (true, Some(data)) = (e.kind == FILE, out.content.get(&e.path)) {
            e.size = data.len() as u64;
        }
    }
    out.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Removed, or whiteouts when a lower has them: host keys, seeds, caches, logs, backups.
fn is_noise(path: &str) -> bool {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    (dir == "etc/ssh" && name.starts_with("ssh_host_"))
        || path == "var/lib/systemd/random-seed"
        || path == "var/cache/ldconfig/aux-cache"
        || ((dir == "var/log" || dir.starts_with("var/log/"))
            && (name.ends_with(".log") || name.contains(".log.")))
        || ETC_BACKUPS.contains(&path)
        || ((dir == "var/lib/dpkg" || dir == "var/cache/debconf") && name.ends_with("-old"))
}

#[cfg(test)]
fn kind_of<'a>(entries: &'a [UpperEntry], path: &str) -> Option<&'a UpperKind> {
    entries.iter().find(|e| e.path == path).map(|e| &e.kind)
}

/// The entry of `path` if it is a regular file.
fn file_entry<'a>(entries: &'a [UpperEntry], path: &str) -> Option<&'a UpperEntry> {
    entries.iter().find(|e| e.path == path && e.kind == FILE)
}

/// The index of `path`'s entry, after the hard links to it (if it is a file) were turned
/// into links to the first of them, which becomes the file: `path` can then change kind.
fn detach(entries: &mut [UpperEntry], path: &str) -> usize {
    let i = entries
        .iter()
        .position(|e| e.path == path)
        .expect("detach is called for present paths");
    if entries[i].kind != FILE {
        return i;
    }
    let (host_path, size) = (entries[i].host_path.clone(), entries[i].size);
    let mut heir: Option<String> = None;
    for e in entries.iter_mut() {
        let UpperKind::Entry(EntryKind::Hardlink(target)) = &e.kind else {
            continue;
        };
        if target != path {
            continue;
        }
        match &heir {
            None => {
                heir = Some(e.path.clone());
                e.kind = FILE;
                e.host_path.clone_from(&host_path);
                e.size = size;
            }
            Some(first) => {
                e.kind = UpperKind::Entry(EntryKind::Hardlink(first.clone()));
            }
        }
    }
    i
}

/// The dpkg status the step leaves (its own, or the topmost lower's), if the image has one.
fn dpkg_status(entries: &[UpperEntry], lowers: &[PathBuf]) -> io::Result<Option<String>> {
    const STATUS: &str = "var/lib/dpkg/status";
    match entries.iter().find(|e| e.path == STATUS) {
        Some(e) if e.kind == FILE => return fs_err::read_to_string(&e.host_path).map(Some),
        Some(_) => return Ok(None),
        None => {}
    }
    for lower in lowers.iter().rev() {
        if exists_below(lower, STATUS) {
            let path = lower.join(STATUS);
            if fs_err::symlink_metadata(&path)?.is_file() {
                return fs_err::read_to_string(path).map(Some);
            }
            return Ok(None);
        }
    }
    Ok(None)
}

/// Whether dpkg's status lists `package` as installed.
fn is_installed(status: &str, package: &str) -> bool {
    status.split("\n\n").any(|stanza| {
        let mut name = None;
        let mut state = None;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                state = Some(v.trim());
            }
        }
        name == Some(package) && state.is_some_and(|s| s.ends_with(" installed"))
    })
}

/// `shadow` with every "last change" day after `day` set to `day` (empty when `day` is 0:
/// 0 would mean "change the password at next login"); `None` when nothing changes.
fn clamp_last_change(text: &str, day: u64) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let mut fields: Vec<&str> = body.split(':').collect();
        let new_day = if day == 0 {
            String::new()
        } else {
            day.to_string()
        };
        if fields
            .get(2)
            .and_then(|f| f.parse::<u64>().ok())
            .is_some_and(|d| d > day)
        {
            fields[2] = &new_day;
            changed = true;
        }
        out.push_str(&fields.join(":"));
        out.push_str(newline);
    }
    changed.then_some(out)
}

/// Installs and enables the first-boot key generation unit, unless the step or a lower
/// already has either path (a recipe may replace or remove it).
fn add_ssh_keys_unit(out: &mut Normalised, lowers: &[PathBuf], epoch: u64) {
    let present = |entries: &[UpperEntry], path: &str| {
        entries.iter().any(|e| e.path == path) || in_lowers(lowers, path)
    };
    let file = |path: &str, kind: UpperKind, mode: u32| UpperEntry {
        path: path.to_owned(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        xattrs: BTreeMap::new(),
        mtime: i64::try_from(epoch).unwrap_or(i64::MAX),
        host_path: PathBuf::new(),
        size: 0,
    };
    let mut new = Vec::new();
    if !present(&out.entries, SSH_KEYS_UNIT) {
        new.push(file(SSH_KEYS_UNIT, FILE, 0o644));
        out.content.insert(
            SSH_KEYS_UNIT.to_owned(),
            SSH_KEYS_UNIT_TEXT.as_bytes().to_vec(),
        );
    }
    if !present(&out.entries, SSH_KEYS_WANTS) {
        new.push(file(
            SSH_KEYS_WANTS,
            UpperKind::Entry(EntryKind::Symlink(format!("/{SSH_KEYS_UNIT}"))),
            0o777,
        ));
    }
    for entry in new {
        let mut parent = entry.path.rsplit_once('/').map(|(p, _)| p);
        while let Some(dir) = parent {
            if present(&out.entries, dir) {
                break;
            }
            out.entries
                .push(file(dir, UpperKind::Entry(EntryKind::Dir), 0o755));
            parent = dir.rsplit_once('/').map(|(p, _)| p);
        }
        out.entries.push(entry);
    }
}

fn in_lowers(lowers: &[PathBuf], rel: &str) -> bool {
    lowers.iter().any(|l| exists_below(l, rel))
}

/// Whether `root/rel` exists without following a symlink on the way (a lower dir's
/// symlinks point into the image, not the host).
fn exists_below(root: &Path, rel: &str) -> bool {
    let mut path = root.to_path_buf();
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if parts.peek().is_none() || m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: UpperKind) -> UpperEntry {
        UpperEntry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: BTreeMap::new(),
            mtime: 5,
            host_path: PathBuf::new(),
            size: 0,
        }
    }

    fn file(dir: &Path, rel: &str, data: &str) -> UpperEntry {
        let host = dir.join(rel);
        fs_err::create_dir_all(host.parent().unwrap()).unwrap();
        fs_err::write(&host, data).unwrap();
        UpperEntry {
            host_path: host,
            size: data.len() as u64,
            ..entry(rel, FILE)
        }
    }

    #[test]
    fn shadow_days_after_the_epoch_are_clamped_and_zero_and_empty_kept() {
        let text =
            "root:*:20400:0:99999:7:::\nnew:$y$x:0:0:99999:7:::\nsys:!:::::::\nold:*:100::::::";
        assert_eq!(
            clamp_last_change(text, 19675).unwrap(),
            "root:*:19675:0:99999:7:::\nnew:$y$x:0:0:99999:7:::\nsys:!:::::::\nold:*:100::::::"
        );
        assert_eq!(clamp_last_change("a:*:19675::::::\n", 19675), None);
        assert_eq!(
            clamp_last_change("a:*:19675::::::\n", 0).unwrap(),
            "a:*:::::::\n"
        );
    }

    #[test]
    fn a_dpkg_step_is_normalised_and_other_images_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let (upper, lower) = (tmp.path().join("upper"), tmp.path().join("lower"));
        fs_err::create_dir_all(lower.join("var/lib/dpkg")).unwrap();
        fs_err::create_dir_all(lower.join("etc")).unwrap();
        fs_err::write(lower.join("etc/passwd-"), "old").unwrap();
        let status = "Package: openssh-server\nStatus: install ok installed\nVersion: 1\n\n";
        let key = file(&upper, "etc/ssh/ssh_host_ed25519_key", "secret");
        let entries = vec![
            entry("etc", UpperKind::Entry(EntryKind::Dir)),
            file(&upper, "etc/machine-id", "0123\n"),
            file(&upper, "etc/passwd-", "x"),
            file(&upper, "etc/shadow", "u:$y$s:20400:0:99999:7:::\n"),
            entry("etc/ssh", UpperKind::Entry(EntryKind::Dir)),
            key.clone(),
            entry(
                "etc/ssh/key-link",
                UpperKind::Entry(EntryKind::Hardlink("etc/ssh/ssh_host_ed25519_key".into())),
            ),
            file(&upper, "var/lib/dbus/machine-id", "0123\n"),
            file(&upper, "var/lib/dpkg/status", status),
            file(&upper, "var/lib/dpkg/status-old", ""),
            file(&upper, "var/log/apt/eipp.log.xz", "x"),
            file(&upper, "var/log/dpkg.log", "x"),
            file(&upper, "var/log/lastlog", "x"),
        ];
        // No dpkg status anywhere: nothing changes.
        let mut plain = entries.clone();
        plain.retain(|e| e.path != "var/lib/dpkg/status");
        let same = normalise(plain.clone(), std::slice::from_ref(&lower), 1_700_000_000).unwrap();
        assert_eq!(same.entries, plain);
        assert!(same.content.is_empty());

        let n = normalise(entries, &[lower], 1_700_000_000).unwrap();
        let paths: Vec<&str> = n.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/machine-id",
                "etc/passwd-",
                "etc/shadow",
                "etc/ssh",
                "etc/ssh/key-link",
                "etc/systemd",
                "etc/systemd/system",
                SSH_KEYS_UNIT,
                "etc/systemd/system/multi-user.target.wants",
                SSH_KEYS_WANTS,
                "var/lib/dbus/machine-id",
                "var/lib/dpkg/status",
                "var/log/lastlog",
            ]
        );
        let kind = |p: &str| kind_of(&n.entries, p).unwrap().clone();
        // In a lower: a whiteout; the hard link inherits the removed key's data.
        assert_eq!(kind("etc/passwd-"), UpperKind::Whiteout);
        assert_eq!(kind("etc/ssh/key-link"), key.kind);
        assert_eq!(
            kind("var/lib/dbus/machine-id"),
            UpperKind::Entry(EntryKind::Symlink("/etc/machine-id".into()))
        );
        assert_eq!(n.content["etc/machine-id"], b"");
        assert_eq!(n.content["etc/shadow"], b"u:$y$s:19675:0:99999:7:::\n");
        assert!(String::from_utf8_lossy(&n.content[SSH_KEYS_UNIT]).contains("ssh-keygen -A"));
        let unit = file_entry(&n.entries, SSH_KEYS_UNIT).unwrap();
        assert_eq!(unit.size, SSH_KEYS_UNIT_TEXT.len() as u64);
    }

    #[test]
    fn openssh_server_must_be_installed_for_the_unit() {
        assert!(!is_installed(
            "Package: openssh-server\nStatus: deinstall ok config-files\n",
            "openssh-server"
        ));
        assert!(!is_installed(
            "Package: openssh-client\nStatus: install ok installed\n",
            "openssh-server"
        ));
    }
}
