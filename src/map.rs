//! The parallel stage: map a chunk of records through a plan into encoded output rows, keys for the
//! uniqueness checks, and rejects. Pure: nothing here depends on thread count or order of completion.

use std::borrow::Cow;

use crate::cast;
use crate::digest;
use crate::error::{FieldError, RejectCode};
use crate::plan::{
    Cast, Children, EntityPlan, Extract, FieldPlan, Input, NestedPlan, Part, RefPlan, Step,
};
use crate::read::csv::{Batch, RecordMeta};
use crate::read::json::{self, Extracted, RecordError};
use crate::read::xml;
use crate::relate::{salesforce_15, text_key};
use crate::rowhash;
use crate::spec::Orphans;
use crate::spec::OutputFormat;
use crate::spec::{Ragged, Unmapped};
use crate::target;
use crate::types::FieldType;
use crate::write::encode::{encode_row, encode_row_as, Cell, Texts, IN_SRC};

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
    /// Per field: written records whose value was not in the value map (kept, made null or defaulted).
    pub unmapped: Vec<u64>,
    /// Nested entities: per row, the record (index in the chunk) it came from and its ordinal.
    pub origin: Vec<(u32, u32)>,
    /// Values of deferred references of written rows, in row order; text in `deferred_texts`, and the
    /// rows' digest material in `materials`.
    pub deferred: Vec<Deferred>,
    pub deferred_texts: String,
    pub materials: Vec<u8>,
    /// Per row: the hash of its digest material (zero for a rejected row).
    pub hashes: Vec<[u64; 4]>,
    /// Per load target: encoded rows.
    pub targets: Vec<TargetRows>,
    /// Per further output format (`plan.also`): encoded rows.
    pub also: Vec<TargetRows>,
    /// With `plan.track`: each written row's primary key as a canonical CSV row, and per row (a
    /// rejected one included) where its key ends.
    pub track_keys: Vec<u8>,
    pub track_ends: Vec<usize>,
}

/// One load target's encoded rows of a chunk.
#[derive(Debug, Default)]
pub struct TargetRows {
    pub out: Vec<u8>,
    /// Per row: where its bytes end (a rejected row has none: its end is the previous one's).
    pub ends: Vec<usize>,
}

/// A deferred reference value of a written row: set by an update once the parent has run.
#[derive(Debug, Clone, Copy)]
pub struct Deferred {
    /// Index in `MappedChunk::rows`.
    pub row: usize,
    pub field: usize,
    pub text: (usize, usize),
    /// The row's digest material in `MappedChunk::materials`.
    pub material: (usize, usize),
}

/// Column indices with this bit set name a parent column of a nested entity.
const PARENT_COL: usize = 1 << (usize::BITS - 2);

/// What a record knows about itself besides its columns.
struct RecordCtx {
    /// Number in the source over all its files (`generate = "sequence"`).
    number: u64,
    /// Position among its siblings (nested entities), from 1.
    ordinal: u32,
}

/// Reusable per-chunk buffers.
#[derive(Default)]
struct Scratch<'s> {
    /// The current record's text, when it is valid UTF-8: values that are slices of it become cells
    /// with [`IN_SRC`] ranges, not copies in `text`.
    src: &'s str,
    text: String,
    cells: Vec<Cell>,
    errors: Vec<FieldError>,
    /// Values of a JSON or XML record.
    ext: Extracted,
    /// Offset in the raw record of a syntax error.
    at: Option<usize>,
    /// Fields of this record whose reference was an orphan (written as null or kept).
    orphan_fields: Vec<usize>,
    /// Deferred reference values of this record: (field, start, end) in `text`, and where the row's
    /// digest material went.
    deferred: Vec<(usize, usize, usize, (usize, usize))>,
    /// Fields of this record whose value was not in the value map, under a policy that keeps the record.
    unmapped_fields: Vec<usize>,
    /// Digest material of the chunk's written rows, when the output is not it already.
    material: Vec<u8>,
    /// Rows to hash: index in `MappedChunk::hashes`, and where the row's material is (in the output, or
    /// in `material`).
    to_hash: Vec<(usize, usize, usize)>,
    hashed: Vec<[u64; 4]>,
    /// Per field, the column it copies as it is ([`plain_column`]).
    plain: Vec<Option<usize>>,
}

impl Scratch<'_> {
    /// Buffers for mapping records through `plan`.
    fn new(plan: &EntityPlan) -> Self {
        Scratch {
            plain: plan.fields.iter().map(|f| plain_column(plan, f)).collect(),
            ..Scratch::default()
        }
    }

    /// Where the cells' texts are.
    fn texts(&self) -> Texts<'_> {
        Texts {
            own: &self.text,
            src: self.src,
        }
    }

    /// Field `f`'s value is refused: the error, and an empty cell in its place.
    #[cold]
    fn refuse(&mut self, f: &FieldPlan, value: String, code: RejectCode, message: String) {
        self.errors.push(FieldError {
            field: f.name.clone(),
            value,
            code,
            message,
        });
        self.cells.push(Cell::Null);
    }

    /// Field `f` has no value: an empty cell, refused if the field is required.
    #[inline]
    fn no_value(&mut self, f: &FieldPlan) {
        if f.required {
            self.refuse(
                f,
                String::new(),
                RejectCode::Required,
                "a value is required".into(),
            );
        } else {
            self.cells.push(Cell::Null);
        }
    }
}

/// The column that field `f` writes as it was read: text with no transform, value map, default, pattern
/// or reference, in an output whose values need no further checks (not XML, no PostgreSQL load). Most
/// fields of most mappings are such copies; they take a short path through [`map_fields`].
fn plain_column(plan: &EntityPlan, f: &FieldPlan) -> Option<usize> {
    match (&f.input, &f.cast) {
        (Input::Column(i), Cast::Text)
            if f.steps.is_empty()
                && f.map.is_none()
                && f.default.is_none()
                && f.pattern.is_none()
                && f.reference.is_none()
                && plan.xml.is_none()
                && !plan.no_nul =>
        {
            Some(*i)
        }
        _ => None,
    }
}

/// The text cell of `part` when it is a slice of the source record `src`: a range there, flagged
/// [`IN_SRC`], so the value is written from the record without a copy.
fn src_cell(src: &str, part: &str) -> Option<Cell> {
    let (w, p) = (src.as_ptr() as usize, part.as_ptr() as usize);
    let off = (p >= w && p + part.len() <= w + src.len()).then(|| p - w)?;
    Some(Cell::Text(IN_SRC | off, off + part.len()))
}

/// Whether a row's digest material is its encoded output row.
fn output_is_material(plan: &EntityPlan) -> bool {
    plan.format == OutputFormat::Csv && plan.quote_empty
}

/// Fills in the hashes of the chunk's written rows, all at once: hashing many short rows side by side is
/// several times faster than one at a time (see `rowhash`).
fn hash_rows(plan: &EntityPlan, sc: &mut Scratch, chunk: &mut MappedChunk) {
    if sc.to_hash.is_empty() {
        return;
    }
    let from: &[u8] = if output_is_material(plan) {
        &chunk.out
    } else {
        &sc.material
    };
    let msgs: Vec<&[u8]> = sc.to_hash.iter().map(|&(_, a, b)| &from[a..b]).collect();
    rowhash::hash_all(&msgs, &mut sc.hashed);
    for (&(i, _, _), h) in sc.to_hash.iter().zip(&sc.hashed) {
        chunk.hashes[i] = *h;
    }
}

/// Maps records `recs` of `batch`.
pub fn map_chunk(plan: &EntityPlan, batch: &Batch, recs: &[RecordMeta]) -> MappedChunk {
    // Buffers sized for the usual outcome up front: grown by doubling, they were reallocated several
    // times per chunk (malloc and realloc were 1.5 % of a run's samples). A row is about as long as its
    // record read as CSV; records of other formats are longer than their rows.
    let n = recs.len();
    let raw = match (recs.first(), recs.last()) {
        (Some(a), Some(b)) => b.raw_end.saturating_sub(a.raw_start),
        _ => 0,
    };
    let row_bytes = raw + raw / 8 + 16 * n;
    let per_row = |on: bool, k: usize| if on { k * n } else { 0 };
    let rows = || TargetRows {
        out: Vec::with_capacity(row_bytes),
        ends: Vec::with_capacity(n),
    };
    let mut chunk = MappedChunk {
        out: Vec::with_capacity(row_bytes),
        rows: Vec::with_capacity(n),
        keys: Vec::with_capacity(n * (plan.unique.len() + 2 * plan.index_by.len())),
        hashes: Vec::with_capacity(per_row(plan.digest, 1)),
        track_keys: Vec::with_capacity(per_row(plan.track.is_some(), 24)),
        track_ends: Vec::with_capacity(per_row(plan.track.is_some(), 1)),
        targets: (0..plan.targets.len()).map(|_| rows()).collect(),
        also: (0..plan.also.len()).map(|_| rows()).collect(),
        ..MappedChunk::default()
    };
    let mut sc = Scratch::new(plan);
    if let Some(n) = &plan.nested {
        for (k, m) in recs.iter().enumerate() {
            map_nested(plan, n, batch, m, &mut sc, &mut |sc, ordinal, child| {
                chunk.origin.push((k as u32, ordinal));
                finish(plan, batch, m, sc, child, &mut chunk);
            });
        }
        hash_rows(plan, &mut sc, &mut chunk);
        return chunk;
    }
    let mut strs: Vec<Option<&str>> = Vec::with_capacity(plan.header.len());
    let text = match plan.extract {
        Extract::Csv => records_text(batch, recs),
        _ => None,
    };
    for m in recs {
        sc.errors.clear();
        let fatal = map_record(plan, batch, m, text, &mut strs, &mut sc);
        finish(
            plan,
            batch,
            m,
            &mut sc,
            Child {
                fatal,
                span: None,
                ordinal: 0,
            },
            &mut chunk,
        );
    }
    hash_rows(plan, &mut sc, &mut chunk);
    chunk
}

/// Where a mapped row came from inside its record: the whole record, or a nested child's bytes.
struct Child {
    fatal: bool,
    span: Option<(usize, usize)>,
    /// A nested entity's child: its position, named in reject reasons (0: the record itself).
    ordinal: u32,
}

/// Appends the record just mapped into `sc` to the chunk: encoded with its keys, or as a reject.
fn finish(
    plan: &EntityPlan,
    batch: &Batch,
    m: &RecordMeta,
    sc: &mut Scratch<'_>,
    child: Child,
    chunk: &mut MappedChunk,
) {
    if sc.errors.is_empty() {
        let row_start = chunk.out.len();
        encode_row(plan, &sc.cells, sc.texts(), &mut chunk.out);
        if plan.digest {
            // The CSV output row is the digest material itself; other formats build it. The chunk's rows
            // are hashed together at its end (`hash_rows`).
            let material: &[u8] = if output_is_material(plan) {
                sc.to_hash
                    .push((chunk.hashes.len(), row_start, chunk.out.len()));
                &chunk.out[row_start..]
            } else {
                let from = sc.material.len();
                // Not `sc.texts()`: that would borrow all of `sc` while `sc.material` is written.
                let texts = Texts {
                    own: &sc.text,
                    src: sc.src,
                };
                digest::material(&sc.cells, texts, &mut sc.material);
                sc.to_hash
                    .push((chunk.hashes.len(), from, sc.material.len()));
                &sc.material[from..]
            };
            chunk.hashes.push([0; 4]);
            if !sc.deferred.is_empty() {
                let from = chunk.materials.len();
                chunk.materials.extend_from_slice(material);
                for d in &mut sc.deferred {
                    d.3 = (from, chunk.materials.len());
                }
            }
        }
        for (t, rows) in plan.targets.iter().zip(&mut chunk.targets) {
            target::encode_row(t, &plan.target_types, &sc.cells, sc.texts(), &mut rows.out);
            rows.ends.push(rows.out.len());
        }
        for (f, rows) in plan.also.iter().zip(&mut chunk.also) {
            encode_row_as(*f, plan, &sc.cells, sc.texts(), &mut rows.out);
            rows.ends.push(rows.out.len());
        }
        if let Some(pk) = &plan.track {
            digest::material_cols(&sc.cells, pk, sc.texts(), &mut chunk.track_keys);
            chunk.track_ends.push(chunk.track_keys.len());
        }
        let key_start = chunk.keys.len();
        for u in &plan.unique {
            chunk.keys.push(key_hash(&u.fields, &sc.cells, sc.texts()));
        }
        let mut pk = (0, 0);
        if !plan.index_by.is_empty() || !plan.deferred.is_empty() {
            for ib in &plan.index_by {
                let (exact, short) = match sc.cells[ib.field].text(sc.texts()) {
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
                .and_then(|i| sc.cells[i].text(sc.texts()))
                .unwrap_or("");
            pk.0 = chunk.pk_texts.len();
            chunk.pk_texts.push_str(text);
            pk.1 = chunk.pk_texts.len();
        }
        for &i in &sc.orphan_fields {
            chunk.orphans.resize(plan.fields.len(), 0);
            chunk.orphans[i] += 1;
        }
        for &i in &sc.unmapped_fields {
            chunk.unmapped.resize(plan.fields.len(), 0);
            chunk.unmapped[i] += 1;
        }
        for (field, a, b, material) in sc.deferred.drain(..) {
            let start = chunk.deferred_texts.len();
            chunk.deferred_texts.push_str(&sc.text[a..b]);
            chunk.deferred.push(Deferred {
                row: chunk.rows.len(),
                field,
                text: (start, chunk.deferred_texts.len()),
                material,
            });
        }
        chunk.rows.push(RowOutcome::Written {
            end: chunk.out.len(),
            key_start,
            pk,
        });
        return;
    }
    sc.deferred.clear();
    if plan.digest {
        chunk.hashes.push([0; 4]);
    }
    for rows in chunk.targets.iter_mut().chain(&mut chunk.also) {
        rows.ends.push(rows.out.len());
    }
    if plan.track.is_some() {
        chunk.track_ends.push(chunk.track_keys.len());
    }
    if child.ordinal > 0 {
        for e in &mut sc.errors {
            e.message
                .push_str(&format!(" (nested record {})", child.ordinal));
        }
    }
    chunk.rows.push(RowOutcome::Rejected(chunk.rejects.len()));
    let whole = batch.raw(m);
    let (from, raw) = match child.span {
        Some((a, b)) => (a, &whole[a..b]),
        None => (0, whole),
    };
    // A syntax error is reported where it is, not where its record starts; a child where it starts.
    let off = from + sc.at.take().unwrap_or(0).min(raw.len());
    let lines = memchr::memchr_iter(b'\n', &whole[..off]).count() as u64;
    chunk.rejects.push(Reject {
        number: m.number,
        line: m.line + lines,
        byte: m.byte + off as u64,
        errors: std::mem::take(&mut sc.errors),
        raw: raw.to_vec(),
        fatal: child.fatal || plan.strict,
    });
}

/// Maps the children of one record of a nested entity, calling `emit` after each (and once with the
/// errors when the record's children cannot be found).
fn map_nested<'b>(
    plan: &EntityPlan,
    n: &NestedPlan,
    batch: &'b Batch,
    m: &RecordMeta,
    sc: &mut Scratch<'b>,
    emit: &mut dyn FnMut(&mut Scratch<'b>, u32, Child),
) {
    sc.errors.clear();
    sc.text.clear();
    sc.cells.clear();
    sc.src = "";
    // The enclosing record's columns: CSV fields, or the parent paths of a JSON or XML record.
    let mut strs: Vec<Option<&str>> = Vec::new();
    let mut outer = Extracted::default();
    let raw = batch.raw(m);
    let mut fail = |sc: &mut Scratch<'b>, e: Option<FieldError>, at: Option<usize>, fatal: bool| {
        sc.errors.extend(e);
        sc.at = at;
        emit(
            sc,
            0,
            Child {
                fatal,
                span: None,
                ordinal: 0,
            },
        );
    };
    let text = match n.outer {
        Extract::Csv => {
            if let Some(fatal) = gather_csv(plan, batch, m, None, &mut strs, sc) {
                return fail(sc, None, None, fatal);
            }
            ""
        }
        Extract::Json(_) | Extract::Xml(_) => {
            let text = structured_text(raw);
            sc.src = text;
            let res = match &n.outer {
                Extract::Json(p) => json::extract(text, p, &mut outer),
                Extract::Xml(p) => xml::extract(text, p, &mut outer),
                Extract::Csv => Ok(()),
            };
            if let Err(e) = res {
                let (fatal, at) = (e.fatal, e.fatal.then_some(e.offset));
                return fail(sc, Some(record_error(e)), at, fatal);
            }
            text
        }
    };
    let parent_value = |j: usize| -> Option<&str> {
        match n.outer {
            Extract::Csv => strs.get(j).copied().flatten(),
            _ => outer
                .spans
                .get(j)
                .copied()
                .flatten()
                .map(|(a, b)| outer.text(text, a, b)),
        }
    };
    let ctx = |ordinal: u32| RecordCtx {
        number: plan.seq_base + m.number,
        ordinal,
    };
    match &n.children {
        Children::Split { column, separator } => {
            let value = parent_value(*column).filter(|v| !plan.null.contains(v));
            let parts = value
                .into_iter()
                .flat_map(|v| v.split(separator.as_str()))
                .map(str::trim)
                .filter(|p| !p.is_empty());
            for (k, part) in parts.enumerate() {
                sc.errors.clear();
                sc.text.clear();
                sc.cells.clear();
                let get = |i: usize| match i {
                    0 => Some(part),
                    i if i & PARENT_COL != 0 => parent_value(i & !PARENT_COL),
                    _ => None,
                };
                map_fields(plan, get, &ctx(k as u32 + 1), sc);
                let ordinal = k as u32 + 1;
                let child = Child {
                    fatal: false,
                    span: None,
                    ordinal,
                };
                emit(sc, ordinal, child);
            }
        }
        Children::Json(_) | Children::Xml(_) => {
            let spans = match children(&n.children, raw) {
                Ok(s) => s,
                Err(message) => {
                    let e = FieldError {
                        field: String::new(),
                        value: String::new(),
                        code: RejectCode::Malformed,
                        message,
                    };
                    return fail(sc, Some(e), None, false);
                }
            };
            let mut ext = std::mem::take(&mut sc.ext);
            for (k, &(a, b)) in spans.iter().enumerate() {
                sc.errors.clear();
                sc.text.clear();
                sc.cells.clear();
                let child = structured_text(&raw[a..b]);
                let ordinal = k as u32 + 1;
                match gather_structured(plan, child, &mut ext) {
                    Ok(()) => {
                        let get = |i: usize| {
                            if i & PARENT_COL != 0 {
                                return parent_value(i & !PARENT_COL);
                            }
                            ext.spans
                                .get(i)
                                .copied()
                                .flatten()
                                .map(|(x, y)| ext.text(child, x, y))
                        };
                        map_fields(plan, get, &ctx(ordinal), sc);
                    }
                    Err(e) => {
                        sc.at = e.fatal.then_some(e.offset);
                        sc.errors.push(record_error(e));
                    }
                }
                emit(
                    sc,
                    ordinal,
                    Child {
                        fatal: false,
                        span: Some((a, b)),
                        ordinal,
                    },
                );
            }
            sc.ext = ext;
        }
    }
}

/// The byte spans of a record's children, found by running the document splitter over the record.
fn children(c: &Children, raw: &[u8]) -> Result<Vec<(usize, usize)>, String> {
    let mut batch = Batch::default();
    let feed = crate::read::feed::Feed::new(raw, "", 0, raw.len().max(1024));
    let res = match c {
        Children::Json(path) => {
            let mut s = json::JsonSplitter::new(feed, json::JsonLayout::Document(path.clone()))
                .allow_missing();
            loop {
                match s.read_record(&mut batch) {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        }
        Children::Xml(path) => {
            let mut s = xml::XmlSplitter::new(feed, path.clone());
            loop {
                match s.read_record(&mut batch) {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        }
        Children::Split { .. } => Ok(()),
    };
    res.map_err(|e| format!("the nested records cannot be read: {e}"))?;
    Ok(batch
        .records
        .iter()
        .map(|r| (r.byte as usize, r.byte as usize + (r.raw_end - r.raw_start)))
        .collect())
}

/// A JSON or XML record problem as a field error.
fn record_error(e: RecordError) -> FieldError {
    FieldError {
        field: e.field,
        value: String::new(),
        code: if e.ambiguous {
            RejectCode::Ambiguous
        } else {
            RejectCode::Malformed
        },
        message: e.message,
    }
}

/// Maps one row given as column values (None: null) and appends its digest material, or returns its
/// first error: `crm-etl digest` reading a PostgreSQL COPY export.
pub fn material_of_values<'a>(
    plan: &'a EntityPlan,
    values: &[Option<&'a str>],
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    let mut sc = Scratch::new(plan);
    let ctx = RecordCtx {
        number: 0,
        ordinal: 0,
    };
    map_fields(plan, |i| values.get(i).copied().flatten(), &ctx, &mut sc);
    if let Some(e) = sc.errors.into_iter().next() {
        return Err(e);
    }
    digest::material(&sc.cells, Texts::own(&sc.text), out);
    Ok(())
}

/// The output text of some fields of one record, joined by `|`: quoted in duplicate-key rejects.
/// `ordinal` picks the child of a nested entity's record.
pub fn key_text(
    plan: &EntityPlan,
    batch: &Batch,
    m: &RecordMeta,
    ordinal: Option<u32>,
    fields: &[usize],
) -> String {
    let text = |sc: &Scratch| {
        fields
            .iter()
            .map(|&i| {
                sc.cells
                    .get(i)
                    .and_then(|c| c.text(sc.texts()))
                    .unwrap_or("")
            })
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut sc = Scratch::new(plan);
    match (&plan.nested, ordinal) {
        (Some(n), Some(want)) => {
            let mut found = String::new();
            map_nested(plan, n, batch, m, &mut sc, &mut |sc, ordinal, _| {
                if ordinal == want {
                    found = text(sc);
                }
            });
            found
        }
        _ => {
            let mut strs = Vec::new();
            map_record(plan, batch, m, None, &mut strs, &mut sc);
            text(&sc)
        }
    }
}

/// 128-bit hash of the key fields' output text; 0 if any is null.
fn key_hash(fields: &[usize], cells: &[Cell], text: Texts) -> u128 {
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
    text: RecordsText<'b>,
    strs: &mut Vec<Option<&'b str>>,
    sc: &mut Scratch<'b>,
) -> bool {
    sc.text.clear();
    sc.cells.clear();
    sc.src = "";
    strs.clear();
    match &plan.extract {
        Extract::Csv => {
            if let Some(fatal) = gather_csv(plan, batch, m, text, strs, sc) {
                return fatal;
            }
            let ctx = RecordCtx {
                number: plan.seq_base + m.number,
                ordinal: 0,
            };
            map_fields(plan, |i| strs.get(i).copied().flatten(), &ctx, sc);
            false
        }
        Extract::Json(_) | Extract::Xml(_) => {
            let mut ext = std::mem::take(&mut sc.ext);
            let raw = structured_text(batch.raw(m));
            sc.src = raw;
            let fatal = match gather_structured(plan, raw, &mut ext) {
                Ok(()) => {
                    let get = |i: usize| {
                        ext.spans
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|(a, b)| ext.text(raw, a, b))
                    };
                    let ctx = RecordCtx {
                        number: plan.seq_base + m.number,
                        ordinal: 0,
                    };
                    map_fields(plan, get, &ctx, sc);
                    false
                }
                Err(e) => {
                    if e.fatal {
                        sc.at = Some(e.offset);
                    }
                    let fatal = e.fatal;
                    sc.errors.push(record_error(e));
                    fatal
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

/// The raw text of a chunk's records, when all of them are valid UTF-8, and the offset in the batch's
/// raw bytes where it starts.
type RecordsText<'b> = Option<(&'b str, usize)>;

/// Checks the UTF-8 of a chunk's CSV records in one pass over their bytes, where a check per record cost
/// 3 % of a run (mostly in starting each check). Each record's bytes are then valid on their own when
/// the whole is and every record starts and ends on a character boundary of it.
fn records_text<'b>(batch: &'b Batch, recs: &[RecordMeta]) -> RecordsText<'b> {
    let base = recs.first()?.raw_start;
    let all = simdutf8::basic::from_utf8(batch.raw.get(base..recs.last()?.raw_end)?).ok()?;
    let boundary = |at: usize| {
        at.checked_sub(base)
            .is_some_and(|i| all.is_char_boundary(i))
    };
    recs.iter()
        .all(|r| boundary(r.raw_start) && boundary(r.raw_end))
        .then_some((all, base))
}

/// Collects the CSV fields of a record as text; Some(fatal) when the record is rejected here.
fn gather_csv<'b>(
    plan: &EntityPlan,
    batch: &'b Batch,
    m: &RecordMeta,
    text: RecordsText<'b>,
    strs: &mut Vec<Option<&'b str>>,
    sc: &mut Scratch<'b>,
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
    // simdutf8: several times faster than the standard check on accented and CJK text.
    let raw = match text {
        Some((all, base)) => Some(&all[m.raw_start - base..m.raw_end - base]),
        None => simdutf8::basic::from_utf8(batch.raw(m)).ok(),
    };
    let raw_ok = raw.is_some();
    sc.src = raw.unwrap_or("");
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
fn map_fields<'v>(
    plan: &'v EntityPlan,
    get: impl Fn(usize) -> Option<&'v str>,
    ctx: &RecordCtx,
    sc: &mut Scratch<'_>,
) {
    sc.orphan_fields.clear();
    sc.deferred.clear();
    sc.unmapped_fields.clear();
    for (fi, f) in plan.fields.iter().enumerate() {
        if let Some(col) = sc.plain.get(fi).copied().flatten() {
            map_plain(plan, f, get(col), sc);
            continue;
        }
        let start = sc.text.len();
        let mut unmapped = false;
        let value = field_value(plan, f, &get, ctx, &mut unmapped);
        if unmapped {
            sc.unmapped_fields.push(fi);
        }
        match value {
            Ok(Some(v)) => {
                // Text that is a slice of the source record goes out from there, uncopied.
                if let (Cast::Text, None, Cow::Borrowed(b)) = (&f.cast, &f.reference, &v) {
                    if let Some(cell) = src_cell(sc.src, b) {
                        match check_value(plan, f, b) {
                            Ok(()) => sc.cells.push(cell),
                            Err((code, message)) => sc.refuse(f, b.to_string(), code, message),
                        }
                        continue;
                    }
                }
                let res = cast_value(f, &v, &mut sc.text)
                    .map_err(|m| (RejectCode::Type, m))
                    .and_then(|()| check_value(plan, f, &sc.text[start..]));
                let res = match (res, &f.reference) {
                    (Ok(()), Some(r)) if r.defer => {
                        sc.deferred.push((fi, start, sc.text.len(), (0, 0)));
                        Ok(None)
                    }
                    (Ok(()), Some(r)) => resolve(r, f.ty, fi, start, sc),
                    (res, _) => res.map(|()| Some(f.ty)),
                };
                match res {
                    Ok(Some(ty)) => sc.cells.push(Cell::of(ty, start, sc.text.len(), &sc.text)),
                    Ok(None) => sc.cells.push(Cell::Null),
                    Err((code, message)) => {
                        sc.text.truncate(start);
                        sc.refuse(f, v.into_owned(), code, message);
                    }
                }
            }
            Ok(None) => sc.no_value(f),
            Err(e) => {
                sc.errors.push(e);
                sc.cells.push(Cell::Null);
            }
        }
    }
}

/// [`map_fields`] for a field that copies a column as it is: the same cell or error as the general path,
/// in fewer steps.
#[inline(always)]
fn map_plain(plan: &EntityPlan, f: &FieldPlan, value: Option<&str>, sc: &mut Scratch<'_>) {
    let Some(v) = value.filter(|s| !plan.null.contains(s)) else {
        sc.no_value(f);
        return;
    };
    if let Err((code, message)) = check_value(plan, f, v) {
        sc.refuse(f, v.to_string(), code, message);
        return;
    }
    let cell = src_cell(sc.src, v).unwrap_or_else(|| {
        let start = sc.text.len();
        sc.text.push_str(v);
        Cell::Text(start, sc.text.len())
    });
    sc.cells.push(cell);
}

/// Replaces the reference value at `sc.text[start..]` with the parent's primary key, and says the type
/// to write it as (the parent key's; a kept orphan keeps the value's own type `ty`). Ok(None) when the
/// value is an orphan to be written as null.
fn resolve(
    r: &RefPlan,
    ty: FieldType,
    field: usize,
    start: usize,
    sc: &mut Scratch,
) -> Result<Option<FieldType>, (RejectCode, String)> {
    // Without an index (`check` compiles plans before any parent has run) there is nothing to match.
    let Some(index) = &r.index else {
        return Ok(Some(ty));
    };
    let value = &sc.text[start..];
    let found = index.get(text_key(value)).or_else(|| {
        r.salesforce_ids
            .then(|| salesforce_15(value))
            .flatten()
            .and_then(|short| index.get(text_key(short)))
    });
    match found {
        Some(None) => Ok(Some(r.out_ty)),
        Some(Some(target)) => {
            // `target` lives in the parent's index, not in `sc.text`: no copy needed.
            if target != value {
                sc.text.truncate(start);
                sc.text.push_str(target);
            }
            Ok(Some(r.out_ty))
        }
        None => match r.orphans {
            Orphans::Reject => Err((
                RejectCode::Orphan,
                format!("no {} record has the key {value:?}", r.entity),
            )),
            Orphans::Null => {
                sc.orphan_fields.push(field);
                sc.text.truncate(start);
                Ok(None)
            }
            Orphans::Keep => {
                sc.orphan_fields.push(field);
                Ok(Some(ty))
            }
        },
    }
}

/// The checks of a field's output text: its constraints, and what the run's output formats and load
/// targets can hold. Most fields have at most a length to check: that is done here, inlined into the
/// field loop (as a call, saving and restoring registers cost more than the check, 2 % of a run).
#[inline(always)]
fn check_value(plan: &EntityPlan, f: &FieldPlan, text: &str) -> Result<(), (RejectCode, String)> {
    if f.pattern.is_none() && plan.xml.is_none() && !plan.no_nul {
        return match f.max_length {
            Some(max) if text.len() > max => check_constraints(f, text),
            _ => Ok(()),
        };
    }
    check_all(plan, f, text)
}

/// [`check_value`] with a pattern, or for XML output or PostgreSQL text.
fn check_all(plan: &EntityPlan, f: &FieldPlan, text: &str) -> Result<(), (RejectCode, String)> {
    check_constraints(f, text)?;
    if plan.xml.is_some() {
        xml_safe(text)?;
    }
    if plan.no_nul && text.contains('\0') {
        return Err((
            RejectCode::Type,
            "the character U+0000 (NUL) cannot be stored in PostgreSQL text (a load target of this run)"
                .into(),
        ));
    }
    Ok(())
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
    ctx: &RecordCtx,
    unmapped: &mut bool,
) -> Result<Option<Cow<'a, str>>, FieldError> {
    let is_null = |s: &str| plan.null.contains(s);
    if let (Input::Column(i), true, None) = (&f.input, f.steps.is_empty(), &f.map) {
        // Most fields: a column as it is. Built in one expression, the value is not assembled on the
        // stack piece by piece and then moved (a stalled reload, a fifth of `map_record`'s samples).
        let v = get(*i).filter(|s| !is_null(s)).or(f.default.as_deref());
        return Ok(v.map(Cow::Borrowed));
    }
    let raw: Option<Cow<'a, str>> = match &f.input {
        Input::Column(i) => get(*i).filter(|s| !is_null(s)).map(Cow::Borrowed),
        Input::Parent(i) => get(*i | PARENT_COL)
            .filter(|s| !is_null(s))
            .map(Cow::Borrowed),
        Input::Ordinal => Some(Cow::Owned(ctx.ordinal.to_string())),
        Input::Sequence => Some(Cow::Owned(ctx.number.to_string())),
        Input::Hash(cols) => {
            let values: Vec<Option<&str>> = cols
                .iter()
                .map(|&i| get(i).filter(|s| !is_null(s)))
                .collect();
            hash_key(f.ty, &values).map(Cow::Owned)
        }
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
            None if f.unmapped != Unmapped::Reject => {
                *unmapped = true;
                match f.unmapped {
                    Unmapped::Null => v = None,
                    Unmapped::Default => v = f.default.as_deref().map(Cow::Borrowed),
                    _ => {}
                }
            }
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

/// A surrogate key from the natural key's values: BLAKE3 over each value's length and bytes (a null
/// marked apart from an empty string), shown as a 63-bit integer, a version-8 UUID or 32 hex digits.
/// None when every value is null: a record without a natural key gets no key.
fn hash_key(ty: FieldType, values: &[Option<&str>]) -> Option<String> {
    if values.iter().all(Option::is_none) {
        return None;
    }
    let mut h = blake3::Hasher::new();
    for v in values {
        match v {
            Some(t) => {
                h.update(&[1]);
                h.update(&(t.len() as u64).to_le_bytes());
                h.update(t.as_bytes());
            }
            None => {
                h.update(&[0]);
            }
        }
    }
    let d = h.finalize();
    let b = d.as_bytes();
    Some(match ty {
        FieldType::Integer => {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[..8]);
            (u64::from_le_bytes(w) >> 1).to_string()
        }
        FieldType::Uuid => {
            let mut u = [0u8; 16];
            u.copy_from_slice(&b[..16]);
            u[6] = (u[6] & 0x0f) | 0x80;
            u[8] = (u[8] & 0x3f) | 0x80;
            let hex: String = u.iter().map(|x| format!("{x:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &hex[..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..]
            )
        }
        _ => b[..16].iter().map(|x| format!("{x:02x}")).collect(),
    })
}

fn apply<'a>(step: &Step, v: Cow<'a, str>) -> Cow<'a, str> {
    match step {
        Step::Trim => match v {
            Cow::Borrowed(b) => Cow::Borrowed(cast::trim(b)),
            Cow::Owned(o) => match cast::trim(&o) {
                t if t.len() == o.len() => Cow::Owned(o),
                t => Cow::Owned(t.to_string()),
            },
        },
        Step::Lower => {
            // ASCII text (most emails, codes, names) needs no Unicode case tables, nor decoding to
            // `char`s to look for capitals: decoding every character was a third of this step.
            if v.is_ascii() {
                if v.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(v.to_ascii_lowercase())
                } else {
                    v
                }
            } else if v.chars().any(char::is_uppercase) {
                Cow::Owned(lowercase(&v))
            } else {
                v
            }
        }
        Step::Upper => {
            if v.chars().any(char::is_lowercase) {
                Cow::Owned(match v.is_ascii() {
                    true => v.to_ascii_uppercase(),
                    false => v.to_uppercase(),
                })
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

/// `str::to_lowercase`, with the ASCII characters of mixed text (an email with an accented name) done
/// without case tables: the standard one looks up every character after the first non-ASCII one. A
/// capital sigma lowercases by its place in a word, which only the standard one knows.
fn lowercase(v: &str) -> String {
    if v.contains('Σ') {
        return v.to_lowercase();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of records with these raw bytes, one after another.
    fn batch(records: &[&[u8]]) -> Batch {
        let mut b = Batch::default();
        for (k, r) in records.iter().enumerate() {
            let raw_start = b.raw.len();
            b.raw.extend_from_slice(r);
            b.records.push(RecordMeta {
                first: 0,
                n_fields: 0,
                raw_start,
                raw_end: b.raw.len(),
                number: k as u64 + 1,
                line: k as u64 + 1,
                byte: 0,
                malformed: None,
            });
        }
        b
    }

    /// The lower-casing step gives what `str::to_lowercase` gives, on ASCII, accented, CJK and Greek
    /// text (a capital sigma's form depends on its place in the word).
    #[test]
    fn lower_matches_the_standard_lowercase() {
        let cases = [
            "MARY.山田3@MAIL.EXAMPLE.COM",
            "plain@example.com",
            "Ÿ ÉCOLE İstanbul ǅ",
            "ΟΔΥΣΣΕΥΣ Σ ΑΣ.",
            "françois.kim0@GLOBEX.example.com",
            "",
            "ẞ ß Ω K Å",
        ];
        for v in cases {
            let got = apply(&Step::Lower, Cow::Borrowed(v));
            assert_eq!(got, v.to_lowercase(), "{v:?}");
        }
    }

    #[test]
    fn a_chunk_is_text_only_when_each_record_is() {
        let ok = batch(&[b"a,\xc3\xa9", b"", b"\xe5\xb1\xb1,b"]);
        let (text, base) = records_text(&ok, &ok.records).expect("valid records");
        assert_eq!((text, base), ("a,é山,b", 0));
        // A character split between two records: valid together, not apart.
        let split = batch(&[b"a,\xc3", b"\xa9,b"]);
        assert!(std::str::from_utf8(&split.raw).is_ok());
        assert_eq!(records_text(&split, &split.records), None);
        // A chunk of a batch's later records starts at their first byte.
        let later = batch(&[b"\xff", b"x", b"\xc3\xa9"]);
        assert_eq!(records_text(&later, &later.records), None);
        assert_eq!(records_text(&later, &later.records[1..]), Some(("xé", 1)));
    }
}
