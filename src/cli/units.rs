//! Parsing durations (`7d`, `12h`) and sizes (`10GiB`, `500M`) from the command line.

/// Parses `90s`, `30m`, `12h`, `7d` or plain seconds.
pub(crate) fn duration(text: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = split(text);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 7d, 12h, 30m or 90s"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{text}`: unknown unit `{unit}`; use s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Parses `512MiB`, `10GiB`, `500M`, `2G` or plain bytes.
pub(crate) fn size(text: &str) -> Result<u64, String> {
    let (num, unit) = split(text);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. 10GiB or 500MiB"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}`; use KiB, MiB, GiB or TiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn split(text: &str) -> (&str, &str) {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    (&text[..at], text[at..].trim())
}

/// Formats bytes for people.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The last time an image can record: 9999-12-31T23:59:59Z (RFC 3339 has four-digit years).
pub(crate) const MAX_EPOCH: u64 = 253_402_300_799;

/// Parses `SOURCE_DATE_EPOCH` / `--source-date-epoch`: seconds since 1970, up to [`MAX_EPOCH`].
pub(crate) fn epoch(text: &str) -> Result<u64, String> {
    let n: u64 = text.trim().parse().map_err(|_| {
        format!("SOURCE_DATE_EPOCH (--source-date-epoch) `{text}` is not a whole number of seconds since 1970")
    })?;
    if n > MAX_EPOCH {
        return Err(format!(
            "SOURCE_DATE_EPOCH (--source-date-epoch) {n} is after 9999-12-31T23:59:59Z ({MAX_EPOCH}), the last time an image can record"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(duration("7d").unwrap().as_secs(), 604_800);
        assert_eq!(size("10GiB").unwrap(), 10 << 30);
        assert!(size("ten").is_err());
        assert_eq!(human(1536), "1.5 KiB");
    }

    #[test]
    fn epochs_end_with_year_9999() {
        assert_eq!(epoch("0"), Ok(0));
        assert_eq!(epoch("253402300799"), Ok(MAX_EPOCH));
        let e = epoch("253402300800").unwrap_err();
        assert!(
            e.contains("SOURCE_DATE_EPOCH") && e.contains("9999-12-31"),
            "{e}"
        );
        assert!(epoch("-1").is_err());
    }
}
