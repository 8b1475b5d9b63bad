//! The parallel stage: map a chunk of records through a plan into encoded output rows, keys for the
//! uniqueness checks, and rejects. Pure: nothing here depends on thread count or order of completion.

use std::borrow::Cow;

use crate::cast;
use crate::error::{FieldError, RejectCode};
use crate::plan::{Cast, EntityPlan, Extract, FieldPlan, Input, Part, RefPlan, Step};
use crate::read::csv::{Batch, RecordMeta};
use crate::read::json::{self, Extracted, RecordError};
use crate::read::xml;
use crate::relate::{salesforce_15, text_key};
use crate::spec::Orphans;
use crate::spec::{Ragged, Unmapped};
use crate::write::encode::{encode_row, Cell};

/// A record that failed, with everything the rejects file needs.
#[derive(Debug, Clone)]
pub struct Reject {
    pub number: u64,
    pub line: u64,
    pub byte: u64,
    pub errors: Vec<FieldError>,
    pub raw: Vec<u8>,
    /// With `ragged = "fail"` (or a strict plan): the run must stop at this record.
    pub fatal: bool,
}

/// What happened to one record of a chunk.
#[derive(Debug, Clone)]
pub enum RowOutcome {
    /// Encoded bytes end at this offset of `MappedChunk::out`; keys start at `key_start` (one per unique
    /// set, then two per indexed field: the exact value and its Salesforce 15-character form, 0 for none);
    /// the primary key's text is `pk_texts[pk.0..pk.1]` when the entity is referenced.
    Written {
        end: usize,
        key_start: usize,
        pk: (usize, usize),
    },
    Rejected(usize),
}

/// The result of mapping one chunk: encoded rows in input order.
#[derive(Debug, Default)]
pub struct MappedChunk {
    pub out: Vec<u8>,
    pub rows: Vec<RowOutcome>,
    /// One hash per unique set per written record (0 when a key part is null: nulls never collide).
    pub keys: Vec<u128>,
    pub rejects: Vec<Reject>,
    pub pk_texts: String,
    /// Per field: written records whose reference matched no parent (orphans written as null or kept).
    pub orphans: Vec<u64>,
}

/// Reusable per-chunk buffers.
#[derive(Default)]
struct Scratch {
    text: String,
    cells: Vec<Cell>,
    errors: Vec<FieldError>,
    /// Values of a JSON or XML record.
    ext: Extracted,
    /// Offset in the raw record of a syntax error.
    at: Option<usize>,
    /// Fields of this record whose reference was an orphan (written as null or kept).
    orphan_fields: Vec<usize>,
}

/// Maps records `recs` of `batch`.
pub fn map_chunk(plan: &EntityPlan, batch: &Batch, recs: &[RecordMeta]) -> MappedChunk {
    let mut chunk = MappedChunk {
        out: Vec::with_capacity(recs.len() * 128),
        rows: Vec::with_capacity(recs.len()),
        ..MappedChunk::default()
    };
    let mut sc = Scratch::default();
    let mut strs: Vec<Option<&str>> = Vec::with_capacity(plan.header.len());
    for m in recs {
        sc.errors.clear();
        let fatal = map_record(plan, batch, m, &mut strs, &mut sc);
        if sc.errors.is_empty() {
            encode_row(plan, &sc.cells, &sc.text, &mut chunk.out);
            let key_start = chunk.keys.len();
            for u in &plan.unique {
                chunk.keys.push(key_hash(&u.fields, &sc.cells, &sc.text));
            }
            let mut pk = (0, 0);
            if !plan.index_by.is_empty() {
                for ib in &plan.index_by {
                    let (exact, short) = match sc.cells[ib.field].text(&sc.text) {
                        Some(t) => (
                            text_key(t),
                            ib.salesforce_ids
                                .then(|| salesforce_15(t).filter(|s| s.len() != t.len()))
                                .flatten()
                                .map_or(0, text_key),
                        ),
                        None => (0, 0),
                    };
                    chunk.keys.push(exact);
                    chunk.keys.push(short);
                }
                let text = plan
                    .pk_field
                    .and_then(|i| sc.cells[i].text(&sc.text))
                    .unwrap_or("");
                pk.0 = chunk.pk_texts.len();
                chunk.pk_texts.push_str(text);
                pk.1 = chunk.pk_texts.len();
            }
            for &i in &sc.orphan_fields {
                chunk.orphans.resize(plan.fields.len(), 0);
                chunk.orphans[i] += 1;
            }
            chunk.rows.push(RowOutcome::Written {
                end: chunk.out.len(),
                key_start,
                pk,
            });
        } else {
            chunk.rows.push(RowOutcome::Rejected(chunk.rejects.len()));
            // A syntax error is reported where it is, not where its record starts.
            let (line, byte) = match sc.at.take() {
                Some(off) => {
                    let raw = batch.raw(m);
                    let off = off.min(raw.len());
                    let lines = memchr::memchr_iter(b'\n', &raw[..off]).count() as u64;
                    (m.line + lines, m.byte + off as u64)
                }
                None => (m.line, m.byte),
            };
            chunk.rejects.push(Reject {
                number: m.number,
                line,
                byte,
                errors: std::mem::take(&mut sc.errors),
                raw: batch.raw(m).to_vec(),
                fatal: fatal || plan.strict,
            });
        }
    }
    chunk
}

/// The output text of some fields of one record, joined by `|`: quoted in duplicate-key rejects.
pub fn key_text(plan: &EntityPlan, batch: &Batch, m: &RecordMeta, fields: &[usize]) -> String {
    let mut sc = Scratch::default();
    let mut strs = Vec::new();
    map_record(plan, batch, m, &mut strs, &mut sc);
    fields
        .iter()
        .map(|&i| sc.cells.get(i).and_then(|c| c.text(&sc.text)).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("|")
}

/// 128-bit hash of the key fields' output text; 0 if any is null.
fn key_hash(fields: &[usize], cells: &[Cell], text: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for &i in fields {
        match cells[i].text(text) {
            Some(t) => {
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
            None => return 0,
        }
    }
    h.digest128().max(1)
}

/// Maps one record into `sc.cells`/`sc.text`, or errors into `sc.errors`. Returns true if the record's
/// problem must stop the run (`ragged = "fail"`, or a JSON or XML syntax error).
fn map_record<'b>(
    plan: &EntityPlan,
    batch: &'b Batch,
    m: &RecordMeta,
    strs: &mut Vec<Option<&'b str>>,
    sc: &mut Scratch,
) -> bool {
    sc.text.clear();
    sc.cells.clear();
    strs.clear();
    match &plan.extract {
        Extract::Csv => {
            if let Some(fatal) = gather_csv(plan, batch, m, strs, sc) {
                return fatal;
            }
            map_fields(plan, |i| strs.get(i).copied().flatten(), sc);
            false
        }
        Extract::Json(_) | Extract::Xml(_) => {
            let mut ext = std::mem::take(&mut sc.ext);
            let raw = structured_text(batch.raw(m));
            let fatal = match gather_structured(plan, raw, &mut ext) {
                Ok(()) => {
                    let get = |i: usize| {
                        ext.spans
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|(a, b)| ext.text(raw, a, b))
                    };
                    map_fields(plan, get, sc);
                    false
                }
                Err(e) => {
                    if e.fatal {
                        sc.at = Some(e.offset);
                    }
                    sc.errors.push(FieldError {
                        field: e.field,
                        value: String::new(),
                        code: if e.ambiguous {
                            RejectCode::Ambiguous
                        } else {
                            RejectCode::Malformed
                        },
                        message: e.message,
                    });
                    e.fatal
                }
            };
            sc.ext = ext;
            fatal
        }
    }
}

/// A JSON or XML record's bytes as text.
fn structured_text(raw: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(raw).is_ok());
    // SAFETY: the JSON and XML splitters read only bytes that their `Feed` has checked as UTF-8, and cut
    // records at ASCII bytes (`{`, `}`, `[`, `]`, `<`, `>`, line ends, blanks), which never fall inside a
    // multi-byte sequence. The fuzz targets assert this for every record they see.
    unsafe { std::str::from_utf8_unchecked(raw) }
}

fn gather_structured(
    plan: &EntityPlan,
    text: &str,
    ext: &mut Extracted,
) -> Result<(), RecordError> {
    match &plan.extract {
        Extract::Json(p) => json::extract(text, p, ext),
        Extract::Xml(p) => xml::extract(text, p, ext),
        Extract::Csv => Ok(()),
    }
}

/// Collects the CSV fields of a record as text; Some(fatal) when the record is rejected here.
fn gather_csv<'b>(
    plan: &EntityPlan,
    batch: &'b Batch,
    m: &RecordMeta,
    strs: &mut Vec<Option<&'b str>>,
    sc: &mut Scratch,
) -> Option<bool> {
    if let Some(msg) = &m.malformed {
        sc.errors.push(FieldError {
            field: String::new(),
            value: String::new(),
            code: RejectCode::Malformed,
            message: msg.clone(),
        });
        return Some(false);
    }
    let width = plan.header.len();
    if m.n_fields != width {
        let extra_empty =
            m.n_fields > width && (width..m.n_fields).all(|i| batch.field(m, i).is_empty());
        let padded = plan.ragged == Ragged::Pad && (m.n_fields < width || extra_empty);
        if !padded {
            sc.errors.push(FieldError {
                field: String::new(),
                value: String::new(),
                code: RejectCode::FieldCount,
                message: format!("expected {width} fields, found {}", m.n_fields),
            });
            return Some(plan.ragged == Ragged::Fail);
        }
    }
    // One UTF-8 check of the raw record covers every field: the bytes between fields (delimiters,
    // quotes) are ASCII and no multi-byte sequence contains an ASCII byte, so the raw record is valid
    // exactly when every field is. Only a bad record pays for finding the field at fault.
    let raw_ok = std::str::from_utf8(batch.raw(m)).is_ok();
    for i in 0..m.n_fields.min(width) {
        let bytes = batch.field(m, i);
        if raw_ok {
            debug_assert!(std::str::from_utf8(bytes).is_ok());
            // SAFETY: a field's bytes are the raw record's bytes less some ASCII bytes (quotes, escapes,
            // trimmed blanks); removing ASCII bytes from valid UTF-8 leaves valid UTF-8.
            strs.push(Some(unsafe { std::str::from_utf8_unchecked(bytes) }));
            continue;
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => strs.push(Some(s)),
            Err(e) => {
                sc.errors.push(FieldError {
                    field: plan.header.get(i).cloned().unwrap_or_default(),
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    code: RejectCode::Encoding,
                    message: format!(
                        "invalid UTF-8 at byte {} of the value (is the file's encoding declared?)",
                        e.valid_up_to()
                    ),
                });
                return Some(false);
            }
        }
    }
    if !raw_ok && sc.errors.is_empty() {
        // The bad bytes are in a column that was not read (beyond the header's width).
        sc.errors.push(FieldError {
            field: String::new(),
            value: String::new(),
            code: RejectCode::Encoding,
            message: "invalid UTF-8 in the record (is the file's encoding declared?)".into(),
        });
        return Some(false);
    }
    None
}

/// Maps column values (None: null or missing) through the plan's fields.
fn map_fields<'v>(plan: &'v EntityPlan, get: impl Fn(usize) -> Option<&'v str>, sc: &mut Scratch) {
    sc.orphan_fields.clear();
    for (fi, f) in plan.fields.iter().enumerate() {
        let start = sc.text.len();
        match field_value(plan, f, &get) {
            Ok(Some(v)) => {
                let res = cast_value(f, &v, &mut sc.text)
                    .map_err(|m| (RejectCode::Type, m))
                    .and_then(|()| check_constraints(f, &sc.text[start..]))
                    .and_then(|()| match plan.xml {
                        Some(_) => xml_safe(&sc.text[start..]),
                        None => Ok(()),
                    });
                let res = match (res, &f.reference) {
                    (Ok(()), Some(r)) => resolve(r, fi, start, sc),
                    (res, _) => res.map(|()| true),
                };
                match res {
                    Ok(true) => sc
                        .cells
                        .push(Cell::of(f.ty, start, sc.text.len(), &sc.text)),
                    Ok(false) => sc.cells.push(Cell::Null),
                    Err((code, message)) => {
                        sc.text.truncate(start);
                        sc.errors.push(FieldError {
                            field: f.name.clone(),
                            value: v.into_owned(),
                            code,
                            message,
                        });
                        sc.cells.push(Cell::Null);
                    }
                }
            }
            Ok(None) => {
                if f.required {
                    sc.errors.push(FieldError {
                        field: f.name.clone(),
                        value: String::new(),
                        code: RejectCode::Required,
                        message: "a value is required".into(),
                    });
                }
                sc.cells.push(Cell::Null);
            }
            Err(e) => {
                sc.errors.push(e);
                sc.cells.push(Cell::Null);
            }
        }
    }
}

/// Replaces the reference value at `sc.text[start..]` with the parent's primary key. Ok(false) when the
/// value is an orphan to be written as null.
fn resolve(
    r: &RefPlan,
    field: usize,
    start: usize,
    sc: &mut Scratch,
) -> Result<bool, (RejectCode, String)> {
    // Without an index (`check` compiles plans before any parent has run) there is nothing to match.
    let Some(index) = &r.index else {
        return Ok(true);
    };
    let value = &sc.text[start..];
    let found = index.get(text_key(value)).or_else(|| {
        r.salesforce_ids
            .then(|| salesforce_15(value))
            .flatten()
            .and_then(|short| index.get(text_key(short)))
    });
    match found {
        Some(None) => Ok(true),
        Some(Some(target)) => {
            // `target` lives in the parent's index, not in `sc.text`: no copy needed.
            if target != value {
                sc.text.truncate(start);
                sc.text.push_str(target);
            }
            Ok(true)
        }
        None => match r.orphans {
            Orphans::Reject => Err((
                RejectCode::Orphan,
                format!("no {} record has the key {value:?}", r.entity),
            )),
            Orphans::Null => {
                sc.orphan_fields.push(field);
                sc.text.truncate(start);
                Ok(false)
            }
            Orphans::Keep => {
                sc.orphan_fields.push(field);
                Ok(true)
            }
        },
    }
}

/// XML 1.0 cannot hold most control characters, even escaped: such a value cannot be written as XML.
fn xml_safe(text: &str) -> Result<(), (RejectCode, String)> {
    match text.chars().find(|&c| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    }) {
        Some(c) => Err((
            RejectCode::Type,
            format!(
                "the character U+{:04X} cannot be written in XML 1.0",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

/// The field's value before the cast: read, null handling, transforms, value map, default.
fn field_value<'a>(
    plan: &'a EntityPlan,
    f: &'a FieldPlan,
    get: &impl Fn(usize) -> Option<&'a str>,
) -> Result<Option<Cow<'a, str>>, FieldError> {
    let is_null = |s: &str| plan.null.iter().any(|n| n == s);
    let raw: Option<Cow<'a, str>> = match &f.input {
        Input::Column(i) => get(*i).filter(|s| !is_null(s)).map(Cow::Borrowed),
        Input::Const(v) => Some(Cow::Borrowed(v.as_str())),
        Input::Template(parts) => {
            let mut s = String::new();
            let mut any = false;
            for p in parts {
                match p {
                    Part::Lit(l) => s.push_str(l),
                    Part::Col(i) => {
                        if let Some(v) = get(*i).filter(|v| !is_null(v)) {
                            s.push_str(v);
                            any = true;
                        }
                    }
                }
            }
            any.then_some(Cow::Owned(s))
        }
    };
    let mut v = match raw {
        Some(mut v) => {
            for step in &f.steps {
                v = apply(step, v);
            }
            Some(v)
        }
        None => None,
    };
    if let (Some(map), Some(val)) = (&f.map, &v) {
        match map.get(val.as_ref()) {
            Some(t) => v = Some(Cow::Borrowed(t.as_str())),
            None => match f.unmapped {
                Unmapped::Keep => {}
                Unmapped::Null => v = None,
                Unmapped::Default => v = f.default.as_deref().map(Cow::Borrowed),
                Unmapped::Reject => {
                    let mut known: Vec<&str> = map.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    known.truncate(8);
                    return Err(FieldError {
                        field: f.name.clone(),
                        value: val.to_string(),
                        code: RejectCode::Unmapped,
                        message: format!(
                            "value {:?} is not in the value map (known: {})",
                            val,
                            known.join(", ")
                        ),
                    });
                }
            },
        }
    }
    if v.is_none() {
        v = f.default.as_deref().map(Cow::Borrowed);
    }
    Ok(v)
}

fn apply<'a>(step: &Step, v: Cow<'a, str>) -> Cow<'a, str> {
    match step {
        Step::Trim => match v {
            Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
            Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
        },
        Step::Lower => {
            if v.chars().any(char::is_uppercase) {
                Cow::Owned(v.to_lowercase())
            } else {
                v
            }
        }
        Step::Upper => {
            if v.chars().any(char::is_lowercase) {
                Cow::Owned(v.to_uppercase())
            } else {
                v
            }
        }
        Step::CollapseWhitespace => {
            let t = v.trim();
            let tidy = !t
                .as_bytes()
                .windows(2)
                .any(|w| w[0].is_ascii_whitespace() && w[1].is_ascii_whitespace())
                && !t.chars().any(|c| c.is_whitespace() && c != ' ');
            if tidy {
                match v {
                    Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                    Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
                }
            } else {
                Cow::Owned(t.split_whitespace().collect::<Vec<_>>().join(" "))
            }
        }
        Step::HtmlDecode => match crate::read::xml::html_decode(&v) {
            Cow::Borrowed(_) => v,
            Cow::Owned(o) => Cow::Owned(o),
        },
        Step::Replace(re, rep) => match re.replace_all(&v, rep.as_str()) {
            Cow::Borrowed(_) => v,
            Cow::Owned(o) => Cow::Owned(o),
        },
    }
}

/// Casts a value with the field's compiled cast, writing the normalized text.
pub fn cast_value(f: &FieldPlan, v: &str, out: &mut String) -> Result<(), String> {
    match &f.cast {
        Cast::Text => {
            out.push_str(v);
            Ok(())
        }
        Cast::Integer(nf) => cast::integer(v, nf, out),
        Cast::Decimal {
            precision,
            scale,
            round,
            nf,
        } => cast::decimal(v, *precision, *scale, *round, nf, out),
        Cast::Float(nf) => cast::float(v, nf, out),
        Cast::Boolean(w) => {
            cast::boolean(v, w).map(|b| out.push_str(if b { "true" } else { "false" }))
        }
        Cast::Temporal(t) => t.cast(v, out),
        Cast::Uuid => cast::uuid(v, out),
        Cast::Json => cast::json(v, out),
    }
}

/// Checks max_length and pattern on the output text.
pub fn check_constraints(f: &FieldPlan, text: &str) -> Result<(), (RejectCode, String)> {
    if let Some(max) = f.max_length {
        // Counting chars only when the byte length could exceed the limit keeps ASCII text cheap.
        if text.len() > max {
            let n = text.chars().count();
            if n > max {
                return Err((
                    RejectCode::MaxLength,
                    format!("expected text of at most {max} characters, got {n}"),
                ));
            }
        }
    }
    if let Some(re) = &f.pattern {
        if !re.is_match(text) {
            let shown = re.as_str();
            let shown = shown
                .strip_prefix("^(?:")
                .and_then(|s| s.strip_suffix(")$"))
                .unwrap_or(shown);
            return Err((
                RejectCode::Pattern,
                format!("{text:?} does not match the pattern {shown:?}"),
            ));
        }
    }
    Ok(())
}
