//! Readers turn input files into records with positions. Only CSV exists so far; every reader hashes the
//! bytes it reads so the manifest can name them without a second pass.

pub mod csv;
pub mod encoding;

use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};

use self::csv::{Batch, CsvReader, Dialect};
use self::encoding::{DecodeReader, Detected, Sniffed};
use crate::error::{FatalError, Position};
use crate::spec::{CsvDialect, Encoding};

/// The running BLAKE3 hash and size of an input, shared with the reader that feeds it.
#[derive(Clone, Default)]
pub struct InputHash(Arc<Mutex<(blake3::Hasher, u64)>>);

impl InputHash {
    /// Size in bytes and BLAKE3 hex of everything read so far.
    pub fn result(&self) -> (u64, String) {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (g.1, g.0.finalize().to_hex().to_string())
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
        g.0.update(&buf[..n]);
        g.1 += n as u64;
        Ok(n)
    }
}

/// An input opened for reading: its header, the reader positioned after it, and what was detected.
pub struct OpenedCsv {
    pub header: Vec<String>,
    pub reader: CsvReader<Box<dyn Read + Send>>,
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
    if d.max_record_bytes < 1024 || d.max_record_bytes > (1 << 32) {
        errors.push((
            "max_record_bytes".into(),
            "expected 1024 to 4294967296".into(),
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

/// Opens a CSV input (`-` is standard input): sniffs the encoding, starts hashing, reads the header.
pub fn open_csv(
    path: &std::path::Path,
    display: &str,
    encoding: Encoding,
    dialect: &Dialect,
    spec: &CsvDialect,
) -> Result<OpenedCsv, FatalError> {
    let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| FatalError::io(path, e))?)
    };
    let hash = InputHash::default();
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
    let mut reader = CsvReader::new(stream, dialect.clone(), display, sniffed.bom_len as u64);
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
    Ok(OpenedCsv {
        header,
        reader,
        sniffed,
        hash,
    })
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
