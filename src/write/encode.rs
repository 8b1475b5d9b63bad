//! Typed cells and their encodings as CSV and JSON rows. Encoding happens in the parallel stage, so the
//! sequential writer only copies bytes.

use crate::plan::EntityPlan;
use crate::spec::OutputFormat;
use crate::types::FieldType;

/// Flag on the start of a cell's range: the text is in the source record ([`Texts::src`]), written as it
/// was read, not copied into the row's own text first (a copy of most values of most rows: 5 % of a
/// typed CSV run's instructions).
pub const IN_SRC: usize = 1 << (usize::BITS - 1);

/// The texts that cells' ranges address: what the mapping wrote for the row, and the source record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Texts<'a> {
    pub own: &'a str,
    pub src: &'a str,
}

impl<'a> Texts<'a> {
    /// Only the row's own text: ranges never in a source record.
    pub fn own(own: &'a str) -> Texts<'a> {
        Texts { own, src: "" }
    }

    /// The text of range `start..end` (with [`IN_SRC`] on `start` for the source record).
    #[inline]
    pub fn get(self, start: usize, end: usize) -> &'a str {
        if start & IN_SRC != 0 {
            &self.src[start & !IN_SRC..end]
        } else {
            &self.own[start..end]
        }
    }

    /// The bytes of range `start..end`: [`Texts::get`] without its checks of character boundaries,
    /// for the encoders, which copy bytes.
    #[inline]
    pub fn bytes(self, start: usize, end: usize) -> &'a [u8] {
        let buf = if start & IN_SRC != 0 {
            self.src
        } else {
            self.own
        };
        &buf.as_bytes()[start & !IN_SRC..end]
    }
}

/// A typed output value; its text is addressed by byte range in [`Texts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// Text, dates, times and UUIDs: quoted in JSON.
    Text(usize, usize),
    /// Integers, decimals and floats, written as they are in JSON.
    Num(usize, usize),
    Bool(bool),
    /// A JSON document, embedded as it is in JSON output.
    Json(usize, usize),
}

impl Cell {
    /// The cell for a value of type `ty` whose text is `text[start..end]`.
    #[inline]
    pub fn of(ty: FieldType, start: usize, end: usize, text: &str) -> Cell {
        match ty {
            FieldType::Integer | FieldType::Decimal { .. } | FieldType::Float => {
                Cell::Num(start, end)
            }
            FieldType::Boolean => Cell::Bool(&text[start..end] == "true"),
            FieldType::Json => Cell::Json(start, end),
            _ => Cell::Text(start, end),
        }
    }

    /// The cell's output text, or None for null.
    #[inline]
    pub fn text<'a>(&self, t: Texts<'a>) -> Option<&'a str> {
        match *self {
            Cell::Null => None,
            Cell::Text(s, e) | Cell::Num(s, e) | Cell::Json(s, e) => Some(t.get(s, e)),
            Cell::Bool(b) => Some(if b { "true" } else { "false" }),
        }
    }
}

/// Appends one encoded row in the plan's format.
pub fn encode_row(plan: &EntityPlan, cells: &[Cell], text: Texts, out: &mut Vec<u8>) {
    encode_row_as(plan.format, plan, cells, text, out)
}

/// Appends one encoded row in `format` (the plan's or one of its further formats).
pub fn encode_row_as(
    format: OutputFormat,
    plan: &EntityPlan,
    cells: &[Cell],
    text: Texts,
    out: &mut Vec<u8>,
) {
    match format {
        OutputFormat::Csv => {
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_cell(c, text, plan.quote_empty, out);
            }
            out.push(b'\n');
        }
        OutputFormat::Jsonl | OutputFormat::Json => {
            out.push(b'{');
            for (i, (c, f)) in cells.iter().zip(&plan.fields).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_string(&f.name, out);
                out.push(b':');
                match *c {
                    Cell::Null => out.extend_from_slice(b"null"),
                    Cell::Text(s, e) => json_string(text.get(s, e), out),
                    Cell::Num(s, e) | Cell::Json(s, e) => out.extend_from_slice(text.bytes(s, e)),
                    Cell::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
                }
            }
            out.push(b'}');
            // A JSON array's separators are the writer's job, since only it knows which row is first.
            if format == OutputFormat::Jsonl {
                out.push(b'\n');
            }
        }
        OutputFormat::Xml => {
            let Some(x) = &plan.xml else { return };
            out.extend_from_slice(b"  <");
            out.extend_from_slice(x.record.as_bytes());
            out.push(b'>');
            for (c, name) in cells.iter().zip(&x.fields) {
                // A null field has no element; an empty string has an empty one.
                let Some(t) = c.text(text) else { continue };
                out.push(b'<');
                out.extend_from_slice(name.as_bytes());
                out.push(b'>');
                xml_text(t, out);
                out.extend_from_slice(b"</");
                out.extend_from_slice(name.as_bytes());
                out.push(b'>');
            }
            out.extend_from_slice(b"</");
            out.extend_from_slice(x.record.as_bytes());
            out.extend_from_slice(b">\n");
        }
        OutputFormat::Parquet | OutputFormat::Arrow => {
            crate::write::columnar::encode_row(&plan.fields, cells, text, out)
        }
        OutputFormat::None => {}
    }
}

/// Appends XML character data: `&`, `<` and `>` escaped, and CR as a reference so that a parser's
/// line-end normalization does not turn CRLF into LF.
pub fn xml_text(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#13;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(esc);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

/// What closes an output after its last row.
pub fn footer(plan: &EntityPlan) -> Vec<u8> {
    footer_as(plan.format, plan)
}

/// What closes an output in `format` after its last row.
pub fn footer_as(format: OutputFormat, plan: &EntityPlan) -> Vec<u8> {
    match (&format, &plan.xml) {
        (OutputFormat::Xml, Some(x)) => format!("</{}>\n", x.root).into_bytes(),
        _ => Vec::new(),
    }
}

/// The header row of a CSV output (nothing for JSON formats).
pub fn header(plan: &EntityPlan) -> Vec<u8> {
    header_as(plan.format, plan)
}

/// What opens an output in `format`: a CSV header row, a JSON array's `[`, an XML root.
pub fn header_as(format: OutputFormat, plan: &EntityPlan) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Csv => {
            for (i, f) in plan.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_field(f.name.as_bytes(), false, &mut out);
            }
            out.push(b'\n');
        }
        OutputFormat::Json => out.extend_from_slice(b"["),
        OutputFormat::Jsonl | OutputFormat::Parquet | OutputFormat::Arrow | OutputFormat::None => {}
        OutputFormat::Xml => {
            out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            if let Some(x) = &plan.xml {
                out.extend_from_slice(format!("<{}>\n", x.root).as_bytes());
            }
        }
    }
    out
}

/// Appends a cell as a CSV field (nothing for null). Inlined: a call per cell cost more than the
/// quoting check it saves on numbers.
#[inline(always)]
pub fn csv_cell(c: &Cell, text: Texts, quote_empty: bool, out: &mut Vec<u8>) {
    match *c {
        Cell::Null => {}
        // A number is never empty and holds only digits, signs, a point and an exponent: it is never
        // quoted.
        Cell::Num(s, e) => out.extend_from_slice(text.bytes(s, e)),
        Cell::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Cell::Text(s, e) | Cell::Json(s, e) => csv_field(text.bytes(s, e), quote_empty, out),
    }
}

/// Appends a CSV field, quoted when it holds a comma, quote or line end (RFC 4180), or when it is empty
/// and must differ from null.
#[inline]
pub fn csv_field(v: &[u8], quote_empty: bool, out: &mut Vec<u8>) {
    let needs = needs_quotes(v) || (v.is_empty() && quote_empty);
    if !needs {
        out.extend_from_slice(v);
        return;
    }
    quoted(v, out);
}

/// Appends a field in quotes, its quotes doubled: out of line, so that the usual unquoted field is
/// copied where it is met.
#[inline(never)]
fn quoted(v: &[u8], out: &mut Vec<u8>) {
    out.reserve(v.len() + 2);
    out.push(b'"');
    let mut from = 0;
    for q in memchr::memchr_iter(b'"', v) {
        // Up to and including the quote, which is then doubled.
        out.extend_from_slice(&v[from..=q]);
        out.push(b'"');
        from = q + 1;
    }
    out.extend_from_slice(&v[from..]);
    out.push(b'"');
}

/// True if `v` holds a comma, quote, CR or LF.
fn needs_quotes(v: &[u8]) -> bool {
    crate::swar::any4(v, b',', b'"', b'\n', b'\r')
}

/// Appends a JSON string literal (RFC 8259 escapes).
pub fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        let mut o = Vec::new();
        csv_field(b"a,b", true, &mut o);
        o.push(b'|');
        csv_field(b"say \"hi\"", true, &mut o);
        o.push(b'|');
        csv_field(b"", true, &mut o);
        o.push(b'|');
        csv_field(b"", false, &mut o);
        o.push(b'|');
        csv_field(b"plain", true, &mut o);
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "\"a,b\"|\"say \"\"hi\"\"\"|\"\"||plain"
        );
    }

    #[test]
    fn quote_detection_matches_a_byte_scan() {
        // Every byte value at every position of words and tails, including high-bit bytes (UTF-8).
        for len in 0..20 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    let expect = matches!(b, b',' | b'"' | b'\n' | b'\r');
                    assert_eq!(needs_quotes(&v), expect, "len {len} pos {pos} byte {b}");
                }
            }
        }
        assert!(!needs_quotes("ÿþ€ß\u{80}\u{ac}".as_bytes()));
    }

    #[test]
    fn json_escapes() {
        let mut o = Vec::new();
        json_string("a\"b\\c\n\u{1}é😀", &mut o);
        let s = String::from_utf8(o).unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001é😀\"");
        assert_eq!(
            serde_json::from_str::<String>(&s).unwrap(),
            "a\"b\\c\n\u{1}é😀"
        );
    }
}
