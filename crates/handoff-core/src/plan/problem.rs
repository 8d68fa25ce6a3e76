//! A problem found in a plan: where it is (a byte span in the source and a field path) and what
//! to change. Rendering as `FILE:LINE:COL: message` happens here so the CLI and the tests agree.

use std::fmt;
use std::ops::Range;

/// One thing wrong with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte range of the offending value in the plan source, when known.
    pub span: Option<Range<usize>>,
    /// Field path such as `relays[0].legs[2].duration` (for HTTP error bodies).
    pub field: String,
    pub message: String,
}

impl Problem {
    #[must_use]
    pub fn new(
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            span,
            field: field.into(),
            message: message.into(),
        }
    }

    /// 1-based line and column (in characters) of the start of the span in `src`.
    #[must_use]
    pub fn line_col(&self, src: &str) -> (usize, usize) {
        line_col(src, self.span.as_ref().map_or(0, |s| s.start))
    }

    /// `FILE:LINE:COL: message`, the form editors and CI annotate.
    #[must_use]
    pub fn render(&self, file: &str, src: &str) -> String {
        let (line, col) = self.line_col(src);
        format!("{file}:{line}:{col}: {}", self.message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// 1-based line and column (counted in characters) of byte `offset` in `src`.
#[must_use]
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = src[line_start..offset].chars().count() + 1;
    (line, col)
}

/// A list of problems, in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars_not_bytes() {
        let src = "a = 1\nname = \"Paris → LA\" x";
        let off = src.find('x').unwrap_or(0);
        assert_eq!(line_col(src, off), (2, 21));
        assert_eq!(line_col(src, 0), (1, 1));
    }
}
