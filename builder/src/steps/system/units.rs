//! `services = { enable, disable, mask }` done offline, as `systemctl` does it: a unit's
//! `[Install]` section says which symlinks under `/etc/systemd/system` enable it.

use std::collections::{BTreeMap, BTreeSet};

/// Where units are looked up, in systemd's order on Debian (`/lib` before `/usr/lib`, so
/// links point at `/lib/systemd/system/ssh.service` as bookworm's systemctl makes them).
pub(crate) const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "lib/systemd/system",
    "usr/lib/systemd/system",
];

const SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// `ssh` -> `ssh.service`; names with a unit suffix stay.
pub(crate) fn unit_name(name: &str) -> String {
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_owned()
    } else {
        format!("{name}.service")
    }
}

/// `foo@bar.service` -> (`foo@.service`, `Some("bar")`); `foo@.service` -> (itself, `Some("")`).
pub(crate) fn template_of(unit: &str) -> Option<(String, String)> {
    let (prefix, rest) = unit.split_once('@')?;
    let dot = rest.rfind('.')?;
    Some((format!("{prefix}@{}", &rest[dot..]), rest[..dot].to_owned()))
}

/// A unit's `[Install]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Install {
    pub(crate) wanted_by: Vec<String>,
    pub(crate) required_by: Vec<String>,
    pub(crate) alias: Vec<String>,
    pub(crate) also: Vec<String>,
    pub(crate) default_instance: Option<String>,
}

/// Parses the `[Install]` section of a unit file (comments, continuation lines, and an
/// empty assignment resetting a list as systemd reads them).
pub(crate) fn parse_install(text: &str) -> Install {
    let mut install = Install::default();
    let mut in_install = false;
    let mut logical = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        logical.push(std::mem::take(&mut pending));
    }
    for line in logical {
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !in_install {
            continue;
        }
        let values: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
        let list = match key.trim() {
            "WantedBy" => &mut install.wanted_by,
            "RequiredBy" => &mut install.required_by,
            "Alias" => &mut install.alias,
            "Also" => &mut install.also,
            "DefaultInstance" => {
                install.default_instance = values.first().cloned();
                continue;
            }
            _ => continue,
        };
        if values.is_empty() {
            list.clear();
        } else {
            list.extend(values);
        }
    }
    install
}

/// A unit found in the image: where (its absolute path, as links point at it) and its text.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// `/lib/systemd/system/ssh.service`.
    pub(crate) path: String,
    /// The unit file's text.
    pub(crate) text: String,
}

/// The symlinks (relative path under the image root -> target) that enable `unit` and
/// whatever its `Also=` names, given `find` to look units up. `Err(name)` names a unit
/// that is not in the image.
pub(crate) fn enable_links(
    unit: &str,
    find: &dyn Fn(&str) -> Option<Found>,
    links: &mut BTreeMap<String, String>,
    seen: &mut BTreeSet<String>,
) -> Result<(), String> {
    let unit = unit_name(unit);
    if !seen.insert(unit.clone()) {
        return Ok(());
    }
    let template = template_of(&unit);
    let found = find(&unit)
        .or_else(|| template.as_ref().and_then(|(t, _)| find(t)))
        .ok_or_else(|| unit.clone())?;
    let install = parse_install(&found.text);
    // The name the links carry: the instance, or the template's default instance.
    let link_name = match &template {
        Some((t, instance)) if instance.is_empty() => install
            .default_instance
            .as_ref()
            .map(|d| t.replacen("@.", &format!("@{d}."), 1)),
        _ => Some(unit.clone()),
    };
    if let Some(link_name) = link_name {
        for (targets, dir) in [
            (&install.wanted_by, "wants"),
            (&install.required_by, "requires"),
        ] {
            for target in targets {
                links.insert(
                    format!("etc/systemd/system/{target}.{dir}/{link_name}"),
                    found.path.clone(),
                );
            }
        }
    }
    for alias in &install.alias {
        if alias != &unit {
            links.insert(format!("etc/systemd/system/{alias}"), found.path.clone());
        }
    }
    for also in &install.also {
        enable_links(also, find, links, seen)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH: &str = "[Unit]\nDescription=OpenBSD Secure Shell server\n\n[Service]\nExecStart=/usr/sbin/sshd -D\n\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n";
    const NETWORKD: &str = "[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket \\\n  systemd-networkd-wait-online.service\nAlias=dbus-org.freedesktop.network1.service\n";
    const GETTY: &str = "[Install]\n# comment\nWantedBy=getty.target\nDefaultInstance=tty1\n";

    fn find(name: &str) -> Option<Found> {
        let text = match name {
            "ssh.service" => SSH,
            "systemd-networkd.service" => NETWORKD,
            "systemd-networkd.socket" => "[Install]\nWantedBy=sockets.target\n",
            "systemd-networkd-wait-online.service" => "[Install]\nWantedBy=network-online.target\n",
            "getty@.service" => GETTY,
            _ => return None,
        };
        Some(Found {
            path: format!("/lib/systemd/system/{name}"),
            text: text.into(),
        })
    }

    fn links(unit: &str) -> Result<Vec<(String, String)>, String> {
        let mut links = BTreeMap::new();
        enable_links(unit, &find, &mut links, &mut BTreeSet::new())?;
        Ok(links.into_iter().collect())
    }

    #[test]
    fn install_section() {
        let i = parse_install(NETWORKD);
        assert_eq!(i.wanted_by, ["multi-user.target"]);
        assert_eq!(
            i.also,
            [
                "systemd-networkd.socket",
                "systemd-networkd-wait-online.service"
            ]
        );
        assert_eq!(i.alias, ["dbus-org.freedesktop.network1.service"]);
        let reset = parse_install("[Install]\nWantedBy=a.target\nWantedBy=\nWantedBy=b.target c.target\n[Service]\nWantedBy=x\n");
        assert_eq!(reset.wanted_by, ["b.target", "c.target"]);
    }

    #[test]
    fn symlinks_as_systemctl_makes_them() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            links("ssh").unwrap(),
            [
                s(
                    "etc/systemd/system/multi-user.target.wants/ssh.service",
                    "/lib/systemd/system/ssh.service"
                ),
                s(
                    "etc/systemd/system/sshd.service",
                    "/lib/systemd/system/ssh.service"
                ),
            ]
        );
        assert_eq!(links("systemd-networkd").unwrap().len(), 4);
        assert_eq!(
            links("getty@.service").unwrap(),
            [s(
                "etc/systemd/system/getty.target.wants/getty@tty1.service",
                "/lib/systemd/system/getty@.service"
            )]
        );
        assert_eq!(
            links("getty@ttyS0.service").unwrap(),
            [s(
                "etc/systemd/system/getty.target.wants/getty@ttyS0.service",
                "/lib/systemd/system/getty@.service"
            )]
        );
        assert_eq!(links("nope").unwrap_err(), "nope.service");
    }
}
