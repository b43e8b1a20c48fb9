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

fn locate(source: &str, span: Range<usize>) -> (usize, usize, String, usize) {
    let start = span.start.min(source.len());
    let before = &source[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    let line_text = source[line_start..line_end]
        .trim_end_matches('\r')
        .to_owned();
    let column = source[line_start..start].chars().count() + 1;
    let width = source[start..span.end.clamp(start, line_end)]
        .chars()
        .count()
        .max(1);
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
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, self.line_text)?;
            write!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(self.column - 1),
                "^".repeat(self.width)
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
}
