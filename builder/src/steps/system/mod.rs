//! The `[system]` step: hostname, timezone, locale, keymap, users, services and network,
//! written natively (no sandbox, no shell in the image) as one layer.
//!
//! The files it rewrites (`/etc/passwd` ..., `/etc/locale.gen`, `/etc/skel`, unit files)
//! are streamed from the layers below; everything it writes carries the build's epoch,
//! and paths resolve inside the image below as the file steps' do.

mod accounts;
mod units;

use super::files::{write_entries, Data};
use super::{StepError, StepLayer};
use crate::recipe::{NetworkSpec, Sudo, SystemSpec};
use accounts::{Accounts, Table};
use imgbuild_store::tarball::{EntryKind, EntryMeta, MergedTree, PathResolver, TreeSink};
use imgbuild_store::{Compression, Digest, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read};

/// The image below a `[system]` step.
pub(crate) struct Below<'a> {
    /// Its layers, lowest first.
    pub(crate) layers: &'a [Digest],
    /// Their merged tree.
    pub(crate) tree: &'a MergedTree,
}

/// Entries of the layer by path (as named, resolved when written).
type Entries = BTreeMap<String, (EntryMeta, Vec<u8>)>;

/// Writes the layer of the `[system]` step `step`.
pub(crate) fn system_layer(
    store: &Store,
    step: usize,
    spec: &SystemSpec,
    below: &Below<'_>,
    epoch: u64,
    compression: Compression,
) -> Result<StepLayer, StepError> {
    let tree = below.tree;
    let fail = |key: String, message: String| StepError::System { step, key, message };

    // What to read: the account files, locale.gen, /etc/skel, unit files.
    let mut wanted: Vec<String> = [
        "etc/passwd",
        "etc/group",
        "etc/shadow",
        "etc/gshadow",
        "etc/locale.gen",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let skel = real(tree, "etc/skel").filter(|p| tree.get(p).is_some_and(EntryMeta::is_dir));
    let mut skel_entries: Vec<EntryMeta> = Vec::new();
    if let Some(skel) = &skel {
        let prefix = format!("{skel}/");
        for meta in tree.iter().filter(|m| m.path.starts_with(&prefix)) {
            skel_entries.push(meta.clone());
            wanted.push(meta.path.clone());
        }
    }
    let needs_units = !spec.services.enable.is_empty()
        || !spec.services.disable.is_empty()
        || spec.network.is_some();
    if needs_units {
        for dir in units::UNIT_DIRS {
            if let Some(d) = real(tree, dir) {
                let prefix = format!("{d}/");
                wanted.extend(
                    tree.iter()
                        .filter(|m| {
                            m.path
                                .strip_prefix(&prefix)
                                .is_some_and(|r| !r.contains('/'))
                        })
                        .map(|m| format!("{dir}/{}", &m.path[prefix.len()..])),
                );
            }
        }
    }
    let files = read_files(store, below, &wanted).map_err(|message| StepError::Sandbox {
        step,
        message: format!("cannot read the image below: {message}"),
    })?;
    let text = |path: &str| {
        files
            .get(path)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };

    let mut out = Entries::new();
    let mut whiteouts: Vec<String> = Vec::new();
    let file = |path: &str, mode: u32, content: String| {
        let mut m = EntryMeta::new(path, EntryKind::File, mode, epoch);
        m.size = content.len() as u64;
        (m, content.into_bytes())
    };
    let link = |path: &str, target: &str| {
        (
            EntryMeta::new(path, EntryKind::Symlink(target.to_owned()), 0o777, epoch),
            Vec::new(),
        )
    };

    if let Some(h) = &spec.hostname {
        out.insert(
            "etc/hostname".into(),
            file("etc/hostname", 0o644, format!("{h}\n")),
        );
        // A fully qualified name is listed with its short name, as Debian's installer does.
        let names = match h.split_once('.') {
            Some((short, _)) => format!("{h} {short}"),
            None => h.clone(),
        };
        let hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{names}\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n");
        out.insert("etc/hosts".into(), file("etc/hosts", 0o644, hosts));
    }
    if let Some(tz) = &spec.timezone {
        let zone = format!("usr/share/zoneinfo/{tz}");
        let found = tree
            .resolve(&zone)
            .ok()
            .and_then(|p| tree.get(&p))
            .is_some_and(|m| !m.is_dir());
        if !found {
            return Err(fail("system.timezone".into(), format!("the image has no zone /{zone}; install the `tzdata` package in an earlier step (or check the zone's name)")));
        }
        out.insert(
            "etc/localtime".into(),
            link("etc/localtime", &format!("/{zone}")),
        );
        out.insert(
            "etc/timezone".into(),
            file("etc/timezone", 0o644, format!("{tz}\n")),
        );
    }
    if let Some(locale) = &spec.locale {
        out.insert(
            "etc/default/locale".into(),
            file("etc/default/locale", 0o644, format!("LANG={locale}\n")),
        );
        if let Some(gen) = text("etc/locale.gen") {
            let updated = enable_locale(&gen, locale);
            if updated != gen {
                out.insert(
                    "etc/locale.gen".into(),
                    kept(
                        tree,
                        "etc/locale.gen",
                        file("etc/locale.gen", 0o644, updated),
                    ),
                );
            }
        }
    }
    if let Some(k) = &spec.keymap {
        out.insert(
            "etc/vconsole.conf".into(),
            file("etc/vconsole.conf", 0o644, format!("KEYMAP={k}\n")),
        );
    }

    // Users.
    if !spec.users.is_empty() {
        let Some(passwd) = text("etc/passwd") else {
            return Err(fail("system.user".into(), "the image has no /etc/passwd; start from a base that has one (any Debian base) or write it in an earlier step".into()));
        };
        let mut acc = Accounts {
            passwd: Table::parse(&passwd),
            group: Table::parse(&text("etc/group").unwrap_or_default()),
            shadow: Table::parse(&text("etc/shadow").unwrap_or_default()),
            gshadow: Table::parse(&text("etc/gshadow").unwrap_or_default()),
        };
        let has_bash = tree
            .resolve("bin/bash")
            .ok()
            .and_then(|p| tree.get(&p))
            .is_some();
        let default_shell = if has_bash { "/bin/bash" } else { "/bin/sh" };
        let day = epoch / 86400;
        for (i, user) in spec.users.iter().enumerate() {
            let placed = acc
                .apply(user, default_shell, day)
                .map_err(|e| fail(format!("system.user[{i}].{}", e.key), e.message))?;
            let home = placed.home.trim_matches('/').to_owned();
            let own = |mut m: EntryMeta| {
                m.uid = placed.uid;
                m.gid = placed.gid;
                m
            };
            let home_exists = real(tree, &home).is_some_and(|p| tree.get(&p).is_some());
            // A home the image lacks is made, from /etc/skel, for an existing user too.
            if !home_exists && !home.is_empty() {
                out.insert(
                    home.clone(),
                    (
                        own(EntryMeta::new(home.as_str(), EntryKind::Dir, 0o700, epoch)),
                        Vec::new(),
                    ),
                );
                if let Some(skel) = &skel {
                    for meta in &skel_entries {
                        let dest = format!("{home}{}", &meta.path[skel.len()..]);
                        let mut m = own(meta.clone());
                        m.path.clone_from(&dest);
                        m.mtime = epoch;
                        let data = match &meta.kind {
                            EntryKind::File => files.get(&meta.path).cloned().unwrap_or_default(),
                            EntryKind::Dir | EntryKind::Symlink(_) => Vec::new(),
                            _ => continue,
                        };
                        m.size = data.len() as u64;
                        out.insert(dest, (m, data));
                    }
                }
            }
            if !user.ssh_authorized_keys.is_empty() {
                let ssh = format!("{home}/.ssh");
                out.insert(
                    ssh.clone(),
                    (
                        own(EntryMeta::new(ssh.as_str(), EntryKind::Dir, 0o700, epoch)),
                        Vec::new(),
                    ),
                );
                let keys: String = user
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| format!("{k}\n"))
                    .collect();
                let path = format!("{ssh}/authorized_keys");
                let (m, data) = file(&path, 0o600, keys);
                out.insert(path, (own(m), data));
            }
            if let Some(sudo) = user.sudo {
                let dir = real(tree, "etc/sudoers.d")
                    .filter(|p| tree.get(p).is_some_and(EntryMeta::is_dir));
                if dir.is_none() {
                    return Err(fail(format!("system.user[{i}].sudo"), "the image has no /etc/sudoers.d; install the `sudo` package in an earlier step".into()));
                }
                let rule = match sudo {
                    Sudo::Password => "ALL=(ALL:ALL) ALL",
                    Sudo::Nopasswd => "ALL=(ALL:ALL) NOPASSWD: ALL",
                };
                let path = format!("etc/sudoers.d/{}", user.name);
                out.insert(
                    path.clone(),
                    file(&path, 0o440, format!("{} {rule}\n", user.name)),
                );
            }
        }
        let shadow_gid = acc.gid_of("shadow").unwrap_or(0);
        for (path, table, mode, gid) in [
            ("etc/passwd", &acc.passwd, 0o644, 0),
            ("etc/group", &acc.group, 0o644, 0),
            ("etc/shadow", &acc.shadow, 0o640, shadow_gid),
            ("etc/gshadow", &acc.gshadow, 0o640, shadow_gid),
        ] {
            let (mut m, data) = file(path, mode, table.render());
            m.gid = gid;
            out.insert(path.into(), kept(tree, path, (m, data)));
        }
    }

    // Services and network.
    let find = |unit: &str| -> Option<units::Found> {
        units::UNIT_DIRS.iter().find_map(|dir| {
            let path = format!("{dir}/{unit}");
            // A link in /etc (an alias, a linked unit) stands for the unit it points at.
            let link = PathResolver::new(tree)
                .resolve_parent(&path)
                .ok()
                .and_then(|p| tree.get(&p))
                .and_then(|m| match &m.kind {
                    EntryKind::Symlink(t) if t.starts_with('/') => Some(t.clone()),
                    _ => None,
                });
            if link.as_deref() == Some("/dev/null") {
                return None;
            }
            let text = text(&path)?;
            Some(units::Found {
                path: link.unwrap_or_else(|| format!("/{path}")),
                text,
            })
        })
    };
    // `systemctl enable` refuses a masked unit.
    let masked = |unit: &str| {
        let path = format!("etc/systemd/system/{}", units::unit_name(unit));
        PathResolver::new(tree)
            .resolve_parent(&path)
            .ok()
            .and_then(|p| tree.get(&p))
            .is_some_and(|m| m.kind == EntryKind::Symlink("/dev/null".into()))
    };
    let mut enable: Vec<(String, String)> = spec
        .services
        .enable
        .iter()
        .map(|u| (u.clone(), "system.services.enable".to_owned()))
        .collect();
    if let Some(net) = &spec.network {
        if find("systemd-networkd.service").is_none() {
            return Err(fail("system.network".into(), "the image has no systemd-networkd.service unit; install `systemd` (Debian's systemd-networkd) in an earlier step".into()));
        }
        enable.push(("systemd-networkd.service".into(), "system.network".into()));
        if find("systemd-resolved.service").is_some() {
            enable.push(("systemd-resolved.service".into(), "system.network".into()));
        }
        let body = match net {
            NetworkSpec::Dhcp => "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n".to_owned(),
            NetworkSpec::Static {
                interface,
                address,
                gateway,
                dns,
            } => {
                let mut b = format!("[Match]\nName={interface}\n\n[Network]\nAddress={address}\n");
                if let Some(g) = gateway {
                    b += &format!("Gateway={g}\n");
                }
                for d in dns {
                    b += &format!("DNS={d}\n");
                }
                b
            }
        };
        let path = "etc/systemd/network/80-imgbuild.network";
        out.insert(path.into(), file(path, 0o644, body));
    }
    for unit in &spec.services.disable {
        let name = units::unit_name(unit);
        let found = find(&name).or_else(|| units::template_of(&name).and_then(|(t, _)| find(&t)));
        let Some(found) = found else {
            return Err(fail("system.services.disable".into(), format!("unit {name} is not in the image (looked in /etc/systemd/system, /lib/systemd/system and /usr/lib/systemd/system)")));
        };
        let aliases = units::parse_install(&found.text).alias;
        let base = found.path.rsplit('/').next().unwrap_or_default().to_owned();
        let etc = real(tree, "etc/systemd/system").unwrap_or_else(|| "etc/systemd/system".into());
        let prefix = format!("{etc}/");
        for meta in tree.iter().filter(|m| m.path.starts_with(&prefix)) {
            let EntryKind::Symlink(target) = &meta.kind else {
                continue;
            };
            let file_name = meta.path.rsplit('/').next().unwrap_or_default();
            let to_unit = target.rsplit('/').next() == Some(base.as_str()) && target != "/dev/null";
            if to_unit
                || (aliases.iter().any(|a| a == file_name)
                    && meta.path.matches('/').count() == prefix.matches('/').count())
            {
                whiteouts.push(meta.path.clone());
            }
        }
    }
    let mut links = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (unit, key) in &enable {
        if masked(unit) && !spec.services.mask.contains(unit) {
            let name = units::unit_name(unit);
            return Err(fail(key.clone(), format!("unit {name} is masked in the image (linked to /dev/null); remove /etc/systemd/system/{name} in an earlier step to enable it")));
        }
        units::enable_links(unit, &find, &mut links, &mut seen).map_err(|missing| {
            fail(key.clone(), format!("unit {missing} is not in the image (looked in /etc/systemd/system, /lib/systemd/system and /usr/lib/systemd/system); install the package that ships it in an earlier step"))
        })?;
    }
    for unit in &spec.services.mask {
        links.insert(
            format!("etc/systemd/system/{}", units::unit_name(unit)),
            "/dev/null".into(),
        );
    }
    for (path, target) in links {
        out.insert(path.clone(), link(&path, &target));
    }
    let entries = out
        .into_iter()
        .map(|(path, (meta, data))| (path, (meta, Data::Bytes(data))))
        .collect();
    write_entries(store, step, tree, entries, whiteouts, epoch, compression)
}

/// `path` fully resolved inside the tree, when that resolves.
fn real(tree: &MergedTree, path: &str) -> Option<String> {
    tree.resolve(path).ok()
}

/// A rewritten file with the mode and owner of the one it replaces, when there is one.
fn kept(
    tree: &MergedTree,
    path: &str,
    (mut m, data): (EntryMeta, Vec<u8>),
) -> (EntryMeta, Vec<u8>) {
    if let Some(old) = real(tree, path).and_then(|p| tree.get(&p)) {
        m.mode = old.mode;
        m.uid = old.uid;
        m.gid = old.gid;
    }
    (m, data)
}

/// `locale.gen` with the line for `locale` uncommented (added when it has none).
fn enable_locale(text: &str, locale: &str) -> String {
    let is_for = |l: &str| l.split_whitespace().next() == Some(locale);
    if text.lines().any(is_for) {
        return text.to_owned();
    }
    let mut found = false;
    let mut out: String = text
        .lines()
        .map(|l| {
            let bare = l.trim_start_matches('#').trim_start();
            if !found && l.starts_with('#') && is_for(bare) && bare.split_whitespace().count() == 2
            {
                found = true;
                format!("{bare}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    if !found {
        if let Some((_, charset)) = locale.split_once('.') {
            out += &format!("{locale} {charset}\n");
        }
    }
    out
}

/// Reads the files at `paths` (as named: resolved through the image's symlinks) from the
/// layers below, by streaming them once.
fn read_files(
    store: &Store,
    below: &Below<'_>,
    paths: &[String],
) -> Result<HashMap<String, Vec<u8>>, String> {
    let tree = below.tree;
    // Real path -> the names it was asked for.
    let mut want: HashMap<String, Vec<String>> = HashMap::new();
    for p in paths {
        let Some(mut at) = real(tree, p) else {
            continue;
        };
        if let Some(EntryKind::Hardlink(t)) = tree.get(&at).map(|m| &m.kind) {
            at.clone_from(t);
        }
        if tree.get(&at).is_some_and(|m| m.kind == EntryKind::File) {
            want.entry(at).or_default().push(p.clone());
        }
    }
    if want.is_empty() {
        return Ok(HashMap::new());
    }
    let layers = below
        .layers
        .iter()
        .map(|d| store.open_layer(d).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sink = Collect {
        want: &want,
        got: HashMap::new(),
    };
    tree.stream(layers, &mut sink).map_err(|e| e.to_string())?;
    Ok(sink.got)
}

struct Collect<'a> {
    want: &'a HashMap<String, Vec<String>>,
    got: HashMap<String, Vec<u8>>,
}

impl TreeSink for Collect<'_> {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        if let (Some(names), EntryKind::File) = (self.want.get(&meta.path), &meta.kind) {
            let mut bytes = Vec::with_capacity(meta.size as usize);
            data.read_to_end(&mut bytes)?;
            for n in names {
                self.got.insert(n.clone(), bytes.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::enable_locale;

    #[test]
    fn locale_gen_line_uncommented_or_added() {
        let gen = "# This file lists locales\n# de_DE.UTF-8 UTF-8\n# en_US.UTF-8 UTF-8\n";
        assert_eq!(
            enable_locale(gen, "en_US.UTF-8"),
            "# This file lists locales\n# de_DE.UTF-8 UTF-8\nen_US.UTF-8 UTF-8\n"
        );
        assert_eq!(
            enable_locale("en_US.UTF-8 UTF-8\n", "en_US.UTF-8"),
            "en_US.UTF-8 UTF-8\n"
        );
        assert_eq!(enable_locale("", "fr_FR.UTF-8"), "fr_FR.UTF-8 UTF-8\n");
    }
}
