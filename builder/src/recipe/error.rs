//! Recipe errors that point at the file, line and column, show the line, and say what to do.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A mistake in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    /// The recipe file.
    pub file: PathBuf,
    /// 1-based line (0 when the error is about the whole file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The text of that line.
    pub line_text: String,
    /// Width of the underlined part.
    pub width: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl std::error::Error for RecipeError {}

impl RecipeError {
    /// Always true: a recipe error is the recipe's author's to fix.
    pub fn is_user_error(&self) -> bool {
        true
    }

    /// An error about the bytes `span` of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column, line_text, width) = match span {
            Some(span) => locate(source, span),
            None => (0, 0, String::new(), 0),
        };
        Self {
            file: file.to_owned(),
            line,
            column,
            line_text,
            width,
            message: message.into(),
            help: None,
        }
    }

    /// Adds advice on what to do.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// How many characters of a long line are shown.
const WINDOW: usize = 100;

fn locate(source: &str, span: Range<usize>) -> (usize, usize, String, usize) {
    // Spans from elsewhere may fall inside a character: widen them to whole ones.
    let mut start = span.start.min(source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = span.end.clamp(start, source.len());
    while !source.is_char_boundary(end) {
        end += 1;
    }
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    // Control characters (a binary file's) would garble the terminal: one `?` each.
    let line_text = source[line_start..line_end]
        .trim_end_matches('\r')
        .chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect();
    let column = source[line_start..start].chars().count() + 1;
    let width = source[start..end.min(line_end)].chars().count().max(1);
    (line, column, line_text, width)
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        if self.line == 0 {
            write!(f, "  --> {}", self.file.display())?;
        } else {
            let gutter = self.line.to_string().len();
            writeln!(
                f,
                "  --> {}:{}:{}",
                self.file.display(),
                self.line,
                self.column
            )?;
            // A long line is shown as a window around the column, marked with `...`.
            let chars: Vec<char> = self.line_text.chars().collect();
            let from = (self.column - 1)
                .saturating_sub(WINDOW / 2)
                .min(chars.len());
            let to = (from + WINDOW).min(chars.len());
            let lead = if from > 0 { "..." } else { "" };
            let tail = if to < chars.len() { "..." } else { "" };
            let shown: String = chars[from..to].iter().collect();
            let width = self.width.min(to.saturating_sub(self.column - 1)).max(1);
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {lead}{shown}{tail}", self.line)?;
            write!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(lead.len() + self.column - 1 - from),
                "^".repeat(width)
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_the_line_and_column() {
        let src = "[image]\nname = 3\n";
        let e = RecipeError::at(Path::new("r.toml"), src, Some(15..16), "bad name")
            .help("use a string");
        assert_eq!((e.line, e.column), (2, 8));
        let text = e.to_string();
        assert!(text.contains("r.toml:2:8"), "{text}");
        assert!(text.contains("2 | name = 3"), "{text}");
        assert!(text.contains("help: use a string"), "{text}");
    }

    #[test]
    fn long_lines_and_control_characters_are_shown_briefly() {
        let src = format!("name = \"{}\u{1}x\"\n", "a".repeat(5000));
        let at = src.find('x').unwrap();
        let e = RecipeError::at(Path::new("r.toml"), &src, Some(at..at + 1), "bad");
        assert_eq!((e.line, e.column), (1, at + 1));
        let text = e.to_string();
        assert!(text.lines().all(|l| l.len() < 200), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let (shown, caret) = (lines[3], lines[4]);
        assert!(
            shown.starts_with("1 | ...") && shown.contains("a?x"),
            "{text}"
        );
        let col = caret.find('^').unwrap();
        assert_eq!(shown.as_bytes()[col], b'x', "{text}");
    }
}
