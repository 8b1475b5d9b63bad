//! A streaming CSV tokenizer. Written here rather than taken from the `csv` crate because crm-etl needs
//! three things that crate does not give: an error for a quote left open at the end of the file (it
//! silently accepts one), the exact raw bytes of each record (for the rejects file), and line and byte
//! positions for every record. It fills a [`Batch`] it is handed, reusing its buffers.

use std::io::Read;

use crate::error::{FatalError, Position};
use crate::read::encoding::DecodeError;

/// A compiled CSV dialect.
#[derive(Debug, Clone)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: Option<u8>,
    /// Escape byte inside quoted fields; `None` means quotes are escaped by doubling.
    pub escape: Option<u8>,
    pub comment: Option<u8>,
    pub trim: bool,
    pub max_record: usize,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            delimiter: b',',
            quote: Some(b'"'),
            escape: None,
            comment: None,
            trim: false,
            max_record: 64 << 20,
        }
    }
}

/// Position and layout of one record inside a [`Batch`].
#[derive(Debug, Clone)]
pub struct RecordMeta {
    /// Index of the record's first field in `Batch::spans`.
    pub first: usize,
    pub n_fields: usize,
    pub raw_start: usize,
    pub raw_end: usize,
    /// 1-based data record number, 1-based line, and byte offset of the record's start.
    pub number: u64,
    pub line: u64,
    pub byte: u64,
    /// Set when quotes were misplaced (text after a closing quote); the record is then rejected.
    pub malformed: Option<String>,
}

/// Records read in one go: their raw bytes, the fields' spans, and the bytes of the few fields that are
/// not a plain slice of the raw record, in flat reusable buffers.
#[derive(Debug, Default)]
pub struct Batch {
    /// Unescaped bytes of the fields whose quotes or escapes had to be undone (`"say ""hi"""`).
    pub data: Vec<u8>,
    /// Per field: a range of `raw`, or with [`IN_DATA`] set on its start, of `data`. Most fields are
    /// read in place: copying every field's bytes made a run of 1M contacts about 0.3 s slower and
    /// took 8 MB more memory (a megabyte per batch in flight).
    pub spans: Vec<(u32, u32)>,
    pub raw: Vec<u8>,
    pub records: Vec<RecordMeta>,
}

/// Flag on a span's start: the field's bytes are in `Batch::data`.
pub const IN_DATA: u32 = 1 << 31;

/// The largest CSV record accepted (`csv.max_record_bytes`): a batch's spans are 31-bit offsets, and a
/// batch holds at most one record beyond its first megabyte.
pub const MAX_CSV_RECORD: usize = 1 << 30;

impl Batch {
    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
        self.raw.clear();
        self.records.clear();
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The unescaped bytes of field `i` of record `r`.
    #[inline]
    pub fn field(&self, r: &RecordMeta, i: usize) -> &[u8] {
        let (s, e) = self.spans[r.first + i];
        if s & IN_DATA != 0 {
            &self.data[(s & !IN_DATA) as usize..e as usize]
        } else {
            &self.raw[s as usize..e as usize]
        }
    }

    /// The record's bytes as they were in the (decoded) input, without the line end.
    pub fn raw(&self, r: &RecordMeta) -> &[u8] {
        &self.raw[r.raw_start..r.raw_end]
    }
}

enum Parsed {
    /// A record of `len` bytes (with its line end) was parsed; `content` excludes the line end.
    Done {
        len: usize,
        content: usize,
        malformed: Option<String>,
        /// Line feeds in the record's `len` bytes (inside quoted fields, and its line end).
        newlines: u64,
    },
    NeedMore,
    Unterminated {
        quote_at: usize,
    },
}

/// Reads records from a UTF-8 (or decoded) byte stream.
pub struct CsvReader<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Offset in the stream of `buf[0]`.
    base: u64,
    /// Line number at `buf[pos]`.
    line: u64,
    records: u64,
    d: Dialect,
    file: String,
}

const INITIAL_BUF: usize = 256 * 1024;

impl<R: Read> CsvReader<R> {
    /// `start_offset` is the stream offset of the first byte (after a skipped byte-order mark).
    pub fn new(src: R, mut d: Dialect, file: impl Into<String>, start_offset: u64) -> Self {
        d.max_record = d.max_record.min(MAX_CSV_RECORD);
        CsvReader {
            src,
            buf: vec![0; INITIAL_BUF],
            pos: 0,
            end: 0,
            eof: false,
            base: start_offset,
            line: 1,
            records: 0,
            d,
            file: file.into(),
        }
    }

    /// Starts record numbers again at 1: the header row is not a data record.
    pub fn restart_numbering(&mut self) {
        self.records = 0;
    }

    /// Position of the next unread byte, for messages about what comes next.
    pub fn position(&self) -> Position {
        Position {
            file: self.file.clone(),
            record: 0,
            line: self.line,
            byte: self.base + self.pos as u64,
        }
    }

    fn too_long(&self) -> FatalError {
        FatalError::RecordTooLong {
            pos: Position {
                record: self.records + 1,
                ..self.position()
            },
            limit: self.d.max_record,
        }
    }

    fn fill(&mut self) -> Result<(), FatalError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.base += self.pos as u64;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= self.d.max_record {
                return Err(FatalError::RecordTooLong {
                    pos: self.position(),
                    limit: self.d.max_record,
                });
            }
            let new_len = (self.buf.len() * 2).min(self.d.max_record.max(INITIAL_BUF));
            self.buf.resize(new_len, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(DecodeError::fatal_from(&e, &self.file, self.line)
                        .unwrap_or_else(|| FatalError::io(&self.file, e)));
                }
            }
        }
    }

    /// Reads the next record into `batch`. Returns false at the end of the input. Blank lines and comment
    /// lines are skipped (their lines still count).
    pub fn read_record(&mut self, batch: &mut Batch) -> Result<bool, FatalError> {
        loop {
            if self.pos == self.end {
                if self.eof {
                    return Ok(false);
                }
                self.fill()?;
                continue;
            }
            let first = self.buf[self.pos];
            if first == b'\n' {
                self.pos += 1;
                self.line += 1;
                continue;
            }
            if first == b'\r' {
                if self.pos + 1 == self.end && !self.eof {
                    self.fill()?;
                    continue;
                }
                self.pos += if self.buf.get(self.pos + 1) == Some(&b'\n') && self.pos + 1 < self.end
                {
                    2
                } else {
                    1
                };
                self.line += 1;
                continue;
            }
            if Some(first) == self.d.comment {
                match memchr::memchr(b'\n', &self.buf[self.pos..self.end]) {
                    Some(j) => {
                        self.pos += j + 1;
                        self.line += 1;
                    }
                    None if self.eof => self.pos = self.end,
                    None => self.fill()?,
                }
                continue;
            }
            let mark = (batch.data.len(), batch.spans.len());
            match self.parse(batch) {
                Parsed::Done {
                    len,
                    content,
                    malformed,
                    newlines,
                } => {
                    if content > self.d.max_record {
                        return Err(self.too_long());
                    }
                    let raw = &self.buf[self.pos..self.pos + content];
                    let raw_start = batch.raw.len();
                    batch.raw.extend_from_slice(raw);
                    self.records += 1;
                    batch.records.push(RecordMeta {
                        first: mark.1,
                        n_fields: batch.spans.len() - mark.1,
                        raw_start,
                        raw_end: batch.raw.len(),
                        number: self.records,
                        line: self.line,
                        byte: self.base + self.pos as u64,
                        malformed,
                    });
                    self.line += newlines;
                    // A lone CR ends a line too.
                    if len > content && self.buf[self.pos + content] == b'\r' && len == content + 1
                    {
                        self.line += 1;
                    }
                    self.pos += len;
                    return Ok(true);
                }
                Parsed::NeedMore => {
                    batch.data.truncate(mark.0);
                    batch.spans.truncate(mark.1);
                    if self.end - self.pos > self.d.max_record {
                        return Err(self.too_long());
                    }
                    self.fill()?;
                }
                Parsed::Unterminated { quote_at } => {
                    let before = &self.buf[self.pos..self.pos + quote_at];
                    let lines = memchr::memchr_iter(b'\n', before).count() as u64;
                    return Err(FatalError::UnterminatedQuote {
                        pos: Position {
                            file: self.file.clone(),
                            record: self.records + 1,
                            line: self.line + lines,
                            byte: self.base + (self.pos + quote_at) as u64,
                        },
                    });
                }
            }
        }
    }

    /// Parses one record starting at `buf[pos]`, appending its fields to the batch.
    fn parse(&self, batch: &mut Batch) -> Parsed {
        let s = &self.buf[self.pos..self.end];
        let n = s.len();
        let eof = self.eof;
        let mut i = 0;
        let mut malformed = None;
        // Only quoted fields can hold line feeds; counting them here spares a pass over every record.
        let mut newlines = 0u64;
        let first_span = batch.spans.len();
        // Where this record's raw bytes will start in `batch.raw`: fields read in place point there.
        let base = batch.raw.len();
        debug_assert!(base + n.min(self.d.max_record) < IN_DATA as usize);
        loop {
            if self.d.trim {
                // Blanks before an opening quote do not make the quote literal when fields are trimmed.
                let mut k = i;
                while k < n && matches!(s[k], b' ' | b'\t') {
                    k += 1;
                }
                if k < n && Some(s[k]) == self.d.quote {
                    i = k;
                }
            }
            // The field is `s[from..to]`, unless an escape, a doubled quote or text after the closing
            // quote made it `copied`: then it is `batch.data[start..]`.
            let start = batch.data.len();
            let mut copied = false;
            let (from, to);
            if self.d.quote == Some(s.get(i).copied().unwrap_or(0)) && i < n {
                let quote_at = i;
                let q = s[i];
                i += 1;
                // The start of the bytes not yet copied, if the field turns out to need copying.
                let mut piece = i;
                loop {
                    let next = match self.d.escape {
                        Some(esc) => memchr::memchr2(q, esc, &s[i..]),
                        None => memchr::memchr(q, &s[i..]),
                    };
                    let Some(j) = next else {
                        if eof {
                            return Parsed::Unterminated { quote_at };
                        }
                        return Parsed::NeedMore;
                    };
                    let j = i + j;
                    newlines += memchr::memchr_iter(b'\n', &s[i..j]).count() as u64;
                    if Some(s[j]) == self.d.escape && s[j] != q {
                        if j + 1 >= n {
                            if eof {
                                return Parsed::Unterminated { quote_at };
                            }
                            return Parsed::NeedMore;
                        }
                        batch.data.extend_from_slice(&s[piece..j]);
                        batch.data.push(s[j + 1]);
                        copied = true;
                        newlines += u64::from(s[j + 1] == b'\n');
                        i = j + 2;
                        piece = i;
                        continue;
                    }
                    // s[j] is the quote: doubled, or closing.
                    if j + 1 == n && !eof {
                        return Parsed::NeedMore;
                    }
                    if self.d.escape.is_none() && s.get(j + 1) == Some(&q) {
                        // The piece and one of the two quotes.
                        batch.data.extend_from_slice(&s[piece..=j]);
                        copied = true;
                        i = j + 2;
                        piece = i;
                        continue;
                    }
                    (from, to) = (piece, j);
                    i = j + 1;
                    break;
                }
                if self.d.trim {
                    while i < n && matches!(s[i], b' ' | b'\t') {
                        i += 1;
                    }
                }
                // After the closing quote only a delimiter or a line end may follow.
                let trailing = i < n && !matches!(s[i], b'\n' | b'\r') && s[i] != self.d.delimiter;
                if copied || trailing {
                    batch.data.extend_from_slice(&s[from..to]);
                    copied = true;
                }
                if trailing {
                    malformed.get_or_insert_with(|| {
                        format!(
                            "text after the closing quote of field {}",
                            batch.spans.len() - first_span + 1
                        )
                    });
                    let after = i;
                    i = crate::swar::find3(s, i, self.d.delimiter, b'\n', b'\r');
                    batch.data.extend_from_slice(&s[after..i]);
                }
            } else {
                from = i;
                i = crate::swar::find3(s, i, self.d.delimiter, b'\n', b'\r');
                to = i;
            }
            if i == n && !eof {
                return Parsed::NeedMore;
            }
            let (bytes, mut span) = if copied {
                (&batch.data[..], (start, batch.data.len()))
            } else {
                (s, (from, to))
            };
            if self.d.trim {
                while span.0 < span.1 && matches!(bytes[span.0], b' ' | b'\t') {
                    span.0 += 1;
                }
                while span.1 > span.0 && matches!(bytes[span.1 - 1], b' ' | b'\t') {
                    span.1 -= 1;
                }
            }
            // Offsets fit 31 bits: a batch's raw bytes and data stay below a megabyte plus one record of
            // at most MAX_CSV_RECORD bytes.
            let span = if copied {
                (span.0 as u32 | IN_DATA, span.1 as u32)
            } else {
                ((base + span.0) as u32, (base + span.1) as u32)
            };
            batch.spans.push(span);
            if i == n {
                return Parsed::Done {
                    len: n,
                    content: n,
                    malformed,
                    newlines,
                };
            }
            match s[i] {
                b'\n' => {
                    return Parsed::Done {
                        len: i + 1,
                        content: i,
                        malformed,
                        newlines: newlines + 1,
                    }
                }
                b'\r' => {
                    if i + 1 == n && !eof {
                        return Parsed::NeedMore;
                    }
                    let crlf = s.get(i + 1) == Some(&b'\n');
                    return Parsed::Done {
                        len: i + 1 + usize::from(crlf),
                        content: i,
                        malformed,
                        newlines: newlines + u64::from(crlf),
                    };
                }
                _ => {
                    // The delimiter: another field follows, even at the end of the input.
                    i += 1;
                    if i == n && !eof {
                        return Parsed::NeedMore;
                    }
                    if i == n {
                        batch.spans.push((0, 0));
                        return Parsed::Done {
                            len: n,
                            content: n,
                            malformed,
                            newlines,
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields its input a few bytes at a time, to exercise every buffer boundary.
    struct Chunky<'a>(&'a [u8], usize);
    impl Read for Chunky<'_> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(b.len());
            b[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    type Rec = (Vec<String>, u64, u64, String, Option<String>);

    fn read_all(input: &[u8], d: Dialect, chunk: usize) -> Result<Vec<Rec>, FatalError> {
        let mut r = CsvReader::new(Chunky(input, chunk), d, "t.csv", 0);
        // A tiny buffer forces records across refills and buffer growth.
        r.buf = vec![0; 4];
        let mut b = Batch::default();
        while r.read_record(&mut b)? {}
        Ok(b.records
            .iter()
            .map(|m| {
                let fields = (0..m.n_fields)
                    .map(|i| String::from_utf8_lossy(b.field(m, i)).into_owned())
                    .collect();
                (
                    fields,
                    m.line,
                    m.byte,
                    String::from_utf8_lossy(b.raw(m)).into_owned(),
                    m.malformed.clone(),
                )
            })
            .collect())
    }

    fn fields(input: &str) -> Vec<Vec<String>> {
        let mut all = None;
        for chunk in [1, 2, 3, 5, 64, 100_000] {
            let got: Vec<Vec<String>> = read_all(input.as_bytes(), Dialect::default(), chunk)
                .unwrap()
                .into_iter()
                .map(|r| r.0)
                .collect();
            if let Some(prev) = &all {
                assert_eq!(prev, &got, "chunk size {chunk} changed the result");
            }
            all = Some(got);
        }
        all.unwrap()
    }

    #[test]
    fn rfc4180_basics() {
        assert_eq!(
            fields("a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\"multi\nline\",\n"),
            vec![
                vec!["a", "b"],
                vec!["x,1", "say \"hi\""],
                vec!["multi\nline", ""],
            ]
        );
    }

    #[test]
    fn no_final_newline_and_trailing_delimiter() {
        assert_eq!(fields("a,b\n1,"), vec![vec!["a", "b"], vec!["1", ""]]);
        assert_eq!(fields("a,b\n1,2"), vec![vec!["a", "b"], vec!["1", "2"]]);
        assert_eq!(fields("a\n\"\""), vec![vec!["a"], vec![""]]);
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let recs = read_all(b"a\n\n\r\nb\n", Dialect::default(), 1).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].1, 4);
        assert_eq!(recs[1].2, 5);
    }

    #[test]
    fn lines_and_bytes_after_multiline_records() {
        let recs = read_all(b"h\n\"1\n2\n3\"\nx\n", Dialect::default(), 3).unwrap();
        assert_eq!((recs[1].1, recs[1].2), (2, 2));
        assert_eq!((recs[2].1, recs[2].2), (5, 10));
        assert_eq!(recs[1].3, "\"1\n2\n3\"");
    }

    #[test]
    fn unterminated_quote_is_an_error_at_the_quote() {
        let err = read_all(b"a,b\n1,\"open\n2,3\n", Dialect::default(), 2).unwrap_err();
        match err {
            FatalError::UnterminatedQuote { pos } => {
                assert_eq!((pos.record, pos.line, pos.byte), (2, 2, 6));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn text_after_closing_quote_marks_the_record() {
        let recs = read_all(b"\"ab\"cd,e\n", Dialect::default(), 1).unwrap();
        assert_eq!(recs[0].0, vec!["abcd", "e"]);
        assert!(recs[0].4.as_deref().unwrap().contains("field 1"));
    }

    #[test]
    fn dialects() {
        let d = Dialect {
            delimiter: b';',
            quote: Some(b'\''),
            escape: Some(b'\\'),
            comment: Some(b'#'),
            trim: true,
            ..Dialect::default()
        };
        let recs = read_all(b"# note\n a ; 'it\\'s; ok' \n#x\nb;c\n", d, 2).unwrap();
        let f: Vec<_> = recs.into_iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            f,
            vec![
                (vec!["a".to_string(), "it's; ok".to_string()], 2),
                (vec!["b".to_string(), "c".to_string()], 4)
            ]
        );
        let none = Dialect {
            quote: None,
            ..Dialect::default()
        };
        let recs = read_all(b"\"a,b\"\n", none, 1).unwrap();
        assert_eq!(recs[0].0, vec!["\"a", "b\""]);
    }

    #[test]
    fn record_longer_than_limit_is_an_error() {
        let d = Dialect {
            max_record: 64,
            ..Dialect::default()
        };
        let mut input = b"\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 200));
        input.extend(b"\"\n");
        let err = read_all(&input, d, 7).unwrap_err();
        assert!(matches!(err, FatalError::RecordTooLong { .. }), "{err}");
    }

    #[test]
    fn lone_cr_line_ends() {
        let recs = read_all(b"a\rb\rc", Dialect::default(), 1).unwrap();
        let f: Vec<_> = recs.iter().map(|r| (r.0[0].clone(), r.1)).collect();
        assert_eq!(f, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
    }
}
