//! `crm-etl convert`: a mapping-free conversion. Every column becomes a text field named by the header
//! (CSV) or by its path (JSON, XML: found in the first batch of records, or given with `--columns`), every
//! value is kept exactly as read (an empty field stays an empty string), and any bad record is an error,
//! since there is no rejects file.

use std::path::Path;

use crate::error::{FatalError, Position};
use crate::pipeline::{pump, EntityState, Outputs, RejectSink};
use crate::plan::{xml_out, EntityPlan, Extract, FieldPlan};
use crate::read::csv::{Batch, Dialect, RecordMeta};
use crate::read::json::{self, Extracted, JsonLayout, JsonPaths};
use crate::read::xml::{self, XmlPaths};
use crate::read::{open_input, InputKind};
use crate::spec::{CsvDialect, Encoding, InputFormat, OutputFormat, Ragged};
use crate::write::{AtomicFile, RowWriter, Sink};

/// What to convert, and how.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub input: String,
    pub output: String,
    pub to: OutputFormat,
    pub dialect: Dialect,
    pub encoding: Encoding,
    pub ragged: Ragged,
    pub threads: usize,
    /// Input format; None: from the file extension (`.json`, `.jsonl`/`.ndjson`, `.xml`), else CSV.
    pub from: Option<InputFormat>,
    pub record_path: Option<String>,
    /// JSON/XML columns (paths); None: found in the first records.
    pub columns: Option<Vec<String>>,
    pub xml_root: Option<String>,
    pub xml_record: Option<String>,
    pub max_record_bytes: u64,
    /// Progress on stderr.
    pub progress: crate::progress::Mode,
}

/// Records read ahead to find the columns of a JSON or XML input.
const DISCOVER_RECORDS: usize = 4096;

/// The input format named by a file's extension.
pub fn format_of(path: &str) -> InputFormat {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        InputFormat::Jsonl
    } else if lower.ends_with(".json") {
        InputFormat::Json
    } else if lower.ends_with(".xml") {
        InputFormat::Xml
    } else {
        InputFormat::Csv
    }
}

/// Header names made unique for JSON keys: a repeated `Name` becomes `Name_2`, `Name_3`, ...
fn unique_names(header: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        let base = if h.is_empty() {
            format!("column_{}", i + 1)
        } else {
            h.clone()
        };
        let mut name = base.clone();
        let mut k = 2;
        while out.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        out.push(name);
    }
    out
}

/// An input opened for flat reading: its records, column names (a CSV header, or JSON/XML leaf paths
/// from `columns` or the first records) and how to extract them.
pub struct FlatInput {
    pub opened: crate::read::Opened,
    pub from: InputFormat,
    pub header: Vec<String>,
    pub extract: Extract,
    /// Progress of [`each_record`], as the options asked.
    pub progress: crate::progress::Mode,
}

/// Opens `input` as `convert` reads it.
pub fn open_flat(opts: &ConvertOptions) -> Result<FlatInput, FatalError> {
    let from = opts.from.unwrap_or_else(|| format_of(&opts.input));
    let kind = match from {
        InputFormat::Csv => InputKind::Csv {
            dialect: opts.dialect.clone(),
            spec: CsvDialect::default(),
        },
        InputFormat::Jsonl => InputKind::Json(JsonLayout::Lines),
        InputFormat::Json => InputKind::Json(JsonLayout::Document(json::split_path(
            opts.record_path.as_deref().unwrap_or(""),
        ))),
        InputFormat::Xml => {
            let path = xml::split_path(opts.record_path.as_deref().unwrap_or(""));
            xml::check_path(&path).map_err(|e| FatalError::Usage(format!("--record-path: {e}")))?;
            InputKind::Xml(path)
        }
    };
    let mut opened = open_input(
        Path::new(&opts.input),
        &opts.input,
        opts.encoding,
        &kind,
        opts.max_record_bytes,
        false,
    )?;
    let (header, extract) = match from {
        InputFormat::Csv => {
            if opened.header.is_empty() {
                return Err(FatalError::EmptyFile {
                    file: opts.input.clone(),
                });
            }
            (std::mem::take(&mut opened.header), Extract::Csv)
        }
        _ => {
            let (cols, all_leaves) = match &opts.columns {
                Some(c) => (c.clone(), false),
                None => (discover(&mut opened.reader, from, &opts.input)?, true),
            };
            let extract = if from == InputFormat::Xml {
                Extract::Xml(XmlPaths::new(&cols, all_leaves).map_err(FatalError::Usage)?)
            } else {
                Extract::Json(JsonPaths::new(&cols, all_leaves))
            };
            (cols, extract)
        }
    };
    Ok(FlatInput {
        opened,
        from,
        header,
        extract,
        progress: opts.progress,
    })
}

/// The error of a record that cannot be read as values, at its position.
pub(crate) fn bad_record(display: &str, m: &RecordMeta, message: String) -> FatalError {
    FatalError::BadRecord {
        pos: Position {
            file: display.to_string(),
            record: m.number,
            line: m.line,
            byte: m.byte,
        },
        message,
    }
}

/// Checks that CSV record `m` is well formed, has `width` fields and is valid UTF-8; its fields can
/// then be read with [`csv_text`].
pub fn check_csv_record(
    width: usize,
    display: &str,
    batch: &Batch,
    m: &RecordMeta,
) -> Result<(), FatalError> {
    if let Some(msg) = &m.malformed {
        return Err(bad_record(display, m, msg.clone()));
    }
    if m.n_fields != width {
        return Err(bad_record(
            display,
            m,
            format!("expected {width} fields, found {}", m.n_fields),
        ));
    }
    // One check of the raw record covers its fields (see `map::gather_csv`).
    if simdutf8::basic::from_utf8(batch.raw(m)).is_err() {
        let e = std::str::from_utf8(batch.raw(m)).expect_err("simdutf8 found it invalid");
        return Err(bad_record(display, m, format!("invalid UTF-8: {e}")));
    }
    Ok(())
}

/// Field `i` of a CSV record that passed [`check_csv_record`], as text.
pub fn csv_text<'a>(batch: &'a Batch, m: &RecordMeta, i: usize) -> &'a str {
    let b = batch.field(m, i);
    debug_assert!(std::str::from_utf8(b).is_ok());
    // SAFETY: a field's bytes are the raw record's (checked valid by `check_csv_record`) less some
    // ASCII bytes, and so valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(b) }
}

/// Fills `vals` with record `m`'s values (None: null or missing), one per column (`width`).
pub fn record_values<'a>(
    extract: &Extract,
    width: usize,
    display: &str,
    batch: &'a Batch,
    m: &RecordMeta,
    ext: &'a mut Extracted,
    vals: &mut Vec<Option<&'a str>>,
) -> Result<(), FatalError> {
    vals.clear();
    match extract {
        Extract::Csv => {
            check_csv_record(width, display, batch, m)?;
            for i in 0..width {
                vals.push(Some(csv_text(batch, m, i)));
            }
        }
        extract @ (Extract::Json(_) | Extract::Xml(_)) => {
            let raw = std::str::from_utf8(batch.raw(m))
                .map_err(|e| bad_record(display, m, e.to_string()))?;
            let res = match extract {
                Extract::Json(p) => json::extract(raw, p, ext),
                Extract::Xml(p) => xml::extract(raw, p, ext),
                Extract::Csv => Ok(()),
            };
            res.map_err(|e| bad_record(display, m, e.message))?;
            let ext: &'a Extracted = ext;
            for i in 0..width {
                vals.push(
                    ext.spans
                        .get(i)
                        .copied()
                        .flatten()
                        .map(|(a, c)| ext.text(raw, a, c)),
                );
            }
        }
    }
    Ok(())
}

/// Calls `f` with every batch of records of `opened`, in file order. A reader thread splits records
/// while this one works on the batch before.
pub fn each_batch(
    opened: &mut crate::read::Opened,
    progress: crate::progress::Mode,
    display: &str,
    mut f: impl FnMut(&Batch) -> Result<(), FatalError>,
) -> Result<(), FatalError> {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Result<Batch, FatalError>>(2);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Batch>();
    let size = std::fs::metadata(display).map_or(0, |m| m.len());
    let mut progress = crate::progress::Step::new(progress, display, size);
    if let Some(p) = progress.as_mut() {
        p.file(opened.hash.clone());
    }
    let mut records = 0u64;
    let reader = &mut opened.reader;
    std::thread::scope(|scope| {
        scope.spawn(move || crate::pipeline::fill_batches(reader, &full_tx, &free_rx));
        for msg in full_rx {
            let batch = msg?;
            f(&batch)?;
            records += batch.records.len() as u64;
            if let Some(p) = progress.as_mut() {
                p.update(records);
            }
            let _ = free_tx.send(batch);
        }
        if let Some(p) = progress.take() {
            p.finish(records);
        }
        Ok(())
    })
}

/// Calls `f` with every record's values (None: null or missing), in file order.
pub fn each_record(
    input: &mut FlatInput,
    display: &str,
    mut f: impl FnMut(&RecordMeta, &[Option<&str>]) -> Result<(), FatalError>,
) -> Result<(), FatalError> {
    let mut ext = Extracted::default();
    let (extract, width) = (&input.extract, input.header.len());
    each_batch(&mut input.opened, input.progress, display, |batch| {
        for m in &batch.records {
            let mut vals = Vec::with_capacity(width);
            record_values(extract, width, display, batch, m, &mut ext, &mut vals)?;
            f(m, &vals)?;
        }
        Ok(())
    })
}

/// Converts one input; returns the number of records written.
pub fn convert(opts: &ConvertOptions) -> Result<u64, FatalError> {
    let FlatInput {
        opened,
        header,
        extract,
        ..
    } = open_flat(opts)?;
    // JSON keys must be unique; a CSV header keeps its names as they were.
    let names = if opts.to == OutputFormat::Csv {
        header.clone()
    } else {
        unique_names(&header)
    };
    let xml = (opts.to == OutputFormat::Xml)
        .then(|| xml_out(opts.xml_root.as_deref(), opts.xml_record.as_deref(), &names));
    let fields = names
        .iter()
        .enumerate()
        .map(|(i, n)| FieldPlan::text_column(n, i))
        .collect();
    let plan = EntityPlan {
        name: "convert".into(),
        source: opts.input.clone(),
        format: opts.to,
        fields,
        unique: Vec::new(),
        header,
        ragged: opts.ragged,
        null: Default::default(),
        quote_empty: false,
        strict: true,
        extract,
        xml,
        index_by: Vec::new(),
        pk_field: None,
        track: None,
        also: Vec::new(),
        seq_base: 0,
        nested: None,
        deferred: Vec::new(),
        targets: Vec::new(),
        target_types: Vec::new(),
        no_nul: false,
        digest: false,
    };
    let sink = if opts.output == "-" {
        Sink::Stdout(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        ))
    } else {
        Sink::File(Box::new(AtomicFile::create(Path::new(&opts.output))?))
    };
    let writer = RowWriter::for_plan(sink, &plan, &opts.output)?;
    let mut outputs = Outputs::new(writer);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| FatalError::Internal(format!("thread pool: {e}")))?;
    let mut state = EntityState::default();
    let size = std::fs::metadata(&opts.input).map_or(0, |m| m.len());
    state.progress = crate::progress::Step::new(opts.progress, "convert", size);
    if let Some(p) = state.progress.as_mut() {
        p.file(opened.hash.clone());
    }
    pump(
        opened.reader,
        &plan,
        &opts.input,
        &pool,
        &mut outputs,
        RejectSink::Fatal,
        &mut state,
        None,
    )?;
    if let Some(p) = state.progress.take() {
        p.finish(state.read);
    }
    let rows = outputs.main.rows;
    outputs.main.finish()?;
    Ok(rows)
}

/// Reads the first records of a JSON or XML input and returns their leaf paths in order of first
/// appearance; the records stay queued for the conversion.
fn discover(
    reader: &mut crate::read::RecordReader,
    from: InputFormat,
    display: &str,
) -> Result<Vec<String>, FatalError> {
    let mut batch = Batch::default();
    while batch.len() < DISCOVER_RECORDS && reader.read_record(&mut batch)? {}
    let mut cols = Vec::new();
    for m in &batch.records {
        let raw = std::str::from_utf8(batch.raw(m)).unwrap_or("");
        let res = if from == InputFormat::Xml {
            xml::leaf_paths(raw, &mut cols)
        } else {
            json::leaf_paths(raw, &mut cols)
        };
        if let Err(e) = res {
            let off = e.offset.min(raw.len());
            let lines = raw.as_bytes()[..off]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            return Err(FatalError::BadRecord {
                pos: crate::error::Position {
                    file: display.to_string(),
                    record: m.number,
                    line: m.line + lines,
                    byte: m.byte + off as u64,
                },
                message: e.message,
            });
        }
    }
    if !batch.is_empty() {
        reader.pending = Some(batch);
    }
    Ok(cols)
}
