//! A refillable byte window over a decoded (UTF-8) input stream, shared by the JSON and XML splitters.
//! It checks UTF-8 as bytes arrive, so a bad byte is reported with its offset wherever it is, even in
//! parts of a document that no field reads, and it knows the line of any byte it still holds.

use std::io::Read;

use super::csv::{Batch, RecordMeta};
use crate::error::{FatalError, Position};

const INITIAL_BUF: usize = 256 * 1024;

pub struct Feed<R> {
    src: R,
    pub buf: Vec<u8>,
    /// Bytes `buf[..end]` are valid and checked UTF-8 up to `checked`.
    pub end: usize,
    pub eof: bool,
    /// Absolute offset of `buf[0]` in the decoded input (after any byte-order mark).
    base: u64,
    checked: usize,
    /// Line number at `buf[line_at]`, advanced monotonically as callers ask for later lines.
    line: u64,
    line_at: usize,
    pub file: String,
    /// The most bytes one record (or key, or skipped token) may hold in memory.
    pub max: usize,
}

impl<R: Read> Feed<R> {
    pub fn new(src: R, file: &str, start_offset: u64, max: usize) -> Self {
        Feed {
            src,
            buf: vec![0; INITIAL_BUF],
            end: 0,
            eof: false,
            base: start_offset,
            checked: 0,
            line: 1,
            line_at: 0,
            file: file.to_string(),
            max,
        }
    }

    /// Absolute byte offset of `buf[i]`.
    pub fn offset(&self, i: usize) -> u64 {
        self.base + i as u64
    }

    /// The 1-based line of `buf[i]`. Calls must not go backwards past an earlier call's `i`.
    pub fn line_of(&mut self, i: usize) -> u64 {
        if i > self.line_at {
            self.line += memchr::memchr_iter(b'\n', &self.buf[self.line_at..i]).count() as u64;
            self.line_at = i;
        }
        self.line
    }

    /// Notes that `buf[i]` is a newline and that `buf[j..i]` holds none, for `j` the last index
    /// [`Self::line_of`] was asked for: JSON Lines knows where its lines end, and counting the newlines
    /// of every record again was 2 % of a run.
    pub fn newline_at(&mut self, i: usize) {
        debug_assert!(i >= self.line_at && !self.buf[self.line_at..i].contains(&b'\n'));
        self.line += 1;
        self.line_at = i + 1;
    }

    pub fn position(&mut self, i: usize, record: u64) -> Position {
        Position {
            file: self.file.clone(),
            record,
            line: self.line_of(i),
            byte: self.offset(i),
        }
    }

    /// A syntax error at `buf[i]`.
    pub fn error(&mut self, i: usize, record: u64, message: impl Into<String>) -> FatalError {
        FatalError::Syntax {
            pos: self.position(i, record),
            message: message.into(),
        }
    }

    /// Reads more bytes, dropping everything before `keep`. Returns how far the bytes moved (subtract
    /// it from any index the caller holds) or `None` at the end of the input. Fails when keeping
    /// `buf[keep..]` would need more than `max` bytes.
    pub fn fill(&mut self, keep: usize) -> Result<Option<usize>, FatalError> {
        if self.eof {
            return Ok(None);
        }
        let shift = keep;
        if shift > 0 {
            self.line_of(shift);
            self.buf.copy_within(shift..self.end, 0);
            self.end -= shift;
            self.checked -= shift;
            self.line_at -= shift;
            self.base += shift as u64;
        }
        if self.end == self.buf.len() {
            if self.buf.len() > self.max {
                return Err(self.error(
                    0,
                    0,
                    format!(
                        "a single value or record is longer than the limit of {} bytes (max_record_bytes)",
                        self.max
                    ),
                ));
            }
            let grown = (self.buf.len() * 2)
                .min(self.max + 1)
                .max(self.buf.len() + 1);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    if self.checked < self.end {
                        // A multi-byte sequence cut off by the end of the input.
                        return Err(self.bad_utf8(self.checked));
                    }
                    return Ok(Some(shift));
                }
                Ok(n) => {
                    self.end += n;
                    self.check_utf8()?;
                    return Ok(Some(shift));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(super::encoding::DecodeError::fatal_from(
                        &e, &self.file, self.line,
                    )
                    .unwrap_or_else(|| FatalError::io(&self.file, e)));
                }
            }
        }
    }

    fn check_utf8(&mut self) -> Result<(), FatalError> {
        // simdutf8 reports what std does (where the valid text ends, and whether the bytes there are an
        // error or only incomplete) several times faster: std's check was 2 % of a JSON Lines run.
        match simdutf8::compat::from_utf8(&self.buf[self.checked..self.end]) {
            Ok(_) => self.checked = self.end,
            Err(e) => {
                let at = self.checked + e.valid_up_to();
                if e.error_len().is_some() {
                    return Err(self.bad_utf8(at));
                }
                // An incomplete sequence at the end: checked when the rest arrives.
                self.checked = at;
            }
        }
        Ok(())
    }

    fn bad_utf8(&mut self, i: usize) -> FatalError {
        FatalError::Encoding {
            pos: self.position(i, 0),
            encoding: "UTF-8".into(),
        }
    }

    /// Copies `buf[start..end]` into `batch` as record `number`, with its line and byte. JSON and XML
    /// records carry no field spans: the mapping stage parses them.
    pub fn emit(&mut self, batch: &mut Batch, start: usize, end: usize, number: u64) {
        let raw_start = batch.raw.len();
        batch.raw.extend_from_slice(&self.buf[start..end]);
        let line = self.line_of(start);
        batch.records.push(RecordMeta {
            first: batch.spans.len(),
            n_fields: 0,
            raw_start,
            raw_end: batch.raw.len(),
            number,
            line,
            byte: self.offset(start),
            malformed: None,
        });
    }

    /// Bytes at `buf[i..]` that are checked; `end` may be further on, inside a sequence not yet complete.
    pub fn avail(&self) -> usize {
        self.checked
    }
}
