//! `crm-etl inspect FILE...`: what is in an export, from the whole file rather than a sample: format,
//! encoding, CSV delimiter, and per column the null and distinct counts, how many values fit each
//! candidate type (with examples of those that do not), candidate keys, and likely references between
//! the files (a column whose values all appear in another file's key). `--mapping draft.toml` writes a
//! mapping that `check` and `run` accept as it is, with comments where a choice was uncertain.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cast::{self, BoolWords, NumberFormat};
use crate::convert::{each_record, format_of, open_flat, ConvertOptions};
use crate::datetime::{Kind, TemporalCast};
use crate::error::FatalError;
use crate::spec::{Ambiguous, Encoding, InputFormat};

/// Distinct values are counted exactly up to this many per column.
const DISTINCT_CAP: usize = 4_000_000;
const EXAMPLES: usize = 3;

/// A candidate type and the values that fit it.
struct Candidate {
    name: &'static str,
    /// Type text for the mapping (decimal gets its precision and scale later).
    ty: &'static str,
    formats: Option<&'static [&'static str]>,
    cast: Option<TemporalCast>,
    fit: u64,
    misses: Vec<String>,
}

/// What one column holds.
struct Column {
    name: String,
    nulls: u64,
    values: u64,
    distinct: HashSet<u64>,
    capped: bool,
    candidates: Vec<Candidate>,
    /// For decimals: the most digits before and after the point.
    int_digits: usize,
    frac_digits: usize,
    /// A value with a leading zero ("007"): a number type would lose it.
    leading_zero: bool,
}

const DATE_FORMATS: [&[&str]; 4] = [&["%Y-%m-%d"], &["%m/%d/%Y"], &["%d.%m.%Y"], &["%d/%m/%Y"]];

/// A candidate read by a temporal cast with these formats.
fn temporal(
    name: &'static str,
    kind: Kind,
    formats: &'static [&'static str],
    shown: bool,
) -> Candidate {
    let owned: Vec<String> = formats.iter().map(|s| s.to_string()).collect();
    Candidate {
        name,
        ty: name,
        formats: shown.then_some(formats),
        cast: TemporalCast::compile(kind, &owned, None, Ambiguous::Reject).ok(),
        fit: 0,
        misses: vec![],
    }
}

fn candidates() -> Vec<Candidate> {
    let plain = |name: &'static str| Candidate {
        name,
        ty: name,
        formats: None,
        cast: None,
        fit: 0,
        misses: vec![],
    };
    let mut c = vec![
        plain("boolean"),
        plain("integer"),
        plain("decimal"),
        plain("float"),
    ];
    for f in DATE_FORMATS {
        c.push(temporal("date", Kind::Date, f, true));
    }
    c.push(temporal(
        "timestamptz",
        Kind::TimestampTz,
        TemporalCast::default_formats(Kind::TimestampTz),
        false,
    ));
    c.push(temporal(
        "timestamp",
        Kind::Timestamp,
        TemporalCast::default_formats(Kind::Timestamp),
        false,
    ));
    c.push(plain("uuid"));
    c
}

impl Column {
    fn new(name: &str) -> Column {
        Column {
            name: name.to_string(),
            nulls: 0,
            values: 0,
            distinct: HashSet::new(),
            capped: false,
            candidates: candidates(),
            int_digits: 0,
            frac_digits: 0,
            leading_zero: false,
        }
    }

    fn add(&mut self, v: Option<&str>, scratch: &mut String) {
        let Some(v) = v.filter(|v| !v.is_empty()) else {
            self.nulls += 1;
            return;
        };
        self.values += 1;
        if !self.capped {
            self.distinct
                .insert(xxhash_rust::xxh3::xxh3_64(v.as_bytes()));
            if self.distinct.len() > DISTINCT_CAP {
                self.capped = true;
                self.distinct = HashSet::new();
            }
        }
        let t = v.trim();
        if t.len() > 1 && t.starts_with('0') && t.as_bytes()[1].is_ascii_digit() {
            self.leading_zero = true;
        }
        let nf = NumberFormat::default();
        let looks_numeric = t
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            && !t.is_empty();
        for c in &mut self.candidates {
            scratch.clear();
            let ok = match (c.name, &c.cast) {
                ("boolean", _) => t.len() <= 5 && cast::boolean(t, &BoolWords::default()).is_ok(),
                ("integer", _) => looks_numeric && cast::integer(t, &nf, scratch).is_ok(),
                ("decimal", _) => {
                    let ok = looks_numeric
                        && !t.contains(['e', 'E'])
                        && cast::decimal(t, 38, 18, false, &nf, scratch).is_ok();
                    if ok {
                        let u = t.trim_start_matches(['+', '-']);
                        let (i, f) = u.split_once('.').unwrap_or((u, ""));
                        self.int_digits =
                            self.int_digits.max(i.trim_start_matches('0').len().max(1));
                        self.frac_digits = self.frac_digits.max(f.len());
                    }
                    ok
                }
                ("float", _) => looks_numeric && cast::float(t, &nf, scratch).is_ok(),
                ("uuid", _) => t.len() >= 32 && cast::uuid(t, scratch).is_ok(),
                (_, Some(tc)) => t.len() >= 6 && tc.cast(t, scratch).is_ok(),
                _ => false,
            };
            if ok {
                c.fit += 1;
            } else if c.misses.len() < EXAMPLES && !c.misses.iter().any(|m| m == v) {
                c.misses.push(v.to_string());
            }
        }
    }

    /// The type chosen, its formats, and why (when uncertain).
    fn choice(&self) -> (String, Option<&'static [&'static str]>, Option<String>) {
        if self.values == 0 {
            return ("text".into(), None, Some("every value is empty".into()));
        }
        for c in &self.candidates {
            if c.fit != self.values {
                continue;
            }
            let numeric = matches!(c.name, "integer" | "decimal" | "float");
            if numeric && self.leading_zero {
                return (
                    "text".into(),
                    None,
                    Some(format!("all values are {}s, but some have leading zeros (a code, not a number): kept as text", c.name)),
                );
            }
            let ty = if c.name == "decimal" {
                let p = (self.int_digits + self.frac_digits).clamp(1, 38);
                format!("decimal({p},{})", self.frac_digits.min(p))
            } else {
                c.ty.to_string()
            };
            let note = match c.name {
                "boolean" if self.distinct.len() <= 2 => {
                    Some("only two values: read as boolean".into())
                }
                _ => None,
            };
            return (ty, c.formats, note);
        }
        // Nothing fits everything: say how close the best one came.
        // The most specific of the best-fitting candidates (they are listed most specific first).
        let top = self.candidates.iter().map(|c| c.fit).max().unwrap_or(0);
        let best = self
            .candidates
            .iter()
            .find(|c| c.fit == top)
            .filter(|c| c.fit * 10 >= self.values * 9);
        let note = best.map(|c| {
            format!(
                "{:.1} % of the values are {}s; kept as text because of values like {}",
                100.0 * c.fit as f64 / self.values as f64,
                c.name,
                c.misses
                    .iter()
                    .map(|m| format!("{m:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        ("text".into(), None, note)
    }
}

/// One inspected file.
struct FileReport {
    path: String,
    format: InputFormat,
    encoding: String,
    delimiter: Option<char>,
    record_path: Option<String>,
    rows: u64,
    columns: Vec<Column>,
}

impl FileReport {
    fn keys(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| {
                let c = &self.columns[i];
                !c.capped
                    && c.nulls == 0
                    && c.values == self.rows
                    && c.distinct.len() as u64 == self.rows
                    && self.rows > 0
            })
            .collect()
    }
}

/// The delimiter that splits the first lines most consistently.
fn sniff_delimiter(path: &Path) -> char {
    let Ok(bytes) = std::fs::read(path).map(|b| b.into_iter().take(64 << 10).collect::<Vec<u8>>())
    else {
        return ',';
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().take(50).filter(|l| !l.is_empty()).collect();
    let mut best = (',', 0usize, 0usize);
    for d in [',', ';', '\t', '|'] {
        let counts: Vec<usize> = lines
            .iter()
            .map(|l| {
                let mut inq = false;
                l.chars()
                    .filter(|&c| {
                        if c == '"' {
                            inq = !inq;
                        }
                        c == d && !inq
                    })
                    .count()
            })
            .collect();
        let first = counts.first().copied().unwrap_or(0);
        let same = counts.iter().filter(|&&c| c == first).count();
        if first > 0 && (same, first) > (best.1, best.2) {
            best = (d, same, first);
        }
    }
    best.0
}

/// What `inspect` was asked to do.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub files: Vec<String>,
    pub from: Option<InputFormat>,
    pub record_path: Option<String>,
    pub mapping: Option<PathBuf>,
}

fn read_file(file: &str, opts: &InspectOptions) -> Result<FileReport, FatalError> {
    let format = opts.from.unwrap_or_else(|| format_of(file));
    let delimiter = (format == InputFormat::Csv).then(|| sniff_delimiter(Path::new(file)));
    let dialect_spec = crate::spec::CsvDialect {
        delimiter: delimiter.map_or(",".into(), |d| d.to_string()),
        ..crate::spec::CsvDialect::default()
    };
    let dialect = crate::read::compile_dialect(&dialect_spec)
        .map_err(|_| FatalError::Internal("dialect".into()))?;
    let copts = ConvertOptions {
        input: file.to_string(),
        output: String::new(),
        to: crate::spec::OutputFormat::Csv,
        dialect,
        encoding: Encoding::Auto,
        ragged: crate::spec::Ragged::Fail,
        threads: 1,
        from: Some(format),
        record_path: opts.record_path.clone(),
        columns: None,
        xml_root: None,
        xml_record: None,
        max_record_bytes: 64 << 20,
        progress: crate::progress::Mode::detect(false),
    };
    let mut flat = open_flat(&copts)?;
    let encoding = flat.opened.sniffed.to_string();
    let mut columns: Vec<Column> = flat.header.iter().map(|h| Column::new(h)).collect();
    let mut rows = 0u64;
    let mut scratch = String::new();
    each_record(&mut flat, file, |_, v| {
        rows += 1;
        for (c, x) in columns.iter_mut().zip(v) {
            c.add(*x, &mut scratch);
        }
        Ok(())
    })?;
    Ok(FileReport {
        path: file.to_string(),
        format,
        encoding,
        delimiter,
        record_path: opts.record_path.clone(),
        rows,
        columns,
    })
}

/// A likely reference: file `from`, column `col` -> file `to`, key column `key`.
struct Link {
    from: usize,
    col: usize,
    to: usize,
    key: usize,
}

fn links(files: &[FileReport]) -> Vec<Link> {
    let mut out = Vec::new();
    for (ti, t) in files.iter().enumerate() {
        for key in t.keys() {
            let keyset = &t.columns[key].distinct;
            for (fi, f) in files.iter().enumerate() {
                for (ci, c) in f.columns.iter().enumerate() {
                    if (fi == ti && ci == key) || c.capped || c.distinct.is_empty() {
                        continue;
                    }
                    // Values that are all in a key, and are not just the same small set of flags.
                    if c.distinct.len() >= 2 && c.distinct.is_subset(keyset) {
                        out.push(Link {
                            from: fi,
                            col: ci,
                            to: ti,
                            key,
                        });
                    }
                }
            }
        }
    }
    out
}

/// A field or entity name in snake case: `AnnualRevenue` and `Annual Revenue` become `annual_revenue`.
fn ident(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 4);
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            o.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        o.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        });
    }
    while o.contains("__") {
        o = o.replace("__", "_");
    }
    let o = o.trim_matches('_').to_string();
    if o.is_empty() || o.starts_with(|c: char| c.is_ascii_digit()) {
        format!("f_{o}")
    } else {
        o
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `to` relative to the folder `from`, with `/`.
fn relative(from: &Path, to: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (from, to) = (abs(from), abs(to));
    let fc: Vec<_> = from.components().collect();
    let tc: Vec<_> = to.components().collect();
    let common = fc.iter().zip(&tc).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); fc.len() - common];
    parts.extend(
        tc[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// Runs the inspection: the report, and the draft mapping when asked for.
pub fn inspect(opts: &InspectOptions) -> Result<(String, Option<String>), FatalError> {
    let files: Vec<FileReport> = opts
        .files
        .iter()
        .map(|f| read_file(f, opts))
        .collect::<Result<_, _>>()?;
    let links = links(&files);
    let mut r = String::new();
    for f in &files {
        let _ = writeln!(
            r,
            "{}: {:?}, encoding {}{}{}, {} records, {} columns",
            f.path,
            f.format,
            f.encoding,
            f.delimiter
                .map_or(String::new(), |d| format!(", delimiter {d:?}")),
            f.record_path
                .as_deref()
                .map_or(String::new(), |p| format!(", records at {p:?}")),
            f.rows,
            f.columns.len()
        );
        for c in &f.columns {
            let (ty, formats, note) = c.choice();
            let distinct = if c.capped {
                format!("over {DISTINCT_CAP}")
            } else {
                c.distinct.len().to_string()
            };
            let _ = writeln!(
                r,
                "  {:<28} {:<16} nulls {:>8}  distinct {:>8}{}",
                c.name,
                ty,
                c.nulls,
                distinct,
                formats.map_or(String::new(), |f| format!("  format {}", f.join(" ")))
            );
            for cand in c
                .candidates
                .iter()
                .filter(|x| x.fit > 0 && x.fit < c.values)
            {
                let _ = writeln!(
                    r,
                    "      {} of {} values fit {}{}; not: {}",
                    cand.fit,
                    c.values,
                    cand.name,
                    cand.formats
                        .map_or(String::new(), |f| format!(" ({})", f.join(" "))),
                    cand.misses
                        .iter()
                        .map(|m| format!("{m:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if let Some(n) = note {
                let _ = writeln!(r, "      note: {n}");
            }
        }
        let keys: Vec<&str> = f
            .keys()
            .iter()
            .map(|&k| f.columns[k].name.as_str())
            .collect();
        let _ = writeln!(
            r,
            "  candidate keys: {}",
            if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            }
        );
    }
    for l in &links {
        let _ = writeln!(
            r,
            "likely reference: {} {} -> {} {} (every value of the column is a key there)",
            files[l.from].path,
            files[l.from].columns[l.col].name,
            files[l.to].path,
            files[l.to].columns[l.key].name
        );
    }
    let mapping = opts.mapping.as_ref().map(|m| draft(&files, &links, m));
    Ok((r, mapping))
}

/// The draft mapping.
fn draft(files: &[FileReport], links: &[Link], mapping: &Path) -> String {
    let dir = mapping
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            ident(
                Path::new(&f.path)
                    .file_stem()
                    .map_or("data".into(), |s| s.to_string_lossy().into_owned())
                    .as_str(),
            )
        })
        .collect();
    let mut s = String::from(
        "# Drafted by `crm-etl inspect` from the whole files: review the comments, then\n# `crm-etl check` this file (`crm-etl schema` prints the JSON Schema that editors validate with).\n",
    );
    for (f, name) in files.iter().zip(&names) {
        let _ = write!(
            s,
            "\n[sources.{name}]\npath = {}\n",
            toml_str(&relative(dir, Path::new(&f.path)))
        );
        let fmt = match f.format {
            InputFormat::Csv => "csv",
            InputFormat::Json => "json",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Xml => "xml",
        };
        let _ = writeln!(s, "format = \"{fmt}\"");
        if let Some(d) = f.delimiter.filter(|d| *d != ',') {
            let _ = writeln!(s, "csv = {{ delimiter = {} }}", toml_str(&d.to_string()));
        }
        if let Some(p) = &f.record_path {
            let _ = writeln!(s, "record_path = {}", toml_str(p));
        }
    }
    // Parents first is crm-etl's job; a referenced key must be the primary key or unique.
    let pk: Vec<Option<usize>> = files
        .iter()
        .map(|f| {
            let keys = f.keys();
            keys.iter()
                .copied()
                .find(|&k| f.columns[k].name.eq_ignore_ascii_case("id"))
                .or_else(|| keys.first().copied())
        })
        .collect();
    for (fi, (f, name)) in files.iter().zip(&names).enumerate() {
        let _ = write!(
            s,
            "\n[[entities]]\nname = \"{name}\"\nsource = \"{name}\"\n"
        );
        let mut field_names: Vec<String> = Vec::new();
        for c in &f.columns {
            let mut n = ident(&c.name);
            let base = n.clone();
            let mut k = 2;
            while field_names.contains(&n) {
                n = format!("{base}_{k}");
                k += 1;
            }
            field_names.push(n);
        }
        if let Some(k) = pk[fi] {
            let _ = writeln!(s, "primary_key = [\"{}\"]", field_names[k]);
        }
        for (ci, c) in f.columns.iter().enumerate() {
            let (ty, formats, note) = c.choice();
            if let Some(n) = &note {
                let _ = writeln!(s, "# {}: {}", c.name, n.replace('\n', " "));
            }
            let mut parts = vec![
                format!("name = \"{}\"", field_names[ci]),
                format!("column = {}", toml_str(&c.name)),
            ];
            // Empty values are read as null (the default), so a typed field never sees "".
            if ty != "text" {
                parts.push(format!("type = \"{ty}\""));
            }
            if let Some(fs) = formats.filter(|f| f != &["%Y-%m-%d"]) {
                parts.push(format!(
                    "formats = [{}]",
                    fs.iter()
                        .map(|x| toml_str(x))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let is_pk = pk[fi] == Some(ci);
            let referenced = links.iter().any(|l| l.to == fi && l.key == ci);
            if referenced && !is_pk {
                parts.push("unique = true".into());
            }
            if let Some(l) = links
                .iter()
                .find(|l| l.from == fi && l.col == ci && !(l.to == fi && l.key == ci))
            {
                let by = if pk[l.to] == Some(l.key) {
                    String::new()
                } else {
                    let fnames: Vec<String> =
                        files[l.to].columns.iter().map(|c| ident(&c.name)).collect();
                    format!(", by = \"{}\"", fnames[l.key])
                };
                if l.to == fi {
                    parts.push(format!(
                        "references = {{ entity = \"{}\"{by}, defer = true, orphans = \"null\" }}",
                        names[l.to]
                    ));
                } else {
                    parts.push(format!(
                        "references = {{ entity = \"{}\"{by} }}",
                        names[l.to]
                    ));
                }
            }
            let _ = writeln!(s, "[[entities.fields]]\n{}", parts.join("\n"));
        }
    }
    s
}
