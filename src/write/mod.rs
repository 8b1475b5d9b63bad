//! Writers: atomic output files that hash what they write, row writers per format, and the rejects file.

pub mod columnar;
pub mod encode;
#[cfg(feature = "parquet")]
pub mod parquet;

/// Without the `parquet` feature there is no column writer: [`RowWriter::for_plan`] refuses the
/// columnar formats before any row is read, and this type, having no values, is never built.
#[cfg(not(feature = "parquet"))]
pub mod parquet {
    pub enum ColumnWriter {}
}

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{FatalError, FieldError};
use crate::map::Reject;
use crate::plan::EntityPlan;
use crate::spec::OutputFormat;

/// A file written under a temporary name and renamed into place only by [`AtomicFile::finish`], so a
/// reader never sees a partial file under the final name. Dropped unfinished, it removes itself.
pub struct AtomicFile {
    final_path: PathBuf,
    tmp_path: PathBuf,
    w: Option<BufWriter<File>>,
    hasher: blake3::Hasher,
    bytes: u64,
    /// Bytes up to which the kernel was asked to start writing the file to disk.
    kicked: u64,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<AtomicFile, FatalError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| FatalError::io(dir, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp_path = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let f = File::create(&tmp_path).map_err(|e| FatalError::io(&tmp_path, e))?;
        Ok(AtomicFile {
            final_path: path.to_path_buf(),
            tmp_path,
            w: Some(BufWriter::with_capacity(1 << 20, f)),
            hasher: blake3::Hasher::new(),
            bytes: 0,
            kicked: 0,
        })
    }

    /// Asks the kernel to start writing what it holds of the file to disk, every 8 MB, without waiting.
    /// The `fsync` in [`AtomicFile::finish`] then finds little left to write: it was a quarter of a
    /// second at the end of a run writing 570 MB, with the disk idle while the run computed.
    #[cfg(target_os = "linux")]
    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        const STEP: u64 = 8 << 20;
        let Some(w) = self.w.as_ref() else {
            return;
        };
        let handed = self.bytes - w.buffer().len() as u64;
        if handed - self.kicked < STEP {
            return;
        }
        let (Ok(from), Ok(len)) = (
            i64::try_from(self.kicked),
            i64::try_from(handed - self.kicked),
        ) else {
            return;
        };
        // SAFETY: a plain system call on an open descriptor that this file owns; it only advises the
        // kernel, and a failure is harmless (the fsync at the end still writes everything), so its
        // result is ignored.
        unsafe {
            libc::sync_file_range(
                w.get_ref().as_raw_fd(),
                from,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.kicked = handed;
    }

    #[cfg(not(target_os = "linux"))]
    fn start_writeback(&mut self) {}

    pub fn write_bytes(&mut self, b: &[u8]) -> Result<(), FatalError> {
        self.write_all(b)
            .map_err(|e| FatalError::io(&self.tmp_path, e))
    }

    /// Flushes to disk, renames into place, and returns (bytes, BLAKE3 hex).
    pub fn finish(mut self) -> Result<(u64, String), FatalError> {
        let mut w = self
            .w
            .take()
            .ok_or_else(|| FatalError::Internal("file finished twice".into()))?;
        w.flush().map_err(|e| FatalError::io(&self.tmp_path, e))?;
        let f = w
            .into_inner()
            .map_err(|e| FatalError::io(&self.tmp_path, e.into_error()))?;
        f.sync_all()
            .map_err(|e| FatalError::io(&self.tmp_path, e))?;
        drop(f);
        std::fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|e| FatalError::io(&self.final_path, e))?;
        Ok((self.bytes, self.hasher.finalize().to_hex().to_string()))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let w = self
            .w
            .as_mut()
            .ok_or_else(|| std::io::Error::other("write after finish"))?;
        let n = w.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.start_writeback();
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.w.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.w.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Where rows go: an atomic file, standard output (for `convert -o -`), or nowhere (a dry run).
pub enum Sink {
    File(Box<AtomicFile>),
    Stdout(BufWriter<std::io::Stdout>),
    Discard,
}

impl Sink {
    pub(crate) fn write_bytes(&mut self, b: &[u8]) -> Result<(), FatalError> {
        match self {
            Sink::File(f) => f.write_bytes(b),
            Sink::Stdout(w) => w.write_all(b).map_err(|e| FatalError::io("<stdout>", e)),
            Sink::Discard => Ok(()),
        }
    }
}

/// Writes encoded rows in one format, adding what the format needs around them.
pub struct RowWriter {
    sink: Sink,
    format: OutputFormat,
    footer: Vec<u8>,
    /// Parquet and Arrow: the column buffers and encoder, which own the sink until the end.
    #[cfg_attr(not(feature = "parquet"), allow(dead_code))]
    columns: Option<Box<parquet::ColumnWriter>>,
    pub rows: u64,
}

impl RowWriter {
    /// A writer that starts with `header` and, when finished, ends with `footer`.
    pub fn new(
        sink: Sink,
        format: OutputFormat,
        header: &[u8],
        footer: Vec<u8>,
    ) -> Result<RowWriter, FatalError> {
        let mut w = RowWriter {
            sink,
            format,
            footer,
            columns: None,
            rows: 0,
        };
        w.sink.write_bytes(header)?;
        Ok(w)
    }

    /// The writer of an entity's (or a conversion's) output in the plan's format; `display` names the
    /// file in errors.
    pub fn for_plan(sink: Sink, plan: &EntityPlan, display: &str) -> Result<RowWriter, FatalError> {
        RowWriter::for_format(sink, plan, plan.format, display)
    }

    /// The writer of a plan's rows in `format` (the plan's own or one of its further formats).
    pub fn for_format(
        sink: Sink,
        plan: &EntityPlan,
        format: OutputFormat,
        display: &str,
    ) -> Result<RowWriter, FatalError> {
        if !format.columnar() {
            return RowWriter::new(
                sink,
                format,
                &encode::header_as(format, plan),
                encode::footer_as(format, plan),
            );
        }
        #[cfg(feature = "parquet")]
        {
            let names: Vec<String> = plan.fields.iter().map(|f| f.name.clone()).collect();
            let types: Vec<_> = plan.fields.iter().map(|f| f.out_ty()).collect();
            let columns = parquet::ColumnWriter::new(sink, format, &names, &types, display)?;
            Ok(RowWriter {
                sink: Sink::Discard,
                format,
                footer: Vec::new(),
                columns: Some(Box::new(columns)),
                rows: 0,
            })
        }
        #[cfg(not(feature = "parquet"))]
        {
            let _ = sink;
            Err(no_columnar(format, display))
        }
    }

    /// Writes `n` whole encoded rows at once (CSV and JSON Lines rows are self-delimiting).
    pub fn write_rows(&mut self, bytes: &[u8], n: u64) -> Result<(), FatalError> {
        debug_assert!(self.format != OutputFormat::Json);
        self.rows += n;
        #[cfg(feature = "parquet")]
        if let Some(c) = self.columns.as_mut() {
            return c.write_rows(bytes, n);
        }
        self.sink.write_bytes(bytes)
    }

    /// Writes one encoded row.
    pub fn write_row(&mut self, bytes: &[u8]) -> Result<(), FatalError> {
        if self.format == OutputFormat::Json {
            self.sink
                .write_bytes(if self.rows == 0 { b"\n" } else { b",\n" })?;
        }
        self.rows += 1;
        self.sink.write_bytes(bytes)
    }

    /// Whether rows must go one at a time through [`RowWriter::write_row`].
    pub fn per_row(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Closes the format and the sink; returns (bytes, BLAKE3) for files.
    pub fn finish(mut self) -> Result<Option<(u64, String)>, FatalError> {
        #[cfg(feature = "parquet")]
        if let Some(c) = self.columns.take() {
            self.sink = c.finish()?;
        }
        if self.format == OutputFormat::Json {
            self.sink
                .write_bytes(if self.rows == 0 { b"]\n" } else { b"\n]\n" })?;
        }
        self.sink.write_bytes(&self.footer)?;
        match self.sink {
            Sink::File(f) => f.finish().map(Some),
            Sink::Stdout(mut w) => {
                w.flush().map_err(|e| FatalError::io("<stdout>", e))?;
                Ok(None)
            }
            Sink::Discard => Ok(None),
        }
    }
}

/// The error for a Parquet or Arrow output in a build without the `parquet` feature.
pub fn no_columnar(format: OutputFormat, display: &str) -> FatalError {
    FatalError::Usage(format!(
        "{display}: this crm-etl was built without the `parquet` feature, so it cannot write {} files; rebuild with default features",
        format.extension()
    ))
}

/// Column names of the rejects file.
pub const REJECT_COLUMNS: [&str; 10] = [
    "source_file",
    "record",
    "line",
    "byte",
    "field",
    "value",
    "reason_code",
    "reason",
    "errors",
    "raw_record",
];

/// The rejects file of one entity, created at the first reject.
pub struct RejectsWriter {
    path: PathBuf,
    w: Option<csv::Writer<AtomicFile>>,
    pub rows: u64,
}

impl RejectsWriter {
    pub fn new(path: PathBuf) -> RejectsWriter {
        RejectsWriter {
            path,
            w: None,
            rows: 0,
        }
    }

    /// Writes one rejected record: its first error in the field/value/reason columns, all of them in
    /// `errors`, and the raw record as it was read.
    pub fn write(&mut self, file: &str, r: &Reject) -> Result<(), FatalError> {
        if self.w.is_none() {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(AtomicFile::create(&self.path)?);
            w.write_record(REJECT_COLUMNS).map_err(|e| self.err(e))?;
            self.w = Some(w);
        }
        let first = r.errors.first().cloned().unwrap_or(FieldError {
            field: String::new(),
            value: String::new(),
            code: crate::error::RejectCode::Malformed,
            message: String::new(),
        });
        let all: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        let (number, line, byte, all) = (
            r.number.to_string(),
            r.line.to_string(),
            r.byte.to_string(),
            all.join("; "),
        );
        let rec: [&[u8]; 10] = [
            file.as_bytes(),
            number.as_bytes(),
            line.as_bytes(),
            byte.as_bytes(),
            first.field.as_bytes(),
            first.value.as_bytes(),
            first.code.as_str().as_bytes(),
            first.message.as_bytes(),
            all.as_bytes(),
            &r.raw,
        ];
        let res = self.w.as_mut().map(|w| w.write_record(rec));
        if let Some(Err(e)) = res {
            return Err(self.err(e));
        }
        self.rows += 1;
        Ok(())
    }

    fn err(&self, e: csv::Error) -> FatalError {
        FatalError::io(&self.path, std::io::Error::other(e))
    }

    /// Renames the file into place; returns (bytes, BLAKE3) if there were rejects.
    pub fn finish(self) -> Result<Option<(u64, String)>, FatalError> {
        match self.w {
            None => Ok(None),
            Some(w) => {
                let path = self.path.clone();
                let f = w
                    .into_inner()
                    .map_err(|e| FatalError::io(&path, std::io::Error::other(e.to_string())))?;
                f.finish().map(Some)
            }
        }
    }
}
