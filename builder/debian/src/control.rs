//! deb822 control-file parser.
//!
//! Implements the syntax of Debian Policy §5.1 ("Syntax of control files") and the
//! `deb822(5)` format used by `InRelease`/`Release`, `Packages` indices and the
//! `control` member of a `.deb`:
//!
//! * a file is a sequence of *paragraphs* separated by one or more blank lines
//!   (lines that are empty or contain only spaces/tabs);
//! * a field is `Name: value`; field names are case-insensitive (§5.1);
//! * a line starting with a space or a tab continues the previous field
//!   (folded and multiline fields, §5.1); the raw text, newlines included, is kept;
//! * lines starting with `#` are comments (allowed by `deb822(5)`) and are skipped.
//!
//! Parsing borrows from the input: a 50 MB `Packages` file is split into fields
//! without copying them.

use std::collections::BTreeMap;

/// A malformed control file.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A line that is neither `Name: value`, a continuation, a comment nor blank.
    #[error("control file line {line}: expected `Field: value`, found {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A continuation line before any field of its paragraph.
    #[error("control file line {line}: continuation line without a field before it")]
    OrphanContinuation {
        /// 1-based line number.
        line: usize,
    },
}

/// One deb822 paragraph, borrowing from the parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph<'a> {
    fields: Vec<(&'a str, &'a str)>,
    line: usize,
}

impl<'a> Paragraph<'a> {
    /// The value of `name` (matched case-insensitively), trimmed; multiline values keep
    /// their embedded `\n` and continuation indentation.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The lines of a multiline field (e.g. `SHA256` in a Release file), each trimmed,
    /// empty lines (including the empty first line) skipped.
    pub fn lines(&self, name: &str) -> impl Iterator<Item = &'a str> {
        self.get(name)
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
    }

    /// All fields in file order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.fields.iter().copied()
    }

    /// 1-based line number where the paragraph starts.
    pub fn line(&self) -> usize {
        self.line
    }

    /// An owned copy, keyed by lower-cased field name.
    pub fn to_owned_fields(&self) -> ControlFields {
        ControlFields(
            self.fields
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
        )
    }
}

/// Owned control fields (e.g. a `.deb`'s `control` file), keyed by lower-cased name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlFields(pub BTreeMap<String, String>);

impl ControlFields {
    /// The value of `name`, matched case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Iterator over the paragraphs of a control file; see [`parse`].
pub struct Paragraphs<'a> {
    rest: &'a str,
    line: usize,
}

/// Parses `text` into paragraphs lazily.
pub fn parse(text: &str) -> Paragraphs<'_> {
    parse_from_line(text, 1)
}

/// Parses `text`, a piece of a larger file starting at 1-based line `first_line`, so
/// that errors and [`Paragraph::line`] count lines of the whole file.
pub fn parse_from_line(text: &str, first_line: usize) -> Paragraphs<'_> {
    Paragraphs {
        rest: text,
        line: first_line.saturating_sub(1),
    }
}

/// Parses all paragraphs of `text`.
pub fn parse_all(text: &str) -> Result<Vec<Paragraph<'_>>, ControlError> {
    parse(text).collect()
}

impl<'a> Paragraphs<'a> {
    /// Takes the next line (without its terminator) from `rest`.
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.find('\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, ""),
        };
        self.rest = rest;
        self.line += 1;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }

    fn peek_is_continuation(&self) -> bool {
        self.rest.starts_with([' ', '\t'])
            && !self.rest[..self.rest.find('\n').unwrap_or(self.rest.len())]
                .trim()
                .is_empty()
    }
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph<'a>, ControlError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut fields: Vec<(&'a str, &'a str)> = Vec::new();
        let mut start = 0;
        loop {
            let before = self.rest;
            let Some(line) = self.next_line() else {
                break;
            };
            if line.trim().is_empty() {
                if fields.is_empty() {
                    continue;
                }
                break;
            }
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                return Some(Err(ControlError::OrphanContinuation { line: self.line }));
            }
            let Some(colon) = line.find(':') else {
                return Some(Err(ControlError::BadLine {
                    line: self.line,
                    text: line.to_owned(),
                }));
            };
            let name = line[..colon].trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Some(Err(ControlError::BadLine {
                    line: self.line,
                    text: line.to_owned(),
                }));
            }
            if fields.is_empty() {
                start = self.line;
            }
            // The value runs from after the colon through the last continuation line;
            // slice it out of `before` so multiline values are borrowed, not joined.
            let first_len = before.len() - self.rest.len();
            let mut end = first_len;
            while self.peek_is_continuation() {
                self.next_line();
                end = before.len() - self.rest.len();
            }
            let value = if end == first_len {
                &line[colon + 1..]
            } else {
                &before[colon + 1..end]
            };
            fields.push((name, value.trim()));
        }
        if fields.is_empty() {
            None
        } else {
            Some(Ok(Paragraph {
                fields,
                line: start,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_case_insensitive_fields() {
        let text = "Package: a\nVersion: 1.0\n\n\n# comment\npackage: b\nDEPENDS: x,\n y (>= 1)\n";
        let ps = parse_all(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("package"), Some("a"));
        assert_eq!(ps[1].get("Package"), Some("b"));
        assert_eq!(ps[1].get("Depends"), Some("x,\n y (>= 1)"));
        assert_eq!(ps[1].line(), 6);
    }

    #[test]
    fn multiline_lines() {
        let text = "SHA256:\n abc 12 main/x\n def 34 main/y\nDate: now\r\n";
        let ps = parse_all(text).unwrap();
        let lines: Vec<_> = ps[0].lines("sha256").collect();
        assert_eq!(lines, ["abc 12 main/x", "def 34 main/y"]);
        assert_eq!(ps[0].get("date"), Some("now"));
    }

    #[test]
    fn crlf_and_whitespace_blank_lines() {
        let text = "A: 1\r\n \r\nB: 2\r\n";
        let ps = parse_all(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("a"), Some("1"));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_all("nocolon\n"),
            Err(ControlError::BadLine { line: 1, .. })
        ));
        assert!(matches!(
            parse_all(" cont\n"),
            Err(ControlError::OrphanContinuation { line: 1 })
        ));
    }

    #[test]
    fn owned_fields() {
        let ps = parse_all("Package: a\nInstalled-Size: 3\n").unwrap();
        let o = ps[0].to_owned_fields();
        assert_eq!(o.get("installed-size"), Some("3"));
    }
}
