//! Error types: fatal errors stop a run, record errors become rejects, spec errors are collected and shown
//! all at once.

use std::fmt;
use std::path::PathBuf;

/// Where a record or a byte sits in an input file. Rendered as `file: record 17 (line 18, byte 2044)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The input file as the user named it (relative to the mapping file where possible).
    pub file: String,
    /// 1-based number of the data record (the header is not counted); 0 when not inside a record.
    pub record: u64,
    /// 1-based line where the record (or the problem) starts.
    pub line: u64,
    /// 0-based byte offset where the record (or the problem) starts.
    pub byte: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.record > 0 {
            write!(
                f,
                "{}: record {} (line {}, byte {})",
                self.file, self.record, self.line, self.byte
            )
        } else {
            write!(f, "{}: line {}, byte {}", self.file, self.line, self.byte)
        }
    }
}

/// An error that ends a run (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{pos}: unterminated quoted field: the quote opened here is never closed before the end of the file")]
    UnterminatedQuote { pos: Position },
    #[error("{pos}: record is longer than the limit of {limit} bytes (csv.max_record_bytes); is a quote left open?")]
    RecordTooLong { pos: Position, limit: usize },
    #[error("{pos}: bytes invalid in the declared encoding {encoding}")]
    Encoding { pos: Position, encoding: String },
    /// A JSON or XML document that is not well formed, or that the reader refuses (entities, depth).
    #[error("{pos}: {message}")]
    Syntax { pos: Position, message: String },
    #[error("{pos}: {message}")]
    BadRecord { pos: Position, message: String },
    #[error("{file}: the file is empty: it has no header row")]
    EmptyFile { file: String },
    #[error("source {source_name:?}: no file matches {pattern:?}")]
    NoInput {
        source_name: String,
        pattern: String,
    },
    #[error("the mapping is not valid:\n{0}")]
    Spec(SpecErrors),
    /// An output file that its encoder could not write (Parquet, Arrow).
    #[error("{path}: cannot write: {message}")]
    Output { path: String, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("internal error (this is a bug in crm-etl, please report it): {0}")]
    Internal(String),
}

impl FatalError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FatalError::Io {
            path: path.into(),
            source,
        }
    }
}

/// One problem in a mapping file, with the key path it concerns (`entities[0].fields[2].type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a mapping file, reported together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecError {
            path: path.into(),
            message: message.into(),
        });
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Why a single record was rejected. The code is stable (it keys the manifest's counts); the message
/// quotes what was found and says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The target field, or the source column for record-level problems; empty when the whole record is bad.
    pub field: String,
    /// The offending value as read (after null handling), or empty.
    pub value: String,
    pub code: RejectCode,
    pub message: String,
}

impl fmt::Display for FieldError {
    /// `field "email": expected ...`, or the message alone for a whole-record problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "field {:?}: {}", self.field, self.message)
        }
    }
}

/// Closed set of reject reasons, used as keys of `rejects_by_reason` in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectCode {
    /// Quote characters in the wrong place.
    Malformed,
    /// Bytes that are not valid in the declared encoding.
    Encoding,
    /// Too many or too few fields.
    FieldCount,
    /// A required field is null.
    Required,
    /// The value does not parse as the field's type.
    Type,
    /// Text longer than max_length.
    MaxLength,
    /// Text that does not match the field's pattern.
    Pattern,
    /// A value absent from the field's value map, with `unmapped = "reject"`.
    Unmapped,
    /// A value already seen in a unique field or primary key.
    Duplicate,
    /// JSON or XML: a key repeated in an object, or a path that matches several elements.
    Ambiguous,
    /// A reference that matches no record of the parent entity, with `orphans = "reject"`.
    Orphan,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Malformed => "malformed",
            RejectCode::Encoding => "encoding",
            RejectCode::FieldCount => "field_count",
            RejectCode::Required => "required",
            RejectCode::Type => "type",
            RejectCode::MaxLength => "max_length",
            RejectCode::Pattern => "pattern",
            RejectCode::Unmapped => "unmapped",
            RejectCode::Duplicate => "duplicate",
            RejectCode::Ambiguous => "ambiguous",
            RejectCode::Orphan => "orphan",
        }
    }
}

/// Suggests the closest candidate for a near miss (`emial` -> `email`), by edit distance.
pub fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = wanted.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c.to_lowercase() == lower {
            return Some(c);
        }
        let d = edit_distance(&lower, &c.to_lowercase());
        let limit = (wanted.chars().count() / 3).max(1) + 1;
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Renders a "did you mean" hint, or nothing.
pub fn hint<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match did_you_mean(wanted, candidates) {
        Some(c) => format!("; did you mean {c:?}?"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(did_you_mean("emial", ["email", "phone"]), Some("email"));
        assert_eq!(did_you_mean("EMAIL", ["email", "phone"]), Some("email"));
        assert_eq!(did_you_mean("zzzzzz", ["email", "phone"]), None);
    }

    #[test]
    fn position_renders_in_one_format() {
        let p = Position {
            file: "contacts.csv".into(),
            record: 17,
            line: 18,
            byte: 2044,
        };
        assert_eq!(
            p.to_string(),
            "contacts.csv: record 17 (line 18, byte 2044)"
        );
    }
}
