//! `crm-etl convert`: a mapping-free conversion. Every column becomes a text field named by the header,
//! every value is kept exactly as read (an empty field stays an empty string), and any bad record is an
//! error, since there is no rejects file.

use std::path::Path;

use crate::error::FatalError;
use crate::pipeline::{pump, EntityState, RejectSink};
use crate::plan::{Cast, EntityPlan, FieldPlan, Input};
use crate::read::csv::Dialect;
use crate::read::open_csv;
use crate::spec::{CsvDialect, Encoding, OutputFormat, Ragged, Unmapped};
use crate::types::FieldType;
use crate::write::{encode, AtomicFile, RowWriter, Sink};

/// What to convert, and how.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub input: String,
    pub output: String,
    pub to: OutputFormat,
    pub dialect: Dialect,
    pub encoding: Encoding,
    pub ragged: Ragged,
    pub threads: usize,
}

/// Header names made unique for JSON keys: a repeated `Name` becomes `Name_2`, `Name_3`, ...
fn unique_names(header: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(header.len());
    for (i, h) in header.iter().enumerate() {
        let base = if h.is_empty() {
            format!("column_{}", i + 1)
        } else {
            h.clone()
        };
        let mut name = base.clone();
        let mut k = 2;
        while out.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        out.push(name);
    }
    out
}

/// Converts one input; returns the number of records written.
pub fn convert(opts: &ConvertOptions) -> Result<u64, FatalError> {
    let spec = CsvDialect::default();
    let mut opened = open_csv(
        Path::new(&opts.input),
        &opts.input,
        opts.encoding,
        &opts.dialect,
        &spec,
    )?;
    if opened.header.is_empty() {
        return Err(FatalError::EmptyFile {
            file: opts.input.clone(),
        });
    }
    // JSON keys must be unique; a CSV header keeps its names as they were.
    let names = if opts.to == OutputFormat::Csv {
        opened.header.clone()
    } else {
        unique_names(&opened.header)
    };
    let fields = names
        .iter()
        .enumerate()
        .map(|(i, n)| FieldPlan {
            name: n.clone(),
            ty: FieldType::Text,
            input: Input::Column(i),
            steps: Vec::new(),
            map: None,
            unmapped: Unmapped::Keep,
            default: None,
            required: false,
            cast: Cast::Text,
            max_length: None,
            pattern: None,
        })
        .collect();
    let plan = EntityPlan {
        name: "convert".into(),
        source: opts.input.clone(),
        format: opts.to,
        fields,
        unique: Vec::new(),
        header: std::mem::take(&mut opened.header),
        ragged: opts.ragged,
        null: Vec::new(),
        quote_empty: false,
        strict: true,
    };
    let sink = if opts.output == "-" {
        Sink::Stdout(std::io::BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        ))
    } else {
        Sink::File(Box::new(AtomicFile::create(Path::new(&opts.output))?))
    };
    let mut writer = RowWriter::new(sink, opts.to, &encode::header(&plan))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| FatalError::Internal(format!("thread pool: {e}")))?;
    let mut state = EntityState::default();
    pump(
        opened.reader,
        &plan,
        &opts.input,
        &pool,
        &mut writer,
        RejectSink::Fatal,
        &mut state,
        None,
    )?;
    let rows = writer.rows;
    writer.finish()?;
    Ok(rows)
}
