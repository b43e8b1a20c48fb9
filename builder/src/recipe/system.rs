//! `[system]`: validating the system settings into a [`SystemSpec`] step, and the checks
//! on its values (hostname, names, `authorized_keys` lines, crypt hashes, addresses).

use super::error::RecipeError;
use super::model::{NetworkSpec, ServicesSpec, Step, StepOp, Sudo, SystemSpec, UserSpec};
use super::parse::Cx;
use super::raw::{RawNetwork, RawServices, RawSystem, RawUser, S};
use base64::Engine as _;
use std::net::IpAddr;

/// Key types an `authorized_keys` line may use.
pub(super) const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl Cx<'_> {
    /// `[system]` as the image's step `number` (after every `[[step]]`).
    pub(super) fn system(&self, raw: S<RawSystem>, number: usize) -> Result<Step, RecipeError> {
        let table = raw.span();
        let r = raw.into_inner();
        let mut spec = SystemSpec::default();
        if let Some(h) = &r.hostname {
            check_hostname(h.get_ref()).map_err(|why| {
                self.err_at(h, format!("`{}` is not a valid hostname: {why}", h.get_ref().escape_debug()))
                    .help("use letters, digits and `-` (not at either end), at most 63 per dot-separated label, e.g. hostname = \"devbox\"")
            })?;
            spec.hostname = Some(h.get_ref().clone());
        }
        if let Some(tz) = &r.timezone {
            check_timezone(tz.get_ref()).map_err(|why| {
                self.err_at(tz, format!("`{}` is not a timezone name: {why}", tz.get_ref().escape_debug()))
                    .help("name a zone under /usr/share/zoneinfo, e.g. timezone = \"Europe/Berlin\" or \"UTC\"")
            })?;
            spec.timezone = Some(tz.get_ref().clone());
        }
        for (key, value, slot) in [
            ("locale", &r.locale, &mut spec.locale),
            ("keymap", &r.keymap, &mut spec.keymap),
        ] {
            if let Some(v) = value {
                let t = v.get_ref();
                if t.is_empty()
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b))
                {
                    return Err(self
                        .err_at(v, format!("`{}` is not a valid {key}", t.escape_debug()))
                        .help(if key == "locale" {
                            "write a locale name, e.g. locale = \"en_US.UTF-8\" or \"C.UTF-8\""
                        } else {
                            "write a console keymap name, e.g. keymap = \"de\" or \"us\""
                        }));
                }
                *slot = Some(t.clone());
            }
        }
        if let Some(s) = r.services {
            spec.services = self.services(s.into_inner())?;
        }
        let mut names: Vec<&S<String>> = Vec::new();
        for (i, user) in r.user.iter().flatten().enumerate() {
            let parsed = self.user(i, user)?;
            if let Some(first) = names.iter().find(|n| n.get_ref() == &parsed.name) {
                let at = user.get_ref().name.as_ref().map_or(user.span(), S::span);
                return Err(self
                    .err(
                        Some(at),
                        format!(
                            "user `{}` is defined twice (first at {})",
                            parsed.name,
                            self.sources.place(first.span().start)
                        ),
                    )
                    .help("merge the two [[system.user]] tables into one"));
            }
            if let Some(n) = &user.get_ref().name {
                names.push(n);
            }
            spec.users.push(parsed);
        }
        if let Some(n) = r.network {
            spec.network = Some(self.network(n)?);
        }
        Ok(Step {
            number,
            line: self.line_of(table.start),
            span: table.clone(),
            table,
            op: StepOp::System(spec),
        })
    }

    fn unit_names(&self, list: Option<Vec<S<String>>>) -> Result<Vec<String>, RecipeError> {
        let mut out = Vec::new();
        for name in list.unwrap_or_default() {
            let n = name.get_ref();
            let ok = !n.is_empty()
                && n.len() <= 255
                && !n.starts_with('.')
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":_.@-\\".contains(&b));
            if !ok {
                return Err(self
                    .err_at(&name, format!("`{}` is not a systemd unit name", n.escape_debug()))
                    .help("name a unit as systemctl does, e.g. \"ssh\" (meaning ssh.service), \"getty@tty1.service\" or \"systemd-networkd.socket\""));
            }
            out.push(n.clone());
        }
        Ok(out)
    }

    fn services(&self, raw: RawServices) -> Result<ServicesSpec, RecipeError> {
        Ok(ServicesSpec {
            enable: self.unit_names(raw.enable)?,
            disable: self.unit_names(raw.disable)?,
            mask: self.unit_names(raw.mask)?,
        })
    }

    fn user(&self, index: usize, raw: &S<RawUser>) -> Result<UserSpec, RecipeError> {
        let u = raw.get_ref();
        let key = |k: &str| format!("system.user[{index}].{k}");
        let name = u.name.as_ref().ok_or_else(|| {
            self.err(
                Some(raw.span()),
                format!("[[system.user]] number {} has no `name`", index + 1),
            )
            .help("add name = \"alice\"")
        })?;
        let check_name = |n: &S<String>, what: &str| -> Result<String, RecipeError> {
            if !is_account_name(n.get_ref()) {
                return Err(self
                    .err_at(n, format!("`{}` is not a valid {what} name", n.get_ref().escape_debug()))
                    .help("start with a lowercase letter or `_`, then lowercase letters, digits, `_` and `-`, at most 32 characters"));
            }
            Ok(n.get_ref().clone())
        };
        let name = check_name(name, "user")?;
        let uid = match &u.uid {
            None => None,
            Some(v) => Some(
                u32::try_from(*v.get_ref())
                    .ok()
                    .filter(|id| *id < 65535)
                    .ok_or_else(|| {
                        self.err_at(v, format!("`{}` is not a valid uid", v.get_ref()))
                            .help("use a number from 0 to 65534, e.g. uid = 1000, or leave it out for the first free id from 1000")
                    })?,
            ),
        };
        let mut groups = Vec::new();
        for g in u.groups.iter().flatten() {
            groups.push(check_name(g, "group")?);
        }
        let path = |v: &Option<S<String>>| -> Result<Option<String>, RecipeError> {
            v.as_ref()
                .map(|p| {
                    if p.get_ref().contains(['\n', ':']) {
                        return Err(
                            self.err_at(p, "a path in /etc/passwd cannot hold `:` or a newline")
                        );
                    }
                    self.image_path(p)
                })
                .transpose()
        };
        let mut keys = Vec::new();
        for k in u.ssh_authorized_keys.iter().flatten() {
            check_key_line(k.get_ref()).map_err(|why| {
                self.err_at(k, format!("{}: not an authorized_keys line: {why}", key("ssh_authorized_keys")))
                    .help("paste the public key as `ssh-keygen` writes it (e.g. the line in ~/.ssh/id_ed25519.pub): `ssh-ed25519 AAAA... comment`")
            })?;
            keys.push(k.get_ref().trim().to_owned());
        }
        if let Some(file) = &u.ssh_authorized_keys_file {
            let full = self.host_file(file)?;
            let text = fs_err::read_to_string(&full).map_err(|e| {
                self.err_at(file, format!("cannot read {}: {e}", full.display()))
                    .help("name a text file of public keys relative to the recipe")
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                check_key_line(line).map_err(|why| {
                    self.err_at(file, format!("{} line {}: not an authorized_keys line: {why}", file.get_ref(), n + 1))
                        .help("each line holds one public key as `ssh-keygen` writes it: `ssh-ed25519 AAAA... comment` (blank lines and `#` comments are skipped)")
                })?;
                keys.push(line.to_owned());
            }
        }
        let password_hash = match &u.password_hash {
            None => None,
            Some(h) => {
                if !is_crypt_hash(h.get_ref()) {
                    return Err(self
                        .err_at(h, format!("{} is not a crypt(5) hash", key("password_hash")))
                        .help("write a hash such as `mkpasswd -m yescrypt` or `openssl passwd -6` prints (`$y$...` or `$6$...`), never the password itself"));
                }
                Some(h.get_ref().clone())
            }
        };
        let sudo = match &u.sudo {
            None => None,
            Some(s) => Some(match s.get_ref().as_str() {
                "password" => Sudo::Password,
                "nopasswd" => Sudo::Nopasswd,
                other => {
                    return Err(self
                        .err_at(s, format!("unknown sudo mode `{}`", other.escape_debug()))
                        .help("use sudo = \"password\" (sudo asks for the user's password) or \"nopasswd\""))
                }
            }),
        };
        Ok(UserSpec {
            name,
            uid,
            groups,
            create_groups: u.create_groups.as_ref().is_some_and(|b| *b.get_ref()),
            shell: path(&u.shell)?,
            home: path(&u.home)?,
            ssh_authorized_keys: keys,
            ssh_authorized_keys_file: u
                .ssh_authorized_keys_file
                .as_ref()
                .map(|f| f.get_ref().clone()),
            password_hash,
            sudo,
        })
    }

    fn network(&self, raw: S<RawNetwork>) -> Result<NetworkSpec, RecipeError> {
        let span = raw.span();
        let n = raw.into_inner();
        let help = "write either dhcp = true or static = { interface = \"en*\", address = \"10.0.0.5/24\", gateway = \"10.0.0.1\", dns = [\"10.0.0.1\"] }";
        match (n.dhcp, n.fixed) {
            (Some(d), None) if *d.get_ref() => Ok(NetworkSpec::Dhcp),
            (Some(d), None) => Err(self
                .err_at(&d, "`dhcp = false` configures nothing")
                .help(help)),
            (None, Some(s)) => {
                let sspan = s.span();
                let s = s.into_inner();
                let need = |v: Option<S<String>>, key: &str| {
                    v.ok_or_else(|| {
                        self.err(Some(sspan.clone()), format!("`static` needs `{key}`"))
                            .help(help)
                    })
                };
                let interface = need(s.interface, "interface")?;
                let i = interface.get_ref();
                if i.is_empty()
                    || i.len() > 15
                    || !i
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"*?._-".contains(&b))
                {
                    return Err(self
                        .err_at(&interface, format!("`{}` is not an interface name or glob", i.escape_debug()))
                        .help("e.g. interface = \"en*\" (every ethernet interface as systemd names them) or \"eth0\""));
                }
                let address = need(s.address, "address")?;
                check_cidr(address.get_ref()).map_err(|why| {
                    self.err_at(
                        &address,
                        format!(
                            "`{}` is not an address with a prefix length: {why}",
                            address.get_ref().escape_debug()
                        ),
                    )
                    .help("write it as ADDRESS/PREFIX, e.g. address = \"10.0.0.5/24\"")
                })?;
                let ip = |v: &S<String>, key: &str| -> Result<String, RecipeError> {
                    v.get_ref()
                        .parse::<IpAddr>()
                        .map(|_| v.get_ref().clone())
                        .map_err(|_| {
                            self.err_at(
                                v,
                                format!("`{}` is not an IP address", v.get_ref().escape_debug()),
                            )
                            .help(format!(
                                "write `{key}` as an IPv4 or IPv6 address, e.g. \"10.0.0.1\""
                            ))
                        })
                };
                let gateway = s.gateway.as_ref().map(|g| ip(g, "gateway")).transpose()?;
                let dns = s
                    .dns
                    .iter()
                    .flatten()
                    .map(|d| ip(d, "dns"))
                    .collect::<Result<_, _>>()?;
                Ok(NetworkSpec::Static {
                    interface: i.clone(),
                    address: address.into_inner(),
                    gateway,
                    dns,
                })
            }
            (Some(_), Some(s)) => Err(self
                .err_at(&s, "[system.network] sets both `dhcp` and `static`")
                .help(help)),
            (None, None) => Err(self
                .err(
                    Some(span),
                    "[system.network] sets neither `dhcp` nor `static`",
                )
                .help(help)),
        }
    }
}

/// A hostname: dot-separated RFC 1123 labels of letters, digits and inner `-`, each at
/// most 63 characters, at most 253 in all.
pub(super) fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (`..`, or `.` at an end)".into());
        }
        if label.len() > 63 {
            return Err(format!("label `{label}` is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("it contains `{}`", c.escape_debug()));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` starts or ends with `-`"));
        }
    }
    Ok(())
}

/// A zone name: a relative path of letters, digits, `_`, `+`, `-` and `.`, without `.` or
/// `..` components.
pub(super) fn check_timezone(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.starts_with('/') {
        return Err("it starts with `/`".into());
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("it has a `{part}` component"));
        }
        if let Some(c) = part
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_+-.".contains(*c)))
        {
            return Err(format!("it contains `{}`", c.escape_debug()));
        }
    }
    Ok(())
}

/// A user or group name as Debian's `adduser` accepts by default.
pub(super) fn is_account_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-".contains(c))
}

/// A crypt(5) string: `$id$...`, no `:`, whitespace or newline.
pub(super) fn is_crypt_hash(hash: &str) -> bool {
    let parts: Vec<&str> = hash.split('$').collect();
    hash.starts_with('$')
        && parts.len() >= 4
        && !parts[1].is_empty()
        && parts[1..].iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"./=,-".contains(&b))
        })
        && !parts.last().is_some_and(|p| p.is_empty())
}

/// `ADDRESS/PREFIX` with a prefix that fits the address family.
fn check_cidr(text: &str) -> Result<(), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| "it has no `/PREFIX`".to_owned())?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') => Ok(()),
        _ => Err(format!("`{prefix}` is not a prefix length from 0 to {max}")),
    }
}

/// One `authorized_keys` line: optional options, a known key type, then base64 whose
/// first string is that type, then an optional comment.
pub(super) fn check_key_line(line: &str) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("it is empty".into());
    }
    if line.contains(['\n', '\r', '\0']) {
        return Err("it holds more than one line".into());
    }
    let first_end = line.find([' ', '\t']).unwrap_or(line.len());
    let rest = if KEY_TYPES.contains(&&line[..first_end]) {
        line
    } else {
        // Options: up to the first blank outside double quotes.
        let mut quoted = false;
        let mut end = None;
        for (i, c) in line.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ' ' | '\t' if !quoted => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        if quoted {
            return Err("its options have an unclosed `\"`".into());
        }
        let Some(end) = end else {
            return Err(format!(
                "`{}` is not a key type (known: {})",
                &line[..first_end],
                KEY_TYPES.join(", ")
            ));
        };
        line[end..].trim_start()
    };
    let mut fields = rest.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    if !KEY_TYPES.contains(&kind) {
        return Err(format!(
            "`{kind}` is not a key type (known: {})",
            KEY_TYPES.join(", ")
        ));
    }
    let blob = fields
        .next()
        .ok_or_else(|| format!("the `{kind}` key has no base64 data"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|_| "its key data is not base64".to_owned())?;
    let named = bytes
        .get(..4)
        .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
        .and_then(|n| bytes.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(format!(
            "its key data is not a `{kind}` key (truncated, or another type's)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::load;

    const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";

    #[test]
    fn key_lines() {
        check_key_line(&format!("ssh-ed25519 {ED25519} alice@laptop")).unwrap();
        check_key_line(&format!("ssh-ed25519 {ED25519}")).unwrap();
        check_key_line(&format!(
            "no-pty,command=\"echo a b\" ssh-ed25519 {ED25519} c"
        ))
        .unwrap();
        assert!(check_key_line(&format!("ssh-rsa {ED25519}"))
            .unwrap_err()
            .contains("not a `ssh-rsa` key"));
        assert!(check_key_line("ssh-ed25519 !!!")
            .unwrap_err()
            .contains("base64"));
        assert!(check_key_line("ssh-ed25519")
            .unwrap_err()
            .contains("no base64"));
        assert!(check_key_line("hello world")
            .unwrap_err()
            .contains("key type"));
        assert!(check_key_line("command=\"x y ssh-ed25519")
            .unwrap_err()
            .contains("unclosed"));
    }

    #[test]
    fn hostnames_and_zones() {
        check_hostname("devbox").unwrap();
        check_hostname("a-1.example.org").unwrap();
        assert!(check_hostname("-a").is_err());
        assert!(check_hostname("a_b").is_err());
        assert!(check_hostname(&"a".repeat(64)).is_err());
        assert!(check_hostname("a..b").is_err());
        check_timezone("Europe/Berlin").unwrap();
        check_timezone("Etc/GMT+1").unwrap();
        assert!(check_timezone("../etc/passwd").is_err());
        assert!(check_timezone("/UTC").is_err());
    }

    #[test]
    fn names_hashes_addresses() {
        assert!(is_account_name("alice"));
        assert!(is_account_name("_apt"));
        assert!(!is_account_name("Alice"));
        assert!(!is_account_name("1a"));
        assert!(is_crypt_hash("$6$salt$abcdefABC./"));
        assert!(is_crypt_hash("$y$j9T$salt$hash"));
        assert!(!is_crypt_hash("secret"));
        assert!(!is_crypt_hash("$6$a:b$c"));
        assert!(!is_crypt_hash("$6$salt$"));
        check_cidr("10.0.0.5/24").unwrap();
        check_cidr("fd00::1/64").unwrap();
        assert!(check_cidr("10.0.0.5").is_err());
        assert!(check_cidr("10.0.0.5/33").is_err());
    }

    #[test]
    fn system_from_an_include_is_the_last_step_and_comes_from_one_file() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = tmp.path().join(name);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        };
        write("common/keys/a.pub", &format!("ssh-ed25519 {ED25519} a@b\n"));
        write(
            "common/sys.toml",
            "[system]\nhostname = \"h\"\n[[system.user]]\nname = \"a\"\nssh_authorized_keys_file = \"keys/a.pub\"\n",
        );
        write(
            "a.toml",
            "include = [\"common/sys.toml\"]\n[image]\nname = \"a\"\n[[step]]\nmkdir = \"/x\"\n",
        );
        let a = load(&tmp.path().join("a.toml")).unwrap();
        let last = a.steps.last().unwrap();
        assert_eq!((last.number, last.op.kind(), last.line), (2, "system", 2));
        let StepOp::System(spec) = &last.op else {
            panic!()
        };
        assert_eq!(
            spec.users[0].ssh_authorized_keys,
            [format!("ssh-ed25519 {ED25519} a@b")]
        );
        assert_eq!(last.op.describe(), "system (hostname h, 1 user)");

        write(
            "b.toml",
            "include = [\"common/sys.toml\"]\n[image]\nname = \"b\"\n[system]\nkeymap = \"de\"\n",
        );
        let e = load(&tmp.path().join("b.toml")).unwrap_err();
        assert!(e.message.contains("[system]"), "{e}");

        // An empty [system] adds no step.
        write("c.toml", "[image]\nname = \"c\"\n[system]\n");
        assert!(load(&tmp.path().join("c.toml")).unwrap().steps.is_empty());
    }
}
