//! JSON sources. The reader thread only splits the input into records: JSON Lines by line, a JSON document
//! by following the record path (`records`, `data.items`, `records.Contacts.records`) and cutting out each
//! record's bytes, while validating everything it skips. Each record is then parsed strictly (RFC 8259) and
//! its fields extracted in the parallel stage, so one tokenizer feeds many mapping threads.
//!
//! Duplicate keys: a key repeated in an object that a field or the record path reads from is refused (the
//! record is rejected; on the record path the document is). Objects nothing reads are only validated.

use std::io::Read;

use super::csv::Batch;
use super::feed::Feed;
use crate::error::FatalError;
use crate::swar::find_json_special;

/// Deeper nesting is refused: no real export needs it, and it bounds the parser's stack.
pub const MAX_DEPTH: usize = 512;

/// How records are laid out in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonLayout {
    /// One JSON value per line (JSON Lines / NDJSON); blank lines are skipped.
    Lines,
    /// One JSON document; the records are the elements of the array at this key path (empty: the
    /// document is the array). An array met before the path ends is descended element by element.
    Document(Vec<String>),
}

/// Splits `--record-path`/`record_path` text (`data.items`) into keys.
pub fn split_path(p: &str) -> Vec<String> {
    p.trim_matches('.')
        .split('.')
        .filter(|s| !s.is_empty() && *s != "$")
        .map(str::to_string)
        .collect()
}

enum Frame {
    Obj {
        d: usize,
        first: bool,
        seen: bool,
    },
    Arr {
        d: usize,
        first: bool,
        records: bool,
    },
}

/// The reader-thread half: finds records and copies their bytes into batches.
pub struct JsonSplitter<R> {
    f: Feed<R>,
    i: usize,
    layout: JsonLayout,
    stack: Vec<Frame>,
    started: bool,
    found: bool,
    records: u64,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<R: Read> JsonSplitter<R> {
    pub fn new(f: Feed<R>, layout: JsonLayout) -> Self {
        JsonSplitter {
            f,
            i: 0,
            layout,
            stack: Vec::new(),
            started: false,
            found: false,
            records: 0,
        }
    }

    /// A document without the record path has no records instead of being an error (the children of a
    /// record, which a record may lack).
    pub fn allow_missing(mut self) -> Self {
        self.found = true;
        self
    }

    fn err(&mut self, message: impl Into<String>) -> FatalError {
        let i = self.i.min(self.f.end);
        self.f.error(i, 0, message)
    }

    /// Makes `buf[i]` available, keeping bytes from `keep` (an index at or before `i`). Returns the
    /// adjusted `keep`, or None at the end of the input.
    /// Makes `buf[i]` available, keeping bytes from `*keep` (an index at or before `i`, adjusted as the
    /// bytes move). False at the end of the input.
    fn more(&mut self, keep: &mut usize) -> Result<bool, FatalError> {
        while self.i >= self.f.avail() {
            let Some(shift) = self.f.fill((*keep).min(self.i))? else {
                return Ok(false);
            };
            self.i -= shift;
            *keep -= shift;
            if self.i >= self.f.avail() && self.f.eof {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn peek(&mut self) -> Result<Option<u8>, FatalError> {
        let mut keep = self.i;
        if self.i >= self.f.avail() && !self.more(&mut keep)? {
            return Ok(None);
        }
        Ok(Some(self.f.buf[self.i]))
    }

    /// Skips whitespace; the next byte, not consumed.
    fn ws(&mut self) -> Result<Option<u8>, FatalError> {
        loop {
            match self.peek()? {
                Some(b) if is_ws(b) => self.i += 1,
                other => return Ok(other),
            }
        }
    }

    fn expect_value(&mut self) -> Result<u8, FatalError> {
        match self.ws()? {
            Some(b) => Ok(b),
            None => Err(self.err("unexpected end of input: a value was expected")),
        }
    }

    /// Reads the next record into `batch`; false at the end of the input.
    pub fn read_record(&mut self, batch: &mut Batch) -> Result<bool, FatalError> {
        match &self.layout {
            JsonLayout::Lines => self.next_line(batch),
            JsonLayout::Document(_) => self.next_in_document(batch),
        }
    }

    fn next_line(&mut self, batch: &mut Batch) -> Result<bool, FatalError> {
        if self.ws()?.is_none() {
            return Ok(false);
        }
        let mut start = self.i;
        let end = loop {
            match memchr::memchr(b'\n', &self.f.buf[self.i..self.f.avail()]) {
                Some(k) => break self.i + k,
                None => {
                    self.i = self.f.avail();
                    if !self.more(&mut start)? {
                        break self.f.avail();
                    }
                }
            }
        };
        self.emit(batch, start, end);
        if end < self.f.avail() {
            // `emit` counted the lines up to `start`, and a record holds no newline.
            self.f.newline_at(end);
        }
        self.i = end + 1;
        Ok(true)
    }

    fn emit(&mut self, batch: &mut Batch, start: usize, end: usize) {
        self.records += 1;
        self.f.emit(batch, start, end, self.records);
    }

    fn path(&self) -> &[String] {
        match &self.layout {
            JsonLayout::Document(p) => p,
            JsonLayout::Lines => &[],
        }
    }

    fn next_in_document(&mut self, batch: &mut Batch) -> Result<bool, FatalError> {
        let plen = self.path().len();
        loop {
            if !self.started {
                self.started = true;
                let c = self.ws()?;
                match (c, plen) {
                    (None, _) => return Err(self.err("the file is empty: a JSON document was expected")),
                    (Some(b'['), 0) => {
                        self.i += 1;
                        self.found = true;
                        self.stack.push(Frame::Arr { d: 0, first: true, records: true });
                    }
                    (Some(b'{'), p) if p > 0 => {
                        self.i += 1;
                        self.stack.push(Frame::Obj { d: 0, first: true, seen: false });
                    }
                    (Some(b'{'), _) => {
                        return Err(self.err(
                            "the document is an object, not an array of records: name the array with a record path (for example `records`)",
                        ))
                    }
                    (Some(_), _) => {
                        return Err(self.err(if plen == 0 {
                            "expected a JSON array of records at the top level"
                        } else {
                            "expected a JSON object at the top level (the record path starts there)"
                        }))
                    }
                }
                continue;
            }
            if self.stack.len() > MAX_DEPTH {
                return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
            }
            let Some(top) = self.stack.last() else {
                return match self.ws()? {
                    None if self.found => Ok(false),
                    None => Err(self.err(format!(
                        "the record path {:?} was not found in the document",
                        self.path().join(".")
                    ))),
                    Some(_) => Err(self.err("unexpected data after the end of the JSON document")),
                };
            };
            match *top {
                Frame::Obj { d, first, seen } => {
                    let mut c = self.ws()?;
                    if !first {
                        match c {
                            Some(b',') => {
                                self.i += 1;
                                c = self.ws()?;
                                if c != Some(b'"') {
                                    return Err(self.err(
                                        "expected a key after `,` (trailing commas are not JSON)",
                                    ));
                                }
                            }
                            Some(b'}') => {
                                self.i += 1;
                                self.stack.pop();
                                continue;
                            }
                            None => {
                                return Err(self.err("unexpected end of input inside an object"))
                            }
                            Some(_) => return Err(self.err("expected `,` or `}` in an object")),
                        }
                    } else if c == Some(b'}') {
                        self.i += 1;
                        self.stack.pop();
                        continue;
                    } else if c != Some(b'"') {
                        return Err(self.err("expected a key (a string in double quotes) or `}`"));
                    }
                    let key = self.read_key()?;
                    if self.ws()? != Some(b':') {
                        return Err(self.err("expected `:` after a key"));
                    }
                    self.i += 1;
                    let on_path = self.path().get(d).is_some_and(|p| *p == key);
                    if let Some(Frame::Obj { first, seen: s, .. }) = self.stack.last_mut() {
                        *first = false;
                        if on_path {
                            *s = true;
                        }
                    }
                    if !on_path {
                        self.skip_value()?;
                        continue;
                    }
                    if seen {
                        return Err(self.err(format!("duplicate key {key:?} on the record path")));
                    }
                    let c = self.expect_value()?;
                    let last = d + 1 == plen;
                    match c {
                        b'[' => {
                            self.i += 1;
                            self.found |= last;
                            self.stack.push(Frame::Arr {
                                d: d + 1,
                                first: true,
                                records: last,
                            });
                        }
                        b'{' if last => {
                            // A single object where an array was expected: one record.
                            self.found = true;
                            self.capture(batch)?;
                            return Ok(true);
                        }
                        b'{' => {
                            self.i += 1;
                            self.stack.push(Frame::Obj {
                                d: d + 1,
                                first: true,
                                seen: false,
                            });
                        }
                        b'n' => {
                            self.found |= last;
                            self.skip_value()?;
                        }
                        _ => {
                            return Err(self.err(format!(
                                "expected an array or object at key {key:?} of the record path"
                            )))
                        }
                    }
                }
                Frame::Arr { d, first, records } => {
                    let mut c = self.ws()?;
                    if !first {
                        match c {
                            Some(b',') => {
                                self.i += 1;
                                c = self.ws()?;
                                if c == Some(b']') {
                                    return Err(self.err("trailing comma before `]` (not JSON)"));
                                }
                            }
                            Some(b']') => {
                                self.i += 1;
                                self.stack.pop();
                                continue;
                            }
                            None => return Err(self.err("unexpected end of input inside an array")),
                            Some(_) => return Err(self.err("expected `,` or `]` in an array")),
                        }
                    } else if c == Some(b']') {
                        self.i += 1;
                        self.stack.pop();
                        continue;
                    }
                    if c.is_none() {
                        return Err(self.err("unexpected end of input inside an array"));
                    }
                    if let Some(Frame::Arr { first, .. }) = self.stack.last_mut() {
                        *first = false;
                    }
                    if records {
                        self.capture(batch)?;
                        return Ok(true);
                    }
                    match c {
                        Some(b'{') => {
                            self.i += 1;
                            self.stack.push(Frame::Obj {
                                d,
                                first: true,
                                seen: false,
                            });
                        }
                        Some(b'[') => {
                            self.i += 1;
                            self.stack.push(Frame::Arr {
                                d,
                                first: true,
                                records: false,
                            });
                        }
                        Some(b'n') => self.skip_value()?,
                        _ => return Err(self.err("expected objects along the record path")),
                    }
                }
            }
        }
    }

    /// Cuts out the value at `i` as one record. Only brackets and strings are tracked here; the parallel
    /// stage parses the record strictly.
    fn capture(&mut self, batch: &mut Batch) -> Result<(), FatalError> {
        let mut start = self.i;
        let mut stack: Vec<u8> = Vec::new();
        let mut in_str = false;
        loop {
            if self.i >= self.f.avail() && !self.more(&mut start)? {
                if stack.is_empty() && !in_str && self.i > start {
                    break;
                }
                return Err(
                    self.err("unexpected end of input inside a record (is the file truncated?)")
                );
            }
            let avail = self.f.avail();
            if in_str {
                match memchr::memchr2(b'"', b'\\', &self.f.buf[self.i..avail]) {
                    Some(k) => {
                        self.i += k;
                        if self.f.buf[self.i] == b'\\' {
                            self.i += 2;
                        } else {
                            self.i += 1;
                            in_str = false;
                            if stack.is_empty() {
                                break;
                            }
                        }
                    }
                    None => self.i = avail,
                }
                continue;
            }
            let b = self.f.buf[self.i];
            match b {
                b'"' => in_str = true,
                b'{' | b'[' => {
                    stack.push(b);
                    if stack.len() > MAX_DEPTH {
                        return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
                    }
                }
                b'}' | b']' if !stack.is_empty() => {
                    let open = stack.pop().unwrap_or(0);
                    if (open == b'{') != (b == b'}') {
                        return Err(
                            self.err(format!("`{}` closes a `{}`", b as char, open as char))
                        );
                    }
                    if stack.is_empty() {
                        self.i += 1;
                        break;
                    }
                }
                // The end of a record that is a bare number or literal.
                b',' | b']' | b'}' if stack.is_empty() => break,
                _ if is_ws(b) && stack.is_empty() => break,
                _ => {}
            }
            self.i += 1;
        }
        let end = self.i;
        self.emit(batch, start, end);
        Ok(())
    }

    /// Reads a key (at its opening quote) and returns it unescaped.
    fn read_key(&mut self) -> Result<String, FatalError> {
        let (start, end) = self.string_extent()?;
        let text = simdutf8::basic::from_utf8(&self.f.buf[start..end]).unwrap_or("");
        let mut out = String::new();
        match parse_string(text, 0, &mut out) {
            Ok(_) => Ok(out),
            Err(e) => {
                self.i = start + e.offset;
                Err(self.err(e.message))
            }
        }
    }

    /// Finds the end of the string at `i`, keeping it whole in the buffer; returns its extent with quotes
    /// and leaves `i` after it.
    fn string_extent(&mut self) -> Result<(usize, usize), FatalError> {
        let mut start = self.i;
        self.i += 1;
        loop {
            if self.i >= self.f.avail() && !self.more(&mut start)? {
                self.i = start;
                return Err(self.err("unterminated string: the input ends inside it"));
            }
            match memchr::memchr2(b'"', b'\\', &self.f.buf[self.i..self.f.avail()]) {
                Some(k) if self.f.buf[self.i + k] == b'\\' => self.i += k + 2,
                Some(k) => {
                    self.i += k + 1;
                    return Ok((start, self.i));
                }
                None => self.i = self.f.avail(),
            }
        }
    }

    /// Skips one value, validating it, in bounded memory (strings and numbers are held whole, up to the
    /// record size limit).
    fn skip_value(&mut self) -> Result<(), FatalError> {
        let mut stack: Vec<u8> = Vec::new();
        'value: loop {
            let c = self.expect_value()?;
            match c {
                b'{' | b'[' => {
                    self.i += 1;
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.ws()? == Some(close) {
                        self.i += 1;
                    } else {
                        stack.push(c);
                        if stack.len() > MAX_DEPTH {
                            return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
                        }
                        if c == b'{' {
                            self.skip_key()?;
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    let (s, e) = self.string_extent()?;
                    let text = simdutf8::basic::from_utf8(&self.f.buf[s..e]).unwrap_or("");
                    if let Err(err) = parse_string(text, 0, &mut String::new()) {
                        self.i = s + err.offset;
                        return Err(self.err(err.message));
                    }
                }
                _ => self.skip_scalar()?,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&open) = stack.last() else {
                    return Ok(());
                };
                let close = if open == b'{' { b'}' } else { b']' };
                match self.ws()? {
                    Some(b',') => {
                        self.i += 1;
                        if open == b'{' {
                            self.skip_key()?;
                        }
                        continue 'value;
                    }
                    Some(b) if b == close => {
                        self.i += 1;
                        stack.pop();
                    }
                    None => {
                        return Err(self.err("unexpected end of input (is the file truncated?)"))
                    }
                    Some(_) => return Err(self.err(format!("expected `,` or `{}`", close as char))),
                }
            }
        }
    }

    fn skip_key(&mut self) -> Result<(), FatalError> {
        if self.ws()? != Some(b'"') {
            return Err(self.err("expected a key (a string in double quotes)"));
        }
        self.read_key()?;
        if self.ws()? != Some(b':') {
            return Err(self.err("expected `:` after a key"));
        }
        self.i += 1;
        Ok(())
    }

    /// A number or literal at `i`.
    fn skip_scalar(&mut self) -> Result<(), FatalError> {
        let mut start = self.i;
        loop {
            if self.i >= self.f.avail() && !self.more(&mut start)? {
                break;
            }
            let b = self.f.buf[self.i];
            if !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')) {
                break;
            }
            self.i += 1;
        }
        let text = simdutf8::basic::from_utf8(&self.f.buf[start..self.i]).unwrap_or("");
        let mut p = Parser::new(text);
        let ok = match text.as_bytes().first() {
            Some(b't') | Some(b'f') | Some(b'n') => p.literal().is_ok() && p.i == text.len(),
            Some(_) => p.number().is_ok() && p.i == text.len(),
            None => false,
        };
        if !ok {
            self.i = start;
            let shown: String = text.chars().take(20).collect();
            return Err(self.err(if shown.is_empty() {
                format!(
                    "unexpected character {:?}",
                    self.f.buf.get(start).map(|&b| b as char).unwrap_or(' ')
                )
            } else {
                format!("{shown:?} is not a JSON value")
            }));
        }
        Ok(())
    }
}

/// Field paths compiled into a tree of keys, for extraction in one pass over a record.
#[derive(Debug, Clone)]
pub struct JsonPaths {
    nodes: Vec<Node>,
    /// Every leaf of a record must be a column (for `convert`, whose columns come from the first records).
    pub all_leaves: bool,
    pub columns: usize,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(String, usize)>,
    /// Per child: its key holds no character that JSON escapes, so it reads as it is written.
    verbatim: Vec<bool>,
    col: Option<usize>,
}

impl JsonPaths {
    /// Columns are key paths (`Owner.Name`); a key that itself holds a dot is matched whole first.
    pub fn new(columns: &[String], all_leaves: bool) -> JsonPaths {
        let mut nodes = vec![Node::default()];
        for (c, col) in columns.iter().enumerate() {
            let mut at = 0;
            for seg in col.split('.') {
                at = match nodes[at].children.iter().find(|(k, _)| k == seg) {
                    Some(&(_, n)) => n,
                    None => {
                        nodes.push(Node::default());
                        let n = nodes.len() - 1;
                        let verbatim = !seg.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20);
                        nodes[at].children.push((seg.to_string(), n));
                        nodes[at].verbatim.push(verbatim);
                        n
                    }
                };
            }
            nodes[at].col.get_or_insert(c);
        }
        JsonPaths {
            nodes,
            all_leaves,
            columns: columns.len(),
        }
    }

    fn child(&self, node: usize, key: &str) -> Option<usize> {
        self.child_at(node, key, 0).map(|(_, n)| n)
    }

    /// The child at `hint` when the key whose opening quote is `b[i]` is its key, byte for byte: its
    /// index, its node and where the key ends (after its closing quote). Records of one export list
    /// their keys in one order, so this is usually the next key, and it is matched where it is read,
    /// without searching for its end and then comparing it. A key holding a character that JSON
    /// escapes is never matched here.
    #[inline]
    fn expected_at(
        &self,
        node: usize,
        hint: usize,
        b: &[u8],
        i: usize,
    ) -> Option<(usize, usize, usize)> {
        let node = &self.nodes[node];
        let (k, n) = node.children.get(hint)?;
        let k = k.as_bytes();
        let end = i + 1 + k.len();
        (node.verbatim[hint]
            && b.get(end) == Some(&b'"')
            && crate::swar::same_bytes(&b[i + 1..end], k))
        .then_some((hint, *n, end + 1))
    }

    /// The child for `key`, and its index; `hint` is tried first (records of one export list their keys
    /// in the same order, so the child after the last one found is usually the next).
    fn child_at(&self, node: usize, key: &str, hint: usize) -> Option<(usize, usize)> {
        let children = &self.nodes[node].children;
        if let Some((k, n)) = children.get(hint) {
            if k == key {
                return Some((hint, *n));
            }
        }
        children
            .iter()
            .position(|(k, _)| k.len() == key.len() && k == key)
            .map(|i| (i, children[i].1))
    }
}

/// Marks a span whose text is in the raw record rather than in `buf` (a JSON string without escapes, a
/// number, a container's text), so most values are never copied before the cast.
pub const IN_RAW: usize = 1 << (usize::BITS - 1);

/// Field values of one record: text in `buf` (or, for spans with [`IN_RAW`] set, in the record), `None`
/// for null or missing.
#[derive(Debug, Default)]
pub struct Extracted {
    pub buf: String,
    pub spans: Vec<Option<(usize, usize)>>,
    /// Scratch of the XML extractor.
    pub xml: super::xml::XmlWork,
}

impl RecordError {
    /// For `convert`: a leaf path absent from the columns found in the first records.
    pub fn unknown_leaf(offset: usize, path: &str) -> RecordError {
        RecordError {
            offset,
            message: format!(
                "{path:?} was not in the records that set the columns; list the columns with --columns"
            ),
            fatal: false,
            ambiguous: false,
            field: path.to_string(),
        }
    }
}

impl Extracted {
    /// The text of a span, from `buf` or from the record `raw`.
    pub fn text<'a>(&'a self, raw: &'a str, start: usize, end: usize) -> &'a str {
        if start & IN_RAW != 0 {
            &raw[start & !IN_RAW..end]
        } else {
            &self.buf[start..end]
        }
    }
}

/// A record that could not be read: `fatal` for a syntax error (the document is broken), otherwise the
/// record alone is rejected.
#[derive(Debug)]
pub struct RecordError {
    pub offset: usize,
    pub message: String,
    pub fatal: bool,
    /// A repeated key or element (reject reason `ambiguous`).
    pub ambiguous: bool,
    /// The field the problem concerns, when there is one.
    pub field: String,
}

fn syntax(offset: usize, message: impl Into<String>) -> RecordError {
    RecordError {
        offset,
        message: message.into(),
        fatal: true,
        ambiguous: false,
        field: String::new(),
    }
}

/// Parses one record strictly and extracts the columns of `paths` into `out`.
pub fn extract(raw: &str, paths: &JsonPaths, out: &mut Extracted) -> Result<(), RecordError> {
    out.buf.clear();
    out.spans.clear();
    out.spans.resize(paths.columns, None);
    let mut p = Parser::new(raw);
    p.ws();
    if p.peek() != Some(b'{') {
        let kind = match p.peek() {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            None => "nothing",
            _ => "a number or literal",
        };
        // Validate first: a broken document is a syntax error, not a shape problem.
        p.value(paths, None, out)?;
        return Err(RecordError {
            offset: 0,
            message: format!("expected a JSON object as the record, found {kind}"),
            fatal: false,
            ambiguous: false,
            field: String::new(),
        });
    }
    p.value(paths, Some(0), out)?;
    p.ws();
    if p.i != raw.len() {
        return Err(syntax(p.i, "unexpected data after the record's JSON value"));
    }
    Ok(())
}

/// Every leaf path of a record (objects descended, arrays and empty objects as leaves), in order, for
/// `convert` to discover its columns.
pub fn leaf_paths(raw: &str, out: &mut Vec<String>) -> Result<(), RecordError> {
    let mut p = Parser::new(raw);
    p.collect_leaves("", out)?;
    p.ws();
    if p.i != raw.len() {
        return Err(syntax(p.i, "unexpected data after the record's JSON value"));
    }
    Ok(())
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Skips whitespace. Exported records mostly have none between tokens: a byte above the space
    /// character ends the skip at once.
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !is_ws(c) {
                break;
            }
            self.i += 1;
        }
    }

    fn enter(&mut self) -> Result<(), RecordError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(syntax(
                self.i,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// Sets a column to `s[start..end]` of the record.
    fn set_raw(out: &mut Extracted, col: usize, start: usize, end: usize) {
        out.spans[col] = Some((start | IN_RAW, end));
    }

    fn set(out: &mut Extracted, col: usize, text: &str) {
        let s = out.buf.len();
        out.buf.push_str(text);
        out.spans[col] = Some((s, out.buf.len()));
    }

    /// Parses a value; `node` is the path-tree node it sits at, if any field reads at or below it.
    /// Inlined into the containers that call it, so that a scalar (most values) costs no call: the
    /// call's entry and exit were a seventh of a JSON Lines record's parse.
    #[inline(always)]
    fn value(
        &mut self,
        paths: &JsonPaths,
        node: Option<usize>,
        out: &mut Extracted,
    ) -> Result<(), RecordError> {
        self.ws();
        let start = self.i;
        let col = node.and_then(|n| paths.nodes[n].col);
        match self.peek() {
            Some(b'{') => {
                self.object(paths, node, out)?;
                if let Some(c) = col {
                    Self::set_raw(out, c, start, self.i);
                }
            }
            Some(b'[') => {
                self.array(paths, node, out)?;
                if let Some(c) = col {
                    Self::set_raw(out, c, start, self.i);
                }
            }
            Some(b'"') => match col {
                Some(c) => {
                    let k = find_json_special(self.b, start + 1);
                    if self.b.get(k) == Some(&b'"') {
                        Self::set_raw(out, c, start + 1, k);
                        self.i = k + 1;
                    } else {
                        let s = out.buf.len();
                        self.i = parse_string(self.s, self.i, &mut out.buf)?;
                        out.spans[c] = Some((s, out.buf.len()));
                    }
                }
                None => {
                    self.i = skip_string(self.s, self.i)?;
                }
            },
            Some(b't' | b'f' | b'n') => {
                let lit = self.literal()?;
                if let (Some(c), Some(v)) = (col, lit) {
                    Self::set(out, c, v);
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                if let Some(c) = col {
                    Self::set_raw(out, c, start, self.i);
                }
            }
            Some(b) => {
                let shown = self.s[self.i..].chars().next().unwrap_or(b as char);
                return Err(syntax(self.i, format!("unexpected character {shown:?}")));
            }
            None => {
                return Err(syntax(
                    self.i,
                    "unexpected end of the record: a value was expected",
                ))
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn object(
        &mut self,
        paths: &JsonPaths,
        node: Option<usize>,
        out: &mut Extracted,
    ) -> Result<(), RecordError> {
        self.enter()?;
        self.i += 1;
        let reads = node.filter(|&n| !paths.nodes[n].children.is_empty());
        // Children matched so far, to refuse a duplicate key that a field reads.
        let mut matched: u64 = 0;
        let mut hint = 0;
        let mut key_buf = String::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(syntax(self.i, "expected a key (a string in double quotes)"));
            }
            let key_at = self.i;
            let guess = reads.and_then(|n| paths.expected_at(n, hint, self.b, self.i));
            let (found, key) = match guess {
                Some((k, child, end)) => {
                    self.i = end;
                    // The key's text is only named in errors, which read it again.
                    (Some((k, child)), "")
                }
                None => {
                    let (end, key) = parse_key(self.s, self.i, &mut key_buf)?;
                    self.i = end;
                    (reads.and_then(|n| paths.child_at(n, key, hint)), key)
                }
            };
            self.ws();
            if self.peek() != Some(b':') {
                return Err(syntax(self.i, "expected `:` after a key"));
            }
            self.i += 1;
            let child = found.map(|(_, c)| c);
            if child.is_none() && paths.all_leaves && node.is_some() {
                return Err(RecordError::unknown_leaf(key_at, key));
            }
            if let Some((k, _)) = found {
                hint = k + 1;
                if k < 64 {
                    if matched & (1 << k) != 0 {
                        let mut buf = String::new();
                        let key = match key {
                            "" => parse_key(self.s, key_at, &mut buf)?.1,
                            key => key,
                        };
                        return Err(RecordError {
                            offset: key_at,
                            message: format!(
                                "duplicate key {key:?}: which value is meant is unclear"
                            ),
                            fatal: false,
                            ambiguous: true,
                            field: key.to_string(),
                        });
                    }
                    matched |= 1 << k;
                }
            }
            self.value(paths, child, out)?;
            if self.after_element(b'}')? {
                return Ok(());
            }
        }
    }

    /// After an element of an object (`close` is `}`) or array (`]`): true when the container closed,
    /// false after a `,` (not followed by the closing bracket: trailing commas are not JSON).
    #[inline(always)]
    fn after_element(&mut self, close: u8) -> Result<bool, RecordError> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(close) {
                    return Err(syntax(
                        self.i,
                        format!("trailing comma before `{}` (not JSON)", close as char),
                    ));
                }
                Ok(false)
            }
            Some(b) if b == close => {
                self.i += 1;
                self.depth -= 1;
                Ok(true)
            }
            other => Err(self.unclosed(close, other)),
        }
    }

    /// The error for what follows an element of an object or array that is neither `,` nor `close`.
    #[cold]
    fn unclosed(&self, close: u8, next: Option<u8>) -> RecordError {
        let what = if close == b'}' {
            "an object"
        } else {
            "an array"
        };
        match next {
            None => syntax(
                self.i,
                format!("unexpected end of the record inside {what}"),
            ),
            Some(_) => syntax(
                self.i,
                format!("expected `,` or `{}` in {what}", close as char),
            ),
        }
    }

    #[inline(never)]
    fn array(
        &mut self,
        paths: &JsonPaths,
        node: Option<usize>,
        out: &mut Extracted,
    ) -> Result<(), RecordError> {
        self.enter()?;
        self.i += 1;
        // Elements are addressed by index (`Tags.0`); with `all_leaves` an array is a leaf.
        let reads = node.filter(|&n| !paths.nodes[n].children.is_empty() && !paths.all_leaves);
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut k = 0usize;
        loop {
            let child = reads.and_then(|n| paths.child(n, &k.to_string()));
            self.value(paths, child, out)?;
            k += 1;
            if self.after_element(b']')? {
                return Ok(());
            }
        }
    }

    /// `true`, `false` or `null` (None).
    fn literal(&mut self) -> Result<Option<&'static str>, RecordError> {
        let rest = &self.b[self.i..];
        for (lit, v) in [
            (&b"true"[..], Some("true")),
            (b"false", Some("false")),
            (b"null", None),
        ] {
            if rest.starts_with(lit) {
                self.i += lit.len();
                if self.peek().is_some_and(|b| b.is_ascii_alphanumeric()) {
                    break;
                }
                return Ok(v);
            }
        }
        Err(syntax(
            self.i,
            "not a JSON literal (true, false or null are lower case)",
        ))
    }

    /// RFC 8259 number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, kept as written.
    fn number(&mut self) -> Result<(), RecordError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|b| b.is_ascii_digit()) {
                p.i += 1;
            }
            p.i - s
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return Err(syntax(start, "a number may not have leading zeros"));
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(syntax(start, "not a JSON number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(syntax(self.i, "a digit must follow the decimal point"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(syntax(self.i, "a digit must follow the exponent"));
            }
        }
        if self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.')
        {
            return Err(syntax(self.i, "not a JSON number"));
        }
        Ok(())
    }

    fn collect_leaves(&mut self, prefix: &str, out: &mut Vec<String>) -> Result<(), RecordError> {
        self.ws();
        let push = |out: &mut Vec<String>| {
            if !out.iter().any(|p| p == prefix) {
                out.push(prefix.to_string());
            }
        };
        match self.peek() {
            Some(b'{') => {
                self.enter()?;
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    self.depth -= 1;
                    if !prefix.is_empty() {
                        push(out);
                    }
                    return Ok(());
                }
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(syntax(self.i, "expected a key (a string in double quotes)"));
                    }
                    let mut key = String::new();
                    self.i = parse_string(self.s, self.i, &mut key)?;
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(syntax(self.i, "expected `:` after a key"));
                    }
                    self.i += 1;
                    let p = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    self.collect_leaves(&p, out)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            self.depth -= 1;
                            return Ok(());
                        }
                        _ => return Err(syntax(self.i, "expected `,` or `}` in an object")),
                    }
                }
            }
            _ => {
                let empty = JsonPaths::new(&[], false);
                self.value(&empty, None, &mut Extracted::default())?;
                push(out);
                Ok(())
            }
        }
    }
}

/// Skips a string at `s[i]` (its opening quote), validating it; returns the index after it.
fn skip_string(s: &str, i: usize) -> Result<usize, RecordError> {
    let b = s.as_bytes();
    let mut j = i + 1;
    loop {
        let k = find_json_special(b, j);
        match b.get(k) {
            None => return Err(syntax(i, "unterminated string")),
            Some(b'"') => return Ok(k + 1),
            Some(b'\\') => j = escape(s, k, &mut None)?,
            Some(_) => return Err(syntax(k, "a control character must be escaped in a string")),
        }
    }
}

/// Parses the string at `s[i]` (its opening quote), appending its unescaped text; returns the index after it.
pub fn parse_string(s: &str, i: usize, out: &mut String) -> Result<usize, RecordError> {
    let b = s.as_bytes();
    let mut j = i + 1;
    loop {
        let k = find_json_special(b, j);
        match b.get(k) {
            None => return Err(syntax(i, "unterminated string")),
            Some(b'"') => {
                out.push_str(&s[j..k]);
                return Ok(k + 1);
            }
            Some(b'\\') => {
                out.push_str(&s[j..k]);
                let mut o = Some(&mut *out);
                j = escape(s, k, &mut o)?;
            }
            Some(_) => return Err(syntax(k, "a control character must be escaped in a string")),
        }
    }
}

/// A key at `s[i]`: borrowed when it has no escapes (nearly always), else unescaped into `buf`.
fn parse_key<'s>(
    s: &'s str,
    i: usize,
    buf: &'s mut String,
) -> Result<(usize, &'s str), RecordError> {
    let b = s.as_bytes();
    let k = find_json_special(b, i + 1);
    if b.get(k) == Some(&b'"') {
        return Ok((k + 1, &s[i + 1..k]));
    }
    buf.clear();
    let end = parse_string(s, i, buf)?;
    Ok((end, buf.as_str()))
}

/// Decodes the escape at `s[j]` (a backslash), appending it to `out` if given; returns the index after it.
fn escape(s: &str, j: usize, out: &mut Option<&mut String>) -> Result<usize, RecordError> {
    let b = s.as_bytes();
    let push = |out: &mut Option<&mut String>, c: char| {
        if let Some(o) = out.as_deref_mut() {
            o.push(c);
        }
    };
    let Some(&e) = b.get(j + 1) else {
        return Err(syntax(j, "unterminated escape"));
    };
    let c = match e {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(s, j + 2)?;
            if (0xDC00..0xE000).contains(&hi) {
                return Err(syntax(
                    j,
                    "a lone low surrogate (\\uDC00-\\uDFFF) is not a character",
                ));
            }
            if (0xD800..0xDC00).contains(&hi) {
                if b.get(j + 6) != Some(&b'\\') || b.get(j + 7) != Some(&b'u') {
                    return Err(syntax(
                        j,
                        "a high surrogate must be followed by a low surrogate",
                    ));
                }
                let lo = hex4(s, j + 8)?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return Err(syntax(
                        j,
                        "a high surrogate must be followed by a low surrogate",
                    ));
                }
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                push(out, char::from_u32(c).unwrap_or('\u{FFFD}'));
                return Ok(j + 12);
            }
            push(out, char::from_u32(hi).unwrap_or('\u{FFFD}'));
            return Ok(j + 6);
        }
        _ => {
            return Err(syntax(
                j,
                "unknown escape (JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
            ))
        }
    };
    push(out, c);
    Ok(j + 2)
}

fn hex4(s: &str, at: usize) -> Result<u32, RecordError> {
    s.get(at..at + 4)
        .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| syntax(at, "\\u must be followed by 4 hex digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(raw: &str, cols: &[&str]) -> Result<Vec<Option<String>>, RecordError> {
        let cols: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
        let paths = JsonPaths::new(&cols, false);
        let mut out = Extracted::default();
        extract(raw, &paths, &mut out)?;
        Ok(out
            .spans
            .iter()
            .map(|s| s.map(|(a, b)| out.text(raw, a, b).to_string()))
            .collect())
    }

    #[test]
    fn extracts_paths_exact_numbers_and_raw_containers() {
        let v = get(
            r#"{"attributes":{"type":"Account","referenceId":"R1"},"Name":"A \"q\" \u00e9\ud83d\ude00","n":12.50e+3,"b":true,"z":null,"arr":[1, 2],"Owner":{"Name":"x"}}"#,
            &["attributes.type", "attributes.referenceId", "Name", "n", "b", "z", "missing", "arr", "arr.1", "Owner.Name"],
        )
        .unwrap();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            v,
            vec![
                s("Account"),
                s("R1"),
                s("A \"q\" é😀"),
                s("12.50e+3"),
                s("true"),
                None,
                None,
                s("[1, 2]"),
                s("2"),
                s("x")
            ]
        );
    }

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        for bad in [
            r#"{"a":1,}"#,
            r#"{'a':1}"#,
            r#"{"a":01}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            "{\"a\":\"x\u{1}\"}",
            r#"{"a":1} x"#,
            r#"{"a":[1,]}"#,
            r#"{"a":.5}"#,
            r#"{"a":1.}"#,
            r#"{"a":True}"#,
            r#"{"a":NaN}"#,
            r#"{"a":"\x"}"#,
            r#"{"a" 1}"#,
            r#"{"a":1"#,
            r#"{"a":-}"#,
            r#"{"a":+1}"#,
            r#"{"a":0x10}"#,
        ] {
            let r = get(bad, &["a"]);
            assert!(r.as_ref().is_err_and(|e| e.fatal), "{bad}: {r:?}");
        }
    }

    #[test]
    fn duplicate_keys_that_a_field_reads_are_rejected() {
        let e = get(r#"{"a":1,"a":2}"#, &["a"]).unwrap_err();
        assert!(!e.fatal && e.message.contains("duplicate"));
        // Nothing reads `b`: its duplicate does not matter.
        assert!(get(r#"{"a":1,"b":2,"b":3}"#, &["a"]).is_ok());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let e = get(&deep, &["a"]).unwrap_err();
        assert!(e.message.contains("nesting deeper"), "{}", e.message);
    }

    #[test]
    fn leaf_paths_in_document_order() {
        let mut out = Vec::new();
        leaf_paths(r#"{"z":1,"a":{"y":2,"b":[1]},"e":{}}"#, &mut out).unwrap();
        assert_eq!(out, ["z", "a.y", "a.b", "e"]);
    }
}
