//! `crm-etl diff OLD NEW --key COL`: what changed between two exports of one shape (CSV, JSON Lines,
//! JSON, XML), as inserted, updated (with the changed columns) and deleted records.
//!
//! Streaming, in memory proportional to the keys. Pass 1 reads both files at the same time, each on its
//! own reader thread, into a key table: per record, in file order, the 128-bit hashes of its key and of
//! its row, its record number and where it is in the file. Joining the two tables says what was
//! inserted, updated and deleted. Pass 2 then reads only those records again (picked out of each file
//! by their offsets, or the whole file where offsets do not apply) and writes inserts in the new file's
//! order, deletes and updates in the old file's. Only the updated rows' new values are held, besides
//! the key tables.

use std::path::{Path, PathBuf};

use crate::convert::{
    check_csv_record, csv_text, each_batch, open_flat, record_values, ConvertOptions,
};
use crate::error::FatalError;
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

/// The key hash's low bits, as a table hash: it is already a 128-bit hash.
fn low(k: u128) -> u64 {
    k as u64
}

/// A map from key hash to updated values; its keys are already hashes.
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
        self.0 = low(n);
    }
}

type KeyMap<V> = std::collections::HashMap<u128, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// One record of a key table. Hashes are kept as word pairs so that a record takes 56 bytes, not 64.
struct Rec {
    key: [u64; 2],
    row: [u64; 2],
    number: u64,
    /// Where the record is in the file, and its length (CSV; see `pick_rows`).
    at: u64,
    len: u32,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the old file and not in the new one: a delete.
    Absent,
    /// In the new file and not in the old one.
    Inserted,
    Same,
    Updated,
}

fn words(k: u128) -> [u64; 2] {
    [k as u64, (k >> 64) as u64]
}

fn joined(w: [u64; 2]) -> u128 {
    u128::from(w[0]) | (u128::from(w[1]) << 64)
}

/// One file's records by key: in file order, with an index from key hash to position (4 bytes a slot).
#[derive(Default)]
struct KeyTable {
    recs: Vec<Rec>,
    index: hashbrown::HashTable<u32>,
    /// Offset of the first record (the end of the header), for `pick_rows`.
    first_at: Option<u64>,
}

impl KeyTable {
    fn find(&self, k: u128) -> Option<usize> {
        let w = words(k);
        self.index
            .find(low(k), |&i| self.recs[i as usize].key == w)
            .map(|&i| i as usize)
    }

    /// Adds a record; Err(number of the earlier record) when its key was seen before. One probe of the
    /// index (a lookup and then an insert cost a tenth of the whole diff in cache misses).
    fn push(&mut self, k: u128, row: u128, m: &RecordMeta) -> Result<(), u64> {
        let w = words(k);
        // `key_table` stops before the index would overflow.
        let i = self.recs.len() as u32;
        let recs = &self.recs;
        match self.index.entry(
            low(k),
            |&j| recs[j as usize].key == w,
            |&j| recs[j as usize].key[0],
        ) {
            hashbrown::hash_table::Entry::Occupied(e) => return Err(recs[*e.get() as usize].number),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(i);
            }
        }
        self.recs.push(Rec {
            key: w,
            row: words(row),
            number: m.number,
            at: m.byte,
            len: (m.raw_end - m.raw_start) as u32,
            state: State::Absent,
        });
        Ok(())
    }
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

/// How row hashes are computed; both files of a diff use the same way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowHash {
    /// Not needed (pass 3 looks records up by key only).
    None,
    /// Through the record's values, for any format.
    Values,
    /// CSV read without trimming: a record's unescaped field bytes lie one after another in the batch,
    /// so its hash is one hash of them, seeded with the fields' lengths, and nothing is copied. (With
    /// trimming, the trimmed blanks lie between them.)
    CsvFields,
}

/// Per record of `batch`: the hash of its key and of its row (0 with `RowHash::None`), computed on the
/// thread pool in slices of the batch, while the reader thread splits the next one.
fn batch_hashes(
    extract: &crate::plan::Extract,
    width: usize,
    display: &str,
    batch: &Batch,
    key: &[usize],
    rows: RowHash,
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
                if rows == RowHash::CsvFields {
                    check_csv_record(width, display, batch, m)?;
                    // The key's hash as `hash_values` computes it, so that it matches the other ways.
                    let k = hash_values(key.iter().map(|&i| Some(csv_text(batch, m, i))), &mut buf);
                    buf.clear();
                    let mut h = xxhash_rust::xxh3::Xxh3::new();
                    for i in 0..width {
                        let field = batch.field(m, i);
                        // Lengths only separate the fields' bytes, which are hashed too; 4 bytes are plenty.
                        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
                        buf.extend_from_slice(&len.to_le_bytes());
                        h.update(field);
                    }
                    h.update(&buf);
                    let r = h.digest128();
                    out.push((k, r));
                    continue;
                }
                let mut vals = Vec::with_capacity(width);
                record_values(extract, width, display, batch, m, &mut ext, &mut vals)?;
                let k = hash_values(key.iter().map(|&i| vals[i]), &mut buf);
                let r = if rows == RowHash::Values {
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

/// Copies a CSV's header and the records of `table` whose state `want` accepts, in file order, into a
/// scratch file beside the outputs, and checks that it reads back as exactly those keys. None when it
/// does not (a transcoded or otherwise shifted file, whose record positions are not file offsets): pass 2
/// then reads the whole file. A diff with few changes reads a few megabytes instead of each file again.
fn pick_rows(
    opts: &ConvertOptions,
    out: &Path,
    table: &KeyTable,
    want: impl Fn(State) -> bool,
    key: &[usize],
) -> Result<Option<PathBuf>, FatalError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let Some(first_at) = table.first_at else {
        return Ok(None);
    };
    let wanted: Vec<&Rec> = table.recs.iter().filter(|r| want(r.state)).collect();
    let src = Path::new(&opts.input);
    let Ok(mut f) = std::fs::File::open(src) else {
        return Ok(None);
    };
    static SCRATCH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = out.join(format!(".diff-rows.tmp-{}-{n}", std::process::id()));
    let mut w = std::io::BufWriter::new(
        std::fs::File::create(&path).map_err(|e| FatalError::io(&path, e))?,
    );
    let mut buf = Vec::new();
    let mut copy = |at: u64, len: u64, newline: bool| -> std::io::Result<()> {
        buf.resize(len as usize, 0);
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
            wanted
                .iter()
                .try_for_each(|r| copy(r.at, u64::from(r.len), true))
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
        ..opts.clone()
    };
    let mut got = Vec::with_capacity(wanted.len());
    let checked = open_flat(&opts).and_then(|mut input| {
        let (extract, width) = (&input.extract, input.header.len());
        let display = opts.input.clone();
        each_batch(&mut input.opened, input.progress, &display, |batch| {
            for (k, _) in batch_hashes(extract, width, &display, batch, key, RowHash::None)? {
                got.push(words(k));
            }
            Ok(())
        })
    });
    let same = checked.is_ok()
        && got.len() == wanted.len()
        && got.iter().zip(&wanted).all(|(g, w)| *g == w.key);
    if !same {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(path))
}

/// Pass 1 over one file: its key table.
fn key_table(
    input: &mut crate::convert::FlatInput,
    display: &str,
    key: &[usize],
    rows: RowHash,
) -> Result<KeyTable, FatalError> {
    let mut table = KeyTable::default();
    let size = std::fs::metadata(display).map_or(0, |m| m.len());
    let (extract, width) = (&input.extract, input.header.len());
    each_batch(&mut input.opened, input.progress, display, |batch| {
        let hashes = batch_hashes(extract, width, display, batch, key, rows)?;
        if table.first_at.is_none() {
            table.first_at = batch.records.first().map(|m| m.byte);
            // Room for the whole file at this batch's record size, so that the table is not copied
            // as it grows.
            let per = batch.raw.len().max(1) / batch.records.len().max(1);
            let guess = (size as usize / per.max(1)).saturating_mul(21) / 20;
            table.recs.reserve(guess.min(1 << 28));
            table.index.reserve(guess.min(1 << 28), |_| 0);
        }
        for (m, (k, row)) in batch.records.iter().zip(hashes) {
            if table.recs.len() >= u32::MAX as usize {
                return Err(FatalError::Usage(format!(
                    "diff: {display} has more than {} records",
                    u32::MAX
                )));
            }
            if let Err(first) = table.push(k, row, m) {
                return Err(dup(display, m, first));
            }
        }
        Ok(())
    })?;
    Ok(table)
}

fn dup(display: &str, m: &RecordMeta, first: u64) -> FatalError {
    crate::convert::bad_record(
        display,
        m,
        format!("the key repeats the key of record {first}; a diff needs unique keys"),
    )
}

/// Pass 2 over one file: calls `f` with the key, state and values of each record that changed (the
/// picked ones, else those of the whole file), in file order.
fn each_changed(
    opts: &ConvertOptions,
    picked: &Option<PathBuf>,
    key: &[usize],
    table: &KeyTable,
    mut f: impl FnMut(u128, State, &[Option<&str>]) -> Result<(), FatalError>,
) -> Result<(), FatalError> {
    let mut ext = crate::read::json::Extracted::default();
    let mut input = reopen(opts, picked)?;
    let display = opts.input.as_str();
    let (extract, width) = (&input.extract, input.header.len());
    each_batch(&mut input.opened, input.progress, display, |batch| {
        let hashes = batch_hashes(extract, width, display, batch, key, RowHash::None)?;
        for (m, (k, _)) in batch.records.iter().zip(hashes) {
            if let Some(state @ (State::Inserted | State::Updated | State::Absent)) =
                table.find(k).map(|i| table.recs[i].state)
            {
                let mut vals = Vec::new();
                record_values(extract, width, display, batch, m, &mut ext, &mut vals)?;
                f(k, state, &vals)?;
            }
        }
        Ok(())
    })
}

/// Opens the records that pass 2 reads from one file: the picked ones, else the whole file.
fn reopen(
    opts: &ConvertOptions,
    picked: &Option<PathBuf>,
) -> Result<crate::convert::FlatInput, FatalError> {
    match picked {
        Some(p) => open_flat(&ConvertOptions {
            input: p.display().to_string(),
            ..opts.clone()
        }),
        None => open_flat(opts),
    }
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
    // Both files are read at once; only the old one shows progress, so that two bars do not fight
    // over the terminal.
    let mut new = open_flat(&ConvertOptions {
        progress: crate::progress::Mode::Off,
        ..opts.new.clone()
    })?;
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
    let csv_untrimmed = |o: &ConvertOptions, f: crate::spec::InputFormat| {
        f == crate::spec::InputFormat::Csv && !o.dialect.trim
    };
    let rows = if csv_untrimmed(&opts.old, old.from) && csv_untrimmed(&opts.new, new.from) {
        RowHash::CsvFields
    } else {
        RowHash::Values
    };

    // Pass 1: both key tables, each file on its own reader thread.
    let (old_t, new_t) = std::thread::scope(|scope| {
        let (new, key) = (&mut new, &key);
        let other = scope.spawn(move || key_table(new, &opts.new.input, key, rows));
        let mine = key_table(&mut old, &opts.old.input, key, rows);
        (
            mine,
            other
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e)),
        )
    });
    let (mut old_t, mut new_t) = (old_t?, new_t?);

    // The join.
    let mut counts = DiffCounts::default();
    for n in &mut new_t.recs {
        n.state = match old_t.find(joined(n.key)) {
            None => {
                counts.inserted += 1;
                State::Inserted
            }
            Some(j) => {
                let same = old_t.recs[j].row == n.row;
                let state = if same { State::Same } else { State::Updated };
                old_t.recs[j].state = state;
                if same {
                    counts.unchanged += 1;
                } else {
                    counts.updated += 1;
                }
                state
            }
        };
    }
    counts.deleted = old_t
        .recs
        .iter()
        .filter(|r| r.state == State::Absent)
        .count() as u64;

    std::fs::create_dir_all(&opts.out).map_err(|e| FatalError::io(&opts.out, e))?;
    let mut inserts = ChangeWriter::new(&opts.out, "insert", opts.format, &columns, false)?;
    let mut updates = ChangeWriter::new(&opts.out, "update", opts.format, &columns, true)?;
    let mut deletes = ChangeWriter::new(&opts.out, "delete", opts.format, &columns, false)?;
    let csv = |o: &crate::convert::FlatInput| o.from == crate::spec::InputFormat::Csv;
    let changed = |s: State| matches!(s, State::Inserted | State::Updated | State::Absent);
    let pick = |o: &ConvertOptions, f: &crate::convert::FlatInput, t: &KeyTable| {
        if csv(f) {
            pick_rows(o, &opts.out, t, changed, &key)
        } else {
            Ok(None)
        }
    };
    let picked_new = pick(&opts.new, &new, &new_t)?;
    let picked_old = pick(&opts.old, &old, &old_t)?;
    let result = (|| {
        // Pass 2, new file: inserts in its order; updated rows' new values wait for the old file.
        let mut updated: KeyMap<Vec<Option<String>>> = KeyMap::default();
        each_changed(&opts.new, &picked_new, &key, &new_t, |k, state, vals| {
            if state == State::Inserted {
                inserts.row(vals, None)?;
            } else {
                updated.insert(k, vals.iter().map(|x| x.map(str::to_string)).collect());
            }
            Ok(())
        })?;
        // Pass 2, old file: deletes, and updates with their changed columns, in its order.
        each_changed(&opts.old, &picked_old, &key, &old_t, |k, state, v| {
            if state == State::Absent {
                return deletes.row(v, None);
            }
            let Some(nv) = updated.get(&k) else {
                return Ok(());
            };
            let changed: Vec<&str> = columns
                .iter()
                .enumerate()
                .filter(|(i, _)| nv[*i].as_deref() != v[*i])
                .map(|(_, c)| c.as_str())
                .collect();
            let new_values: Vec<Option<&str>> = nv.iter().map(|x| x.as_deref()).collect();
            updates.row(&new_values, Some(&changed))
        })
    })();
    for p in [&picked_new, &picked_old].into_iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    result?;
    inserts.file.finish()?;
    updates.file.finish()?;
    deletes.file.finish()?;
    Ok(counts)
}
