//! Archives of hashed backups: `crm-etl archive OUT... --to batch.tar` packs one or more runs (their
//! outputs, checksums and manifest, the mapping, and the input files the manifest names) into a
//! standard tar whose first member is a `checksums.b3` over every other member, and `crm-etl verify
//! batch.tar` checks it in one pass without unpacking. With only `tar` and `b3sum`:
//! `tar -xf batch.tar -C dir && (cd dir && b3sum --check checksums.b3)`.
//!
//! Only runs that verify are archived, and every input is checked against the BLAKE3 its run recorded,
//! so an archive holds exactly what the runs read and wrote. The tar is reproducible (members sorted, no
//! owner, time 0) and written under a temporary name, then linked into place: an existing archive is
//! never overwritten.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::FatalError;
use crate::manifest::{self, Finding, Manifest, CHECKSUMS, MANIFEST};

/// One member of the archive: its path in the tar, where it is read from, and its BLAKE3.
struct Member {
    name: String,
    from: PathBuf,
    blake3: String,
}

/// What `archive` was asked to do.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    pub runs: Vec<PathBuf>,
    pub to: PathBuf,
    /// Leave the input files out (for runs whose inputs are gone or were read from standard input).
    pub no_inputs: bool,
}

/// A path inside the archive for an input path as the manifest records it: `..` becomes `_parent_`
/// and a root is dropped, so every member stays under its run's folder.
fn inside(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("_parent_".into()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The members of one run, checked: the run verifies, and its mapping and inputs are those it read.
fn run_members(dir: &Path, name: &str, no_inputs: bool) -> Result<Vec<Member>, FatalError> {
    let bad: Vec<String> = manifest::verify(dir)?
        .into_iter()
        .filter(|f| !f.is_ok())
        .map(|f| f.to_string())
        .collect();
    if !bad.is_empty() {
        return Err(FatalError::Usage(format!(
            "{}: the run does not verify, so it is not archived: {}",
            dir.display(),
            bad.join("; ")
        )));
    }
    let text = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|e| FatalError::io(dir.join(MANIFEST), e))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| FatalError::Usage(format!("{}: {e}", dir.join(MANIFEST).display())))?;
    let mut members = Vec::new();
    let mut add = |rel: &str, from: PathBuf, blake3: String| {
        members.push(Member {
            name: format!("{name}/{rel}"),
            from,
            blake3,
        })
    };
    for f in [CHECKSUMS, MANIFEST] {
        let p = dir.join(f);
        let h = manifest::hash_file(&p).map_err(|e| FatalError::io(&p, e))?;
        add(f, p, h);
    }
    for o in &m.outputs {
        add(&o.path, dir.join(&o.path), o.blake3.clone());
    }
    if no_inputs {
        return Ok(members);
    }
    // Inputs are recorded relative to the mapping's folder; the mapping as it was named on the
    // command line, relative to where the run was started.
    let mapping = PathBuf::from(&m.mapping.path);
    let base = mapping.parent().map(Path::to_path_buf).unwrap_or_default();
    let check = |p: &Path, want: &str, what: &str| -> Result<String, FatalError> {
        match manifest::hash_file(p) {
            Ok(h) if h == want => Ok(h),
            Ok(_) => Err(FatalError::Usage(format!(
                "{}: {what} {} changed since the run (its BLAKE3 differs from the manifest's)",
                dir.display(),
                p.display()
            ))),
            Err(e) => Err(FatalError::Usage(format!(
                "{}: {what} {}: {e}; run `crm-etl archive` from the folder the run was started in, or pass --no-inputs",
                dir.display(),
                p.display()
            ))),
        }
    };
    let file_name = mapping.file_name().map_or_else(
        || "mapping.toml".into(),
        |f| f.to_string_lossy().into_owned(),
    );
    let h = check(&mapping, &m.mapping.blake3, "the mapping")?;
    add(&format!("mapping/{file_name}"), mapping.clone(), h);
    for i in &m.inputs {
        if i.path == "-" {
            return Err(FatalError::Usage(format!(
                "{}: an input was read from standard input and cannot be archived; pass --no-inputs",
                dir.display()
            )));
        }
        let p = if Path::new(&i.path).is_absolute() {
            PathBuf::from(&i.path)
        } else {
            base.join(&i.path)
        };
        let h = check(&p, &i.blake3, "the input")?;
        add(&format!("inputs/{}", inside(&i.path)), p, h);
    }
    Ok(members)
}

/// Writes the archive; returns its member count (checksums.b3 included) and size.
pub fn archive(opts: &ArchiveOptions) -> Result<(usize, u64), FatalError> {
    if opts.to.exists() {
        return Err(FatalError::Usage(format!(
            "{}: the archive exists; refusing to overwrite it",
            opts.to.display()
        )));
    }
    if opts.runs.is_empty() {
        return Err(FatalError::Usage(
            "archive: name at least one run folder".into(),
        ));
    }
    let mut members = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for dir in &opts.runs {
        let base = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "run".into());
        let mut name = base.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        members.extend(run_members(dir, &name, opts.no_inputs)?);
        names.push(name);
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let mut sums = String::new();
    for m in &members {
        sums.push_str(&format!("{}  {}\n", m.blake3, m.name));
    }
    let tmp = opts.to.with_file_name(format!(
        ".{}.{}.tmp",
        opts.to
            .file_name()
            .map_or_else(|| "archive".into(), |f| f.to_string_lossy().into_owned()),
        std::process::id()
    ));
    let written = write_tar(&tmp, &sums, &members);
    let written = written.and_then(|size| {
        // A hard link fails when the name exists: no archive is ever replaced, even by a race.
        std::fs::hard_link(&tmp, &opts.to).map_err(|e| FatalError::io(&opts.to, e))?;
        Ok(size)
    });
    let _ = std::fs::remove_file(&tmp);
    written.map(|size| (members.len() + 1, size))
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Streams `checksums.b3` then every member into a tar at `path`, hashing each member again as it is
/// copied: a file that changes meanwhile fails the archive.
fn write_tar(path: &Path, sums: &str, members: &[Member]) -> Result<u64, FatalError> {
    let io = |e| FatalError::io(path, e);
    let f = std::fs::File::create(path).map_err(io)?;
    let mut b = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, f));
    b.mode(tar::HeaderMode::Deterministic);
    let mut h = header(sums.len() as u64);
    b.append_data(&mut h, CHECKSUMS, sums.as_bytes())
        .map_err(io)?;
    for m in members {
        let file = std::fs::File::open(&m.from).map_err(|e| FatalError::io(&m.from, e))?;
        let size = file
            .metadata()
            .map_err(|e| FatalError::io(&m.from, e))?
            .len();
        let mut h = header(size);
        let mut hashing = HashingReader {
            inner: file.take(size),
            hasher: blake3::Hasher::new(),
        };
        b.append_data(&mut h, &m.name, &mut hashing).map_err(io)?;
        if hashing.hasher.finalize().to_hex().as_str() != m.blake3 {
            return Err(FatalError::Usage(format!(
                "{}: changed while it was archived",
                m.from.display()
            )));
        }
    }
    let w = b.into_inner().map_err(io)?;
    let f = w.into_inner().map_err(|e| io(e.into_error()))?;
    f.sync_all().map_err(io)?;
    Ok(f.metadata().map_err(io)?.len())
}

struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Checks an archive in one pass: every member against its `checksums.b3`, nothing missing or extra,
/// and each run's own `checksums.b3` and manifest against the members they name.
pub fn verify_archive(path: &Path) -> Result<Vec<Finding>, FatalError> {
    // The tar reader says what failed but not where: say what that means for an archive.
    let io = |e: std::io::Error| {
        FatalError::Usage(format!(
            "{}: not a readable tar archive (truncated or damaged): {e}",
            path.display()
        ))
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut a = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, f));
    let mut listed: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    // Small files needed afterwards: each run's checksums.b3 and manifest.
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut first = true;
    for entry in a.entries().map_err(io)? {
        let mut e = entry.map_err(io)?;
        let name = e.path().map_err(io)?.to_string_lossy().replace('\\', "/");
        if first {
            first = false;
            if name != CHECKSUMS {
                return Err(FatalError::Usage(format!(
                    "{}: not a crm-etl archive (its first member is {name:?}, not {CHECKSUMS})",
                    path.display()
                )));
            }
            let mut text = String::new();
            e.read_to_string(&mut text).map_err(io)?;
            let entries = manifest::parse_checksums(&text)
                .map_err(|m| FatalError::Usage(format!("{}: {CHECKSUMS}: {m}", path.display())))?;
            listed = entries.into_iter().map(|(h, p)| (p, h)).collect();
            continue;
        }
        let keep =
            name.ends_with(&format!("/{CHECKSUMS}")) || name.ends_with(&format!("/{MANIFEST}"));
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut text = Vec::new();
        loop {
            let n = e.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if keep {
                text.extend_from_slice(&buf[..n]);
            }
        }
        let got = hasher.finalize().to_hex().to_string();
        match listed.get(&name) {
            Some(want) if *want == got => findings.push(Finding::Ok(name.clone())),
            Some(_) => findings.push(Finding::Changed(name.clone())),
            None => findings.push(Finding::Unexpected(name.clone())),
        }
        if keep {
            kept.insert(name.clone(), String::from_utf8_lossy(&text).into_owned());
        }
        seen.insert(name, got);
    }
    if first {
        return Err(FatalError::Usage(format!(
            "{}: an empty archive",
            path.display()
        )));
    }
    for name in listed.keys() {
        if !seen.contains_key(name) {
            findings.push(Finding::Missing(name.clone()));
        }
    }
    // Each run's proof: its checksums.b3 names members with those hashes, and its manifest vouches
    // for that checksums file.
    for (name, text) in &kept {
        let Some(run) = name.strip_suffix(&format!("/{CHECKSUMS}")) else {
            continue;
        };
        match manifest::parse_checksums(text) {
            Err(m) => findings.push(Finding::Manifest(format!("{name}: {m}"))),
            Ok(entries) => {
                for (h, p) in entries {
                    let member = format!("{run}/{p}");
                    if seen.get(&member) != Some(&h) {
                        findings.push(Finding::Manifest(format!(
                            "{name} lists {p} with another hash than the archive holds"
                        )));
                    }
                }
            }
        }
        let man = format!("{run}/{MANIFEST}");
        match kept.get(&man).map(|t| serde_json::from_str::<Manifest>(t)) {
            Some(Ok(m))
                if m.checksums.blake3 == blake3::hash(text.as_bytes()).to_hex().as_str() => {}
            Some(Ok(_)) => findings.push(Finding::Manifest(format!(
                "{man} does not vouch for {name}"
            ))),
            _ => findings.push(Finding::Manifest(format!(
                "{man} is missing or cannot be read"
            ))),
        }
    }
    findings.sort();
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_paths_stay_inside_the_archive() {
        assert_eq!(
            inside("../../shared/a.csv"),
            "_parent_/_parent_/shared/a.csv"
        );
        assert_eq!(inside("/abs/b.csv"), "abs/b.csv");
        assert_eq!(inside("data/c.csv"), "data/c.csv");
    }
}
