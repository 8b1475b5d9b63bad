//! Readers turn input files (CSV, JSON, JSON Lines, XML) into records with positions; every reader hashes
//! the bytes it reads so the manifest can name them without a second pass.

pub mod csv;
pub mod encoding;
pub mod feed;
pub mod json;
pub mod xml;

use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};

use self::csv::{Batch, CsvReader, Dialect};
use self::encoding::{DecodeReader, Detected, Sniffed};
use self::feed::Feed;
use self::json::{JsonLayout, JsonSplitter};
use self::xml::XmlSplitter;
use crate::error::{FatalError, Position};
use crate::spec::{CsvDialect, Encoding, InputFormat, Source};

/// The size of an input read so far and, when the run vouches for its inputs, its running BLAKE3
/// hash, shared with the reader that feeds it. `convert`, `diff` and `digest` only count bytes: hashing
/// was a tenth of a diff's time.
#[derive(Clone, Default)]
pub struct InputHash(Arc<Mutex<(Option<blake3::Hasher>, u64)>>);

impl InputHash {
    fn new(hashing: bool) -> Self {
        InputHash(Arc::new(Mutex::new((hashing.then(blake3::Hasher::new), 0))))
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Size in bytes and BLAKE3 hex of everything read so far (None when the input was opened without
    /// hashing).
    pub fn result(&self) -> Option<(u64, String)> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let h = g.0.as_ref()?;
        Some((g.1, h.finalize().to_hex().to_string()))
    }
}

struct Hashing<R> {
    inner: R,
    state: InputHash,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut g = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = &mut g.0 {
            h.update(&buf[..n]);
        }
        g.1 += n as u64;
        Ok(n)
    }
}

/// The record splitter of an opened input.
pub enum Records {
    Csv(CsvReader<Box<dyn Read + Send>>),
    Json(JsonSplitter<Box<dyn Read + Send>>),
    Xml(XmlSplitter<Box<dyn Read + Send>>),
}

/// Reads records of any format into batches; a batch read ahead (by `convert`, to find its columns) is
/// handed out first.
pub struct RecordReader {
    pub records: Records,
    pub pending: Option<Batch>,
}

impl RecordReader {
    /// Reads the next record into `batch`; false at the end of the input.
    pub fn read_record(&mut self, batch: &mut Batch) -> Result<bool, FatalError> {
        match &mut self.records {
            Records::Csv(r) => r.read_record(batch),
            Records::Json(r) => r.read_record(batch),
            Records::Xml(r) => r.read_record(batch),
        }
    }
}

/// What kind of input a file is, with what its reader needs.
#[derive(Debug, Clone)]
pub enum InputKind {
    Csv { dialect: Dialect, spec: CsvDialect },
    Json(JsonLayout),
    Xml(Vec<String>),
}

impl InputKind {
    /// The kind of a mapping's source; errors are messages for the source's key (`record_path`).
    pub fn of(source: &Source) -> Result<InputKind, Vec<(String, String)>> {
        Ok(match source.format {
            InputFormat::Csv => InputKind::Csv {
                dialect: compile_dialect(&source.csv)?,
                spec: source.csv.clone(),
            },
            InputFormat::Jsonl => InputKind::Json(JsonLayout::Lines),
            InputFormat::Json => InputKind::Json(JsonLayout::Document(json::split_path(
                source.record_path.as_deref().unwrap_or(""),
            ))),
            InputFormat::Xml => {
                let path = xml::split_path(source.record_path.as_deref().unwrap_or(""));
                xml::check_path(&path).map_err(|e| vec![("record_path".to_string(), e)])?;
                InputKind::Xml(path)
            }
        })
    }

    /// JSON and XML inputs have no header: their columns are paths named by the mapping.
    pub fn has_header(&self) -> bool {
        matches!(self, InputKind::Csv { .. })
    }
}

/// An input opened for reading: its header (CSV), the reader positioned after it, and what was detected.
pub struct Opened {
    pub header: Vec<String>,
    pub reader: RecordReader,
    pub sniffed: Sniffed,
    pub hash: InputHash,
}

/// Compiles the dialect of a source spec. Errors are messages for the spec key `csv.<name>`.
pub fn compile_dialect(d: &CsvDialect) -> Result<Dialect, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut one = |key: &str, v: &str, allow_empty: bool| -> Option<u8> {
        let v = if v == "\\t" || v.eq_ignore_ascii_case("tab") {
            "\t"
        } else {
            v
        };
        match v.as_bytes() {
            [] if allow_empty => None,
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Some(*b),
            _ => {
                errors.push((
                    key.to_string(),
                    format!(
                        "expected one ASCII character (not a line end){}, got {v:?}",
                        if allow_empty { " or nothing" } else { "" }
                    ),
                ));
                None
            }
        }
    };
    let delimiter = one("delimiter", &d.delimiter, false).unwrap_or(b',');
    let quote = one("quote", &d.quote, true);
    let escape = one("escape", &d.escape, true);
    let comment = one("comment", &d.comment, true);
    if quote == Some(delimiter) {
        errors.push((
            "quote".into(),
            "the quote character is also the delimiter".into(),
        ));
    }
    if escape.is_some() && quote.is_none() {
        errors.push((
            "escape".into(),
            "an escape character needs a quote character".into(),
        ));
    }
    if !d.header && d.columns.is_none() {
        errors.push((
            "columns".into(),
            "header = false needs the column names in `columns`".into(),
        ));
    }
    if d.max_record_bytes < 1024 || d.max_record_bytes > csv::MAX_CSV_RECORD as u64 {
        errors.push((
            "max_record_bytes".into(),
            format!("expected 1024 to {}", csv::MAX_CSV_RECORD),
        ));
    }
    if errors.is_empty() {
        Ok(Dialect {
            delimiter,
            quote,
            escape,
            comment,
            trim: d.trim,
            max_record: d.max_record_bytes as usize,
        })
    } else {
        Err(errors)
    }
}

/// Opens an input (`-` is standard input): sniffs the encoding, starts hashing, and for CSV reads the
/// header. `max_record` bounds a JSON or XML record; `hashing` says whether to keep its BLAKE3 hash.
pub fn open_input(
    path: &std::path::Path,
    display: &str,
    encoding: Encoding,
    kind: &InputKind,
    max_record: u64,
    hashing: bool,
) -> Result<Opened, FatalError> {
    let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| FatalError::io(path, e))?)
    };
    let hash = InputHash::new(hashing);
    let mut hashed = Hashing {
        inner: raw,
        state: hash.clone(),
    };
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match hashed.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FatalError::io(path, e)),
        }
    }
    let sniffed = encoding::sniff(encoding, &head[..got]);
    let rest = Cursor::new(head[sniffed.bom_len.min(got)..got].to_vec()).chain(hashed);
    let stream: Box<dyn Read + Send> = match sniffed.encoding {
        Detected::Utf8 => Box::new(rest),
        other => Box::new(DecodeReader::new(rest, other, sniffed.bom_len as u64)),
    };
    let start = sniffed.bom_len as u64;
    let max = usize::try_from(max_record).unwrap_or(usize::MAX);
    let (records, header) = match kind {
        InputKind::Csv { dialect, spec } => {
            let mut reader = CsvReader::new(stream, dialect.clone(), display, start);
            let header = read_header(&mut reader, display, &sniffed, spec)?;
            (Records::Csv(reader), header)
        }
        InputKind::Json(layout) => (
            Records::Json(JsonSplitter::new(
                Feed::new(stream, display, start, max),
                layout.clone(),
            )),
            Vec::new(),
        ),
        InputKind::Xml(path) => (
            Records::Xml(XmlSplitter::new(
                Feed::new(stream, display, start, max),
                path.clone(),
            )),
            Vec::new(),
        ),
    };
    Ok(Opened {
        header,
        reader: RecordReader {
            records,
            pending: None,
        },
        sniffed,
        hash,
    })
}

fn read_header(
    reader: &mut CsvReader<Box<dyn Read + Send>>,
    display: &str,
    sniffed: &Sniffed,
    spec: &CsvDialect,
) -> Result<Vec<String>, FatalError> {
    let mut header = Vec::new();
    if spec.header {
        let mut b = Batch::default();
        if !reader.read_record(&mut b)? {
            return Err(FatalError::EmptyFile {
                file: display.to_string(),
            });
        }
        let m = &b.records[0];
        for i in 0..m.n_fields {
            let name = std::str::from_utf8(b.field(m, i)).map_err(|_| FatalError::Encoding {
                pos: Position {
                    file: display.to_string(),
                    record: 0,
                    line: m.line,
                    byte: m.byte,
                },
                encoding: format!("{} (in the header)", sniffed.encoding.name()),
            })?;
            header.push(name.to_string());
        }
        reader.restart_numbering();
    }
    if let Some(cols) = &spec.columns {
        header = cols.clone();
    }
    Ok(header)
}

/// Expands a source path or glob, relative to `base`, into files in sorted order.
pub fn expand(base: &std::path::Path, pattern: &str) -> Result<Vec<std::path::PathBuf>, String> {
    if pattern == "-" {
        return Ok(vec![std::path::PathBuf::from("-")]);
    }
    let full = base.join(pattern);
    if !pattern.contains(['*', '?', '[']) {
        return Ok(if full.is_file() { vec![full] } else { vec![] });
    }
    let pat = full.to_string_lossy().into_owned();
    let mut files: Vec<_> = glob::glob(&pat)
        .map_err(|e| format!("bad glob {pattern:?}: {e}"))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Entry points for the fuzz targets in `fuzz/`: split a document into records and extract fields from
/// each, as a run does, discarding the results. Any outcome but a panic or a hang is fine.
pub mod fuzz {
    use super::csv::Batch;
    use super::feed::Feed;
    use super::json::{self, Extracted, JsonLayout, JsonSplitter};
    use super::xml::{self, XmlPaths, XmlSplitter};

    const MAX: usize = 1 << 16;

    /// JSON: the first byte picks the layout (document with or without a record path, or JSON Lines).
    pub fn json(data: &[u8]) {
        let Some((&mode, doc)) = data.split_first() else {
            return;
        };
        let layout = match mode % 3 {
            0 => JsonLayout::Document(Vec::new()),
            1 => JsonLayout::Document(vec!["records".into(), "Contacts".into(), "records".into()]),
            _ => JsonLayout::Lines,
        };
        let mut s = JsonSplitter::new(Feed::new(doc, "fuzz", 0, MAX), layout);
        let cols: Vec<String> = ["a", "a.b", "attributes.type", "Tags.0", "x"]
            .map(String::from)
            .to_vec();
        let paths = json::JsonPaths::new(&cols, mode & 4 != 0);
        let mut ext = Extracted::default();
        let mut batch = Batch::default();
        while let Ok(true) = s.read_record(&mut batch) {
            for m in &batch.records {
                // The mapping stage relies on this (see `map::gather_structured`).
                let text =
                    std::str::from_utf8(batch.raw(m)).expect("records are cut as valid UTF-8");
                let _ = json::extract(text, &paths, &mut ext);
                let _ = json::leaf_paths(text, &mut Vec::new());
            }
            batch.clear();
        }
    }

    /// XML: records at `/r/row`, fields of every kind.
    pub fn xml(data: &[u8]) {
        let mut s = XmlSplitter::new(
            Feed::new(data, "fuzz", 0, MAX),
            vec!["r".into(), "row".into()],
        );
        let cols: Vec<String> = ["@id", "a", "a/b", "a/@x", "f[@name=n]/@value", "."]
            .map(String::from)
            .to_vec();
        let Ok(paths) = XmlPaths::new(&cols, false) else {
            return;
        };
        let mut ext = Extracted::default();
        let mut batch = Batch::default();
        while let Ok(true) = s.read_record(&mut batch) {
            for m in &batch.records {
                let text =
                    std::str::from_utf8(batch.raw(m)).expect("records are cut as valid UTF-8");
                let _ = xml::extract(text, &paths, &mut ext);
                let _ = xml::leaf_paths(text, &mut Vec::new());
                let _ = xml::html_decode(text);
            }
            batch.clear();
        }
    }
}
