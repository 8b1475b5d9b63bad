//! Dataset digests: an order-independent fingerprint of an entity's typed rows, so that what a database
//! holds can be checked against what a run produced without sorting either.
//!
//! A row's material is its canonical CSV encoding (the run's CSV output row: RFC 4180, a null as an
//! empty field, an empty string as `""`), so it depends on the typed values only. Each row is hashed with
//! BLAKE3 and the hashes are summed as four 64-bit lanes (wrapping): the sum of a multiset, which does not
//! depend on row order and can take a row out again (deferred references change rows after they are
//! written). The digest is shown as `blake3-sum:` and 64 hex digits; the row count is beside it.

use crate::write::encode::{csv_cell, csv_field, Cell, Texts};

/// The sum of row hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest([u64; 4]);

impl Digest {
    pub fn add(&mut self, h: &[u64; 4]) {
        for (a, b) in self.0.iter_mut().zip(h) {
            *a = a.wrapping_add(*b);
        }
    }

    pub fn sub(&mut self, h: &[u64; 4]) {
        for (a, b) in self.0.iter_mut().zip(h) {
            *a = a.wrapping_sub(*b);
        }
    }

    /// `blake3-sum:` and the lanes as 64 hex digits.
    pub fn text(&self) -> String {
        let mut s = String::from("blake3-sum:");
        for l in self.0 {
            s.push_str(&format!("{l:016x}"));
        }
        s
    }
}

/// The hash of one row's material.
pub fn row_hash(material: &[u8]) -> [u64; 4] {
    crate::rowhash::words(blake3::hash(material).as_bytes())
}

/// Appends a row's material: its cells as a canonical CSV row.
pub fn material(cells: &[Cell], text: Texts, out: &mut Vec<u8>) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_cell(c, text, true, out);
    }
    out.push(b'\n');
}

/// Appends the material of the cells at `cols` (a primary key).
pub fn material_cols(cells: &[Cell], cols: &[usize], text: Texts, out: &mut Vec<u8>) {
    for (i, &c) in cols.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_cell(&cells[c], text, true, out);
    }
    out.push(b'\n');
}

/// The material of values given as text (None: null).
pub fn material_of(values: &[Option<&str>], out: &mut Vec<u8>) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(t) = v {
            csv_field(t.as_bytes(), true, out);
        }
    }
    out.push(b'\n');
}

/// Splits a material row back into its values (an unquoted empty field is null).
pub fn parse_material(m: &[u8]) -> Vec<Option<String>> {
    let m = m.strip_suffix(b"\n").unwrap_or(m);
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        if m.get(i) == Some(&b'"') {
            let mut v = Vec::new();
            i += 1;
            while i < m.len() {
                if m[i] == b'"' {
                    if m.get(i + 1) == Some(&b'"') {
                        v.push(b'"');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                v.push(m[i]);
                i += 1;
            }
            out.push(Some(String::from_utf8_lossy(&v).into_owned()));
        } else {
            let end = m[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(m.len(), |p| i + p);
            let v = &m[i..end];
            out.push((!v.is_empty()).then(|| String::from_utf8_lossy(v).into_owned()));
            i = end;
        }
        if i >= m.len() {
            return out;
        }
        i += 1; // the comma
        if i == m.len() {
            out.push(None);
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_fields_decode() {
        assert_eq!(copy_unescape("\\N"), None);
        assert_eq!(
            copy_unescape("a\\101\\x42\\\\N\\t|\\7").as_deref(),
            Some("aAB\\N\t|\u{7}")
        );
        assert_eq!(copy_unescape("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn material_round_trips_and_sums_ignore_order() {
        let vals = [Some("a,b"), None, Some(""), Some("q\"x\ny"), None];
        let mut m = Vec::new();
        material_of(&vals, &mut m);
        let back = parse_material(&m);
        let back: Vec<Option<&str>> = back.iter().map(|v| v.as_deref()).collect();
        assert_eq!(back, vals);
        let rows: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("{i},x{i}\n").into_bytes())
            .collect();
        let mut a = Digest::default();
        let mut b = Digest::default();
        for r in &rows {
            a.add(&row_hash(r));
        }
        for r in rows.iter().rev() {
            b.add(&row_hash(r));
        }
        assert_eq!(a, b);
        b.sub(&row_hash(&rows[3]));
        assert_ne!(a, b);
        b.add(&row_hash(&rows[3]));
        assert_eq!(a.text(), b.text());
    }
}

/// Where `crm-etl digest` reads a table's rows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// PostgreSQL's COPY text format: `psql -c '\copy "contact" TO STDOUT'` (tab-separated, `\N` for
    /// null, backslash escapes): exact for every type, JSON included.
    Copy,
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects: `sqlite3 -json DB 'SELECT * FROM "contact"'` (no output at all for an
    /// empty table).
    Json,
}

/// The query that exports an entity's table from MySQL/MariaDB as JSON Lines (`mariadb -N -B --raw`):
/// one JSON_OBJECT per row, so nulls, line ends and tabs survive (the client's tab-separated and XML
/// outputs lose nulls or carriage returns).
pub fn mysql_export_query(
    mapping: &std::path::Path,
    entity: &str,
) -> Result<String, crate::error::FatalError> {
    let (_, table) = export_table(mapping, entity)?;
    let d = crate::spec::Dialect::Mysql;
    let pairs: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let col = crate::target::ident(d, &c.name);
            // A JSON column would be embedded as JSON (its `null` then reads as SQL NULL): as text.
            let value = if c.ty == crate::types::FieldType::Json {
                format!("CAST({col} AS CHAR CHARACTER SET utf8mb4)")
            } else {
                col
            };
            format!("{}, {value}", crate::target::literal(&c.name))
        })
        .collect();
    Ok(format!(
        "SELECT JSON_OBJECT({}) FROM {}",
        pairs.join(", "),
        crate::target::ident(d, entity)
    ))
}

/// The mapping and the table an entity becomes.
fn export_table(
    mapping: &std::path::Path,
    entity: &str,
) -> Result<(crate::spec::Mapping, crate::target::script::Table), crate::error::FatalError> {
    use crate::error::{FatalError, SpecErrors};
    let loaded = crate::load::load(mapping)?;
    let m = loaded.mapping;
    let order = crate::relate::order(&m).map_err(|e| {
        let mut es = SpecErrors::default();
        es.push("entities", e);
        FatalError::Spec(es)
    })?;
    let tables = crate::target::script::tables(&m, &order);
    let table = tables
        .into_iter()
        .find(|t| t.name == entity)
        .ok_or_else(|| {
            FatalError::Usage(format!(
                "--entity {entity:?}: no such entity{}",
                crate::error::hint(entity, m.entities.iter().map(|e| e.name.as_str()))
            ))
        })?;
    Ok((m, table))
}

/// The digest of an entity's rows as a database exported them, typed per the mapping: `(rows, digest)`.
pub fn digest_export(
    mapping: &std::path::Path,
    entity: &str,
    format: ExportFormat,
    input: &std::path::Path,
    display: &str,
    threads: usize,
) -> Result<(u64, Digest), crate::error::FatalError> {
    use crate::error::{FatalError, SpecErrors};
    use crate::pipeline::{pump, EntityState, Outputs, RejectSink};
    use crate::spec::{Field, InputFormat, Source};
    use crate::write::{RowWriter, Sink};

    let (_, table) = export_table(mapping, entity)?;
    // Every column read by name, cast to the table's type; times as databases print them.
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| {
            let mut f = Field {
                name: c.name.clone(),
                column: Some(c.name.clone()),
                type_name: c.ty.to_string(),
                ..Field::default()
            };
            if c.ty == crate::types::FieldType::TimestampTz {
                // MySQL's DATETIME holds UTC without a zone; PostgreSQL and SQLite give one.
                f.timezone = Some("UTC".into());
                f.formats = Some(
                    [
                        "%Y-%m-%dT%H:%M:%S%.f%z",
                        "%Y-%m-%d %H:%M:%S%.f%z",
                        "%Y-%m-%dT%H:%M:%S%.f",
                        "%Y-%m-%d %H:%M:%S%.f",
                    ]
                    .map(String::from)
                    .to_vec(),
                );
            }
            f
        })
        .collect();
    let source = Source {
        path: input.to_string_lossy().into_owned(),
        format: match format {
            ExportFormat::Copy => InputFormat::Csv,
            ExportFormat::Jsonl => InputFormat::Jsonl,
            ExportFormat::Json => InputFormat::Json,
        },
        encoding: crate::spec::Encoding::Utf8,
        null: Vec::new(),
        csv: crate::spec::CsvDialect::default(),
        record_path: None,
        max_record_bytes: 1 << 30,
    };
    let spec_entity = crate::spec::Entity {
        name: entity.to_string(),
        source: "export".into(),
        format: None,
        xml_root: None,
        xml_record: None,
        primary_key: Vec::new(),
        duplicates: crate::spec::Duplicates::First,
        nested: None,
        fields,
    };
    // An empty export (sqlite3 prints nothing for an empty table) holds no rows.
    let empty = std::fs::metadata(input)
        .map(|md| md.len() == 0)
        .unwrap_or(false);
    if empty {
        return Ok((0, Digest::default()));
    }
    // Every field reads the column of its own name, so the header is the fields' names.
    let header = crate::plan::columns_used(&spec_entity);
    let mut errs = SpecErrors::default();
    let plan = crate::plan::compile_entity(
        &spec_entity,
        &source,
        Some(&header),
        display,
        "digest",
        &mut errs,
    )
    .filter(|_| errs.is_empty())
    .ok_or(FatalError::Spec(errs))?;
    if format == ExportFormat::Copy {
        return digest_copy(&plan, input, display);
    }
    let kind = crate::read::InputKind::of(&source)
        .map_err(|_| FatalError::Internal("digest source".into()))?;
    let opened = crate::read::open_input(
        input,
        display,
        source.encoding,
        &kind,
        source.max_record_bytes,
        false,
    )?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| FatalError::Internal(format!("thread pool: {e}")))?;
    let mut out = Outputs::new(RowWriter::new(
        Sink::Discard,
        crate::spec::OutputFormat::Csv,
        &[],
        Vec::new(),
    )?);
    let mut state = EntityState::default();
    pump(
        opened.reader,
        &plan,
        display,
        &pool,
        &mut out,
        RejectSink::Fatal,
        &mut state,
        None,
    )?;
    Ok((state.written, state.digest))
}

/// Reads a PostgreSQL COPY text export row by row.
fn digest_copy(
    plan: &crate::plan::EntityPlan,
    input: &std::path::Path,
    display: &str,
) -> Result<(u64, Digest), crate::error::FatalError> {
    use crate::error::{FatalError, Position};
    use std::io::BufRead;
    let f = std::fs::File::open(input).map_err(|e| FatalError::io(input, e))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let (mut line, mut material) = (Vec::new(), Vec::new());
    let mut digest = Digest::default();
    let mut rows = 0u64;
    let bad = |n: u64, message: String| FatalError::BadRecord {
        pos: Position {
            file: display.to_string(),
            record: n,
            line: n,
            byte: 0,
        },
        message,
    };
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .map_err(|e| FatalError::io(input, e))?
            == 0
        {
            break;
        }
        rows += 1;
        let text = std::str::from_utf8(line.strip_suffix(b"\n").unwrap_or(&line))
            .map_err(|e| bad(rows, format!("invalid UTF-8: {e}")))?;
        let fields: Vec<Option<String>> = text.split('\t').map(copy_unescape).collect();
        if fields.len() != plan.fields.len() {
            return Err(bad(
                rows,
                format!(
                    "expected {} columns, found {}",
                    plan.fields.len(),
                    fields.len()
                ),
            ));
        }
        let values: Vec<Option<&str>> = fields.iter().map(|v| v.as_deref()).collect();
        material.clear();
        crate::map::material_of_values(plan, &values, &mut material)
            .map_err(|e| bad(rows, e.to_string()))?;
        digest.add(&row_hash(&material));
    }
    Ok((rows, digest))
}

/// Up to `max` digits in `radix` at `b[*i..]` (advancing `i`), as one byte: COPY's `\NNN` and `\xHH`.
fn escaped_number(b: &[u8], i: &mut usize, radix: u32, max: usize) -> u8 {
    let mut v = 0u32;
    for _ in 0..max {
        match b.get(*i).and_then(|d| (*d as char).to_digit(radix)) {
            Some(d) => {
                v = v * radix + d;
                *i += 1;
            }
            None => break,
        }
    }
    v as u8
}

/// One field of PostgreSQL's COPY text format: `\N` is null; backslash escapes are decoded.
fn copy_unescape(f: &str) -> Option<String> {
    if f == "\\N" {
        return None;
    }
    if !f.contains('\\') {
        return Some(f.to_string());
    }
    let b = f.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        let c = b[i];
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                i -= 1;
                out.push(escaped_number(b, &mut i, 8, 3));
            }
            b'x' => out.push(escaped_number(b, &mut i, 16, 2)),
            other => out.push(other),
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
