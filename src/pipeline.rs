//! The batch driver for one input file: a reader thread fills batches, rayon maps each batch in chunks,
//! and a writer thread checks uniqueness and writes rows and rejects in input order. Chunk sizes do not
//! depend on the thread count, and results are consumed in order, so output bytes never do either.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};

use crate::error::{FatalError, FieldError, Position, RejectCode};
use crate::keyset::{KeySet, REPEATED};
use crate::map::{key_text, map_chunk, MappedChunk, Reject, RowOutcome};
use crate::plan::EntityPlan;
use crate::read::csv::Batch;
use crate::read::RecordReader;
use crate::relate::KeyIndex;
use crate::write::{RejectsWriter, RowWriter};

/// Records per chunk handed to one rayon task: a sixteenth of the batch (JSON and XML batches hold fewer,
/// larger records than CSV ones), within bounds. It depends on the batch only, never on the thread count.
fn chunk_records(batch_len: usize) -> usize {
    batch_len.div_ceil(16).clamp(32, 512)
}
/// A batch is sent on when it holds this many records or field bytes.
const BATCH_RECORDS: usize = 4 * 1024;
const BATCH_BYTES: usize = 1 << 20;

fn split_key(k: u128) -> [u64; 2] {
    [(k >> 64) as u64, k as u64]
}

/// How repeated keys are told apart: the default keeps the first; `last` and `reject` first run a pass
/// that only collects, per key, its last row and whether it repeats, then apply it.
#[derive(Default)]
pub enum Dups {
    #[default]
    First,
    /// The pre-pass: per unique set, key -> last row (with [`REPEATED`]).
    Collect(Vec<KeySet>),
    /// Keep only each key's last row.
    Last(Vec<KeySet>),
    /// Reject every row of a repeated key.
    Shared(Vec<KeySet>),
}

/// Counts and uniqueness state of one entity, across all its input files.
#[derive(Default)]
pub struct EntityState {
    seen: Vec<KeySet>,
    pub dups: Dups,
    /// Deferred reference values of written rows, for the updates file.
    pub spill: Option<crate::defer::Spill>,
    /// The first rejects, kept for `run --dry-run`.
    pub samples: Vec<(String, Reject)>,
    /// Order-independent digest of the written rows.
    pub digest: crate::digest::Digest,
    /// Progress shown on stderr, if any.
    pub progress: Option<crate::progress::Step>,
    /// The rows' state for later incremental runs, and the changes against an earlier one.
    pub track: Option<crate::since::Tracker>,
    /// Indexes for the entities that reference this one, one per `plan.index_by`.
    pub indexes: Vec<KeyIndex>,
    /// Per field name: orphan references written as null or kept.
    pub orphans: BTreeMap<String, u64>,
    /// Per field name: values absent from the value map, kept, made null or defaulted.
    pub unmapped: BTreeMap<String, u64>,
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// Rejected records per field of their first error (empty: the record as a whole).
    pub by_field: BTreeMap<String, u64>,
}

/// Where rejects go: a rejects file, nowhere because any reject is fatal, or only counted (a dry run,
/// which keeps a few samples, and the duplicate pre-pass).
pub enum RejectSink<'a> {
    File(&'a mut RejectsWriter),
    Fatal,
    Count,
}

/// Rejects a dry run shows per entity.
pub const SAMPLES: usize = 5;

/// The reader-thread loop: fills batches (reusing those sent back on `free`) and sends them on `full`
/// until the input ends or fails; a failure is sent as the last message.
pub fn fill_batches(
    reader: &mut RecordReader,
    full: &mpsc::SyncSender<Result<Batch, FatalError>>,
    free: &mpsc::Receiver<Batch>,
) {
    if let Some(b) = reader.pending.take() {
        if full.send(Ok(b)).is_err() {
            return;
        }
    }
    loop {
        let mut b = free.try_recv().unwrap_or_default();
        b.clear();
        let mut more = true;
        // CSV batches hold field bytes and raw records; JSON and XML batches raw records only.
        while b.len() < BATCH_RECORDS && b.data.len().max(b.raw.len()) < BATCH_BYTES {
            match reader.read_record(&mut b) {
                Ok(true) => {}
                Ok(false) => {
                    more = false;
                    break;
                }
                Err(e) => {
                    let _ = full.send(Err(e));
                    return;
                }
            }
        }
        if (!b.is_empty() && full.send(Ok(b)).is_err()) || !more {
            return;
        }
    }
}

/// Maps every record of one opened file into `writer`.
#[allow(clippy::too_many_arguments)]
pub fn pump(
    mut reader: RecordReader,
    plan: &EntityPlan,
    display: &str,
    pool: &rayon::ThreadPool,
    writer: &mut Outputs,
    mut rejects: RejectSink<'_>,
    state: &mut EntityState,
    size_hint: Option<u64>,
) -> Result<(), FatalError> {
    let sets = match &mut state.dups {
        Dups::First => &mut state.seen,
        Dups::Collect(s) | Dups::Last(s) | Dups::Shared(s) => s,
    };
    if sets.len() < plan.unique.len() {
        sets.resize_with(plan.unique.len(), KeySet::default);
    }
    if state.indexes.len() < plan.index_by.len() {
        state
            .indexes
            .resize_with(plan.index_by.len(), KeyIndex::default);
    }
    let mut sized = plan.unique.is_empty() && plan.index_by.is_empty();
    let (full_tx, full_rx) = mpsc::sync_channel::<Result<Batch, FatalError>>(2);
    let (free_tx, free_rx) = mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        scope.spawn(move || fill_batches(&mut reader, &full_tx, &free_rx));
        // Writing (uniqueness checks, hashing, system calls) is sequential: it runs on its own thread and
        // takes each batch's chunks in order as they are mapped, each from its own one-shot channel.
        let (mapped_tx, mapped_rx) = mpsc::sync_channel::<Mapping>(BATCHES_AHEAD);
        let writing = scope.spawn(move || -> Result<(), FatalError> {
            for (batch, chunks) in mapped_rx {
                if !sized {
                    // Growing a large key map by doubling costs time and, for a while, twice the memory:
                    // size it once from the file size and the first batch's bytes per record.
                    sized = true;
                    if let (Some(total), false) = (size_hint, batch.raw.is_empty()) {
                        let per_record = (batch.raw.len() / batch.len()).max(1) as u64;
                        let expect = (total / per_record).min(1 << 30) as usize;
                        if let Dups::First | Dups::Collect(_) = state.dups {
                            let sets = match &mut state.dups {
                                Dups::Collect(s) => s,
                                _ => &mut state.seen,
                            };
                            for m in sets {
                                m.reserve(expect);
                            }
                        }
                        for m in &mut state.indexes {
                            m.reserve(expect);
                        }
                    }
                }
                let per_chunk = chunk_records(batch.len());
                for (c, chunk) in chunks.iter().enumerate() {
                    // A sender dropped unsent is a mapping task that panicked; the scope re-raises it.
                    let chunk = chunk.recv().map_err(|_| {
                        FatalError::Internal("a mapping task stopped without a result".into())
                    })?;
                    write_chunk(
                        plan,
                        display,
                        &batch,
                        c * per_chunk,
                        &chunk,
                        writer,
                        &mut rejects,
                        state,
                    )?;
                }
                if let Some(p) = state.progress.as_mut() {
                    p.update(state.read);
                }
                // Every task dropped its share of the batch before sending its chunk: it is free again.
                if let Ok(batch) = Arc::try_unwrap(batch) {
                    let _ = free_tx.send(batch);
                }
            }
            Ok(())
        });
        // Chunks are spawned onto the pool batch after batch, without waiting for a batch to finish: a
        // barrier per batch left a core idle while the batch's last chunk ran on the other (about a
        // twentieth of a run). The bounded channel to the writer keeps at most a few batches in flight.
        let mapping = || -> Result<(), FatalError> {
            pool.in_place_scope(|tasks| {
                for msg in full_rx {
                    let batch = Arc::new(msg?);
                    let per_chunk = chunk_records(batch.len());
                    let chunks = (0..batch.len().div_ceil(per_chunk))
                        .map(|c| {
                            let (tx, rx) = mpsc::sync_channel(1);
                            let batch = Arc::clone(&batch);
                            tasks.spawn(move |_| {
                                let end = ((c + 1) * per_chunk).min(batch.len());
                                let out =
                                    map_chunk(plan, &batch, &batch.records[c * per_chunk..end]);
                                drop(batch);
                                // The writer stopped on an error if it no longer listens.
                                let _ = tx.send(out);
                            });
                            rx
                        })
                        .collect();
                    if mapped_tx.send((batch, chunks)).is_err() {
                        // The writer stopped on an error, which its join reports.
                        break;
                    }
                }
                Ok(())
            })
        };
        let mapped = mapping();
        drop(mapped_tx);
        let written = writing
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        // A write error comes first: it may be why mapping stopped.
        written.and(mapped)
    })
}

/// A batch on its way to the writer, with one receiver per chunk, in order.
type Mapping = (Arc<Batch>, Vec<mpsc::Receiver<MappedChunk>>);

/// Batches mapped or being mapped ahead of the one the writer is at (besides the one being sent).
const BATCHES_AHEAD: usize = 1;

/// The writers of one entity: its output file, one data file per load target, and one file per
/// further output format.
pub struct Outputs {
    pub main: RowWriter,
    pub targets: Vec<RowWriter>,
    pub also: Vec<RowWriter>,
}

impl Outputs {
    pub fn new(main: RowWriter) -> Outputs {
        Outputs {
            main,
            targets: Vec::new(),
            also: Vec::new(),
        }
    }
}

/// A run of consecutive written rows `first..` of a chunk, flushed as one buffer per output.
struct Run {
    first: usize,
    bytes_from: usize,
    rows: u64,
}

impl Run {
    /// Writes rows `first..end` (whose main bytes end at `bytes_to`) and starts the next run at `next`.
    fn flush(
        &mut self,
        out: &mut Outputs,
        chunk: &MappedChunk,
        end: usize,
        bytes_to: usize,
        next: (usize, usize),
        state: &mut EntityState,
    ) -> Result<(), FatalError> {
        if self.rows > 0 {
            state.written += self.rows;
            let bytes = &chunk.out[self.bytes_from..bytes_to];
            if out.main.per_row() {
                // Runs of a JSON array are single rows (see `write_chunk`).
                debug_assert_eq!(self.rows, 1);
                out.main.write_row(bytes)?;
            } else {
                out.main.write_rows(bytes, self.rows)?;
            }
            for (w, t) in out.targets.iter_mut().zip(&chunk.targets) {
                let from = self.first.checked_sub(1).map_or(0, |r| t.ends[r]);
                w.write_rows(&t.out[from..t.ends[end - 1]], self.rows)?;
            }
            for (w, t) in out.also.iter_mut().zip(&chunk.also) {
                let mut from = self.first.checked_sub(1).map_or(0, |r| t.ends[r]);
                if w.per_row() {
                    // A JSON array's rows, one at a time for their separators.
                    for &to in &t.ends[self.first..end] {
                        w.write_row(&t.out[from..to])?;
                        from = to;
                    }
                } else {
                    w.write_rows(&t.out[from..t.ends[end - 1]], self.rows)?;
                }
            }
        }
        *self = Run {
            first: next.0,
            bytes_from: next.1,
            rows: 0,
        };
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn write_chunk(
    plan: &EntityPlan,
    display: &str,
    batch: &Batch,
    base: usize,
    chunk: &MappedChunk,
    out: &mut Outputs,
    rejects: &mut RejectSink<'_>,
    state: &mut EntityState,
) -> Result<(), FatalError> {
    let n = chunk.rows.len() as u64;
    let read_before = state.read;
    state.read += n;
    for (counts, into) in [
        (&chunk.orphans, &mut state.orphans),
        (&chunk.unmapped, &mut state.unmapped),
    ] {
        for (i, &o) in counts.iter().enumerate() {
            if o > 0 {
                *into.entry(plan.fields[i].name.clone()).or_default() += o;
            }
        }
    }
    // Fast path: nothing to check row by row.
    if chunk.rejects.is_empty()
        && plan.unique.is_empty()
        && plan.index_by.is_empty()
        && chunk.deferred.is_empty()
        && state.track.is_none()
        && !out.main.per_row()
    {
        for h in &chunk.hashes {
            state.digest.add(h);
        }
        let mut run = Run {
            first: 0,
            bytes_from: 0,
            rows: n,
        };
        return run.flush(out, chunk, n as usize, chunk.out.len(), (0, 0), state);
    }
    // Accepted rows are contiguous in `chunk.out` (and in each target's bytes): write them in runs,
    // broken only by rejects, so the writers and their hashers see large buffers.
    let mut prev = 0;
    let mut run = Run {
        first: 0,
        bytes_from: 0,
        rows: 0,
    };
    let mut deferred = chunk.deferred.iter().peekable();
    // Written rows' keys follow one another in `chunk.keys`, this many per row.
    let stride = plan.unique.len() + 2 * plan.index_by.len();
    for (k, row) in chunk.rows.iter().enumerate() {
        let m = &batch.records[base + chunk.origin.get(k).map_or(k, |o| o.0 as usize)];
        match row {
            RowOutcome::Written { end, key_start, pk } => {
                let row_start = prev;
                prev = *end;
                if let Some(ahead) = chunk.keys.get(key_start + PREFETCH_ROWS * stride..) {
                    for (set, &key) in unique_sets(&state.dups, &state.seen).iter().zip(ahead) {
                        if key != 0 {
                            set.prefetch(split_key(key));
                        }
                    }
                }
                let keys = &chunk.keys[*key_start..*key_start + plan.unique.len()];
                // Rows are numbered over the entity's whole input: the same in both passes.
                let seq = read_before + k as u64 + 1;
                if let Some((u, message)) = duplicate(plan, state, keys, seq, m.number) {
                    run.flush(out, chunk, k, row_start, (k + 1, prev), state)?;
                    let r = Reject {
                        number: m.number,
                        line: m.line,
                        byte: m.byte,
                        errors: vec![FieldError {
                            field: plan.unique[u]
                                .fields
                                .iter()
                                .map(|&i| plan.fields[i].name.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            value: key_text(
                                plan,
                                batch,
                                m,
                                chunk.origin.get(k).map(|o| o.1),
                                &plan.unique[u].fields,
                            ),
                            code: RejectCode::Duplicate,
                            message,
                        }],
                        raw: batch.raw(m).to_vec(),
                        fatal: plan.strict,
                    };
                    reject(plan, display, &r, rejects, state)?;
                    continue;
                }
                if let Some(h) = chunk.hashes.get(k) {
                    state.digest.add(h);
                }
                if let Some(t) = state.track.as_mut() {
                    t.row(chunk, k, &chunk.out[row_start..prev])?;
                }
                if !plan.index_by.is_empty() {
                    let base = *key_start + plan.unique.len();
                    let target = &chunk.pk_texts[pk.0..pk.1];
                    for (k, ix) in state.indexes.iter_mut().enumerate() {
                        for key in &chunk.keys[base + 2 * k..base + 2 * k + 2] {
                            match *key {
                                0 => {}
                                key if plan.index_by[k].store_target => ix.insert(key, target),
                                key => ix.insert_present(key),
                            }
                        }
                    }
                }
                while deferred.peek().is_some_and(|d| d.row < k) {
                    deferred.next();
                }
                if let Some(spill) = state.spill.as_mut() {
                    let mut values = Vec::new();
                    let mut material: &[u8] = &[];
                    while let Some(d) = deferred.next_if(|d| d.row == k) {
                        values.push((d.field, &chunk.deferred_texts[d.text.0..d.text.1]));
                        material = &chunk.materials[d.material.0..d.material.1];
                    }
                    if !values.is_empty() {
                        spill.push(&chunk.pk_texts[pk.0..pk.1], &values, material)?;
                    }
                }
                if out.main.per_row() {
                    // One row at a time (a JSON array's separators): flush it as a run of its own.
                    run = Run {
                        first: k,
                        bytes_from: row_start,
                        rows: 1,
                    };
                    run.flush(out, chunk, k + 1, prev, (k + 1, prev), state)?;
                } else {
                    run.rows += 1;
                }
            }
            RowOutcome::Rejected(i) => {
                run.flush(out, chunk, k, prev, (k + 1, prev), state)?;
                reject(plan, display, &chunk.rejects[*i], rejects, state)?;
            }
        }
    }
    run.flush(out, chunk, chunk.rows.len(), prev, (0, 0), state)
}

/// How many written rows ahead of the one checked the writer prefetches key slots: enough for the
/// misses to overlap, few enough that the lines are still cached when their row comes.
const PREFETCH_ROWS: usize = 8;

/// The key sets that the duplicate policy probes, one per unique set.
fn unique_sets<'a>(dups: &'a Dups, seen: &'a [KeySet]) -> &'a [KeySet] {
    match dups {
        Dups::First => seen,
        Dups::Collect(s) | Dups::Last(s) | Dups::Shared(s) => s,
    }
}

/// Applies the duplicate policy to a row's keys: the unique set at fault and why, or None to keep it
/// (recording its keys).
fn duplicate(
    plan: &EntityPlan,
    state: &mut EntityState,
    keys: &[u128],
    seq: u64,
    number: u64,
) -> Option<(usize, String)> {
    let present = |(u, key): (usize, &u128)| (*key != 0).then(|| (u, split_key(*key)));
    match &mut state.dups {
        Dups::First if keys.len() == 1 => {
            // One key (the common case, a primary key): one probe that inserts or finds it. A lookup
            // and then an insert was two cache misses per row.
            let key = present((0, &keys[0]))?.1;
            let first = state.seen[0].insert(key, number)?;
            Some((
                0,
                format!(
                    "duplicate value for the {} (first seen in record {first})",
                    plan.unique[0].label
                ),
            ))
        }
        Dups::First => {
            let dup = keys.iter().enumerate().filter_map(present).find_map(|(u, key)| {
                state.seen[u].get(key).map(|first| (u, first))
            });
            if let Some((u, first)) = dup {
                return Some((
                    u,
                    format!(
                        "duplicate value for the {} (first seen in record {first})",
                        plan.unique[u].label
                    ),
                ));
            }
            for (u, key) in keys.iter().enumerate().filter_map(present) {
                state.seen[u].insert(key, number);
            }
            None
        }
        Dups::Collect(sets) => {
            for (u, key) in keys.iter().enumerate().filter_map(present) {
                sets[u].upsert(key, seq);
            }
            None
        }
        Dups::Last(sets) => keys
            .iter()
            .enumerate()
            .filter_map(present)
            .find(|(u, key)| sets[*u].get(*key).map(|v| v & !REPEATED) != Some(seq))
            .map(|(u, _)| {
                (
                    u,
                    format!(
                        "a later record has the same {} (duplicates = \"last\" keeps the last)",
                        plan.unique[u].label
                    ),
                )
            }),
        Dups::Shared(sets) => keys
            .iter()
            .enumerate()
            .filter_map(present)
            .find(|(u, key)| sets[*u].get(*key).is_some_and(|v| v & REPEATED != 0))
            .map(|(u, _)| {
                (
                    u,
                    format!(
                        "several records have the same {} (duplicates = \"reject\" rejects them all)",
                        plan.unique[u].label
                    ),
                )
            }),
    }
}

fn reject(
    plan: &EntityPlan,
    display: &str,
    r: &Reject,
    sink: &mut RejectSink<'_>,
    state: &mut EntityState,
) -> Result<(), FatalError> {
    let first = r.errors.first();
    if r.fatal || matches!(sink, RejectSink::Fatal) {
        let msg = first.map(ToString::to_string).unwrap_or_default();
        return Err(FatalError::BadRecord {
            pos: Position {
                file: display.to_string(),
                record: r.number,
                line: r.line,
                byte: r.byte,
            },
            message: format!("{msg} (entity {:?})", plan.name),
        });
    }
    state.rejected += 1;
    let code = first.map(|e| e.code.as_str()).unwrap_or("malformed");
    *state.by_reason.entry(code.to_string()).or_default() += 1;
    let field = first.map(|e| e.field.as_str()).unwrap_or("");
    *state.by_field.entry(field.to_string()).or_default() += 1;
    match sink {
        RejectSink::File(w) => w.write(display, r)?,
        RejectSink::Count if state.samples.len() < SAMPLES => {
            state.samples.push((display.to_string(), r.clone()))
        }
        _ => {}
    }
    Ok(())
}
