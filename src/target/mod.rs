//! Bulk-load targets: each database's data-file encoding of a row (in the parallel stage, like the main
//! output), its column types and identifier quoting. The scripts that load the files are in `script`.

pub mod pgcopy;
pub mod script;

use crate::spec::Dialect;
use crate::types::FieldType;
use crate::write::encode::{Cell, Texts};

/// One target's data file for an entity, as the mapping stage encodes it.
#[derive(Debug, Clone)]
pub struct TargetOut {
    pub dialect: Dialect,
    /// SQLite rows are INSERT statements into this (quoted) table: the entity's, or its staging table.
    pub insert_into: String,
}

/// Quotes an identifier (table or column name) for a dialect, whatever its case or spelling.
pub fn ident(d: Dialect, name: &str) -> String {
    match d {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Text that a key column (primary, unique or referenced) holds in MySQL when the field gives no
/// `max_length`: an index cannot cover TEXT.
pub const MYSQL_KEY_CHARS: usize = 255;

/// The column type of a field type in a dialect. `max_length` makes text VARCHAR where that matters;
/// `key` marks MySQL text columns that need a bounded length.
pub fn column_type(d: Dialect, ty: FieldType, max_length: Option<usize>, key: bool) -> String {
    use FieldType as T;
    match (d, ty) {
        (Dialect::Postgres, T::Text) => match max_length {
            Some(n) => format!("VARCHAR({n})"),
            None => "TEXT".into(),
        },
        (Dialect::Postgres, T::Integer) => "BIGINT".into(),
        (Dialect::Postgres, T::Decimal { precision, scale }) => {
            format!("NUMERIC({precision},{scale})")
        }
        (Dialect::Postgres, T::Float) => "DOUBLE PRECISION".into(),
        (Dialect::Postgres, T::Boolean) => "BOOLEAN".into(),
        (Dialect::Postgres, T::Date) => "DATE".into(),
        (Dialect::Postgres, T::Time) => "TIME".into(),
        (Dialect::Postgres, T::Timestamp) => "TIMESTAMP".into(),
        (Dialect::Postgres, T::TimestampTz) => "TIMESTAMPTZ".into(),
        (Dialect::Postgres, T::Uuid) => "UUID".into(),
        // `json` keeps the text as written (jsonb would reorder keys), so what is read back is what
        // was produced.
        (Dialect::Postgres, T::Json) => "JSON".into(),
        (Dialect::Mysql, T::Text) => match (max_length, key) {
            (Some(n), _) => format!("VARCHAR({n})"),
            (None, true) => format!("VARCHAR({MYSQL_KEY_CHARS})"),
            (None, false) => "LONGTEXT".into(),
        },
        (Dialect::Mysql, T::Integer) => "BIGINT".into(),
        (Dialect::Mysql, T::Decimal { precision, scale }) => {
            format!("DECIMAL({precision},{scale})")
        }
        (Dialect::Mysql, T::Float) => "DOUBLE".into(),
        (Dialect::Mysql, T::Boolean) => "BOOLEAN".into(),
        (Dialect::Mysql, T::Date) => "DATE".into(),
        (Dialect::Mysql, T::Time) => "TIME(6)".into(),
        (Dialect::Mysql, T::Timestamp | T::TimestampTz) => "DATETIME(6)".into(),
        (Dialect::Mysql, T::Uuid) => "CHAR(36)".into(),
        (Dialect::Mysql, T::Json) => "JSON".into(),
        (Dialect::Sqlite, T::Integer | T::Boolean) => "INTEGER".into(),
        (Dialect::Sqlite, T::Float) => "REAL".into(),
        // Decimals stay text: NUMERIC affinity would turn 12.30 into the float 12.3.
        (Dialect::Sqlite, _) => "TEXT".into(),
    }
}

/// Appends one row of a target's data file: a PostgreSQL binary COPY row, a MySQL LOAD DATA row (tab
/// separated, `\N` for null, backslash escapes), or a SQLite INSERT statement.
pub fn encode_row(
    t: &TargetOut,
    types: &[FieldType],
    cells: &[Cell],
    text: Texts,
    out: &mut Vec<u8>,
) {
    match t.dialect {
        Dialect::Postgres => {
            pgcopy::row_start(cells.len(), out);
            for (c, ty) in cells.iter().zip(types) {
                let v = match *c {
                    Cell::Bool(b) => Some(if b { "true" } else { "false" }),
                    _ => c.text(text),
                };
                pgcopy::value(*ty, v, out);
            }
        }
        Dialect::Mysql => {
            for (i, (c, ty)) in cells.iter().zip(types).enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                tsv_cell(t.dialect, *ty, c, text, out);
            }
            out.push(b'\n');
        }
        Dialect::Sqlite => {
            out.extend_from_slice(b"INSERT INTO ");
            out.extend_from_slice(t.insert_into.as_bytes());
            out.extend_from_slice(b" VALUES(");
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                sqlite_value(c, text, out);
            }
            out.extend_from_slice(b");\n");
        }
    }
}

/// One value of a LOAD DATA row (or PostgreSQL COPY text), by its type and text (None: null).
pub fn tsv_value(d: Dialect, ty: FieldType, v: Option<&str>, out: &mut Vec<u8>) {
    let Some(v) = v else {
        out.extend_from_slice(b"\\N");
        return;
    };
    match (d, ty) {
        (Dialect::Mysql, FieldType::Boolean) => out.push(if v == "true" { b'1' } else { b'0' }),
        // DATETIME has no zone: timestamptz values are written in UTC (what `Z` says) without it.
        (Dialect::Mysql, FieldType::Timestamp | FieldType::TimestampTz) => {
            let v = v.strip_suffix('Z').unwrap_or(v);
            out.extend(v.bytes().map(|b| if b == b'T' { b' ' } else { b }));
        }
        _ => tsv_escape(v.as_bytes(), out),
    }
}

fn tsv_cell(d: Dialect, ty: FieldType, c: &Cell, text: Texts, out: &mut Vec<u8>) {
    let v = match *c {
        Cell::Bool(b) => Some(if b { "true" } else { "false" }),
        _ => c.text(text),
    };
    tsv_value(d, ty, v, out);
}

/// Backslash escapes of the COPY text and LOAD DATA formats: a value never holds a raw tab, line end or
/// lone backslash, so `\.` and `\N` in data are `\\.` and `\\N`.
fn tsv_escape(v: &[u8], out: &mut Vec<u8>) {
    if !v
        .iter()
        .any(|&b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r' | 0))
    {
        out.extend_from_slice(v);
        return;
    }
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            // Only MySQL rows hold NUL (PostgreSQL text cannot: such records are rejected).
            0 => out.extend_from_slice(b"\\0"),
            _ => out.push(b),
        }
    }
}

/// One SQLite literal: NULL, a bare number, 1/0, or quoted text (a NUL, which SQL text cannot carry,
/// through a blob cast).
pub fn sqlite_value(c: &Cell, text: Texts, out: &mut Vec<u8>) {
    match *c {
        Cell::Null => out.extend_from_slice(b"NULL"),
        Cell::Bool(b) => out.push(if b { b'1' } else { b'0' }),
        Cell::Num(s, e) => {
            // Decimals are stored as text, exactly; integers and floats as numbers. A number's text
            // with a point or exponent that must stay exact is quoted: SQLite's column type decides.
            out.push(b'\'');
            out.extend_from_slice(text.bytes(s, e));
            out.push(b'\'');
        }
        Cell::Text(s, e) | Cell::Json(s, e) => sqlite_text(text.get(s, e), out),
    }
}

/// A SQLite text literal. Text holding a NUL (which SQL text cannot carry) or a CR (which the sqlite3
/// shell drops before a line end) goes through a blob cast.
pub fn sqlite_text(v: &str, out: &mut Vec<u8>) {
    if v.contains(['\0', '\r']) {
        out.extend_from_slice(b"CAST(X'");
        for b in v.bytes() {
            out.extend_from_slice(format!("{b:02X}").as_bytes());
        }
        out.extend_from_slice(b"' AS TEXT)");
        return;
    }
    out.push(b'\'');
    for b in v.bytes() {
        if b == b'\'' {
            out.push(b'\'');
        }
        out.push(b);
    }
    out.push(b'\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tsv(d: Dialect, ty: FieldType, v: Option<&str>) -> String {
        let mut out = Vec::new();
        tsv_value(d, ty, v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn copy_text_escapes_what_would_end_a_field_a_row_or_the_data() {
        let d = Dialect::Postgres;
        assert_eq!(tsv(d, FieldType::Text, None), "\\N");
        assert_eq!(tsv(d, FieldType::Text, Some("\\N")), "\\\\N");
        assert_eq!(tsv(d, FieldType::Text, Some("\\.")), "\\\\.");
        assert_eq!(tsv(d, FieldType::Text, Some("a\tb\r\nc")), "a\\tb\\r\\nc");
        assert_eq!(tsv(d, FieldType::Text, Some("")), "");
        assert_eq!(
            tsv(
                Dialect::Mysql,
                FieldType::TimestampTz,
                Some("2024-03-01T10:00:00.5Z")
            ),
            "2024-03-01 10:00:00.5"
        );
        assert_eq!(tsv(Dialect::Mysql, FieldType::Boolean, Some("true")), "1");
    }

    #[test]
    fn sqlite_literals() {
        let mut out = Vec::new();
        sqlite_text("it's", &mut out);
        sqlite_text("a\0b", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "'it''s'CAST(X'610062' AS TEXT)"
        );
        assert_eq!(ident(Dialect::Mysql, "a`b"), "`a``b`");
        assert_eq!(
            ident(Dialect::Postgres, "Order \"x\""),
            "\"Order \"\"x\"\"\""
        );
    }
}
