//! Proof of a run: `checksums.b3` (the format `b3sum --check` reads), `manifest.json` (written last, so it
//! only exists for a complete run), and `verify`, which re-hashes everything and names what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::FatalError;
use crate::write::{AtomicFile, RowWriter};

pub const MANIFEST: &str = "manifest.json";
pub const CHECKSUMS: &str = "checksums.b3";

/// A file and its BLAKE3.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRef {
    pub path: String,
    pub blake3: String,
}

/// An input file as read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InputEntry {
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
    /// The encoding used, and whether a byte-order mark was found.
    pub encoding: String,
}

/// An output file as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputEntry {
    /// Relative to the output folder, with `/` separators.
    pub path: String,
    pub bytes: u64,
    /// Data rows (records) in the file, not counting a header row.
    pub rows: u64,
    pub blake3: String,
}

/// What happened to one entity: read = written + rejected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EntityEntry {
    pub name: String,
    pub source: String,
    pub format: String,
    pub output: String,
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    pub rejects_by_reason: BTreeMap<String, u64>,
    pub rejects_file: Option<String>,
    /// Per reference field: values with no parent, written as null or kept (rejected ones are in
    /// `rejects_by_reason` under `orphan`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub orphans: BTreeMap<String, u64>,
    /// Per field: values absent from its value map that were kept, made null or defaulted (rejected
    /// ones are in `rejects_by_reason` under `unmapped`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unmapped: BTreeMap<String, u64>,
    /// Deferred references: the updates file that sets them after the inserts, and its rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<UpdatesEntry>,
    /// Order-independent digest of the written rows as they end up (deferred references set), which
    /// `crm-etl digest` recomputes from a database's export of the table.
    #[serde(default)]
    pub digest: String,
    /// Rejected records per field of their first error (`""`: the record as a whole).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejects_by_field: BTreeMap<String, u64>,
    /// Bytes of the entity's input files, and the entity's wall time in milliseconds (a duplicate key
    /// pass included).
    #[serde(default)]
    pub input_bytes: u64,
    #[serde(default)]
    pub millis: u64,
    /// An incremental run (`--since`): rows inserted, updated, deleted and unchanged since that run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::since::ChangeCounts>,
    /// The entity's other outputs, written from the same rows in the same pass (further formats, load
    /// targets' data files): each holds exactly the rows that `digest` covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

/// An entity's updates file: rows that set deferred references once every row is loaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpdatesEntry {
    pub file: String,
    pub rows: u64,
    /// The primary key column, then the deferred fields.
    pub columns: Vec<String>,
}

/// The manifest of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub tool: String,
    pub version: String,
    pub mapping: FileRef,
    pub started_at: String,
    pub finished_at: String,
    pub threads: usize,
    pub inputs: Vec<InputEntry>,
    pub outputs: Vec<OutputEntry>,
    pub entities: Vec<EntityEntry>,
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    pub max_rejects: u64,
    /// `ok`, or `rejects_over_limit` when more records were rejected than `max_rejects` allows.
    pub status: String,
    /// The checksums file, hashed, so that editing it is detected too.
    pub checksums: FileRef,
    /// An incremental run: the earlier run's folder and the BLAKE3 of its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<FileRef>,
}

/// Finishes a row writer and describes the file it wrote at `path` (None for a writer without a file).
pub fn finish_output(w: RowWriter, path: String) -> Result<Option<OutputEntry>, FatalError> {
    let rows = w.rows;
    Ok(w.finish()?.map(|(bytes, blake3)| OutputEntry {
        path,
        bytes,
        rows,
        blake3,
    }))
}

/// Writes a whole text file at `path` under `dir`, atomically, and describes it.
pub fn write_text(dir: &Path, path: String, text: &str) -> Result<OutputEntry, FatalError> {
    let mut f = AtomicFile::create(&dir.join(&path))?;
    f.write_bytes(text.as_bytes())?;
    let (bytes, blake3) = f.finish()?;
    Ok(OutputEntry {
        path,
        bytes,
        rows: 0,
        blake3,
    })
}

/// Writes `checksums.b3` for the outputs (sorted by path) and returns its reference.
pub fn write_checksums(dir: &Path, outputs: &[OutputEntry]) -> Result<FileRef, FatalError> {
    let mut sorted: Vec<&OutputEntry> = outputs.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut text = String::new();
    for o in sorted {
        text.push_str(&format!("{}  {}\n", o.blake3, o.path));
    }
    let mut f = AtomicFile::create(&dir.join(CHECKSUMS))?;
    f.write_bytes(text.as_bytes())?;
    let (_, hash) = f.finish()?;
    Ok(FileRef {
        path: CHECKSUMS.into(),
        blake3: hash,
    })
}

/// Writes the manifest, last of all.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), FatalError> {
    let mut text =
        serde_json::to_string_pretty(m).map_err(|e| FatalError::Internal(e.to_string()))?;
    text.push('\n');
    let mut f = AtomicFile::create(&dir.join(MANIFEST))?;
    f.write_bytes(text.as_bytes())?;
    f.finish().map(|_| ())
}

/// BLAKE3 of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// One finding of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    Ok(String),
    Changed(String),
    Missing(String),
    Unexpected(String),
    /// The manifest disagrees with the checksums, or cannot be read.
    Manifest(String),
}

impl Finding {
    pub fn is_ok(&self) -> bool {
        matches!(self, Finding::Ok(_))
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Ok(p) => write!(f, "OK          {p}"),
            Finding::Changed(p) => write!(f, "CHANGED     {p}"),
            Finding::Missing(p) => write!(f, "MISSING     {p}"),
            Finding::Unexpected(p) => write!(f, "UNEXPECTED  {p}"),
            Finding::Manifest(m) => write!(f, "MANIFEST    {m}"),
        }
    }
}

/// Parses `checksums.b3` lines (`<64 hex>  <path>`). Errors name the line.
pub fn parse_checksums(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (hash, path) = line
            .split_once("  ")
            .ok_or_else(|| format!("{CHECKSUMS}: line {}: expected \"<hash>  <path>\"", i + 1))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{CHECKSUMS}: line {}: not a BLAKE3 hash: {hash:?}",
                i + 1
            ));
        }
        if path.starts_with('/') || path.split('/').any(|s| s == "..") {
            return Err(format!(
                "{CHECKSUMS}: line {}: path {path:?} leaves the folder",
                i + 1
            ));
        }
        out.push((hash.to_ascii_lowercase(), path.to_string()));
    }
    Ok(out)
}

/// Re-hashes every file listed in `checksums.b3`, looks for files it does not list, and checks the
/// manifest against it. All findings are returned; the run is intact when all are `Ok`.
pub fn verify(dir: &Path) -> Result<Vec<Finding>, FatalError> {
    if !dir.is_dir() {
        return Err(FatalError::Usage(format!(
            "{}: not a folder",
            dir.display()
        )));
    }
    let mut findings = Vec::new();
    let sums_path = dir.join(CHECKSUMS);
    let sums_text = match std::fs::read_to_string(&sums_path) {
        Ok(t) => t,
        Err(_) => {
            findings.push(Finding::Missing(CHECKSUMS.into()));
            String::new()
        }
    };
    let entries = match parse_checksums(&sums_text) {
        Ok(e) => e,
        Err(msg) => {
            findings.push(Finding::Manifest(msg));
            Vec::new()
        }
    };
    let mut listed = BTreeSet::new();
    for (hash, path) in &entries {
        listed.insert(path.clone());
        let full = dir.join(path);
        match hash_file(&full) {
            Ok(h) if &h == hash => findings.push(Finding::Ok(path.clone())),
            Ok(_) => findings.push(Finding::Changed(path.clone())),
            Err(_) => findings.push(Finding::Missing(path.clone())),
        }
    }
    for f in walk(dir)? {
        if f != CHECKSUMS && f != MANIFEST && !listed.contains(&f) {
            findings.push(Finding::Unexpected(f));
        }
    }
    match std::fs::read_to_string(dir.join(MANIFEST)) {
        Err(_) => findings.push(Finding::Missing(MANIFEST.into())),
        Ok(text) => match serde_json::from_str::<Manifest>(&text) {
            Err(e) => findings.push(Finding::Manifest(format!("{MANIFEST} cannot be read: {e}"))),
            Ok(m) => {
                let sums_hash = blake3::hash(sums_text.as_bytes()).to_hex().to_string();
                if m.checksums.blake3 != sums_hash {
                    findings.push(Finding::Changed(CHECKSUMS.into()));
                }
                let in_manifest: BTreeMap<&str, &str> = m
                    .outputs
                    .iter()
                    .map(|o| (o.path.as_str(), o.blake3.as_str()))
                    .collect();
                let in_sums: BTreeMap<&str, &str> = entries
                    .iter()
                    .map(|(h, p)| (p.as_str(), h.as_str()))
                    .collect();
                if in_manifest != in_sums {
                    findings.push(Finding::Manifest(format!(
                        "the outputs in {MANIFEST} differ from those in {CHECKSUMS}"
                    )));
                }
            }
        },
    }
    findings.sort();
    Ok(findings)
}

/// Every file under `dir`, relative, with `/` separators.
fn walk(dir: &Path) -> Result<Vec<String>, FatalError> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&path).map_err(|e| FatalError::io(&path, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| FatalError::io(&path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry
                .file_type()
                .map_err(|e| FatalError::io(entry.path(), e))?;
            if ft.is_dir() {
                stack.push((entry.path(), r));
            } else {
                out.push(r);
            }
        }
    }
    out.sort();
    Ok(out)
}
