//! Incremental runs. Every run leaves, per entity with a primary key, the state of its rows:
//! `state/<entity>.rows`, each written row's key and a 128-bit hash of the row. A later run given
//! `--since` that folder compares each row it writes with it, and writes what changed:
//! `changes/<entity>.insert.<ext>` and `.update.<ext>` (whole rows, in the entity's format),
//! `changes/<entity>.delete.csv` (the keys of rows that are gone), and per load target the same as data
//! files that `changes/load/<dialect>/apply.sql` applies.
//!
//! The state file: the line `crm-etl rows 1`, then per row a 4-byte little-endian key length, the key
//! (the primary-key columns as a canonical CSV row, as in dataset digests) and the first 16 bytes of the
//! row's digest hash. Memory while comparing is proportional to the earlier run's keys, not its rows.

use std::path::Path;

use crate::error::FatalError;
use crate::keyset::KeySet;
use crate::manifest::OutputEntry;
use crate::map::MappedChunk;
use crate::spec::Dialect;
use crate::target::{pgcopy, script};
use crate::types::FieldType;
use crate::write::{AtomicFile, RowWriter, Sink};

const MAGIC: &[u8] = b"crm-etl rows 1\n";

/// Path of an entity's row state, relative to the output folder.
pub fn state_file(entity: &str) -> String {
    format!("state/{entity}.rows")
}

/// Path of an entity's change file of `kind` (`insert`, `update`, `delete`) with extension `ext`.
pub fn change_file(entity: &str, kind: &str, ext: &str) -> String {
    format!("changes/{entity}.{kind}.{ext}")
}

/// Path of an entity's change data file for a load target: `upsert` rows or `delete` keys.
pub fn change_data_file(d: Dialect, entity: &str, kind: &str) -> String {
    let ext = match d {
        Dialect::Postgres => "pgcopy",
        Dialect::Mysql => "tsv",
        Dialect::Sqlite => "sql",
    };
    format!("changes/load/{}/{entity}.{kind}.{ext}", d.name())
}

fn key_hash(key: &[u8]) -> [u64; 2] {
    let h = xxhash_rust::xxh3::xxh3_128(key);
    [(h >> 64) as u64, h as u64]
}

fn hash16(h: &[u64; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&h[0].to_le_bytes());
    out[8..].copy_from_slice(&h[1].to_le_bytes());
    out
}

/// An earlier run's rows of one entity: its state file as read, a table from each key's 128-bit hash
/// to the row, and a mark for each row seen again. About 75 bytes per key (27 of them the table).
pub struct Previous {
    bytes: Vec<u8>,
    /// Per row: where its record starts in `bytes`.
    starts: Vec<usize>,
    index: KeySet,
    seen: Vec<bool>,
}

impl Previous {
    /// Reads `dir/state/<entity>.rows`; None when that run left no state for the entity (it did not
    /// exist then: every row is an insert).
    pub fn load(dir: &Path, entity: &str) -> Result<Option<Previous>, FatalError> {
        let path = dir.join(state_file(entity));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FatalError::io(&path, e)),
        };
        if !bytes.starts_with(MAGIC) {
            return Err(damaged(&path, 0));
        }
        let mut starts = Vec::new();
        let mut at = MAGIC.len();
        while at < bytes.len() {
            let (_, _, next) = record(&bytes, at).ok_or_else(|| damaged(&path, at))?;
            starts.push(at);
            at = next;
        }
        let mut index = KeySet::default();
        index.reserve(starts.len());
        for (i, &at) in starts.iter().enumerate() {
            let (key, _, _) = record(&bytes, at).ok_or_else(|| damaged(&path, at))?;
            index.insert(key_hash(key), i as u64 + 1);
        }
        Ok(Some(Previous {
            seen: vec![false; starts.len()],
            bytes,
            starts,
            index,
        }))
    }

    /// The earlier row of `key`, marked as seen: its row hash.
    fn take(&mut self, key: &[u8]) -> Option<[u8; 16]> {
        let i = self.index.get(key_hash(key))? as usize - 1;
        // A key seen twice in one run is rejected as a duplicate before it gets here.
        self.seen[i] = true;
        record(&self.bytes, self.starts[i]).map(|(_, h, _)| h)
    }

    /// Keys of the earlier rows not seen in this run, in the earlier run's order.
    fn unseen(&self) -> impl Iterator<Item = &[u8]> {
        self.starts
            .iter()
            .zip(&self.seen)
            .filter(|(_, seen)| !**seen)
            .filter_map(|(&at, _)| record(&self.bytes, at).map(|(k, _, _)| k))
    }
}

/// The record at `at` of a state file: key, row hash, and where the next record starts.
fn record(bytes: &[u8], at: usize) -> Option<(&[u8], [u8; 16], usize)> {
    let len = bytes.get(at..at + 4)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let key = bytes.get(at + 4..at + 4 + len)?;
    let hash: [u8; 16] = bytes.get(at + 4 + len..at + 20 + len)?.try_into().ok()?;
    Some((key, hash, at + 20 + len))
}

fn damaged(path: &Path, at: usize) -> FatalError {
    FatalError::Usage(format!(
        "{}: not a crm-etl row state file (damaged at byte {at})",
        path.display()
    ))
}

/// What a `--since` run found for one entity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeCounts {
    pub insert: u64,
    pub update: u64,
    pub delete: u64,
    pub unchanged: u64,
}

/// One load target's change data files for an entity.
struct TargetChanges {
    dialect: Dialect,
    upsert: RowWriter,
    delete: RowWriter,
    /// SQLite rows name their table: the full load's (`INSERT INTO x VALUES`) and the staging table's.
    sqlite_prefix: Option<(Vec<u8>, Vec<u8>)>,
}

/// The change files of one entity.
struct Changes {
    prev: Option<Previous>,
    insert: RowWriter,
    update: RowWriter,
    targets: Vec<TargetChanges>,
    counts: ChangeCounts,
    ext: String,
}

/// Records one entity's rows as the writer accepts them: their state for later runs and, with an
/// earlier run, what changed since.
pub struct Tracker {
    entity: String,
    state: AtomicFile,
    /// State records not yet written: the file (and its hasher) take them in large pieces.
    pending: Vec<u8>,
    rows: u64,
    changes: Option<Changes>,
    /// The primary key's columns and types, for the delete files.
    key_names: Vec<String>,
    key_types: Vec<FieldType>,
}

/// Where the change files of an entity go, and how its rows are encoded.
pub struct ChangeSpec<'a> {
    pub prev: Option<Previous>,
    /// A writer for an entity output file at a path (relative to the output folder).
    pub open: &'a dyn Fn(&str) -> Result<RowWriter, FatalError>,
    pub ext: &'a str,
    /// Load targets of the run, in the plan's order, and the table a full load's rows go into (as
    /// the dialect quotes it).
    pub targets: &'a [(Dialect, String)],
}

impl Tracker {
    pub fn new(
        out: &Path,
        entity: &str,
        key_names: Vec<String>,
        key_types: Vec<FieldType>,
        since: Option<ChangeSpec<'_>>,
    ) -> Result<Tracker, FatalError> {
        let mut state = AtomicFile::create(&out.join(state_file(entity)))?;
        state.write_bytes(MAGIC)?;
        let changes = match since {
            None => None,
            Some(spec) => {
                let mut targets = Vec::new();
                for (d, into) in spec.targets {
                    let sink = |kind: &str| -> Result<Sink, FatalError> {
                        Ok(Sink::File(Box::new(AtomicFile::create(
                            &out.join(change_data_file(*d, entity, kind)),
                        )?)))
                    };
                    let (head, foot) = match d {
                        Dialect::Postgres => (pgcopy::HEADER.to_vec(), pgcopy::TRAILER.to_vec()),
                        _ => (Vec::new(), Vec::new()),
                    };
                    let csv = crate::spec::OutputFormat::Csv;
                    targets.push(TargetChanges {
                        dialect: *d,
                        upsert: RowWriter::new(sink("upsert")?, csv, &head, foot.clone())?,
                        delete: RowWriter::new(sink("delete")?, csv, &head, foot)?,
                        sqlite_prefix: (*d == Dialect::Sqlite).then(|| {
                            let stage = crate::target::ident(*d, &script::stage_table(entity));
                            (
                                format!("INSERT INTO {into} VALUES").into_bytes(),
                                format!("INSERT INTO {stage} VALUES").into_bytes(),
                            )
                        }),
                    });
                }
                Some(Changes {
                    prev: spec.prev,
                    insert: (spec.open)(&change_file(entity, "insert", spec.ext))?,
                    update: (spec.open)(&change_file(entity, "update", spec.ext))?,
                    targets,
                    counts: ChangeCounts::default(),
                    ext: spec.ext.to_string(),
                })
            }
        };
        Ok(Tracker {
            entity: entity.to_string(),
            state,
            pending: Vec::with_capacity(1 << 20),
            rows: 0,
            changes,
            key_names,
            key_types,
        })
    }

    /// Records written row `k` of `chunk`, whose output bytes are `main`.
    pub fn row(&mut self, chunk: &MappedChunk, k: usize, main: &[u8]) -> Result<(), FatalError> {
        let from = k.checked_sub(1).map_or(0, |p| chunk.track_ends[p]);
        let key = &chunk.track_keys[from..chunk.track_ends[k]];
        let mut hash = chunk.hashes.get(k).map(hash16).unwrap_or_default();
        // Deferred references are written as null and set later: the row's state includes their
        // values as read, so that a changed reference makes the row an update.
        let first = chunk.deferred.partition_point(|d| d.row < k);
        let refs = chunk.deferred[first..].iter().take_while(|d| d.row == k);
        if chunk.deferred.get(first).is_some_and(|d| d.row == k) {
            let mut h = blake3::Hasher::new();
            h.update(&hash);
            for d in refs {
                let text = &chunk.deferred_texts[d.text.0..d.text.1];
                h.update(&(d.field as u32).to_le_bytes());
                h.update(&(text.len() as u32).to_le_bytes());
                h.update(text.as_bytes());
            }
            hash.copy_from_slice(&h.finalize().as_bytes()[..16]);
        }
        self.pending
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(key);
        self.pending.extend_from_slice(&hash);
        if self.pending.len() >= 1 << 20 {
            self.state.write_bytes(&self.pending)?;
            self.pending.clear();
        }
        self.rows += 1;
        let Some(c) = self.changes.as_mut() else {
            return Ok(());
        };
        let old = c.prev.as_mut().and_then(|p| p.take(key));
        let w = match old {
            None => {
                c.counts.insert += 1;
                &mut c.insert
            }
            Some(h) if h != hash => {
                c.counts.update += 1;
                &mut c.update
            }
            Some(_) => {
                c.counts.unchanged += 1;
                return Ok(());
            }
        };
        if w.per_row() {
            w.write_row(main)?;
        } else {
            w.write_rows(main, 1)?;
        }
        for (t, rows) in c.targets.iter_mut().zip(&chunk.targets) {
            let from = k.checked_sub(1).map_or(0, |p| rows.ends[p]);
            let bytes = &rows.out[from..rows.ends[k]];
            match &t.sqlite_prefix {
                Some((full, stage)) if bytes.starts_with(full) => {
                    let mut b = stage.clone();
                    b.extend_from_slice(&bytes[full.len()..]);
                    t.upsert.write_rows(&b, 1)?;
                }
                _ => t.upsert.write_rows(bytes, 1)?,
            }
        }
        Ok(())
    }

    /// Writes the deletes (keys of the earlier run not seen in this one) and finishes every file.
    pub fn finish(mut self, out: &Path) -> Result<Finished, FatalError> {
        let mut files = Vec::new();
        self.state.write_bytes(&self.pending)?;
        let (bytes, blake3) = self.state.finish()?;
        files.push(OutputEntry {
            path: state_file(&self.entity),
            bytes,
            rows: self.rows,
            blake3,
        });
        let Some(mut c) = self.changes else {
            return Ok(Finished {
                files,
                counts: None,
            });
        };
        let del_path = change_file(&self.entity, "delete", "csv");
        let mut header = Vec::new();
        crate::digest::material_of(
            &self
                .key_names
                .iter()
                .map(|n| Some(n.as_str()))
                .collect::<Vec<_>>(),
            &mut header,
        );
        let mut del = RowWriter::new(
            Sink::File(Box::new(AtomicFile::create(&out.join(&del_path))?)),
            crate::spec::OutputFormat::Csv,
            &header,
            Vec::new(),
        )?;
        if let Some(p) = &c.prev {
            let mut row = Vec::new();
            for key in p.unseen() {
                del.write_rows(key, 1)?;
                c.counts.delete += 1;
                let values = crate::digest::parse_material(key);
                for t in &mut c.targets {
                    row.clear();
                    encode_key(t.dialect, &self.entity, &self.key_types, &values, &mut row);
                    t.delete.write_rows(&row, 1)?;
                }
            }
        }
        let mut finish = |w: RowWriter, path: String| -> Result<(), FatalError> {
            files.extend(crate::manifest::finish_output(w, path)?);
            Ok(())
        };
        finish(c.insert, change_file(&self.entity, "insert", &c.ext))?;
        finish(c.update, change_file(&self.entity, "update", &c.ext))?;
        finish(del, del_path)?;
        for t in c.targets {
            finish(
                t.upsert,
                change_data_file(t.dialect, &self.entity, "upsert"),
            )?;
            finish(
                t.delete,
                change_data_file(t.dialect, &self.entity, "delete"),
            )?;
        }
        Ok(Finished {
            files,
            counts: Some(c.counts),
        })
    }
}

/// One deleted key as a row of a target's delete file (into the staging table of deleted keys).
fn encode_key(
    d: Dialect,
    entity: &str,
    types: &[FieldType],
    values: &[Option<String>],
    out: &mut Vec<u8>,
) {
    match d {
        Dialect::Postgres => {
            pgcopy::row_start(values.len(), out);
            for (v, ty) in values.iter().zip(types) {
                pgcopy::value(*ty, v.as_deref(), out);
            }
        }
        Dialect::Mysql => {
            for (i, (v, ty)) in values.iter().zip(types).enumerate() {
                if i > 0 {
                    out.push(b'\t');
                }
                crate::target::tsv_value(d, *ty, v.as_deref(), out);
            }
            out.push(b'\n');
        }
        Dialect::Sqlite => {
            out.extend_from_slice(
                format!(
                    "INSERT INTO {} VALUES(",
                    crate::target::ident(d, &script::delete_table(entity))
                )
                .as_bytes(),
            );
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match v {
                    // The staging table's column affinity (INTEGER, REAL, ...) converts the text.
                    Some(v) => crate::target::sqlite_text(v, out),
                    None => out.extend_from_slice(b"NULL"),
                }
            }
            out.extend_from_slice(b");\n");
        }
    }
}

/// The files an entity's tracking wrote, and its change counts when the run was incremental.
pub struct Finished {
    pub files: Vec<OutputEntry>,
    pub counts: Option<ChangeCounts>,
}
