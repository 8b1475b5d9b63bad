//! `crm-etl run`: every entity of a mapping, in order, from its source files to its output file, then the
//! checksums and, last, the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::defer::{spill_path, Spill};
use crate::error::{FatalError, SpecErrors};
use crate::load;
use crate::manifest::UpdatesEntry;
use crate::manifest::{self, EntityEntry, FileRef, InputEntry, Manifest, OutputEntry};
use crate::map::Reject;
use crate::pipeline::{pump, Dups, EntityState, RejectSink};
use crate::plan::compile_entity;
use crate::plan::{columns_used, xml_out};
use crate::read::{expand, open_input, InputKind};
use crate::relate::{salesforce_15, text_key};
use crate::spec::{Duplicates, Entity, Orphans};
use std::collections::HashMap;
use std::sync::Arc;

use crate::pipeline::Outputs;
use crate::plan::IndexBy;
use crate::relate::{self, KeyIndex};
use crate::spec::{Dialect, LoadMode};
use crate::spec::{Formats, Mapping, OutputFormat, Reference};
use crate::target::script::{self, Table};
use crate::target::TargetOut;
use crate::write::{AtomicFile, RejectsWriter, RowWriter, Sink};

/// What a run was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mapping: PathBuf,
    pub out: PathBuf,
    pub threads: usize,
    /// Output formats for every entity (the first is the main one); None: the mapping's.
    pub format: Option<Vec<OutputFormat>>,
    pub max_rejects: u64,
    /// Run everything but the writing: no output folder, no files.
    pub dry_run: bool,
    /// Load-script targets, DDL and mode; None: the mapping's.
    pub targets: Option<Vec<crate::spec::Dialect>>,
    pub ddl: Option<crate::spec::Ddl>,
    pub mode: Option<crate::spec::LoadMode>,
    /// Progress on stderr.
    pub progress: crate::progress::Mode,
    /// An earlier run's output folder to write the changes since (`--since`).
    pub since: Option<PathBuf>,
}

/// The outcome of a complete run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub manifest: Manifest,
    /// More records were rejected than allowed: exit code 1.
    pub over_limit: bool,
    /// Per entity, in run order: the first rejects (dry runs only).
    pub samples: Vec<(String, Vec<(String, Reject)>)>,
}

/// Validates the parts of a mapping that need no input file; all problems at once.
pub fn validate_static(m: &Mapping, errors: &mut SpecErrors) {
    if m.version != 1 {
        errors.push(
            "version",
            format!("unknown mapping version {}; only 1 exists", m.version),
        );
    }
    if m.entities.is_empty() {
        errors.push("entities", "the mapping defines no entity");
    }
    for (name, s) in &m.sources {
        if let Err(es) = InputKind::of(s) {
            for (k, msg) in es {
                let key = if k == "record_path" {
                    format!("sources.{name}.{k}")
                } else {
                    format!("sources.{name}.csv.{k}")
                };
                errors.push(key, msg);
            }
        }
        if s.max_record_bytes < 1024 || s.max_record_bytes > (1 << 32) {
            errors.push(
                format!("sources.{name}.max_record_bytes"),
                "expected 1024 to 4294967296",
            );
        }
    }
    let mut names = BTreeMap::new();
    for (i, e) in m.entities.iter().enumerate() {
        if let Some(prev) = names.insert(e.name.to_lowercase(), i) {
            errors.push(
                format!("entities[{i}].name"),
                format!("entity {:?} is already defined at entities[{prev}] (names are compared without case, since they become file names)", e.name),
            );
        }
        for (j, f) in e.fields.iter().enumerate() {
            if let Some(r) = &f.references {
                let at = format!("entities[{i}].fields[{j}].references");
                check_reference(m, r, &at, errors);
                if r.defer && r.orphans == Orphans::Reject {
                    errors.push(
                        format!("{at}.orphans"),
                        "a deferred reference is resolved after its record is written, so it cannot reject the record: use orphans = \"null\" or \"keep\"",
                    );
                }
                if r.defer && e.primary_key.len() != 1 {
                    errors.push(
                        format!("{at}.defer"),
                        format!("the updates of a deferred reference address rows by primary key: entity {:?} needs a primary key of one field", e.name),
                    );
                }
            }
        }
        let formats = e.format.as_ref().map(Formats::list).unwrap_or_default();
        if matches!(&e.format, Some(Formats::Many(v)) if v.is_empty()) {
            errors.push(
                format!("entities[{i}].format"),
                "an empty list of formats: give at least one",
            );
        }
        if formats.iter().any(|f| f.columnar()) && !cfg!(feature = "parquet") {
            errors.push(
                format!("entities[{i}].format"),
                "this crm-etl was built without the `parquet` feature, so it cannot write Parquet or Arrow files; rebuild with default features",
            );
        }
        if e.duplicates != Duplicates::First
            && e.primary_key.is_empty()
            && !e.fields.iter().any(|f| f.unique)
        {
            errors.push(
                format!("entities[{i}].duplicates"),
                "duplicates applies to the primary key and unique fields, and this entity has neither",
            );
        }
        if !m.sources.contains_key(&e.source) {
            errors.push(
                format!("entities[{i}].source"),
                format!(
                    "unknown source {:?}{}",
                    e.source,
                    crate::error::hint(&e.source, m.sources.keys().map(String::as_str))
                ),
            );
        }
    }
}

/// A reference must name an entity with a single-field primary key, and match by that key or a unique
/// field of it.
fn check_reference(m: &Mapping, r: &Reference, at: &str, errors: &mut SpecErrors) {
    let Some(parent) = m.entities.iter().find(|p| p.name == r.entity) else {
        errors.push(
            format!("{at}.entity"),
            format!(
                "unknown entity {:?}{}",
                r.entity,
                crate::error::hint(&r.entity, m.entities.iter().map(|e| e.name.as_str()))
            ),
        );
        return;
    };
    if parent.primary_key.len() != 1 {
        errors.push(
            format!("{at}.entity"),
            format!(
                "entity {:?} needs a primary key of one field to be referenced (it has {})",
                r.entity,
                parent.primary_key.len()
            ),
        );
    }
    if let Some(by) = &r.by {
        match parent.fields.iter().find(|f| &f.name == by) {
            None => errors.push(
                format!("{at}.by"),
                format!(
                    "entity {:?} has no field {by:?}{}",
                    r.entity,
                    crate::error::hint(by, parent.fields.iter().map(|f| f.name.as_str()))
                ),
            ),
            Some(f) if !f.unique && parent.primary_key != [by.clone()] => errors.push(
                format!("{at}.by"),
                format!("{}.{by} must be the primary key or have `unique = true`, so that a value matches one record", r.entity),
            ),
            Some(_) => {}
        }
    }
}

/// The fields of `entity` that references index, with their Salesforce-id flag (the primary key when a
/// reference names no `by`).
fn index_specs(m: &Mapping, entity: &crate::spec::Entity) -> Vec<(String, bool)> {
    let mut specs: Vec<(String, bool)> = Vec::new();
    for e in &m.entities {
        for f in &e.fields {
            let Some(r) = f.references.as_ref().filter(|r| r.entity == entity.name) else {
                continue;
            };
            let by =
                r.by.clone()
                    .or_else(|| entity.primary_key.first().cloned())
                    .unwrap_or_default();
            if !specs.contains(&(by.clone(), r.salesforce_ids)) {
                specs.push((by, r.salesforce_ids));
            }
        }
    }
    specs
}

/// Shows a path relative to the mapping's folder when it lies inside it.
fn display_path(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Makes the output folder ready: new, empty, or holding an earlier run, whose files are removed (the
/// manifest first, so an interrupted run never leaves a manifest vouching for mixed files).
fn prepare_out(out: &Path) -> Result<(), FatalError> {
    if !out.exists() {
        return std::fs::create_dir_all(out).map_err(|e| FatalError::io(out, e));
    }
    if !out.is_dir() {
        return Err(FatalError::Usage(format!(
            "--out {}: not a folder",
            out.display()
        )));
    }
    let mut entries = std::fs::read_dir(out)
        .map_err(|e| FatalError::io(out, e))?
        .peekable();
    if entries.peek().is_none() {
        return Ok(());
    }
    let manifest = out.join(manifest::MANIFEST);
    let sums = out.join(manifest::CHECKSUMS);
    if !manifest.exists() && !sums.exists() {
        return Err(FatalError::Usage(format!(
            "--out {}: the folder is not empty and holds no earlier crm-etl run; refusing to mix files (choose an empty or new folder)",
            out.display()
        )));
    }
    if manifest.exists() {
        std::fs::remove_file(&manifest).map_err(|e| FatalError::io(&manifest, e))?;
    }
    if let Ok(text) = std::fs::read_to_string(&sums) {
        if let Ok(entries) = manifest::parse_checksums(&text) {
            for (_, p) in entries {
                let _ = std::fs::remove_file(out.join(p));
            }
        }
        std::fs::remove_file(&sums).map_err(|e| FatalError::io(&sums, e))?;
    }
    Ok(())
}

/// Everything the entities of one run share.
struct Ctx<'a> {
    m: &'a Mapping,
    base: PathBuf,
    opts: &'a RunOptions,
    pool: rayon::ThreadPool,
    /// Load targets, their mode, and the tables (in run order) their scripts create.
    targets: Vec<Dialect>,
    mode: LoadMode,
    tables: Vec<Table>,
}

/// What one pass over an entity's files produced.
struct EntityOutput {
    state: EntityState,
    inputs: Vec<InputEntry>,
    format: OutputFormat,
    out_name: String,
    output: Option<OutputEntry>,
    rejects: Option<OutputEntry>,
    /// The load targets' data files.
    target_outputs: Vec<OutputEntry>,
    /// The outputs in further formats.
    also_outputs: Vec<OutputEntry>,
    /// Bytes of the input files read.
    inputs_bytes: u64,
    /// Row state and change files, and the change counts of an incremental run.
    tracked: Vec<OutputEntry>,
    changes: Option<crate::since::ChangeCounts>,
}

/// Reads every file of entity `i` through its plan. `write` false: a pass that writes nothing (the
/// duplicate pre-pass, or a dry run), with rejects only counted.
fn run_entity(
    cx: &Ctx<'_>,
    i: usize,
    indexes: &HashMap<(String, String, bool), Arc<KeyIndex>>,
    mut state: EntityState,
    write: bool,
) -> Result<EntityOutput, FatalError> {
    let (m, opts, base) = (cx.m, cx.opts, &cx.base);
    let entity = &m.entities[i];
    let source = &m.sources[&entity.source];
    let specs = index_specs(m, entity);
    let kind = InputKind::of(source)
        .map_err(|_| FatalError::Internal("source validated earlier".into()))?;
    let files = expand(base, &source.path).map_err(FatalError::Usage)?;
    if files.is_empty() {
        return Err(FatalError::NoInput {
            source_name: entity.source.clone(),
            pattern: display_path(base, &base.join(&source.path)),
        });
    }
    let formats = entity_formats(opts, entity);
    let format = formats[0];
    // Format `none` writes no output file: its name stays empty.
    let out_name = if format == OutputFormat::None {
        String::new()
    } else {
        format!("{}.{}", entity.name, format.extension())
    };
    let also: Vec<(OutputFormat, String)> = formats[1..]
        .iter()
        .filter(|f| **f != OutputFormat::None)
        .map(|f| (*f, format!("{}.{}", entity.name, f.extension())))
        .collect();
    let rejects_name = format!("rejects/{}.csv", entity.name);
    let mut writer: Option<Outputs> = None;
    let mut rejects = RejectsWriter::new(opts.out.join(&rejects_name));
    let table = cx.tables.iter().find(|t| t.name == entity.name);
    let mut inputs = Vec::new();
    let mut records_before = 0u64;
    if state.progress.is_none() {
        let total = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let label = match state.dups {
            Dups::Collect(_) => format!("{} (keys)", entity.name),
            _ => entity.name.clone(),
        };
        state.progress = crate::progress::Step::new(opts.progress, &label, total);
    }
    for file in &files {
        let display = display_path(base, file);
        let opened = open_input(
            file,
            &display,
            source.encoding,
            &kind,
            source.max_record_bytes,
            true,
        )?;
        let header = if kind.has_header() {
            opened.header.clone()
        } else {
            columns_used(entity)
        };
        let mut errs = SpecErrors::default();
        let plan = compile_entity(
            entity,
            source,
            Some(&header),
            &display,
            &format!("entities[{i}]"),
            &mut errs,
        );
        let Some(mut plan) = plan.filter(|_| errs.is_empty()) else {
            return Err(FatalError::Spec(errs));
        };
        plan.format = format;
        plan.also = also.iter().map(|(f, _)| *f).collect();
        plan.seq_base = records_before;
        if write && !entity.primary_key.is_empty() {
            plan.track = plan.unique.first().map(|u| u.fields.clone());
        }
        attach_relations(m, &mut plan, entity, &specs, indexes)?;
        if let Some(t) = table {
            attach_targets(&mut plan, t, &cx.targets, cx.mode);
        }
        if formats.contains(&OutputFormat::Xml) && plan.xml.is_none() {
            let names: Vec<String> = plan.fields.iter().map(|f| f.name.clone()).collect();
            plan.xml = Some(xml_out(
                entity.xml_root.as_deref(),
                entity.xml_record.as_deref(),
                &names,
            ));
        }
        if writer.is_none() {
            let sink = |rel: &str| -> Result<Sink, FatalError> {
                Ok(if write {
                    Sink::File(Box::new(AtomicFile::create(&opts.out.join(rel))?))
                } else {
                    Sink::Discard
                })
            };
            let main = if format == OutputFormat::None {
                Sink::Discard
            } else {
                sink(&out_name)?
            };
            let mut outs = Outputs::new(RowWriter::for_plan(main, &plan, &out_name)?);
            for t in &plan.targets {
                let (head, foot) = match t.dialect {
                    Dialect::Postgres => (
                        crate::target::pgcopy::HEADER.to_vec(),
                        crate::target::pgcopy::TRAILER.to_vec(),
                    ),
                    _ => (Vec::new(), Vec::new()),
                };
                let rel = script::data_file(t.dialect, &entity.name);
                outs.targets
                    .push(RowWriter::new(sink(&rel)?, OutputFormat::Csv, &head, foot)?);
            }
            for (f, name) in &also {
                outs.also
                    .push(RowWriter::for_format(sink(name)?, &plan, *f, name)?);
            }
            writer = Some(outs);
            if let (true, Some(cols)) = (write, plan.track.as_ref()) {
                state.track = Some(tracker(cx, entity, &plan, cols)?);
            }
        }
        let w = writer
            .as_mut()
            .ok_or_else(|| FatalError::Internal("writer".into()))?;
        let size = std::fs::metadata(file).ok().map(|md| md.len());
        if let Some(p) = state.progress.as_mut() {
            p.file(opened.hash.clone());
        }
        let sink = if write {
            RejectSink::File(&mut rejects)
        } else {
            RejectSink::Count
        };
        pump(
            opened.reader,
            &plan,
            &display,
            &cx.pool,
            w,
            sink,
            &mut state,
            size,
        )?;
        // Sequence keys continue over the source's files (a nested entity has none: `state.read`
        // counts its children there).
        records_before = state.read;
        let (bytes, blake3) = opened.hash.result().expect("run inputs are hashed");
        if !inputs.iter().any(|x: &InputEntry| x.path == display) {
            inputs.push(InputEntry {
                path: display,
                bytes,
                blake3,
                encoding: opened.sniffed.to_string(),
            });
        }
    }
    let writer = writer.ok_or_else(|| FatalError::Internal("no writer".into()))?;
    let output = manifest::finish_output(writer.main, out_name.clone())?;
    let mut also_outputs = Vec::new();
    for (w, (_, name)) in writer.also.into_iter().zip(&also) {
        also_outputs.extend(manifest::finish_output(w, name.clone())?);
    }
    let mut target_outputs = Vec::new();
    for (w, d) in writer.targets.into_iter().zip(&cx.targets) {
        target_outputs.extend(manifest::finish_output(
            w,
            script::data_file(*d, &entity.name),
        )?);
    }
    let (tracked, changes) = match state.track.take() {
        Some(t) => {
            let f = t.finish(&opts.out)?;
            (f.files, f.counts)
        }
        None => (Vec::new(), None),
    };
    let reject_rows = rejects.rows;
    let rejects = rejects.finish()?.map(|(bytes, blake3)| OutputEntry {
        path: rejects_name,
        bytes,
        rows: reject_rows,
        blake3,
    });
    if let Some(p) = state.progress.take() {
        p.finish(state.read);
    }
    if state.read != state.written + state.rejected {
        return Err(FatalError::Internal(format!(
            "entity {:?}: read {} != written {} + rejected {}",
            entity.name, state.read, state.written, state.rejected
        )));
    }
    let inputs_bytes = inputs.iter().map(|x| x.bytes).sum();
    Ok(EntityOutput {
        state,
        inputs,
        format,
        out_name,
        output,
        rejects,
        inputs_bytes,
        target_outputs,
        also_outputs,
        tracked,
        changes,
    })
}

/// The row tracker of an entity: its state file and, in an incremental run, its change files.
fn tracker(
    cx: &Ctx<'_>,
    entity: &Entity,
    plan: &crate::plan::EntityPlan,
    cols: &[usize],
) -> Result<crate::since::Tracker, FatalError> {
    let out = &cx.opts.out;
    let names = cols.iter().map(|&i| plan.fields[i].name.clone()).collect();
    let types = cols.iter().map(|&i| plan.fields[i].out_ty()).collect();
    let Some(dir) = &cx.opts.since else {
        return crate::since::Tracker::new(out, &entity.name, names, types, None);
    };
    // Change files take the entity's format, or CSV when it writes no output file.
    let format = match plan.format {
        OutputFormat::None => OutputFormat::Csv,
        f => f,
    };
    let open = |rel: &str| {
        RowWriter::for_format(
            Sink::File(Box::new(AtomicFile::create(&out.join(rel))?)),
            plan,
            format,
            rel,
        )
    };
    let targets: Vec<(Dialect, String)> = plan
        .targets
        .iter()
        .map(|t| (t.dialect, t.insert_into.clone()))
        .collect();
    let ext = format.extension();
    crate::since::Tracker::new(
        out,
        &entity.name,
        names,
        types,
        Some(crate::since::ChangeSpec {
            prev: crate::since::Previous::load(dir, &entity.name)?,
            open: &open,
            ext,
            targets: &targets,
        }),
    )
}

/// Tells a plan which load targets to encode rows for, and applies what a target requires of values:
/// PostgreSQL text holds no NUL; MySQL key columns without `max_length` are VARCHAR(255).
fn attach_targets(
    plan: &mut crate::plan::EntityPlan,
    table: &Table,
    targets: &[Dialect],
    mode: LoadMode,
) {
    let into = script::load_table(table, mode);
    plan.targets = targets
        .iter()
        .map(|&d| TargetOut {
            dialect: d,
            insert_into: crate::target::ident(d, &into),
        })
        .collect();
    plan.target_types = table.columns.iter().map(|c| c.ty).collect();
    plan.no_nul = targets.contains(&Dialect::Postgres);
    if targets.contains(&Dialect::Mysql) {
        for (f, c) in plan.fields.iter_mut().zip(&table.columns) {
            if c.key && c.ty == crate::types::FieldType::Text && f.max_length.is_none() {
                f.max_length = Some(crate::target::MYSQL_KEY_CHARS);
            }
        }
    }
}

/// The state an entity starts with: its duplicate policy, after a pre-pass that collects the keys when
/// the policy needs them, and a spill for its deferred references.
fn initial_state(
    cx: &Ctx<'_>,
    i: usize,
    indexes: &HashMap<(String, String, bool), Arc<KeyIndex>>,
) -> Result<EntityState, FatalError> {
    let entity = &cx.m.entities[i];
    let mut state = EntityState::default();
    if entity.duplicates != Duplicates::First {
        let mut pre = EntityState::default();
        pre.dups = Dups::Collect(Vec::new());
        let done = run_entity(cx, i, indexes, pre, false)?;
        let Dups::Collect(sets) = done.state.dups else {
            return Err(FatalError::Internal("duplicate pre-pass".into()));
        };
        state.dups = match entity.duplicates {
            Duplicates::Last => Dups::Last(sets),
            _ => Dups::Shared(sets),
        };
    }
    let deferred = entity
        .fields
        .iter()
        .any(|f| f.references.as_ref().is_some_and(|r| r.defer));
    if deferred {
        let out = (!cx.opts.dry_run).then_some(cx.opts.out.as_path());
        state.spill = Some(Spill::create(spill_path(out, &entity.name))?);
    }
    Ok(state)
}

/// Runs a mapping to completion.
pub fn run(opts: &RunOptions) -> Result<RunResult, FatalError> {
    let started = jiff::Timestamp::now();
    let loaded = load::load(&opts.mapping)?;
    let m = &loaded.mapping;
    let mut errors = SpecErrors::default();
    validate_static(m, &mut errors);
    let order = match relate::order(m) {
        Ok(o) => o,
        Err(e) => {
            errors.push("entities", e);
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(FatalError::Spec(errors));
    }
    let columnar = opts.format.iter().flatten().find(|f| f.columnar());
    if let Some(f) = columnar.filter(|_| !cfg!(feature = "parquet")) {
        return Err(crate::write::no_columnar(*f, "--format"));
    }
    let since = match &opts.since {
        Some(dir) => Some(check_since(m, dir, opts)?),
        None => None,
    };
    let base = opts
        .mapping
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| FatalError::Internal(format!("thread pool: {e}")))?;
    let mut targets = opts.targets.clone().unwrap_or_else(|| m.targets.clone());
    targets.sort();
    targets.dedup();
    let ddl = opts.ddl.unwrap_or(m.load.ddl);
    let mode = opts.mode.unwrap_or(m.load.mode);
    if !opts.dry_run {
        prepare_out(&opts.out)?;
        for d in &targets {
            let dir = opts.out.join("load").join(d.name());
            std::fs::create_dir_all(&dir).map_err(|e| FatalError::io(&dir, e))?;
        }
    }
    let cx = Ctx {
        m,
        base,
        opts,
        pool,
        tables: script::tables(m, &order),
        targets,
        mode,
    };

    let mut inputs: Vec<InputEntry> = Vec::new();
    let mut outputs: Vec<OutputEntry> = Vec::new();
    let mut entities: Vec<EntityEntry> = Vec::new();
    let mut samples = Vec::new();
    let mut spills: Vec<(usize, Spill)> = Vec::new();
    let mut digests: Vec<crate::digest::Digest> = Vec::new();
    // Indexes left by parents for their children: (entity, field, salesforce_ids) -> index.
    let mut indexes: HashMap<(String, String, bool), Arc<KeyIndex>> = HashMap::new();
    for &i in &order {
        let entity = &m.entities[i];
        let clock = std::time::Instant::now();
        let state = initial_state(&cx, i, &indexes)?;
        let done = run_entity(&cx, i, &indexes, state, !opts.dry_run)?;
        let mut state = done.state;
        for input in &done.inputs {
            if !inputs.iter().any(|x| x.path == input.path) {
                inputs.push(input.clone());
            }
        }
        let also: Vec<String> = done
            .also_outputs
            .iter()
            .chain(&done.target_outputs)
            .map(|o| o.path.clone())
            .collect();
        outputs.extend(done.output);
        outputs.extend(done.also_outputs);
        outputs.extend(done.target_outputs);
        outputs.extend(done.tracked);
        let rejects_file = done.rejects.as_ref().map(|r| r.path.clone());
        outputs.extend(done.rejects);
        digests.push(state.digest);
        let specs = index_specs(m, entity);
        for (k, ix) in std::mem::take(&mut state.indexes).into_iter().enumerate() {
            if let Some((by, sf)) = specs.get(k) {
                indexes.insert((entity.name.clone(), by.clone(), *sf), Arc::new(ix));
            }
        }
        if let Some(spill) = state.spill.take() {
            spills.push((entities.len(), spill));
        }
        samples.push((entity.name.clone(), std::mem::take(&mut state.samples)));
        entities.push(EntityEntry {
            name: entity.name.clone(),
            source: entity.source.clone(),
            format: done.format.extension().to_string(),
            output: done.out_name,
            read: state.read,
            written: state.written,
            rejected: state.rejected,
            rejects_by_reason: state.by_reason,
            rejects_file,
            orphans: state.orphans,
            unmapped: state.unmapped,
            updates: None,
            digest: String::new(),
            rejects_by_field: state.by_field,
            input_bytes: done.inputs_bytes,
            millis: clock.elapsed().as_millis() as u64,
            changes: done.changes,
            also,
        });
    }
    // Deferred references resolve once every entity has run, against the complete indexes.
    for (e, mut spill) in spills {
        let Some(i) = m.entities.iter().position(|x| x.name == entities[e].name) else {
            continue;
        };
        let out = (!opts.dry_run).then_some(opts.out.as_path());
        let files = write_updates(
            &cx,
            &m.entities[i],
            &mut spill,
            &indexes,
            out,
            &mut entities[e],
            &mut digests[e],
        )?;
        outputs.extend(files);
    }
    for (e, d) in entities.iter_mut().zip(&digests) {
        e.digest = d.text();
    }
    if !opts.dry_run {
        outputs.extend(write_scripts(&cx, ddl, &entities)?);
        if since.is_some() {
            outputs.extend(write_change_scripts(&cx, &entities)?);
        }
    }
    let read = entities.iter().map(|e| e.read).sum();
    let written = entities.iter().map(|e| e.written).sum();
    let rejected: u64 = entities.iter().map(|e| e.rejected).sum();
    let over_limit = rejected > opts.max_rejects;
    let checksums = if opts.dry_run {
        FileRef {
            path: String::new(),
            blake3: String::new(),
        }
    } else {
        manifest::write_checksums(&opts.out, &outputs)?
    };
    let manifest = Manifest {
        tool: "crm-etl".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        mapping: FileRef {
            path: opts.mapping.to_string_lossy().into_owned(),
            blake3: loaded.blake3,
        },
        started_at: started.to_string(),
        finished_at: jiff::Timestamp::now().to_string(),
        threads: opts.threads,
        inputs,
        outputs,
        entities,
        read,
        written,
        rejected,
        max_rejects: opts.max_rejects,
        status: if over_limit {
            "rejects_over_limit"
        } else {
            "ok"
        }
        .into(),
        checksums,
        since,
    };
    if !opts.dry_run {
        manifest::write_manifest(&opts.out, &manifest)?;
    }
    Ok(RunResult {
        manifest,
        over_limit,
        samples,
    })
}

/// Resolves an entity's deferred references and writes `<entity>.updates.csv` (and each load target's
/// updates file): its primary key, then each deferred field (the parent's key, or empty when the value
/// had no parent and orphans are null). Rows whose every value was an orphan made null are left out.
/// Each updated row's hash in the entity's digest is replaced by that of the row as it ends up.
#[allow(clippy::too_many_arguments)]
fn write_updates(
    cx: &Ctx<'_>,
    entity: &Entity,
    spill: &mut Spill,
    indexes: &HashMap<(String, String, bool), Arc<KeyIndex>>,
    out: Option<&Path>,
    entry: &mut EntityEntry,
    digest: &mut crate::digest::Digest,
) -> Result<Vec<OutputEntry>, FatalError> {
    let m = cx.m;
    let deferred: Vec<usize> = entity
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.references.as_ref().is_some_and(|r| r.defer))
        .map(|(i, _)| i)
        .collect();
    let pk = entity.primary_key.first().cloned().unwrap_or_default();
    let mut columns = vec![pk.clone()];
    columns.extend(deferred.iter().map(|&i| entity.fields[i].name.clone()));
    let table = cx.tables.iter().find(|t| t.name == entity.name);
    let col_type = |name: &str| {
        table
            .and_then(|t| t.columns.iter().find(|c| c.name == name))
            .map_or(crate::types::FieldType::Text, |c| c.ty)
    };
    let types: Vec<crate::types::FieldType> = columns.iter().map(|c| col_type(c)).collect();
    let name = format!("{}.updates.csv", entity.name);
    let sink = |rel: &str| -> Result<Sink, FatalError> {
        Ok(match out {
            Some(dir) => Sink::File(Box::new(AtomicFile::create(&dir.join(rel))?)),
            None => Sink::Discard,
        })
    };
    let header = {
        let mut h = Vec::new();
        crate::digest::material_of(
            &columns.iter().map(|c| Some(c.as_str())).collect::<Vec<_>>(),
            &mut h,
        );
        h
    };
    let mut csv_out = RowWriter::new(sink(&name)?, OutputFormat::Csv, &header, Vec::new())?;
    let mut target_outs = Vec::new();
    for &d in &cx.targets {
        let upd = format!("crm_etl_updates_{}", entity.name);
        let (head, foot) = match d {
            Dialect::Postgres => (
                crate::target::pgcopy::HEADER.to_vec(),
                crate::target::pgcopy::TRAILER.to_vec(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let w = RowWriter::new(
            sink(&script::updates_file(d, &entity.name))?,
            OutputFormat::Csv,
            &head,
            foot,
        )?;
        target_outs.push((d, crate::target::ident(d, &upd), w));
    }
    let mut rows = 0u64;
    let mut cells: Vec<Option<String>> = vec![None; deferred.len()];
    let mut row = Vec::new();
    spill.replay(|key, values, material| {
        cells.iter_mut().for_each(|c| *c = None);
        for (field, value) in values {
            let f = &entity.fields[*field];
            let Some(r) = &f.references else { continue };
            let by = r.by.clone().or_else(|| {
                m.entities
                    .iter()
                    .find(|p| p.name == r.entity)
                    .and_then(|p| p.primary_key.first().cloned())
            });
            let ix = indexes
                .get(&(r.entity.clone(), by.unwrap_or_default(), r.salesforce_ids))
                .ok_or_else(|| FatalError::Internal(format!("no index of {:?}", r.entity)))?;
            let found = ix.get(text_key(value)).or_else(|| {
                r.salesforce_ids
                    .then(|| salesforce_15(value))
                    .flatten()
                    .and_then(|short| ix.get(text_key(short)))
            });
            let slot = deferred.iter().position(|d| d == field).unwrap_or(0);
            cells[slot] = match found {
                Some(Some(target)) => Some(target.to_string()),
                Some(None) => Some(value.clone()),
                None => {
                    *entry.orphans.entry(f.name.clone()).or_default() += 1;
                    (r.orphans == Orphans::Keep).then(|| value.clone())
                }
            };
        }
        if cells.iter().all(Option::is_none) {
            return Ok(());
        }
        rows += 1;
        // The row as loaded: its written values with the deferred fields set.
        let mut values = crate::digest::parse_material(material);
        for (slot, &field) in deferred.iter().enumerate() {
            if let Some(v) = values.get_mut(field) {
                *v = cells[slot].clone();
            }
        }
        let as_str: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
        let mut after = Vec::new();
        crate::digest::material_of(&as_str, &mut after);
        digest.sub(&crate::digest::row_hash(material));
        digest.add(&crate::digest::row_hash(&after));
        let mut update: Vec<Option<&str>> = vec![Some(key)];
        update.extend(cells.iter().map(|c| c.as_deref()));
        row.clear();
        crate::digest::material_of(&update, &mut row);
        csv_out.write_rows(&row, 1)?;
        for (d, into, w) in &mut target_outs {
            row.clear();
            match d {
                Dialect::Sqlite => {
                    row.extend_from_slice(format!("INSERT INTO {into} VALUES(").as_bytes());
                    for (i, v) in update.iter().enumerate() {
                        if i > 0 {
                            row.push(b',');
                        }
                        match v {
                            None => row.extend_from_slice(b"NULL"),
                            Some(t) => crate::target::sqlite_text(t, &mut row),
                        }
                    }
                    row.extend_from_slice(b");\n");
                }
                Dialect::Postgres => {
                    crate::target::pgcopy::row_start(update.len(), &mut row);
                    for (v, ty) in update.iter().zip(&types) {
                        crate::target::pgcopy::value(*ty, *v, &mut row);
                    }
                }
                Dialect::Mysql => {
                    for (i, (v, ty)) in update.iter().zip(&types).enumerate() {
                        if i > 0 {
                            row.push(b'\t');
                        }
                        crate::target::tsv_value(*d, *ty, *v, &mut row);
                    }
                    row.push(b'\n');
                }
            }
            w.write_rows(&row, 1)?;
        }
        Ok(())
    })?;
    let mut files = Vec::new();
    let mut finish = |w: RowWriter, path: String| -> Result<(), FatalError> {
        files.extend(manifest::finish_output(w, path)?);
        Ok(())
    };
    finish(csv_out, name.clone())?;
    for (d, _, w) in target_outs {
        finish(w, script::updates_file(d, &entity.name))?;
    }
    entry.updates = Some(UpdatesEntry {
        file: name,
        rows,
        columns,
    });
    Ok(files)
}

/// Writes each load target's `schema.sql` and `load.sql`.
fn write_scripts(
    cx: &Ctx<'_>,
    ddl: crate::spec::Ddl,
    entities: &[EntityEntry],
) -> Result<Vec<OutputEntry>, FatalError> {
    let loaded = loaded_tables(cx, entities);
    let mut files = Vec::new();
    for &d in &cx.targets {
        let after = script::keys_after_rows(d, ddl, cx.mode);
        let mut scripts = vec![
            ("schema.sql", script::schema(d, &cx.tables, ddl, after)),
            (
                "load.sql",
                script::load_script(d, &cx.tables, &loaded, cx.mode, after),
            ),
        ];
        if after {
            scripts.push(("constraints.sql", script::constraints(d, &cx.tables)));
        }
        for (name, text) in scripts {
            let path = format!("load/{}/{name}", d.name());
            files.push(manifest::write_text(&cx.opts.out, path, &text)?);
        }
    }
    Ok(files)
}

/// An entity's output formats, the main one first: `--format`, else the mapping's, else CSV.
fn entity_formats(opts: &RunOptions, entity: &Entity) -> Vec<OutputFormat> {
    let list = match &opts.format {
        Some(v) => Formats::Many(v.clone()).list(),
        None => entity
            .format
            .as_ref()
            .map(Formats::list)
            .unwrap_or_default(),
    };
    if list.is_empty() {
        vec![OutputFormat::default()]
    } else {
        list
    }
}

/// Checks that an incremental run can diff against `dir`: a different folder holding a complete run
/// whose checksums verify, and a mapping whose entities all have a primary key. Returns the reference
/// the manifest records.
fn check_since(m: &Mapping, dir: &Path, opts: &RunOptions) -> Result<FileRef, FatalError> {
    if opts.dry_run {
        return Err(FatalError::Usage(
            "--since writes change files, and --dry-run writes nothing: give one of them".into(),
        ));
    }
    let same = match (dir.canonicalize(), opts.out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(FatalError::Usage(format!(
            "--since {}: the same folder as --out; write the new run to a new folder",
            dir.display()
        )));
    }
    let findings = manifest::verify(dir)?;
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| !f.is_ok())
        .map(ToString::to_string)
        .collect();
    if !bad.is_empty() {
        return Err(FatalError::Usage(format!(
            "--since {}: the earlier run does not verify, so its changes cannot be trusted ({} problem(s)):\n  {}",
            dir.display(),
            bad.len(),
            bad.join("\n  ")
        )));
    }
    let mut errors = SpecErrors::default();
    for (i, e) in m.entities.iter().enumerate() {
        if e.primary_key.is_empty() {
            errors.push(
                format!("entities[{i}].primary_key"),
                format!("--since matches rows by primary key, and entity {:?} has none (give it one, or `generate = {{ hash = [...] }}` a key)", e.name),
            );
        }
    }
    if !errors.is_empty() {
        return Err(FatalError::Spec(errors));
    }
    let path = dir.join(manifest::MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| FatalError::io(&path, e))?;
    Ok(FileRef {
        path: dir.to_string_lossy().into_owned(),
        blake3: blake3::hash(&bytes).to_hex().to_string(),
    })
}

/// Per table of the load scripts, in their order: the rows and deferred updates the run wrote.
fn loaded_tables(cx: &Ctx<'_>, entities: &[EntityEntry]) -> Vec<script::Loaded> {
    cx.tables
        .iter()
        .map(|t| {
            let e = entities.iter().find(|e| e.name == t.name);
            script::Loaded {
                rows: e.map_or(0, |e| e.written),
                update_rows: e.and_then(|e| e.updates.as_ref()).map_or(0, |u| u.rows),
                update_columns: e
                    .and_then(|e| e.updates.as_ref())
                    .map(|u| u.columns.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Writes `changes/load/<dialect>/apply.sql` for each load target of an incremental run.
fn write_change_scripts(
    cx: &Ctx<'_>,
    entities: &[EntityEntry],
) -> Result<Vec<OutputEntry>, FatalError> {
    let changed: Vec<script::Changed> = cx
        .tables
        .iter()
        .map(|t| {
            let c = entities
                .iter()
                .find(|e| e.name == t.name)
                .and_then(|e| e.changes)
                .unwrap_or_default();
            script::Changed {
                upserts: c.insert + c.update,
                deletes: c.delete,
            }
        })
        .collect();
    let loaded = loaded_tables(cx, entities);
    cx.targets
        .iter()
        .map(|&d| {
            manifest::write_text(
                &cx.opts.out,
                format!("changes/load/{}/apply.sql", d.name()),
                &script::change_script(d, &cx.tables, &changed, &loaded),
            )
        })
        .collect()
}

/// Tells a plan which of its fields to index for its children, and gives its reference fields the
/// indexes their parents left.
fn attach_relations(
    m: &Mapping,
    plan: &mut crate::plan::EntityPlan,
    entity: &crate::spec::Entity,
    specs: &[(String, bool)],
    indexes: &HashMap<(String, String, bool), Arc<KeyIndex>>,
) -> Result<(), FatalError> {
    plan.index_by = specs
        .iter()
        .map(|(by, sf)| {
            let field = entity
                .fields
                .iter()
                .position(|f| &f.name == by)
                .ok_or_else(|| {
                    FatalError::Internal(format!("indexed field {by:?} validated earlier"))
                })?;
            Ok(IndexBy {
                field,
                salesforce_ids: *sf,
                store_target: *sf || entity.primary_key.first() != Some(by),
            })
        })
        .collect::<Result<_, FatalError>>()?;
    for (fp, f) in plan.fields.iter_mut().zip(&entity.fields) {
        let (Some(rp), Some(r)) = (fp.reference.as_mut(), f.references.as_ref()) else {
            continue;
        };
        let parent = m.entities.iter().find(|p| p.name == r.entity);
        if let Some(pk) = parent.and_then(|p| {
            p.fields
                .iter()
                .find(|x| Some(&x.name) == p.primary_key.first())
        }) {
            rp.out_ty = crate::types::FieldType::parse(&pk.type_name).unwrap_or(fp.ty);
        }
        if r.defer {
            // Resolved from the spill once every entity has run.
            continue;
        }
        let by = r.by.clone().or_else(|| {
            m.entities
                .iter()
                .find(|p| p.name == r.entity)
                .and_then(|p| p.primary_key.first().cloned())
        });
        let key = (r.entity.clone(), by.unwrap_or_default(), r.salesforce_ids);
        match indexes.get(&key) {
            Some(ix) => rp.index = Some(Arc::clone(ix)),
            None => {
                return Err(FatalError::Internal(format!(
                    "no index of {:?} for field {:?}",
                    r.entity, f.name
                )))
            }
        }
    }
    Ok(())
}

/// The plan as `check` prints it: entities in the order they run, each with its references.
fn plan_lines(m: &Mapping, order: &[usize]) -> Vec<String> {
    let mut lines = vec!["plan (entities run in this order, parents before children):".to_string()];
    for (n, &i) in order.iter().enumerate() {
        let e = &m.entities[i];
        lines.push(format!(
            "  {}. {} (from source {:?}{}{})",
            n + 1,
            e.name,
            e.source,
            match &e.nested {
                Some(nest) => match (&nest.path, &nest.split) {
                    (Some(p), _) => format!(", one record per element at {p:?}"),
                    (_, Some(c)) => format!(
                        ", one record per {:?}-separated part of {c:?}",
                        nest.separator
                    ),
                    _ => String::new(),
                },
                None => String::new(),
            },
            match e.duplicates {
                Duplicates::First => "",
                Duplicates::Last => ", duplicate keys: last kept",
                Duplicates::Reject => ", duplicate keys: all rejected",
            }
        ));
        for f in &e.fields {
            let Some(r) = &f.references else { continue };
            let by =
                r.by.clone()
                    .or_else(|| {
                        m.entities
                            .iter()
                            .find(|p| p.name == r.entity)
                            .and_then(|p| p.primary_key.first().cloned())
                    })
                    .unwrap_or_default();
            lines.push(format!(
                "     {} -> {}.{by}{}, orphans: {}",
                f.name,
                r.entity,
                if r.salesforce_ids {
                    " (15/18-character Salesforce ids)"
                } else {
                    ""
                },
                match r.orphans {
                    crate::spec::Orphans::Reject => "reject",
                    crate::spec::Orphans::Null => "null",
                    crate::spec::Orphans::Keep => "keep",
                }
            ));
            if r.defer {
                lines.push(format!(
                    "        deferred (breaks the cycle{}): written as null, then set from {}.updates.csv after every entity has run",
                    if r.entity == e.name { " of a self-reference" } else { "" },
                    e.name
                ));
            }
        }
    }
    lines
}

/// `crm-etl check`: every problem of a mapping, including columns missing from the sources' headers.
pub fn check(mapping: &Path) -> Result<Vec<String>, FatalError> {
    let loaded = load::load(mapping)?;
    let m = &loaded.mapping;
    let mut errors = SpecErrors::default();
    validate_static(m, &mut errors);
    let base = mapping.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let mut notes = Vec::new();
    match relate::order(m) {
        Ok(order) => notes.extend(plan_lines(m, &order)),
        Err(e) => errors.push("entities", e),
    }
    for (i, entity) in m.entities.iter().enumerate() {
        let Some(source) = m.sources.get(&entity.source) else {
            continue;
        };
        let at = format!("entities[{i}]");
        let mut header = None;
        let mut label = String::new();
        if let Ok(kind) = InputKind::of(source) {
            match expand(&base, &source.path) {
                Ok(files) if files.is_empty() => errors.push(
                    format!("sources.{}.path", entity.source),
                    format!("no file matches {:?}", source.path),
                ),
                Ok(files) => {
                    label = display_path(&base, &files[0]);
                    let opened = open_input(
                        &files[0],
                        &label,
                        source.encoding,
                        &kind,
                        source.max_record_bytes,
                        false,
                    );
                    match opened {
                        Ok(o) if kind.has_header() => {
                            notes.push(format!(
                                "source {:?}: {} file(s), {} columns, encoding {}",
                                entity.source,
                                files.len(),
                                o.header.len(),
                                o.sniffed
                            ));
                            header = Some(o.header);
                        }
                        Ok(o) => {
                            let cols = columns_used(entity);
                            notes.push(format!(
                                "source {:?}: {} file(s), {:?} records, {} paths read, encoding {}",
                                entity.source,
                                files.len(),
                                source.format,
                                cols.len(),
                                o.sniffed
                            ));
                            header = Some(cols);
                        }
                        Err(e) => {
                            errors.push(format!("sources.{}.path", entity.source), e.to_string())
                        }
                    }
                }
                Err(e) => errors.push(format!("sources.{}.path", entity.source), e),
            }
        }
        compile_entity(entity, source, header.as_deref(), &label, &at, &mut errors);
    }
    if errors.is_empty() {
        Ok(notes)
    } else {
        Err(FatalError::Spec(errors))
    }
}
