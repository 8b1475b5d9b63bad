//! Deferred references: a reference that would close a cycle (an account's parent account, a pair of
//! entities that point at each other) is written as null, and its value is kept here with the row's
//! primary key. Once every entity has run, each value is matched against its parent's index and the
//! matches become `<entity>.updates.csv`, which a loader applies after the inserts.
//!
//! The values wait in a temporary file, not in memory, so a large self-referencing table stays within
//! bounded memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::FatalError;

/// The deferred values of one entity's written rows, in output order.
pub struct Spill {
    path: PathBuf,
    w: Option<BufWriter<File>>,
    pub rows: u64,
}

impl Spill {
    /// A spill file at `path` (removed when the spill is dropped).
    pub fn create(path: PathBuf) -> Result<Spill, FatalError> {
        let f = File::create(&path).map_err(|e| FatalError::io(&path, e))?;
        Ok(Spill {
            path,
            w: Some(BufWriter::with_capacity(1 << 16, f)),
            rows: 0,
        })
    }

    /// Adds one row: its primary key, (field, value) pairs, and its digest material as written (with
    /// the deferred fields null), so the entity's digest can be corrected once they are set.
    pub fn push(
        &mut self,
        pk: &str,
        values: &[(usize, &str)],
        material: &[u8],
    ) -> Result<(), FatalError> {
        let Some(w) = self.w.as_mut() else {
            return Err(FatalError::Internal("spill already read".into()));
        };
        let mut put = |b: &[u8]| w.write_all(b);
        let res = (|| {
            put(&(pk.len() as u64).to_le_bytes())?;
            put(pk.as_bytes())?;
            put(&(values.len() as u64).to_le_bytes())?;
            for (field, v) in values {
                put(&(*field as u64).to_le_bytes())?;
                put(&(v.len() as u64).to_le_bytes())?;
                put(v.as_bytes())?;
            }
            put(&(material.len() as u64).to_le_bytes())?;
            put(material)?;
            Ok(())
        })();
        self.rows += 1;
        res.map_err(|e| FatalError::io(&self.path, e))
    }

    /// Reads the rows back in order: `each(pk, values, material)`.
    pub fn replay(
        &mut self,
        mut each: impl FnMut(&str, &[(usize, String)], &[u8]) -> Result<(), FatalError>,
    ) -> Result<(), FatalError> {
        if let Some(w) = self.w.take() {
            w.into_inner()
                .map_err(|e| FatalError::io(&self.path, e.into_error()))?;
        }
        let path = self.path.clone();
        let io = |e| FatalError::io(&path, e);
        let mut r = BufReader::new(File::open(&self.path).map_err(io)?);
        let mut values: Vec<(usize, String)> = Vec::new();
        for _ in 0..self.rows {
            let pk = read_text(&mut r).map_err(io)?;
            let n = read_u64(&mut r).map_err(io)?;
            values.clear();
            for _ in 0..n {
                let field = read_u64(&mut r).map_err(io)? as usize;
                values.push((field, read_text(&mut r).map_err(io)?));
            }
            let n = read_u64(&mut r).map_err(io)? as usize;
            let mut material = vec![0u8; n];
            r.read_exact(&mut material).map_err(io)?;
            each(&pk, &values, &material)?;
        }
        Ok(())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.w = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_text(r: &mut impl Read) -> std::io::Result<String> {
    let n = read_u64(r)? as usize;
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(std::io::Error::other)
}

/// Where a spill file goes: beside the outputs, hidden, or in the system's temporary folder for a dry
/// run.
pub fn spill_path(out: Option<&Path>, entity: &str) -> PathBuf {
    let name = format!(".{entity}.deferred.{}.tmp", std::process::id());
    match out {
        Some(dir) => dir.join(name),
        None => std::env::temp_dir().join(name),
    }
}
