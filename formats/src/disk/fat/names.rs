//! File name handling: validating long names, fitting names into 8.3 short
//! names (with the NT lower-case flags) and generating unique `~N` short
//! aliases for names that need a VFAT long name (fatgen103 §7.2 "Basis-Name
//! Generation Algorithm" and §7.3 "Numeric-Tail Generation Algorithm").

use std::collections::HashSet;

/// `NTRes` flag: the base name is lower case.
const LOWER_BASE: u8 = 0x08;
/// `NTRes` flag: the extension is lower case.
const LOWER_EXT: u8 = 0x10;
/// Longest long name in UTF-16 code units.
pub(crate) const MAX_LFN_UNITS: usize = 255;

/// The on-disk naming of one directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryName {
    /// Space-padded 8.3 name.
    pub(crate) short: [u8; 11],
    /// NT case flags for the short entry.
    pub(crate) case_flags: u8,
    /// Long name, if the name is not representable as 8.3.
    pub(crate) long: Option<Vec<u16>>,
}

/// Why a name cannot be stored.
pub(crate) fn invalid_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty component");
    }
    if name == "." || name == ".." {
        return Some("`.` and `..` are reserved");
    }
    if name.encode_utf16().count() > MAX_LFN_UNITS {
        return Some("longer than 255 UTF-16 code units");
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("trailing dots and spaces are dropped by Windows and firmware");
    }
    if name
        .chars()
        .any(|c| (c as u32) < 0x20 || "\"*/:<>?\\|\u{7f}".contains(c))
    {
        return Some("contains a character FAT forbids (control, \" * / : < > ? \\ |)");
    }
    None
}

/// Characters allowed in a short name besides `A-Z` and `0-9`.
fn short_char_ok(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || b"$%'-_@~`!(){}^#&".contains(&c)
}

/// Case of the letters in `part`: `Some(true)` all lower, `Some(false)` no
/// lower case, `None` mixed.
fn all_lower(part: &str) -> Option<bool> {
    let lower = part.bytes().any(|b| b.is_ascii_lowercase());
    let upper = part.bytes().any(|b| b.is_ascii_uppercase());
    match (lower, upper) {
        (true, true) => None,
        (l, _) => Some(l),
    }
}

/// `name` as an exact 8.3 short name with case flags, if it is one.
fn exact_short(name: &str) -> Option<([u8; 11], u8)> {
    let (base, ext) = match name.split_once('.') {
        Some((b, e)) => (b, e),
        None => (name, ""),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || ext.contains('.') {
        return None;
    }
    if name.contains('.') && ext.is_empty() {
        return None;
    }
    let upper = name.to_ascii_uppercase();
    if !upper.bytes().all(|c| c == b'.' || short_char_ok(c)) {
        return None;
    }
    let mut flags = 0;
    if all_lower(base)? {
        flags |= LOWER_BASE;
    }
    if all_lower(ext)? {
        flags |= LOWER_EXT;
    }
    Some((
        pad83(&base.to_ascii_uppercase(), &ext.to_ascii_uppercase()),
        flags,
    ))
}

fn pad83(base: &str, ext: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    out
}

/// Basis name (fatgen103 §7.2): upper-cased, spaces and leading periods
/// removed, other unrepresentable characters replaced by `_`. Returns
/// `(base, ext, lossy)`.
fn basis(name: &str) -> (String, String, bool) {
    let mut lossy = false;
    let trimmed = name.trim_start_matches('.');
    if trimmed.len() != name.len() {
        lossy = true;
    }
    let (b, e) = match trimmed.rfind('.') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (trimmed, ""),
    };
    let mut conv = |s: &str, max: usize| -> String {
        let mut out = String::new();
        for c in s.chars() {
            if c == ' ' || c == '.' {
                lossy = true;
                continue;
            }
            let u = c.to_ascii_uppercase();
            let ch = if u.is_ascii() && short_char_ok(u as u8) {
                u
            } else {
                lossy = true;
                '_'
            };
            if out.len() < max {
                out.push(ch);
            } else {
                lossy = true;
            }
        }
        out
    };
    let mut base = conv(b, 8);
    let ext = conv(e, 3);
    if base.is_empty() {
        base.push('_');
        lossy = true;
    }
    (base, ext, lossy)
}

/// Assigns short names (and long names where needed) to the entries of one
/// directory. `names` must be distinct; an error names the two long names
/// that collide case-insensitively.
pub(crate) fn assign(names: &[&str]) -> Result<Vec<EntryName>, (String, String)> {
    let mut seen_upper: Vec<(String, &str)> =
        names.iter().map(|n| (n.to_uppercase(), *n)).collect();
    seen_upper.sort();
    for w in seen_upper.windows(2) {
        if w[0].0 == w[1].0 {
            return Err((w[0].1.to_string(), w[1].1.to_string()));
        }
    }
    let mut used: HashSet<[u8; 11]> = HashSet::new();
    let mut out: Vec<Option<EntryName>> = vec![None; names.len()];
    // Exact 8.3 names first so that generated aliases never take them.
    for (i, name) in names.iter().enumerate() {
        if let Some((short, case_flags)) = exact_short(name) {
            used.insert(short);
            out[i] = Some(EntryName {
                short,
                case_flags,
                long: None,
            });
        }
    }
    for (i, name) in names.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let (base, ext, lossy) = basis(name);
        let plain = pad83(&base, &ext);
        let short = if !lossy && !used.contains(&plain) {
            plain
        } else {
            (1u32..)
                .map(|n| {
                    let tail = format!("~{n}");
                    let keep = base.len().min(8 - tail.len());
                    pad83(&format!("{}{tail}", &base[..keep]), &ext)
                })
                .find(|s| !used.contains(s))
                .unwrap_or(plain)
        };
        used.insert(short);
        out[i] = Some(EntryName {
            short,
            case_flags: 0,
            long: Some(name.encode_utf16().collect()),
        });
    }
    Ok(out.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str) -> EntryName {
        assign(&[name]).unwrap().remove(0)
    }

    #[test]
    fn exact_names_need_no_lfn() {
        let e = one("BOOTX64.EFI");
        assert_eq!(&e.short, b"BOOTX64 EFI");
        assert_eq!((e.case_flags, e.long.is_none()), (0, true));
        let e = one("loader");
        assert_eq!(&e.short, b"LOADER     ");
        assert_eq!((e.case_flags, e.long.is_none()), (LOWER_BASE, true));
        let e = one("debian.conf");
        assert!(e.long.is_some(), "4-char extension needs an LFN");
        let e = one("grub.cfg");
        assert_eq!(
            (e.case_flags, e.long.is_none()),
            (LOWER_BASE | LOWER_EXT, true)
        );
        assert!(one("Mixed.txt").long.is_some());
    }

    #[test]
    fn aliases_are_unique() {
        let names = [
            "vmlinuz-6.1.0-18-amd64",
            "vmlinuz-6.1.0-19-amd64",
            "VMLINUZ-",
            ".bashrc",
            "a b.c.d",
        ];
        let got = assign(&names).unwrap();
        let shorts: Vec<String> = got
            .iter()
            .map(|e| String::from_utf8_lossy(&e.short).into_owned())
            .collect();
        assert_eq!(
            shorts,
            [
                "VMLINU~10-1",
                "VMLINU~20-1",
                "VMLINUZ-   ",
                "BASHRC~1   ",
                "ABC~1   D  "
            ]
        );
    }

    #[test]
    fn case_collisions_are_errors() {
        assert!(assign(&["README", "readme"]).is_err());
        assert!(invalid_reason("a:b").is_some());
        assert!(invalid_reason("trailing.").is_some());
        assert!(invalid_reason("ok name.txt").is_none());
    }
}
