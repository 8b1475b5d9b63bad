//! Parquet and Arrow IPC files through polars. Rows arrive in the binary form of
//! [`columnar`](super::columnar), are copied into one buffer per column, and every
//! [`ROW_GROUP_ROWS`] rows (or [`ROW_GROUP_BYTES`] of text) become one row group (Parquet) or record
//! batch (Arrow), so memory stays bounded whatever the file's size.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use polars::prelude::*;

use super::columnar::Cells;
use super::Sink;
use crate::error::FatalError;
use crate::spec::OutputFormat;
use crate::types::FieldType;

/// Rows per row group: enough for good compression and statistics, few enough to keep the writer's
/// buffers small. On the benchmark's 1M contacts: 65,536 rows took 178 MB of peak memory and made a
/// 53.2 MB file, 32,768 rows 140 MB and 51.8 MB, 16,384 rows 107 MB and 52.1 MB (with the 1 MB hand-offs
/// below), 8,192 rows 102 MB and 53.3 MB.
pub const ROW_GROUP_ROWS: usize = 16_384;
/// Text bytes after which a row group is cut early (long notes or descriptions).
pub const ROW_GROUP_BYTES: usize = 32 << 20;

/// Text bytes gathered before they are checked and moved into their builders: long enough for the
/// check to run in vector blocks, short enough to add little to peak memory (a chunk's text at a time
/// added 3 MB).
const SETTLE_BYTES: usize = 64 << 10;

/// One column's builder since the last row group: polars' own, so that a value is copied once, from the
/// row form into the array that gets encoded.
enum Values {
    I64(PrimitiveChunkedBuilder<Int64Type>),
    I32(PrimitiveChunkedBuilder<Int32Type>),
    F64(PrimitiveChunkedBuilder<Float64Type>),
    Bool(BooleanChunkedBuilder),
    I128(PrimitiveChunkedBuilder<Int128Type>),
    Str(StringChunkedBuilder),
}

struct Column {
    name: PlSmallStr,
    ty: FieldType,
    values: Values,
    /// A text column's values since the last [`Gather::settle`]: where each lies in the gather's
    /// `text` (None for a null).
    pending: Vec<Option<(usize, usize)>>,
}

impl Column {
    fn new(name: &str, ty: FieldType) -> Column {
        let name: PlSmallStr = name.into();
        Column {
            values: Column::builder(&name, ty, ROW_GROUP_ROWS),
            name,
            ty,
            pending: Vec::new(),
        }
    }

    fn builder(name: &PlSmallStr, ty: FieldType, cap: usize) -> Values {
        let n = name.clone();
        match ty {
            FieldType::Integer
            | FieldType::Time
            | FieldType::Timestamp
            | FieldType::TimestampTz => Values::I64(PrimitiveChunkedBuilder::new(n, cap)),
            FieldType::Date => Values::I32(PrimitiveChunkedBuilder::new(n, cap)),
            FieldType::Float => Values::F64(PrimitiveChunkedBuilder::new(n, cap)),
            FieldType::Boolean => Values::Bool(BooleanChunkedBuilder::new(n, cap)),
            FieldType::Decimal { .. } => Values::I128(PrimitiveChunkedBuilder::new(n, cap)),
            FieldType::Text | FieldType::Uuid | FieldType::Json => {
                Values::Str(StringChunkedBuilder::new(n, cap))
            }
        }
    }

    fn dtype(&self) -> DataType {
        match self.ty {
            FieldType::Integer => DataType::Int64,
            FieldType::Float => DataType::Float64,
            FieldType::Boolean => DataType::Boolean,
            FieldType::Decimal { precision, scale } => {
                DataType::Decimal(usize::from(precision), usize::from(scale))
            }
            FieldType::Date => DataType::Date,
            FieldType::Time => DataType::Time,
            FieldType::Timestamp => DataType::Datetime(TimeUnit::Microseconds, None),
            FieldType::TimestampTz => {
                DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
            }
            FieldType::Text | FieldType::Uuid | FieldType::Json => DataType::String,
        }
    }

    /// Copies the next cell of `cells` into the builder, or a text cell's bytes to the end of `text`
    /// (see [`Gather::settle`]); returns the text bytes it added.
    fn push(&mut self, cells: &mut Cells<'_>, text: &mut Vec<u8>) -> usize {
        let present = cells.present();
        match &mut self.values {
            Values::I64(b) => b.append_option(present.then(|| i64::from_le_bytes(cells.fixed()))),
            Values::I32(b) => b.append_option(present.then(|| i32::from_le_bytes(cells.fixed()))),
            Values::F64(b) => b.append_option(present.then(|| f64::from_le_bytes(cells.fixed()))),
            Values::Bool(b) => b.append_option(present.then(|| cells.fixed::<1>()[0] == 1)),
            Values::I128(b) => b.append_option(present.then(|| i128::from_le_bytes(cells.fixed()))),
            Values::Str(_) => {
                if !present {
                    self.pending.push(None);
                    return 0;
                }
                let v = cells.bytes();
                let start = text.len();
                text.extend_from_slice(v);
                self.pending.push(Some((start, text.len())));
                return v.len();
            }
        }
        0
    }

    /// Appends a text column's pending values, slices of `text`, to its builder.
    fn settle(&mut self, text: &str) -> Result<(), FatalError> {
        let Values::Str(b) = &mut self.values else {
            return Ok(());
        };
        for at in self.pending.drain(..) {
            match at {
                None => b.append_null(),
                Some((start, end)) => b.append_value(text.get(start..end).ok_or_else(|| {
                    FatalError::Internal("columnar text splits a character".into())
                })?),
            }
        }
        Ok(())
    }

    /// The built values as a polars column, with an empty builder left in their place (see
    /// [`Column::refill`]).
    fn take(&mut self) -> Result<polars::prelude::Column, PolarsError> {
        let fresh = Column::builder(&self.name, self.ty, 0);
        let series = match std::mem::replace(&mut self.values, fresh) {
            Values::I64(b) => {
                let ca = b.finish();
                match self.ty {
                    FieldType::Time => ca.into_time().into_series(),
                    FieldType::Timestamp => {
                        ca.into_datetime(TimeUnit::Microseconds, None).into_series()
                    }
                    FieldType::TimestampTz => ca
                        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                        .into_series(),
                    _ => ca.into_series(),
                }
            }
            Values::I32(b) => b.finish().into_date().into_series(),
            Values::F64(b) => b.finish().into_series(),
            Values::Bool(b) => b.finish().into_series(),
            Values::I128(b) => {
                let FieldType::Decimal { precision, scale } = self.ty else {
                    unreachable!("i128 builders hold decimals")
                };
                b.finish()
                    .into_decimal(usize::from(precision), usize::from(scale))?
                    .into_series()
            }
            Values::Str(b) => b.finish().into_series(),
        };
        Ok(series.into())
    }

    /// Gives the column a builder with room for a row group. Called once the row group before has been
    /// handed to the encoding thread (which takes it only when done with the one before that): allocating
    /// room for a third row group while two were still held cost 5 MB more peak memory (1M contacts).
    fn refill(&mut self) {
        self.values = Column::builder(&self.name, self.ty, ROW_GROUP_ROWS);
    }
}

/// Where polars writes: the row writer's sink, shared so that it can be taken back to be finished
/// (renamed into place and its hash read) once polars has written the file's footer.
#[derive(Clone)]
struct Shared(Arc<Mutex<Sink>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut sink = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("sink lock poisoned"))?;
        sink.write_bytes(buf)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum FileEncoder {
    Parquet(Box<polars::io::parquet::write::BatchedWriter<Shared>>),
    Arrow(Box<polars::io::ipc::BatchedWriter<Shared>>),
}

/// Gathers rows into columns and writes them as a Parquet or Arrow IPC file. Rows are gathered into
/// polars' builders on the caller's thread (the run's writer thread, which has time to spare); each full
/// row group goes to a thread of its own that encodes, compresses and writes it. With gathering, encoding
/// and compression on one thread, that thread was the run's bottleneck: a core stood idle 16 % of a
/// Parquet run while it worked.
pub struct ColumnWriter {
    gather: Gather,
    tx: Option<SyncSender<DataFrame>>,
    thread: Option<JoinHandle<Result<(), FatalError>>>,
    sink: Shared,
}

impl ColumnWriter {
    pub fn new(
        sink: Sink,
        format: OutputFormat,
        names: &[String],
        types: &[FieldType],
        display: &str,
    ) -> Result<ColumnWriter, FatalError> {
        let sink = Shared(Arc::new(Mutex::new(sink)));
        let gather = Gather {
            columns: names
                .iter()
                .zip(types)
                .map(|(n, t)| Column::new(n, *t))
                .collect(),
            text: Vec::new(),
            display: display.to_string(),
            rows: 0,
            text_bytes: 0,
        };
        let mut file = FileEncoder::new(sink.clone(), format, &gather)?;
        // A rendezvous: a row group is handed over only once the one before is written, so at most two
        // exist at once (one being gathered, one being encoded).
        let (tx, rx) = sync_channel::<DataFrame>(0);
        let display = display.to_string();
        let thread = std::thread::Builder::new()
            .name("columnar".into())
            .spawn(move || {
                for df in rx {
                    file.write_batch(&df)
                        .map_err(|e| output_error(&display, e))?;
                }
                file.finish().map_err(|e| output_error(&display, e))
            })
            .map_err(|e| FatalError::Internal(format!("columnar thread: {e}")))?;
        Ok(ColumnWriter {
            gather,
            tx: Some(tx),
            thread: Some(thread),
            sink,
        })
    }

    /// Adds `n` rows in the binary row form.
    pub fn write_rows(&mut self, bytes: &[u8], n: u64) -> Result<(), FatalError> {
        let mut cells = Cells::new(bytes);
        for _ in 0..n {
            if self.gather.push(&mut cells)? {
                self.hand_off()?;
            }
        }
        debug_assert!(cells.done());
        self.gather.settle()
    }

    /// Sends the gathered rows as one row group (Parquet) or record batch (Arrow).
    fn hand_off(&mut self) -> Result<(), FatalError> {
        let Some(df) = self.gather.take()? else {
            return Ok(());
        };
        let sent = self.tx.as_ref().map(|tx| tx.send(df).is_ok());
        if sent != Some(true) {
            // The thread stopped on an error: its result says which.
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| FatalError::Internal("columnar thread stopped early".into())));
        }
        self.gather.columns.iter_mut().for_each(Column::refill);
        Ok(())
    }

    fn join(&mut self) -> Result<(), FatalError> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => Ok(()),
        }
    }

    /// Writes the last rows and the footer, and gives the sink back to be finished.
    pub fn finish(mut self) -> Result<Sink, FatalError> {
        self.hand_off()?;
        self.join()?;
        let mutex = Arc::try_unwrap(self.sink.0)
            .map_err(|_| FatalError::Internal("columnar sink still shared".into()))?;
        mutex
            .into_inner()
            .map_err(|_| FatalError::Internal("columnar sink lock poisoned".into()))
    }
}

fn output_error(display: &str, e: PolarsError) -> FatalError {
    FatalError::Output {
        path: display.to_string(),
        message: e.to_string(),
    }
}

/// The rows of the row group being gathered: a builder per column.
struct Gather {
    columns: Vec<Column>,
    /// Text values not yet in their builders, end to end.
    text: Vec<u8>,
    /// Where the file goes, named in errors.
    display: String,
    rows: usize,
    text_bytes: usize,
}

impl Gather {
    /// Adds the next row of `cells`; true when the row group is full.
    fn push(&mut self, cells: &mut Cells<'_>) -> Result<bool, FatalError> {
        for c in &mut self.columns {
            self.text_bytes += c.push(cells, &mut self.text);
        }
        self.rows += 1;
        if self.text.len() >= SETTLE_BYTES {
            self.settle()?;
        }
        Ok(self.rows >= ROW_GROUP_ROWS || self.text_bytes >= ROW_GROUP_BYTES)
    }

    /// Moves the pending text values into their builders. The bytes were `&str`s when the mapping stage
    /// wrote them; checking them again keeps this code free of `unsafe`. One check over all of a
    /// chunk's text values, each then sliced on character boundaries of it, where a check per value
    /// cost 5 % of a Parquet run's CPU: most values are shorter than simdutf8's 64-byte blocks, and
    /// below that it falls back to the standard check.
    fn settle(&mut self) -> Result<(), FatalError> {
        let text = simdutf8::basic::from_utf8(&self.text)
            .map_err(|_| FatalError::Internal("columnar text is not UTF-8".into()))?;
        for c in &mut self.columns {
            c.settle(text)?;
        }
        self.text.clear();
        Ok(())
    }

    /// The gathered rows as a data frame (None if there are none), leaving empty builders: they get
    /// room for the next row group only once this one is handed over (see [`Column::refill`]).
    fn take(&mut self) -> Result<Option<DataFrame>, FatalError> {
        if self.rows == 0 {
            return Ok(None);
        }
        self.settle()?;
        let height = self.rows;
        let cols = self
            .columns
            .iter_mut()
            .map(Column::take)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| output_error(&self.display, e))?;
        let df = DataFrame::new(height, cols).map_err(|e| output_error(&self.display, e))?;
        self.rows = 0;
        self.text_bytes = 0;
        Ok(Some(df))
    }
}

impl FileEncoder {
    fn new(sink: Shared, format: OutputFormat, gather: &Gather) -> Result<FileEncoder, FatalError> {
        let schema = Schema::from_iter(
            gather
                .columns
                .iter()
                .map(|c| polars::prelude::Field::new(c.name.clone(), c.dtype())),
        );
        let err = |e: PolarsError| output_error(&gather.display, e);
        Ok(match format {
            OutputFormat::Arrow => {
                // Arrow's oldest layout (large strings, not string views) is the one every reader
                // of IPC files accepts.
                let compat = CompatLevel::oldest();
                let arrow = schema.to_arrow(compat);
                let fields = polars_arrow::io::ipc::write::default_ipc_fields(arrow.iter_values());
                let w = IpcWriter::new(sink)
                    .with_compression(Some(IpcCompression::ZSTD(Default::default())))
                    .with_compat_level(compat)
                    .batched(&schema, fields)
                    .map_err(err)?;
                FileEncoder::Arrow(Box::new(w))
            }
            _ => FileEncoder::Parquet(Box::new(
                ParquetWriter::new(sink)
                    .with_compression(ParquetCompression::Zstd(None))
                    .batched(&schema)
                    .map_err(err)?,
            )),
        })
    }

    fn write_batch(&mut self, df: &DataFrame) -> Result<(), PolarsError> {
        match self {
            FileEncoder::Parquet(w) => w.write_batch(df),
            FileEncoder::Arrow(w) => w.write_batch(df),
        }
    }

    /// Writes the file's footer.
    fn finish(&mut self) -> Result<(), PolarsError> {
        match self {
            FileEncoder::Parquet(w) => w.finish().map(drop),
            FileEncoder::Arrow(w) => w.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text values reach their builders in row order, nulls included, whether they were checked
    /// before the buffer filled, when it filled mid-chunk, or when the rows were taken.
    #[test]
    fn gathered_text_keeps_its_order_across_settles() {
        let mut gather = Gather {
            columns: vec![
                Column::new("n", FieldType::Integer),
                Column::new("t", FieldType::Text),
            ],
            text: Vec::new(),
            display: "test".into(),
            rows: 0,
            text_bytes: 0,
        };
        let value = |i: usize| match i % 4 {
            0 => None,
            1 => Some(format!("é{i}")),
            2 => Some("名".repeat(i % 50)),
            // Longer than the buffer: it settles right after this row.
            _ if i == 1003 => Some("ü".repeat(SETTLE_BYTES)),
            _ => Some(format!("plain {i}")),
        };
        let mut bytes = Vec::new();
        for i in 0..3000 {
            bytes.push(1);
            bytes.extend_from_slice(&(i as i64).to_le_bytes());
            match value(i) {
                None => bytes.push(0),
                Some(v) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    bytes.extend_from_slice(v.as_bytes());
                }
            }
        }
        let mut cells = Cells::new(&bytes);
        for _ in 0..3000 {
            assert!(!gather.push(&mut cells).unwrap());
        }
        assert!(cells.done());
        let df = gather.take().unwrap().unwrap();
        let texts = df.column("t").unwrap().str().unwrap();
        let got: Vec<Option<String>> = (0..texts.len())
            .map(|i| texts.get(i).map(String::from))
            .collect();
        let want: Vec<Option<String>> = (0..3000).map(value).collect();
        assert_eq!(got, want);
        assert!(gather.text.is_empty());
        assert!(gather.columns.iter().all(|c| c.pending.is_empty()));
    }
}
