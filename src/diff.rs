//! `crm-etl diff OLD NEW --key COL`: what changed between two exports of one shape (CSV, JSON Lines,
//! JSON, XML), as inserted, updated (with the changed columns) and deleted records.
//!
//! Streaming, in memory proportional to the keys: the old file is read once to keep, per key, a
//! 128-bit hash of its row; the new file is read against that (inserts are written as they come,
//! updated rows are kept until the old file's second pass, which writes deletes and updates in the old
//! file's order). Only the updated rows' new values are held, besides the key table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::convert::{each_batch, open_flat, record_values, ConvertOptions};
use crate::error::{FatalError, Position};
use crate::read::csv::{Batch, RecordMeta};
use crate::write::encode::{csv_field, json_string};
use crate::write::AtomicFile;

/// Output format of the change files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffFormat {
    Csv,
    Jsonl,
}

/// What `diff` was asked to do: how to read both files, the key, where to write.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub old: ConvertOptions,
    pub new: ConvertOptions,
    pub key: Vec<String>,
    pub out: PathBuf,
    pub format: DiffFormat,
}

/// Counts of a diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
}

/// The maps' keys are already 128-bit hashes: their low bits serve as the table hash.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type KeyMap<V> = HashMap<u128, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// A key's old row: its hash, its record number (for messages), and what the new file said.
struct Seen {
    row: u128,
    number: u64,
    /// Where the record is in the old file, and its length (CSV; see `pick_old_rows`).
    at: u64,
    len: u32,
    /// Its record number in the new file, once seen there.
    new_number: u64,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not (yet) in the new file: a delete.
    Absent,
    Same,
    Updated,
}

/// The hash of a row's (or a key's) values, null and empty apart. The values are laid out in `buf`
/// (tag, length, bytes) and hashed in one call: a streaming hasher fed three small pieces per value
/// took twice as long.
fn hash_values<'a>(values: impl Iterator<Item = Option<&'a str>>, buf: &mut Vec<u8>) -> u128 {
    buf.clear();
    for v in values {
        match v {
            Some(t) => {
                buf.push(1);
                buf.extend_from_slice(&(t.len() as u64).to_le_bytes());
                buf.extend_from_slice(t.as_bytes());
            }
            None => buf.push(0),
        }
    }
    xxhash_rust::xxh3::xxh3_128(buf)
}

/// Per record of `batch`: the hash of its key and (with `rows`) of all its values, computed on the
/// thread pool in slices of the batch, while the reader thread splits the next one.
fn batch_hashes(
    extract: &crate::plan::Extract,
    width: usize,
    display: &str,
    batch: &Batch,
    key: &[usize],
    rows: bool,
) -> Result<Vec<(u128, u128)>, FatalError> {
    use rayon::prelude::*;
    let parts: Vec<Result<Vec<(u128, u128)>, FatalError>> = batch
        .records
        .par_chunks(2048)
        .map(|recs| {
            let mut ext = crate::read::json::Extracted::default();
            let mut buf = Vec::new();
            let mut out = Vec::with_capacity(recs.len());
            for m in recs {
                let mut vals = Vec::with_capacity(width);
                record_values(extract, width, display, batch, m, &mut ext, &mut vals)?;
                let k = hash_values(key.iter().map(|&i| vals[i]), &mut buf);
                let r = if rows {
                    hash_values(vals.iter().copied(), &mut buf)
                } else {
                    0
                };
                out.push((k, r));
            }
            Ok(out)
        })
        .collect();
    let mut all = Vec::with_capacity(batch.records.len());
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}

/// Copies the old CSV's header and the records that pass 3 needs (deleted and updated keys), in file
/// order, into a scratch file beside the outputs, and checks that it reads back as exactly those keys.
/// None when it does not (a transcoded or otherwise shifted file, whose record positions are not file
/// offsets): pass 3 then reads the whole old file. A diff with few changes reads a few megabytes
/// instead of the old file a second time.
fn pick_old_rows(
    old: &ConvertOptions,
    out: &Path,
    seen: &KeyMap<Seen>,
    first_at: u64,
    key: &[usize],
) -> Result<Option<PathBuf>, FatalError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut want: Vec<(u64, u32, u128)> = seen
        .iter()
        .filter(|(_, s)| matches!(s.state, State::Absent | State::Updated))
        .map(|(k, s)| (s.at, s.len, *k))
        .collect();
    want.sort_unstable();
    let src = Path::new(&old.input);
    let mut f = std::fs::File::open(src).map_err(|e| FatalError::io(src, e))?;
    let path = out.join(format!(".diff-old-rows.tmp-{}", std::process::id()));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| FatalError::io(&path, e))?,
    );
    let mut copy = |at: u64, len: u64, newline: bool| -> std::io::Result<()> {
        let mut buf = vec![0u8; len as usize];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut buf)?;
        w.write_all(&buf)?;
        if newline {
            w.write_all(b"\n")?;
        }
        Ok(())
    };
    let copied = copy(0, first_at, false)
        .and_then(|()| {
            want.iter()
                .try_for_each(|&(at, len, _)| copy(at, u64::from(len), true))
        })
        .and_then(|()| w.flush());
    drop(w);
    if copied.is_err() {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    // The check: the scratch file's records are the wanted keys, in order.
    let opts = ConvertOptions {
        input: path.display().to_string(),
        progress: crate::progress::Mode::Off,
        ..old.clone()
    };
    let mut got = Vec::with_capacity(want.len());
    let checked = open_flat(&opts).and_then(|mut input| {
        let (extract, width) = (&input.extract, input.header.len());
        let display = opts.input.clone();
        each_batch(&mut input.opened, input.progress, &display, |batch| {
            for (k, _) in batch_hashes(extract, width, &display, batch, key, false)? {
                got.push(k);
            }
            Ok(())
        })
    });
    let same =
        checked.is_ok() && got.len() == want.len() && got.iter().zip(&want).all(|(g, w)| *g == w.2);
    if !same {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(path))
}

/// One change file.
struct ChangeWriter {
    file: AtomicFile,
    format: DiffFormat,
    columns: Vec<String>,
    buf: Vec<u8>,
}

impl ChangeWriter {
    fn new(
        dir: &Path,
        name: &str,
        format: DiffFormat,
        columns: &[String],
        changed: bool,
    ) -> Result<Self, FatalError> {
        let ext = match format {
            DiffFormat::Csv => "csv",
            DiffFormat::Jsonl => "jsonl",
        };
        let mut file = AtomicFile::create(&dir.join(format!("{name}.{ext}")))?;
        let mut columns = columns.to_vec();
        if changed {
            columns.push("_changed".into());
        }
        if format == DiffFormat::Csv {
            let mut head = Vec::new();
            for (i, c) in columns.iter().enumerate() {
                if i > 0 {
                    head.push(b',');
                }
                csv_field(c.as_bytes(), false, &mut head);
            }
            head.push(b'\n');
            file.write_bytes(&head)?;
        }
        Ok(ChangeWriter {
            file,
            format,
            columns,
            buf: Vec::new(),
        })
    }

    /// Writes values (and, for updates, the changed column names).
    fn row(&mut self, values: &[Option<&str>], changed: Option<&[&str]>) -> Result<(), FatalError> {
        self.buf.clear();
        match self.format {
            DiffFormat::Csv => {
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    if let Some(t) = v {
                        csv_field(t.as_bytes(), true, &mut self.buf);
                    }
                }
                if let Some(c) = changed {
                    self.buf.push(b',');
                    csv_field(c.join(";").as_bytes(), true, &mut self.buf);
                }
            }
            DiffFormat::Jsonl => {
                self.buf.push(b'{');
                for (i, (v, name)) in values.iter().zip(&self.columns).enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    json_string(name, &mut self.buf);
                    self.buf.push(b':');
                    match v {
                        Some(t) => json_string(t, &mut self.buf),
                        None => self.buf.extend_from_slice(b"null"),
                    }
                }
                if let Some(c) = changed {
                    self.buf.extend_from_slice(b",\"_changed\":[");
                    for (i, name) in c.iter().enumerate() {
                        if i > 0 {
                            self.buf.push(b',');
                        }
                        json_string(name, &mut self.buf);
                    }
                    self.buf.push(b']');
                }
                self.buf.push(b'}');
            }
        }
        self.buf.push(b'\n');
        self.file.write_bytes(&self.buf)
    }
}

/// Runs a diff; the change files are written only when both inputs were read to the end.
pub fn diff(opts: &DiffOptions) -> Result<DiffCounts, FatalError> {
    let mut old = open_flat(&opts.old)?;
    let mut new = open_flat(&opts.new)?;
    if old.header != new.header {
        return Err(FatalError::Usage(format!(
            "diff: the files differ in shape: {} has columns {:?}, {} has {:?}",
            opts.old.input, old.header, opts.new.input, new.header
        )));
    }
    let key: Vec<usize> = opts
        .key
        .iter()
        .map(|k| {
            old.header.iter().position(|h| h == k).ok_or_else(|| {
                FatalError::Usage(format!(
                    "--key {k:?}: no such column{}",
                    crate::error::hint(k, old.header.iter().map(String::as_str))
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if key.is_empty() {
        return Err(FatalError::Usage("diff: give --key".into()));
    }
    let columns = old.header.clone();
    let dup = |display: &str, m: &RecordMeta, first: u64| FatalError::BadRecord {
        pos: Position {
            file: display.to_string(),
            record: m.number,
            line: m.line,
            byte: m.byte,
        },
        message: format!("the key repeats the key of record {first}; a diff needs unique keys"),
    };

    // Pass 1: the old rows' hashes by key.
    let mut seen: KeyMap<Seen> = KeyMap::default();
    let display = opts.old.input.as_str();
    let (extract, width) = (&old.extract, old.header.len());
    let mut first_at = None;
    each_batch(&mut old.opened, old.progress, display, |batch| {
        let hashes = batch_hashes(extract, width, display, batch, &key, true)?;
        if first_at.is_none() {
            first_at = batch.records.first().map(|m| m.byte);
        }
        for (m, (k, row)) in batch.records.iter().zip(hashes) {
            if let Some(s) = seen.get(&k) {
                return Err(dup(display, m, s.number));
            }
            seen.insert(
                k,
                Seen {
                    row,
                    number: m.number,
                    at: m.byte,
                    len: (m.raw_end - m.raw_start) as u32,
                    new_number: 0,
                    state: State::Absent,
                },
            );
        }
        Ok(())
    })?;

    std::fs::create_dir_all(&opts.out).map_err(|e| FatalError::io(&opts.out, e))?;
    let mut inserts = ChangeWriter::new(&opts.out, "insert", opts.format, &columns, false)?;
    let mut counts = DiffCounts::default();
    // Pass 2: the new file against them. Updated rows' new values wait for pass 3.
    let mut updated: KeyMap<Vec<Option<String>>> = KeyMap::default();
    let mut new_keys: KeyMap<u64> = KeyMap::default();
    let display = opts.new.input.as_str();
    let (extract, width) = (&new.extract, new.header.len());
    let mut ext = crate::read::json::Extracted::default();
    each_batch(&mut new.opened, new.progress, display, |batch| {
        let hashes = batch_hashes(extract, width, display, batch, &key, true)?;
        for (m, (k, row)) in batch.records.iter().zip(hashes) {
            let mut vals = Vec::new();
            match seen.get_mut(&k) {
                Some(s) if s.state != State::Absent => {
                    return Err(dup(display, m, s.new_number));
                }
                Some(s) => {
                    s.new_number = m.number;
                    if s.row == row {
                        s.state = State::Same;
                        counts.unchanged += 1;
                    } else {
                        s.state = State::Updated;
                        record_values(extract, width, display, batch, m, &mut ext, &mut vals)?;
                        updated.insert(k, vals.iter().map(|x| x.map(str::to_string)).collect());
                    }
                }
                None => {
                    if let Some(first) = new_keys.insert(k, m.number) {
                        return Err(dup(display, m, first));
                    }
                    counts.inserted += 1;
                    record_values(extract, width, display, batch, m, &mut ext, &mut vals)?;
                    inserts.row(&vals, None)?;
                }
            }
        }
        Ok(())
    })?;

    // Pass 3: the old file again, for deletes and the updates' changed columns, in its order: only
    // the records needed, when they can be picked out of it, else all of it.
    let picked = match (old.from, first_at) {
        (crate::spec::InputFormat::Csv, Some(first)) => {
            pick_old_rows(&opts.old, &opts.out, &seen, first, &key)?
        }
        _ => None,
    };
    let mut old = match &picked {
        Some(p) => open_flat(&ConvertOptions {
            input: p.display().to_string(),
            ..opts.old.clone()
        })?,
        None => open_flat(&opts.old)?,
    };
    let mut updates = ChangeWriter::new(&opts.out, "update", opts.format, &columns, true)?;
    let mut deletes = ChangeWriter::new(&opts.out, "delete", opts.format, &columns, false)?;
    let display = opts.old.input.as_str();
    let (extract, width) = (&old.extract, old.header.len());
    each_batch(&mut old.opened, old.progress, display, |batch| {
        let hashes = batch_hashes(extract, width, display, batch, &key, false)?;
        for (m, (k, _)) in batch.records.iter().zip(hashes) {
            let mut v = Vec::new();
            match seen.get(&k).map(|s| s.state) {
                Some(State::Absent) => {
                    counts.deleted += 1;
                    record_values(extract, width, display, batch, m, &mut ext, &mut v)?;
                    deletes.row(&v, None)?;
                }
                Some(State::Updated) => {
                    let Some(nv) = updated.get(&k) else {
                        continue;
                    };
                    counts.updated += 1;
                    record_values(extract, width, display, batch, m, &mut ext, &mut v)?;
                    let changed: Vec<&str> = columns
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| nv[*i].as_deref() != v[*i])
                        .map(|(_, c)| c.as_str())
                        .collect();
                    let new_values: Vec<Option<&str>> = nv.iter().map(|x| x.as_deref()).collect();
                    updates.row(&new_values, Some(&changed))?;
                }
                _ => {}
            }
        }
        Ok(())
    })?;
    if let Some(p) = &picked {
        let _ = std::fs::remove_file(p);
    }
    inserts.file.finish()?;
    updates.file.finish()?;
    deletes.file.finish()?;
    Ok(counts)
}
