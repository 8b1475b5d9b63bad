//! The mapping file: serde types of the TOML a user writes. Their doc comments become the descriptions in
//! `schemas/mapping.schema.json`, so they are written for the user.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A crm-etl mapping: where the exports are (sources) and which typed tables to make of them (entities).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Mapping {
    /// Version of the mapping format. Only 1 exists.
    #[serde(default = "one")]
    pub version: u32,
    /// Input files, by a name that entities refer to.
    pub sources: BTreeMap<String, Source>,
    /// Target tables, written in this order.
    pub entities: Vec<Entity>,
    /// Databases to write bulk-load scripts for, in `load/<dialect>/` of the output folder; `--target`
    /// overrides.
    #[serde(default)]
    pub targets: Vec<Dialect>,
    /// How the load scripts create tables and write rows; `--ddl` and `--mode` override.
    #[serde(default)]
    pub load: LoadOptions,
}

/// A database that crm-etl writes bulk-load scripts for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL: COPY data run by `psql -v ON_ERROR_STOP=1 -f load/postgres/load.sql`.
    Postgres,
    /// MySQL or MariaDB: LOAD DATA LOCAL INFILE run by `mariadb --local-infile=1 DB < load/mysql/load.sql`.
    Mysql,
    /// SQLite: INSERT statements run by `sqlite3 DB < load/sqlite/load.sql`.
    Sqlite,
}

impl Dialect {
    /// The folder name under `load/`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// Options of the load scripts.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LoadOptions {
    /// Table creation.
    #[serde(default)]
    pub ddl: Ddl,
    /// How rows are written.
    #[serde(default)]
    pub mode: LoadMode,
}

/// What the load script does about tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ddl {
    /// Create the tables that do not exist yet (CREATE TABLE IF NOT EXISTS).
    #[default]
    Create,
    /// Drop the tables if they exist, then create them.
    Recreate,
    /// No DDL: load into existing tables.
    None,
}

/// How the load script writes rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Plain inserts: a row whose key exists fails the whole load.
    #[default]
    Insert,
    /// Insert new rows and update existing ones by primary key (through a staging table).
    Upsert,
}

fn one() -> u32 {
    1
}

/// One input: a file, or several files of one shape matched by a glob.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Source {
    /// Path or glob (`exports/Contact*.csv`), relative to the mapping file. Files matched by a glob are read
    /// in sorted path order, each with its own header row.
    pub path: String,
    /// Input format.
    #[serde(default)]
    pub format: InputFormat,
    /// Text encoding. `auto` detects a UTF-8, UTF-16 or UTF-32 byte-order mark and otherwise reads UTF-8;
    /// the manifest says what was found.
    #[serde(default)]
    pub encoding: Encoding,
    /// Values read as null, compared with the whole field (after `csv.trim`). Default: only the empty field.
    /// A common choice: `["", "NULL", "\\N"]`.
    #[serde(default = "default_null")]
    pub null: Vec<String>,
    /// CSV dialect.
    #[serde(default)]
    pub csv: CsvDialect,
    /// Where the records are. JSON: the key path of the records array (`records` for Salesforce tree
    /// exports, `data.items`; `records.Contacts.records` reads nested child records, descending every
    /// array on the way); without it the document must be an array of records. XML (required): the
    /// element path of a record (`/entities/entity/records/record`); `name` matches the local name
    /// whatever the prefix, `p:name` the name as written. Not used for CSV and JSON Lines.
    #[serde(default)]
    pub record_path: Option<String>,
    /// JSON and XML: largest record (and largest single value outside records) accepted, in bytes; more is
    /// a fatal error. CSV uses `csv.max_record_bytes`.
    #[serde(default = "default_max_record")]
    pub max_record_bytes: u64,
}

fn default_null() -> Vec<String> {
    vec![String::new()]
}

/// Input formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Delimited text, RFC 4180 and its common dialects.
    #[default]
    Csv,
    /// One JSON document (RFC 8259, strict); records are at `record_path`. Fields are key paths
    /// (`Owner.Name`, `attributes.type`, `Tags.0`); numbers keep their text as written.
    Json,
    /// JSON Lines: one JSON object per line; blank lines are skipped.
    Jsonl,
    /// XML; records are the elements at `record_path`. Fields are paths relative to the record element:
    /// `Name`, `@id`, `Address/City`, `field[@name=x]/@value`.
    Xml,
}

/// Text encodings of an input file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Encoding {
    /// Detect a byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE); UTF-8 without one.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// UTF-8, with or without a byte-order mark. Records with invalid bytes are rejected.
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// UTF-16 little-endian, with or without a byte-order mark.
    #[serde(rename = "utf-16le", alias = "utf16le")]
    Utf16Le,
    /// UTF-16 big-endian, with or without a byte-order mark.
    #[serde(rename = "utf-16be", alias = "utf16be")]
    Utf16Be,
    /// Windows-1252 (what Excel on Windows writes as "ANSI" in western locales).
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
    /// ISO-8859-1 (Latin-1): every byte is the code point of the same number.
    #[serde(rename = "iso-8859-1", alias = "latin1")]
    Iso88591,
}

/// How fields are delimited and quoted.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CsvDialect {
    /// Field delimiter, one ASCII character; `\t` for tab.
    #[serde(default = "comma")]
    pub delimiter: String,
    /// Quote character, one ASCII character, or empty for none.
    #[serde(default = "dquote")]
    pub quote: String,
    /// Escape character inside quoted fields (for example `\`); empty means quotes are escaped by doubling.
    #[serde(default)]
    pub escape: String,
    /// Whether the first row holds the column names.
    #[serde(default = "yes")]
    pub header: bool,
    /// Column names to use instead of the header (required when `header = false`; with a header row, the
    /// row is skipped and these names are used).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Lines starting with this character (at the start of a record) are skipped; empty for none.
    #[serde(default)]
    pub comment: String,
    /// Trim spaces and tabs around every field and header name.
    #[serde(default)]
    pub trim: bool,
    /// What to do with a record whose field count differs from the header's.
    #[serde(default)]
    pub ragged: Ragged,
    /// Largest record accepted, in bytes; a longer one is a fatal error (usually a quote left open).
    #[serde(default = "default_max_record")]
    pub max_record_bytes: u64,
}

fn comma() -> String {
    ",".into()
}
fn dquote() -> String {
    "\"".into()
}
fn yes() -> bool {
    true
}
fn default_max_record() -> u64 {
    64 << 20
}

impl Default for CsvDialect {
    fn default() -> Self {
        CsvDialect {
            delimiter: comma(),
            quote: dquote(),
            escape: String::new(),
            header: true,
            columns: None,
            comment: String::new(),
            trim: false,
            ragged: Ragged::default(),
            max_record_bytes: default_max_record(),
        }
    }
}

/// Policy for records with too many or too few fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ragged {
    /// Reject the record (reason `field_count`).
    #[default]
    Reject,
    /// Read missing trailing fields as null, and drop extra trailing fields that are empty; a record with
    /// non-empty extra fields is still rejected.
    Pad,
    /// Stop the run with an error.
    Fail,
}

/// A target table made from one source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Entity {
    /// Table name; also the output file name. Letters, digits, `_`, `-` and `.` only.
    pub name: String,
    /// Name of the source (a key of `sources`).
    pub source: String,
    /// Output format of this entity, or a list of formats: the first is the entity's main output (and
    /// the format of its change files); the others are written from the same rows in the same run.
    /// `--format` overrides it.
    #[serde(default)]
    pub format: Option<Formats>,
    /// XML output: name of the root element (default `records`).
    #[serde(default)]
    pub xml_root: Option<String>,
    /// XML output: name of each record's element (default `record`).
    #[serde(default)]
    pub xml_record: Option<String>,
    /// Field names forming the primary key: each must be non-null, and the combination unique.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Records whose primary key (or a `unique` field) repeats an earlier record's: keep the first, keep
    /// the last, or reject every record that shares the key. The others go to rejects with reason
    /// `duplicate`. `last` and `reject` read the source twice (once for the keys).
    #[serde(default)]
    pub duplicates: Duplicates,
    /// Makes this a child entity: one record per element of a nested array or repeated element, or per
    /// part of a multi-value field, in each record of the source. Fields then read the element
    /// (`column`), the enclosing record (`parent`) and the element's position (`ordinal = true`).
    #[serde(default)]
    pub nested: Option<Nested>,
    /// Target fields, in output order.
    pub fields: Vec<Field>,
}

/// Policy for records that repeat a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Duplicates {
    /// Keep the first record with a key; reject the later ones.
    #[default]
    First,
    /// Keep the last record with a key (a later export line corrects an earlier one); reject the earlier
    /// ones.
    Last,
    /// Reject every record whose key is shared, the first one included.
    Reject,
}

/// Where the child records of a nested entity are, inside each record of its source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Nested {
    /// JSON: key path of the child array inside the record (`Contacts.records`); XML: element path of the
    /// repeated child element inside the record (`Lines/Line`, `targetids/targetid`). A record without it
    /// has no children.
    #[serde(default)]
    pub path: Option<String>,
    /// A multi-value field of the record (a multi-select picklist `A;B;C`): one child per part, trimmed,
    /// empty parts skipped. The part is read as the column `value`.
    #[serde(default)]
    pub split: Option<String>,
    /// Separator of `split`'s parts.
    #[serde(default = "semicolon")]
    pub separator: String,
}

fn semicolon() -> String {
    ";".into()
}

/// One output format, or several written at once.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Formats {
    One(OutputFormat),
    Many(Vec<OutputFormat>),
}

impl Formats {
    /// The formats in order, each once.
    pub fn list(&self) -> Vec<OutputFormat> {
        let all = match self {
            Formats::One(f) => vec![*f],
            Formats::Many(v) => v.clone(),
        };
        let mut out: Vec<OutputFormat> = Vec::new();
        for f in all {
            if !out.contains(&f) {
                out.push(f);
            }
        }
        out
    }
}

/// Output file formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// RFC 4180 CSV with a header row, UTF-8, LF line ends. Null is an empty field; an empty string is `""`.
    #[default]
    Csv,
    /// JSON Lines: one object per record, typed values (numbers, booleans, null).
    Jsonl,
    /// One JSON array of objects, typed as in JSON Lines.
    Json,
    /// XML: `<records><record><field>value</field>...</record>...</records>` (names configurable); a
    /// null field has no element, an empty string an empty one.
    Xml,
    /// Apache Parquet, zstd-compressed, typed from the mapping (decimal as Decimal(p,s), timestamps as
    /// microseconds, timestamptz with time zone UTC, uuid and json as strings). Needs the `parquet`
    /// build feature (on by default).
    Parquet,
    /// Arrow IPC file (Feather v2), zstd-compressed, typed as Parquet. Needs the `parquet` build feature.
    Arrow,
    /// No output file: for runs whose product is the load targets' data files (the rejects, row state,
    /// manifest and dataset digest are written as always; change files of `--since` are CSV).
    None,
}

impl OutputFormat {
    /// File extension of this format.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Csv => "csv",
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Json => "json",
            OutputFormat::Xml => "xml",
            OutputFormat::Parquet => "parquet",
            OutputFormat::Arrow => "arrow",
            OutputFormat::None => "none",
        }
    }

    /// Whether rows are gathered into typed columns (Parquet, Arrow) rather than written as text.
    pub fn columnar(self) -> bool {
        matches!(self, OutputFormat::Parquet | OutputFormat::Arrow)
    }
}

/// One target field: where its value comes from, how it is cleaned and typed, what it must satisfy.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Field {
    /// Target field name.
    pub name: String,
    /// Source column to read. Exactly one of `column`, `value` and `template` is required.
    #[serde(default)]
    pub column: Option<String>,
    /// A constant value for every record.
    #[serde(default)]
    pub value: Option<String>,
    /// Concatenation of columns and text: `"{FirstName} {LastName}"`; `{{` and `}}` are literal braces.
    /// Null columns count as empty; the result is null when every referenced column is null.
    #[serde(default)]
    pub template: Option<String>,
    /// Nested entities: a column of the enclosing (parent) record, such as its key.
    #[serde(default)]
    pub parent: Option<String>,
    /// Nested entities: the element's position among its siblings, from 1.
    #[serde(default)]
    pub ordinal: bool,
    /// A generated surrogate key: `"sequence"` (the record's number in the source, from 1, counted over
    /// all its files; a rejected record leaves a gap, so a key never depends on another record's fate) or
    /// `{ hash = ["Email"] }` (a stable BLAKE3 hash of the natural-key columns: an `integer` field gets
    /// 63 bits, a `uuid` field a version-8 UUID, a `text` field 32 hex digits).
    #[serde(default)]
    pub generate: Option<Generate>,
    /// Type: `text`, `integer`, `decimal(P,S)`, `float`, `boolean`, `date`, `time`, `timestamp`,
    /// `timestamptz`, `uuid` or `json`.
    #[serde(default = "text", rename = "type")]
    pub type_name: String,
    /// Input formats for date and time types, tried in order (strftime style: `%Y-%m-%d`, `%m/%d/%Y`,
    /// `%d.%m.%Y %H:%M`, `%Y-%m-%dT%H:%M:%S%.f%z`, ...).
    #[serde(default)]
    pub formats: Option<Vec<String>>,
    /// IANA time zone (`America/New_York`) for timestamptz values read without an offset.
    #[serde(default)]
    pub timezone: Option<String>,
    /// For timestamptz values in `timezone` that fall in a DST gap or overlap: reject (default), earlier,
    /// later, or compatible (RFC 5545: gap moves forward, overlap takes the earlier).
    #[serde(default)]
    pub ambiguous: Ambiguous,
    /// Words read as true for booleans (any case). Default: true, t, yes, y, 1.
    #[serde(default)]
    pub true_values: Option<Vec<String>>,
    /// Words read as false for booleans (any case). Default: false, f, no, n, 0.
    #[serde(default)]
    pub false_values: Option<Vec<String>>,
    /// Decimal separator of numbers as written in the input (`.` by default; `,` for many European exports).
    #[serde(default)]
    pub decimal_separator: Option<String>,
    /// Thousands separator to accept and drop in numbers (for example `,` or a space); none by default.
    #[serde(default)]
    pub thousands_separator: Option<String>,
    /// For decimal(P,S): round values with more than S fraction digits half-to-even instead of rejecting them.
    #[serde(default)]
    pub round: bool,
    /// Cleaning steps applied in order before the value map and the cast.
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// Value map for picklists: source value -> target value, applied after transforms.
    #[serde(default)]
    pub map: Option<BTreeMap<String, String>>,
    /// A value map read from a CSV reference file (owner email -> user id, country name -> ISO code),
    /// merged under `map` (entries of `map` win); `unmapped` applies as for `map`.
    #[serde(default)]
    pub lookup: Option<Lookup>,
    /// What to do with a value absent from `map`.
    #[serde(default)]
    pub unmapped: Unmapped,
    /// Value used when the source value is null (and, with `unmapped = "default"`, for unmapped values).
    #[serde(default)]
    pub default: Option<String>,
    /// Reject records where this field is null (after the default).
    #[serde(default)]
    pub required: bool,
    /// Largest length of the output text, in characters.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Regular expression the whole output text must match (anchored at both ends).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Reject records whose value was already seen in this field (nulls are never duplicates).
    #[serde(default)]
    pub unique: bool,
    /// This field refers to a record of another entity: its value is matched against that entity's
    /// primary key (or `by` field) and replaced by the parent's primary key. The parent is processed
    /// first.
    #[serde(default)]
    pub references: Option<Reference>,
}

/// A lookup table in a CSV file (UTF-8, comma-separated, with a header row).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Lookup {
    /// The file, relative to the mapping file.
    pub path: String,
    /// Column holding the values to translate.
    pub key: String,
    /// Column holding what they become.
    pub value: String,
}

/// A reference from a field to another entity.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Reference {
    /// Name of the referenced (parent) entity. It needs a single-field primary key.
    pub entity: String,
    /// Field of the parent matched against this field's value: its primary key (the default) or a field
    /// with `unique = true` (an external id, an email). The value written is the parent's primary key.
    #[serde(default)]
    pub by: Option<String>,
    /// Values that match no parent: reject the record (reason `orphan`), write null, or keep the value.
    #[serde(default)]
    pub orphans: Orphans,
    /// Salesforce ids: an 18-character id also matches its 15-character form (the first 15 characters,
    /// when the last 3 are the right case checksum), in either direction.
    #[serde(default)]
    pub salesforce_ids: bool,
    /// Write this field as null first and set it afterwards from `<entity>.updates.csv` (key, field),
    /// resolved once the parent has run. This breaks cycles: a reference to the entity itself
    /// (`Account.ParentId`) or one of a pair (Account <-> Contact). Orphans must then be `null` or `keep`.
    #[serde(default)]
    pub defer: bool,
}

/// How a surrogate key is generated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Generate {
    /// The record's number in its source, from 1.
    Sequence,
    /// A BLAKE3 hash of these columns' values as read.
    Hash(Vec<String>),
}

/// Policy for reference values with no parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Orphans {
    /// Reject the record (reason `orphan`).
    #[default]
    Reject,
    /// Write null, and count the orphan in the manifest.
    Null,
    /// Write the value as it is, and count the orphan in the manifest.
    Keep,
}

fn text() -> String {
    "text".into()
}

/// DST disambiguation for local times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ambiguous {
    /// Reject times that do not exist or exist twice in the time zone.
    #[default]
    Reject,
    /// Take the earlier instant.
    Earlier,
    /// Take the later instant.
    Later,
    /// RFC 5545: a time in a gap moves forward by the gap's length, an overlap takes the earlier instant.
    Compatible,
}

/// Policy for values absent from a field's value map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    /// Reject the record (reason `unmapped`).
    #[default]
    Reject,
    /// Keep the value as it is.
    Keep,
    /// Make the value null.
    Null,
    /// Use the field's `default`.
    Default,
}

/// A cleaning step.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// Remove leading and trailing white space (Unicode).
    Trim,
    /// Lower-case (Unicode).
    Lower,
    /// Upper-case (Unicode).
    Upper,
    /// Replace every run of white space with one space, and trim.
    CollapseWhitespace,
    /// Decode HTML character references (`&amp;`, `&#39;`, `&eacute;`) left in a value after XML or JSON
    /// parsing, as Dynamics CMT exports carry them on top of XML escaping. A stray `&` stays as it is.
    HtmlDecode,
    /// Replace every match of a regular expression; `$1` or `${name}` refer to groups.
    RegexReplace {
        /// Regular expression (Rust regex syntax).
        pattern: String,
        /// Replacement text.
        replacement: String,
    },
}

/// The JSON Schema of the mapping file, as `crm-etl schema` prints it.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Mapping);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
