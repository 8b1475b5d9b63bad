//! The command line: clap-derive commands whose doc comments are the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Turn CRM exports into clean, typed, verifiable data.
///
/// Exit codes: 0 clean; 1 finished but more records were rejected than --max-rejects allows, or
/// verification failed; 2 fatal or usage error.
#[derive(Debug, Parser)]
#[command(name = "crm-etl", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// A load-script target on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TargetArg {
    Postgres,
    Mysql,
    Sqlite,
}

impl From<TargetArg> for crate::spec::Dialect {
    fn from(t: TargetArg) -> Self {
        match t {
            TargetArg::Postgres => crate::spec::Dialect::Postgres,
            TargetArg::Mysql => crate::spec::Dialect::Mysql,
            TargetArg::Sqlite => crate::spec::Dialect::Sqlite,
        }
    }
}

/// `--ddl`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DdlArg {
    Create,
    Recreate,
    None,
}

impl From<DdlArg> for crate::spec::Ddl {
    fn from(d: DdlArg) -> Self {
        match d {
            DdlArg::Create => crate::spec::Ddl::Create,
            DdlArg::Recreate => crate::spec::Ddl::Recreate,
            DdlArg::None => crate::spec::Ddl::None,
        }
    }
}

/// `--mode`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Insert,
    Upsert,
}

impl From<ModeArg> for crate::spec::LoadMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Insert => crate::spec::LoadMode::Insert,
            ModeArg::Upsert => crate::spec::LoadMode::Upsert,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a mapping: typed output per entity, rejects, checksums.b3 and manifest.json in --out.
    ///
    /// Example:
    ///   crm-etl run fixtures/demo/mapping.toml --out out/
    ///   crm-etl verify out/
    ///   crm-etl run fixtures/demo/mapping.toml --dry-run
    Run {
        /// The mapping file (TOML).
        mapping: PathBuf,
        /// Output folder: created if missing; an earlier run's files in it are replaced.
        #[arg(long, short, required_unless_present = "dry_run")]
        out: Option<PathBuf>,
        /// Run everything but the writing (no folder, no files) and print, per entity, what would be
        /// written and rejected, orphans, unmapped values and a few sample rejects.
        #[arg(long)]
        dry_run: bool,
        /// Databases to write bulk-load scripts for (in DIR/load/<dialect>/), overriding the mapping's
        /// `targets`.
        #[arg(long, value_enum, value_delimiter = ',')]
        target: Option<Vec<TargetArg>>,
        /// Load scripts: create missing tables, drop and recreate them, or use existing ones.
        #[arg(long, value_enum)]
        ddl: Option<DdlArg>,
        /// Load scripts: plain inserts, or upserts by primary key.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Also write the run's figures as one self-contained HTML page (counts, rejects by reason and
        /// field, orphans, throughput).
        #[arg(long)]
        report: Option<PathBuf>,
        /// An earlier run's output folder: also write what changed since it, per entity
        /// (changes/<entity>.insert|update|delete files) and, per load target, a script that applies
        /// the changes (changes/load/<dialect>/apply.sql). The folder must verify.
        #[arg(long, value_name = "DIR")]
        since: Option<PathBuf>,
        /// Worker threads for mapping. Default: RAYON_NUM_THREADS, else all cores. Output is the same for any value.
        #[arg(long)]
        threads: Option<usize>,
        /// Output format for every entity, overriding the mapping; several, comma-separated, are
        /// written from the same rows in one pass (the first is the main output).
        #[arg(long, value_enum, value_delimiter = ',')]
        format: Option<Vec<Format>>,
        /// Rejected records allowed (over all entities) before the exit code becomes 1. The run always completes.
        #[arg(long, default_value_t = 0)]
        max_rejects: u64,
        /// Print nothing on success.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a mapping against its sources and report every problem at once (exit 2 if any).
    ///
    /// Example:
    ///   crm-etl check fixtures/demo/mapping.toml
    Check {
        /// The mapping file (TOML).
        mapping: PathBuf,
    },
    /// Convert a CSV, JSON, JSON Lines or XML file to CSV, JSON Lines, JSON or XML without a mapping;
    /// every value stays text as read. JSON and XML columns are the leaf paths of the first 4096 records
    /// (or --columns); a later record with another path is an error.
    ///
    /// Example:
    ///   crm-etl convert Contact.csv --to jsonl -o contacts.jsonl
    ///   cat Contact.csv | crm-etl convert - --to json
    ///   crm-etl convert Account.json --record-path records --to csv
    ///   crm-etl convert data.xml --record-path /entities/entity/records/record --to jsonl
    Convert {
        /// Input file, or - for standard input.
        input: String,
        /// Output format.
        #[arg(long, value_enum)]
        to: Format,
        /// Input format; default from the extension (.json, .jsonl/.ndjson, .xml), else csv.
        #[arg(long, value_enum)]
        from: Option<InputArg>,
        /// JSON: key path of the records array (records, data.items); XML: path of the record element
        /// (/Contacts/Contact).
        #[arg(long)]
        record_path: Option<String>,
        /// JSON/XML: the columns to read, as paths (Owner.Name, @id, Address/City), comma-separated.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// XML output: root element name.
        #[arg(long, default_value = "records")]
        xml_root: String,
        /// XML output: record element name.
        #[arg(long, default_value = "record")]
        xml_record: String,
        /// JSON/XML: largest record accepted, in bytes.
        #[arg(long, default_value_t = 64 << 20)]
        max_record_bytes: u64,
        /// Output file, or - for standard output (the default).
        #[arg(long, short, default_value = "-")]
        output: String,
        /// Field delimiter of the input (one character; \t for tab).
        #[arg(long, default_value = ",")]
        delimiter: String,
        /// Quote character of the input; empty for none.
        #[arg(long, default_value = "\"")]
        quote: String,
        /// Input encoding: auto, utf-8, utf-16le, utf-16be, windows-1252, iso-8859-1.
        #[arg(long, default_value = "auto")]
        encoding: String,
        /// Records with a wrong field count: fail, or pad short ones with empty values.
        #[arg(long, value_enum, default_value_t = RaggedArg::Fail)]
        ragged: RaggedArg,
        /// Worker threads.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Re-hash an output folder against its checksums.b3 and manifest.json, or an archive against the
    /// checksums.b3 inside it (in one pass, without unpacking); exit 1 if anything differs.
    ///
    /// Example:
    ///   crm-etl verify out/
    ///   crm-etl verify batch.tar
    Verify {
        /// An output folder of `crm-etl run`, or an archive of `crm-etl archive`.
        dir: PathBuf,
    },
    /// Inspect exports: format, encoding, CSV delimiter; per column the type that fits every value (and
    /// how many values fit the others, with examples), nulls, distinct values; candidate keys; likely
    /// references between the files. --mapping writes a draft mapping that check and run accept.
    ///
    /// Example:
    ///   crm-etl inspect exports/Account.csv exports/Contact.csv --mapping draft.toml
    Inspect {
        /// The files (one shape each).
        #[arg(required = true)]
        files: Vec<String>,
        /// Input format of the files; default from the extension.
        #[arg(long, value_enum)]
        from: Option<InputArg>,
        /// JSON: key path of the records array; XML: path of the record element.
        #[arg(long)]
        record_path: Option<String>,
        /// Write a draft mapping here (a new file).
        #[arg(long)]
        mapping: Option<PathBuf>,
    },
    /// Compare two exports of one shape by key: inserted, updated (with the changed columns) and
    /// deleted records, as insert/update/delete files in --out. Memory grows with the keys, not the rows.
    ///
    /// Example:
    ///   crm-etl diff old/Contact.csv new/Contact.csv --key Id --out changes/
    Diff {
        /// The earlier export.
        old: String,
        /// The later export.
        new: String,
        /// Key column(s), comma-separated: unique in each file.
        #[arg(long, value_delimiter = ',', required = true)]
        key: Vec<String>,
        /// Folder for insert, update and delete files.
        #[arg(long, short)]
        out: PathBuf,
        /// Format of the change files.
        #[arg(long, value_enum, default_value_t = DiffFormatArg::Csv)]
        to: DiffFormatArg,
        /// Input format of both files; default from the extension.
        #[arg(long, value_enum)]
        from: Option<InputArg>,
        /// JSON: key path of the records array; XML: path of the record element.
        #[arg(long)]
        record_path: Option<String>,
        /// JSON/XML: the columns to read, as paths, comma-separated.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// Field delimiter of CSV inputs.
        #[arg(long, default_value = ",")]
        delimiter: String,
        /// Quote character of CSV inputs; empty for none.
        #[arg(long, default_value = "\"")]
        quote: String,
        /// Input encoding.
        #[arg(long, default_value = "auto")]
        encoding: String,
    },
    /// Pack runs (outputs, checksums, manifest, mapping and inputs) into a tar with a checksums.b3 over
    /// every member; `crm-etl verify ARCHIVE` checks it without unpacking, and so do `tar` and
    /// `b3sum --check` after unpacking. Only runs that verify, with unchanged inputs, are archived; an
    /// existing archive is never overwritten.
    ///
    /// Example:
    ///   crm-etl archive out/demo --to demo-2026-11-25.tar
    ///   crm-etl verify demo-2026-11-25.tar
    Archive {
        /// Output folders of `crm-etl run`.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The archive to write (a new file).
        #[arg(long)]
        to: PathBuf,
        /// Leave the input files and the mapping out.
        #[arg(long)]
        no_inputs: bool,
    },
    /// Print the JSON Schema of mapping files.
    Schema,
    /// Compute an entity's dataset digest from a database's export of its table, typed per the mapping;
    /// with --expect, compare it with a run's manifest (exit 1 when they differ).
    ///
    /// Example:
    ///   psql -d DB -c '\copy "contact" TO STDOUT' | crm-etl digest m.toml --entity contact --from copy --expect out/
    ///   mariadb --default-character-set=utf8mb4 -N -B --raw DB -e "$(crm-etl digest m.toml --entity contact --mysql-query)" | crm-etl digest m.toml --entity contact --from jsonl --expect out/
    ///   sqlite3 -json DB 'SELECT * FROM "contact"' | crm-etl digest m.toml --entity contact --from json --expect out/
    Digest {
        /// The mapping file the table was produced with.
        mapping: PathBuf,
        /// The entity (table) exported.
        #[arg(long)]
        entity: String,
        /// The export's format.
        #[arg(long, value_enum, required_unless_present = "mysql_query")]
        from: Option<ExportArg>,
        /// Print the MySQL/MariaDB query whose output (with `mariadb -N -B --raw`) is the JSON Lines
        /// export, and exit.
        #[arg(long)]
        mysql_query: bool,
        /// The export file, or - for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
        /// A run's output folder: compare with the digest in its manifest.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Worker threads. Default: RAYON_NUM_THREADS, else all cores.
        #[arg(long)]
        threads: Option<usize>,
    },
}

/// `diff --to`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DiffFormatArg {
    Csv,
    Jsonl,
}

/// `digest --from`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportArg {
    /// PostgreSQL COPY text (psql -c '\copy t TO STDOUT').
    Copy,
    /// One JSON object per line.
    Jsonl,
    /// A JSON array of objects (sqlite3 -json).
    Json,
}

/// Output formats on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Json,
    Xml,
    /// Parquet (zstd), typed from the mapping.
    Parquet,
    /// Arrow IPC file (zstd), typed from the mapping.
    Arrow,
    /// No output file (`run` only): the load targets' data files are the product.
    None,
}

/// Input formats on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InputArg {
    Csv,
    Json,
    Jsonl,
    Xml,
}

impl From<InputArg> for crate::spec::InputFormat {
    fn from(f: InputArg) -> Self {
        match f {
            InputArg::Csv => crate::spec::InputFormat::Csv,
            InputArg::Json => crate::spec::InputFormat::Json,
            InputArg::Jsonl => crate::spec::InputFormat::Jsonl,
            InputArg::Xml => crate::spec::InputFormat::Xml,
        }
    }
}

impl From<Format> for crate::spec::OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Csv => crate::spec::OutputFormat::Csv,
            Format::Jsonl => crate::spec::OutputFormat::Jsonl,
            Format::Json => crate::spec::OutputFormat::Json,
            Format::Xml => crate::spec::OutputFormat::Xml,
            Format::Parquet => crate::spec::OutputFormat::Parquet,
            Format::Arrow => crate::spec::OutputFormat::Arrow,
            Format::None => crate::spec::OutputFormat::None,
        }
    }
}

/// Ragged-record policies of `convert` (there is no rejects file to reject into).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RaggedArg {
    Fail,
    Pad,
}

/// Threads to use: the flag, else RAYON_NUM_THREADS, else all cores.
pub fn threads(flag: Option<usize>) -> usize {
    flag.filter(|n| *n > 0)
        .or_else(|| {
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
        })
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
