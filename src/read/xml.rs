//! XML sources. The reader thread runs a small structural scanner (tags, comments, CDATA, processing
//! instructions) that checks nesting, follows the element stack, and cuts out each element on the record
//! path (`/entities/entity/records/record`). Each record is then parsed with quick-xml in the parallel
//! stage and its fields (`Name`, `@id`, `Address/City`, `field[@name=x]/@value`) extracted.
//!
//! Safety: a DOCTYPE with an internal subset (where entities are declared) is refused, external DTDs and
//! entities are never read, and only the five predefined entities and character references are expanded,
//! so no document can expand beyond its own size.

use std::borrow::Cow;
use std::io::Read;

use quick_xml::events::{BytesStart, Event};
use quick_xml::XmlVersion;

use super::csv::Batch;
use super::feed::Feed;
use super::json::{Extracted, RecordError};
use crate::error::FatalError;

/// Deeper element nesting is refused.
pub const MAX_DEPTH: usize = 512;

/// Splits `/a/b[@name=x]/c` into steps.
pub fn split_path(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A record path step as text (`entity[@name=account]`) parsed into its name and predicate.
fn parse_step(part: &str) -> Result<Step, String> {
    let (name, pred) = match part.split_once('[') {
        Some((n, rest)) => {
            let inner = rest
                .strip_suffix(']')
                .and_then(|r| r.strip_prefix('@'))
                .and_then(|r| r.split_once('='))
                .ok_or_else(|| format!("{part:?}: a predicate looks like [@name=value]"))?;
            let v = inner.1.trim_matches(|c| c == '\'' || c == '"');
            (n, Some((inner.0.to_string(), v.to_string())))
        }
        None => (part, None),
    };
    if name.is_empty() {
        return Err(format!("{part:?}: an empty element name"));
    }
    Ok(Step {
        name: name.to_string(),
        pred,
    })
}

/// Checks a record path; the message says what is wrong.
pub fn check_path(path: &[String]) -> Result<(), String> {
    if path.is_empty() {
        return Err(
            "an XML source needs the path of its record element, for example `/Contacts/Contact`"
                .into(),
        );
    }
    path.iter().try_for_each(|p| parse_step(p).map(|_| ()))
}

/// The value of attribute `name` in the bytes of a start tag (after its element name), with the
/// predefined entities decoded; None if absent.
fn tag_attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    loop {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let q = after.chars().next()?;
        if q != '"' && q != '\'' {
            return None;
        }
        let end = after[1..].find(q)?;
        let value = &after[1..1 + end];
        if name_matches(name, key) {
            return Some(
                quick_xml::escape::unescape(value)
                    .map(Cow::into_owned)
                    .unwrap_or_else(|_| value.to_string()),
            );
        }
        rest = &after[end + 2..];
    }
}

/// Whether an element name matches a path step: `p:name` matches the name as written, `name` matches
/// the local name whatever its prefix, `*` anything.
fn name_matches(step: &str, name: &str) -> bool {
    if name.len() == step.len() {
        return name == step || step == "*";
    }
    // A local-name step matches `prefix:step`; a qualified step only itself. No `rsplit`: this runs for
    // every element of every record.
    step == "*"
        || (name.len() > step.len()
            && name.ends_with(step)
            && name.as_bytes()[name.len() - step.len() - 1] == b':'
            && !step.contains(':'))
}

struct Open {
    name_end: usize,
    byte: u64,
    line: u64,
    on_path: bool,
}

impl Open {
    fn at(&self) -> String {
        if self.line > 0 {
            format!("at line {}", self.line)
        } else {
            format!("at byte {}", self.byte)
        }
    }
}

/// The reader-thread half: finds record elements and copies their bytes into batches.
pub struct XmlSplitter<R> {
    f: Feed<R>,
    i: usize,
    path: Vec<Step>,
    /// Open elements: end of the name in `names`, where the start tag is (absolute byte; line, 0 inside
    /// a record where it is not counted), and whether it and its ancestors match the path.
    stack: Vec<Open>,
    names: Vec<u8>,
    /// Start index and stack depth of the record being cut out.
    capture: Option<(usize, usize)>,
    /// Open elements inside the record being cut out (not on `stack`).
    inner: usize,
    root_done: bool,
    records: u64,
}

impl<R: Read> XmlSplitter<R> {
    /// `path` must have passed [`check_path`].
    pub fn new(f: Feed<R>, path: Vec<String>) -> Self {
        XmlSplitter {
            f,
            i: 0,
            path: path.iter().filter_map(|p| parse_step(p).ok()).collect(),
            stack: Vec::new(),
            names: Vec::new(),
            capture: None,
            inner: 0,
            root_done: false,
            records: 0,
        }
    }

    fn err_at(&mut self, i: usize, message: impl Into<String>) -> FatalError {
        let i = i.min(self.f.end);
        self.f.error(i, 0, message)
    }

    /// Reads more, keeping bytes from `keep` (and the record being captured). Adjusts `i`, `keep` and the
    /// capture start; None at the end of the input.
    fn more(&mut self, keep: usize) -> Result<Option<usize>, FatalError> {
        let keep_from = match self.capture {
            Some((s, _)) => s.min(keep),
            None => keep,
        };
        match self.f.fill(keep_from.min(self.i))? {
            Some(shift) => {
                self.i -= shift;
                if let Some((s, _)) = &mut self.capture {
                    *s -= shift;
                }
                Ok(Some(keep - shift))
            }
            None => Ok(None),
        }
    }

    /// Finds `needle` at or after `from`, reading more as needed and keeping bytes from `keep`.
    fn find(
        &mut self,
        keep: usize,
        from: usize,
        needle: &[u8],
    ) -> Result<Option<(usize, usize)>, FatalError> {
        let mut keep = keep;
        let mut from = from;
        loop {
            let hay = &self.f.buf[from..self.f.avail()];
            if let Some(k) = memchr::memmem::find(hay, needle) {
                return Ok(Some((keep, from + k)));
            }
            let scanned = self.f.avail().saturating_sub(needle.len() - 1).max(from);
            let before = keep;
            match self.more(keep)? {
                Some(k) => {
                    from = scanned - (before - k);
                    keep = k;
                    if self.f.avail() == 0 || (self.f.eof && from >= self.f.avail()) {
                        return Ok(None);
                    }
                }
                None => return Ok(None),
            }
        }
    }

    /// Reads the next record into `batch`; false at the end of the input.
    pub fn read_record(&mut self, batch: &mut Batch) -> Result<bool, FatalError> {
        loop {
            // Text up to the next tag.
            let lt = loop {
                let avail = self.f.avail();
                match memchr::memchr(b'<', &self.f.buf[self.i..avail]) {
                    Some(k) => {
                        self.check_text(self.i, self.i + k)?;
                        break self.i + k;
                    }
                    None => {
                        self.check_text(self.i, avail)?;
                        self.i = avail;
                        if self.more(self.i)?.is_none() {
                            return self.at_end();
                        }
                    }
                }
            };
            self.i = lt;
            // Enough bytes to tell the kind of markup.
            while self.f.avail() < self.i + 9 && !self.f.eof {
                if self.more(self.i)?.is_none() {
                    break;
                }
            }
            let start = self.i;
            let head = &self.f.buf[start..self.f.avail().min(start + 9)];
            if head.starts_with(b"<!--") {
                self.skip_to(start, start + 4, b"-->", "comment")?;
            } else if head.starts_with(b"<![CDATA[") {
                if self.stack.is_empty() {
                    return Err(self.err_at(start, "CDATA outside the root element"));
                }
                self.skip_to(start, start + 9, b"]]>", "CDATA section")?;
            } else if head.starts_with(b"<!DOCTYPE") {
                self.doctype(start)?;
            } else if head.starts_with(b"<?") {
                self.skip_to(start, start + 2, b"?>", "processing instruction")?;
            } else if head.starts_with(b"</") {
                if let Some(done) = self.end_tag(start, batch)? {
                    return Ok(done);
                }
            } else if head.starts_with(b"<!") {
                return Err(self.err_at(start, "unknown markup `<!`"));
            } else if let Some(done) = self.start_tag(start, batch)? {
                return Ok(done);
            }
        }
    }

    fn at_end(&mut self) -> Result<bool, FatalError> {
        if let Some(open) = self.stack.last() {
            let msg = format!(
                "the input ends inside <{}> opened {} (is the file truncated?)",
                String::from_utf8_lossy(self.open_name(self.stack.len() - 1)),
                open.at()
            );
            let end = self.f.avail();
            return Err(self.err_at(end, msg));
        }
        if !self.root_done {
            let end = self.f.avail();
            return Err(self.err_at(end, "no root element: the file holds no XML document"));
        }
        Ok(false)
    }

    fn open_name(&self, k: usize) -> &[u8] {
        let start = if k == 0 {
            0
        } else {
            self.stack[k - 1].name_end
        };
        &self.names[start..self.stack[k].name_end]
    }

    /// Only whitespace may stand outside the root element.
    fn check_text(&mut self, from: usize, to: usize) -> Result<(), FatalError> {
        if self.stack.is_empty() {
            if let Some(k) = self.f.buf[from..to]
                .iter()
                .position(|b| !b.is_ascii_whitespace())
            {
                return Err(self.err_at(from + k, "text outside the root element"));
            }
        }
        Ok(())
    }

    fn skip_to(
        &mut self,
        start: usize,
        from: usize,
        end: &[u8],
        what: &str,
    ) -> Result<(), FatalError> {
        match self.find(start, from, end)? {
            Some((_, at)) => {
                self.i = at + end.len();
                Ok(())
            }
            None => {
                let s = self.i;
                Err(self.err_at(s, format!("unterminated {what}")))
            }
        }
    }

    fn doctype(&mut self, start: usize) -> Result<(), FatalError> {
        let Some((start, gt)) = self.find(start, start, b">")? else {
            return Err(self.err_at(start, "unterminated DOCTYPE"));
        };
        if self.f.buf[start..gt].contains(&b'[') {
            return Err(self.err_at(
                start,
                "a DOCTYPE with an internal subset (entity declarations) is refused: entities could expand without bound",
            ));
        }
        // An external DTD named here is never read.
        self.i = gt + 1;
        Ok(())
    }

    /// The end of a tag that starts at `start`, skipping `>` inside quoted attribute values.
    fn tag_end(&mut self, start: usize) -> Result<(usize, usize), FatalError> {
        let mut start = start;
        let mut j = start + 1;
        loop {
            while j >= self.f.avail() {
                let before = start;
                match self.more(start)? {
                    Some(k) => {
                        j -= before - k;
                        start = k;
                    }
                    None => {
                        return Err(self.err_at(start, "unterminated tag (is the file truncated?)"))
                    }
                }
            }
            let avail = self.f.avail();
            let Some(k) = memchr::memchr3(b'>', b'"', b'\'', &self.f.buf[j..avail]) else {
                if let Some(k) = memchr::memchr(b'<', &self.f.buf[j..avail]) {
                    return Err(self.err_at(j + k, "`<` inside a tag"));
                }
                j = avail;
                continue;
            };
            if let Some(lt) = memchr::memchr(b'<', &self.f.buf[j..j + k]) {
                return Err(self.err_at(j + lt, "`<` inside a tag"));
            }
            j += k;
            let b = self.f.buf[j];
            if b == b'>' {
                return Ok((start, j));
            }
            // A quoted attribute value: `>` and `<` inside do not count.
            j += 1;
            loop {
                while j >= self.f.avail() {
                    let before = start;
                    match self.more(start)? {
                        Some(k) => {
                            j -= before - k;
                            start = k;
                        }
                        None => {
                            return Err(
                                self.err_at(start, "unterminated tag (is the file truncated?)")
                            )
                        }
                    }
                }
                match memchr::memchr(b, &self.f.buf[j..self.f.avail()]) {
                    Some(k) => {
                        j += k + 1;
                        break;
                    }
                    None => j = self.f.avail(),
                }
            }
        }
    }

    fn start_tag(&mut self, start: usize, batch: &mut Batch) -> Result<Option<bool>, FatalError> {
        let (start, gt) = self.tag_end(start)?;
        if self.capture.is_some() {
            // Inside a record only the depth matters here: the parallel stage parses the record and
            // checks that its end tags match.
            self.i = gt + 1;
            if self.f.buf[gt - 1] != b'/' {
                self.inner += 1;
                if self.stack.len() + self.inner > MAX_DEPTH {
                    return Err(self.err_at(
                        start,
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            return Ok(None);
        }
        let tag = &self.f.buf[start + 1..gt];
        let name_len = tag
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'/')
            .unwrap_or(tag.len());
        let name = &tag[..name_len];
        let empty = tag.last() == Some(&b'/');
        let depth = self.stack.len() + 1;
        let on_path = depth <= self.path.len() && self.stack.last().is_none_or(|e| e.on_path) && {
            let step = &self.path[depth - 1];
            let name_s = std::str::from_utf8(name).unwrap_or("");
            name_matches(&step.name, name_s)
                && step.pred.as_ref().is_none_or(|(a, v)| {
                    let attrs = std::str::from_utf8(&tag[name_len..]).unwrap_or("");
                    tag_attr(attrs, a).as_deref() == Some(v.as_str())
                })
        };
        if name.is_empty() {
            return Err(self.err_at(start, "a tag without a name"));
        }
        if self.stack.is_empty() && self.root_done {
            return Err(self.err_at(start, "a second root element (an XML document has one)"));
        }
        self.i = gt + 1;
        let matches = self.capture.is_none() && on_path && depth == self.path.len();
        if empty {
            if self.stack.is_empty() {
                self.root_done = true;
            }
            if matches {
                self.emit(batch, start, gt + 1);
                return Ok(Some(true));
            }
            return Ok(None);
        }
        if depth > MAX_DEPTH {
            return Err(self.err_at(
                start,
                format!("elements nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.names
            .extend_from_slice(&self.f.buf[start + 1..start + 1 + name_len]);
        // Lines are counted for the few elements outside records; inside one, the byte says where.
        let line = if self.capture.is_none() {
            self.f.line_of(start)
        } else {
            0
        };
        self.stack.push(Open {
            name_end: self.names.len(),
            byte: self.f.offset(start),
            line,
            on_path,
        });
        if matches {
            self.capture = Some((start, depth));
        }
        Ok(None)
    }

    fn end_tag(&mut self, start: usize, batch: &mut Batch) -> Result<Option<bool>, FatalError> {
        let (start, gt) = self.tag_end(start)?;
        if self.inner > 0 {
            self.inner -= 1;
            self.i = gt + 1;
            return Ok(None);
        }
        let name = self.f.buf[start + 2..gt].trim_ascii();
        let Some(top) = self.stack.len().checked_sub(1) else {
            return Err(self.err_at(start, "an end tag without a start tag"));
        };
        let open = self.open_name(top);
        if open != name {
            let msg = format!(
                "</{}> does not close <{}> opened {}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(open),
                self.stack[top].at()
            );
            return Err(self.err_at(start, msg));
        }
        self.stack.pop();
        self.names
            .truncate(self.stack.last().map_or(0, |o| o.name_end));
        self.i = gt + 1;
        if self.stack.is_empty() {
            self.root_done = true;
        }
        if let Some((s, depth)) = self.capture {
            if self.stack.len() < depth {
                self.capture = None;
                self.emit(batch, s, gt + 1);
                return Ok(Some(true));
            }
        }
        Ok(None)
    }

    fn emit(&mut self, batch: &mut Batch, start: usize, end: usize) {
        self.records += 1;
        self.f.emit(batch, start, end, self.records);
    }
}

/// One step of a field path: an element name with an optional `[@attr=value]` predicate.
#[derive(Debug, Clone)]
struct Step {
    name: String,
    pred: Option<(String, String)>,
}

/// Field paths relative to the record element, as a tree of steps so that each element of a record is
/// matched once against the steps that can follow its parent.
#[derive(Debug, Clone)]
pub struct XmlPaths {
    nodes: Vec<PathNode>,
    columns: Vec<String>,
    /// Every leaf of a record must be a column (for `convert`).
    pub all_leaves: bool,
}

#[derive(Debug, Clone, Default)]
struct PathNode {
    children: Vec<(Step, usize)>,
    /// Children by the local name their step matches, with a cheap signature compared first (every
    /// element of every record is looked up here); `other` holds `*` and `prefix:name` steps.
    by_local: Vec<(u64, String, Vec<usize>)>,
    other: Vec<usize>,
    /// Columns that take this element's text.
    text: Vec<usize>,
    /// Columns that take one of this element's attributes.
    attrs: Vec<(String, usize)>,
}

impl XmlPaths {
    /// Parses field paths: `Name`, `@id`, `Address/City`, `Address/@type`, `.` (the record's own text),
    /// `field[@name=x]/@value` (quotes around `x` optional).
    pub fn new(columns: &[String], all_leaves: bool) -> Result<XmlPaths, String> {
        let mut nodes = vec![PathNode::default()];
        for (c, col) in columns.iter().enumerate() {
            let parts: Vec<&str> = col
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .collect();
            let mut at = 0;
            for (k, part) in parts.iter().enumerate() {
                if let Some(a) = part.strip_prefix('@') {
                    if k + 1 != parts.len() || a.is_empty() {
                        return Err(format!("{col:?}: an attribute (@name) can only end a path"));
                    }
                    nodes[at].attrs.push((a.to_string(), c));
                    break;
                }
                let step = parse_step(part).map_err(|e| format!("{col:?}: {e}"))?;
                at = match nodes[at]
                    .children
                    .iter()
                    .find(|(s, _)| s.name == step.name && s.pred == step.pred)
                {
                    Some(&(_, n)) => n,
                    None => {
                        nodes.push(PathNode::default());
                        let n = nodes.len() - 1;
                        nodes[at].children.push((step, n));
                        n
                    }
                };
                if k + 1 == parts.len() {
                    nodes[at].text.push(c);
                }
            }
            if parts.is_empty() {
                nodes[0].text.push(c);
            }
        }
        for node in &mut nodes {
            for (k, (step, _)) in node.children.iter().enumerate() {
                if step.name == "*" || step.name.contains(':') {
                    node.other.push(k);
                    continue;
                }
                let sig = signature(step.name.as_bytes());
                match node.by_local.iter_mut().find(|g| g.1 == step.name) {
                    Some(g) => g.2.push(k),
                    None => node.by_local.push((sig, step.name.clone(), vec![k])),
                }
            }
        }
        Ok(XmlPaths {
            nodes,
            columns: columns.to_vec(),
            all_leaves,
        })
    }
}

/// Length and first and last bytes of a name, packed.
fn signature(b: &[u8]) -> u64 {
    let first = b.first().copied().unwrap_or(0) as u64;
    let last = b.last().copied().unwrap_or(0) as u64;
    ((b.len() as u64) << 16) | (first << 8) | last
}

/// Reusable buffers of [`extract`], kept in [`Extracted`] across the records of a chunk.
#[derive(Debug, Default)]
pub struct XmlWork {
    vals: Vec<String>,
    present: Vec<bool>,
    count: Vec<u32>,
    matched: Vec<usize>,
    level_start: Vec<usize>,
    collect: Vec<(usize, usize)>,
    hits: Vec<usize>,
    /// An attribute value read for a `[@attr=value]` step.
    pred: String,
}

/// Writes attribute `name` of `e` into `out` (cleared first); false if absent.
fn attr_into(e: &BytesStart, name: &str, at: u64, out: &mut String) -> Result<bool, RecordError> {
    for a in e.attributes() {
        let a = a.map_err(|err| xml_err(at, err))?;
        if name_matches(name, a.key.as_ref()) {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| xml_err(at, err))?;
            out.clear();
            out.push_str(&v);
            return Ok(true);
        }
    }
    Ok(false)
}

fn xml_err(offset: u64, e: impl std::fmt::Display) -> RecordError {
    RecordError {
        offset: offset as usize,
        message: format!("not well-formed XML: {e}"),
        fatal: true,
        ambiguous: false,
        field: String::new(),
    }
}

fn attr_value(e: &BytesStart, name: &str, at: u64) -> Result<Option<String>, RecordError> {
    for a in e.attributes() {
        let a = a.map_err(|err| xml_err(at, err))?;
        if name_matches(name, a.key.as_ref()) {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| xml_err(at, err))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// `xsi:nil="true"`: the element is null rather than empty.
fn is_nil(e: &BytesStart) -> bool {
    e.attributes()
        .flatten()
        .any(|a| a.key.as_ref().ends_with(":nil") && matches!(a.value.as_ref(), "true" | "1"))
}

fn push_ref(name: &str, at: u64, out: &mut String) -> Result<(), RecordError> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix('x') {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => num.parse().ok(),
        };
        match code.and_then(char::from_u32).filter(|c| *c != '\0') {
            Some(c) => out.push(c),
            None => return Err(xml_err(at, format!("&{name}; is not a character"))),
        }
        return Ok(());
    }
    match quick_xml::escape::resolve_predefined_entity(name) {
        Some(v) => {
            out.push_str(v);
            Ok(())
        }
        None => Err(xml_err(
            at,
            format!("unknown entity &{name}; (entities declared in a DTD are not read)"),
        )),
    }
}

/// Parses one record element and extracts the columns of `paths` into `out`.
pub fn extract(raw: &str, paths: &XmlPaths, out: &mut Extracted) -> Result<(), RecordError> {
    let n = paths.columns.len();
    out.buf.clear();
    out.spans.clear();
    out.spans.resize(n, None);
    if paths.all_leaves {
        let mut leaves = Vec::new();
        leaf_paths(raw, &mut leaves)?;
        if let Some(l) = leaves.iter().find(|l| !paths.columns.contains(l)) {
            return Err(RecordError::unknown_leaf(0, l));
        }
    }
    let w = &mut out.xml;
    w.vals.resize_with(n, String::new);
    w.present.clear();
    w.present.resize(n, false);
    w.count.clear();
    w.count.resize(n, 0);
    // Path nodes matched by each open element (a flat list; `level_start[d]` is where depth d begins),
    // and text collectors (column, depth).
    w.matched.clear();
    w.level_start.clear();
    w.collect.clear();
    let mut r = quick_xml::Reader::from_str(raw);
    loop {
        let at = r.buffer_position();
        let ev = r.read_event().map_err(|e| xml_err(r.error_position(), e))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(ev, Event::Empty(_));
                let d = w.level_start.len();
                w.hits.clear();
                if d == 0 {
                    w.hits.push(0);
                } else {
                    let qname = e.name();
                    let name = qname.as_ref();
                    let local = name.rsplit_once(':').map_or(name, |(_, l)| l);
                    let sig = signature(local.as_bytes());
                    for k in w.level_start[d - 1]..w.matched.len() {
                        let parent = &paths.nodes[w.matched[k]];
                        let group = parent
                            .by_local
                            .iter()
                            .find(|g| g.0 == sig && g.1 == local)
                            .map(|g| g.2.as_slice())
                            .unwrap_or(&[]);
                        for &c in group.iter().chain(parent.other.iter()) {
                            let (step, node) = &parent.children[c];
                            if !name_matches(&step.name, name) {
                                continue;
                            }
                            let ok = match &step.pred {
                                None => true,
                                Some((a, v)) => attr_into(e, a, at, &mut w.pred)? && w.pred == *v,
                            };
                            if ok {
                                w.hits.push(*node);
                            }
                        }
                    }
                }
                for &node in &w.hits {
                    let pn = &paths.nodes[node];
                    if !pn.text.is_empty() {
                        let nil = is_nil(e);
                        for &col in &pn.text {
                            w.count[col] += 1;
                            w.vals[col].clear();
                            w.present[col] = !nil;
                            if !nil && !is_empty {
                                w.collect.push((col, d));
                            }
                        }
                    }
                    for (a, col) in &pn.attrs {
                        w.count[*col] += 1;
                        w.present[*col] = attr_into(e, a, at, &mut w.vals[*col])?;
                    }
                }
                if is_empty {
                    if d == 0 {
                        break;
                    }
                    continue;
                }
                if d >= MAX_DEPTH {
                    return Err(xml_err(
                        at,
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                w.level_start.push(w.matched.len());
                for k in 0..w.hits.len() {
                    let node = w.hits[k];
                    if !paths.nodes[node].children.is_empty() {
                        w.matched.push(node);
                    }
                }
            }
            Event::End(_) => {
                let Some(start) = w.level_start.pop() else {
                    return Err(xml_err(at, "an end tag without a start tag"));
                };
                w.matched.truncate(start);
                let d = w.level_start.len();
                w.collect.retain(|&(_, cd)| cd != d);
                if w.level_start.is_empty() {
                    break;
                }
            }
            Event::Text(t) => {
                if !w.collect.is_empty() {
                    let text = t.xml10_content();
                    for &(c, _) in &w.collect {
                        w.vals[c].push_str(&text);
                    }
                }
            }
            Event::CData(t) => {
                if !w.collect.is_empty() {
                    let text = t.xml10_content();
                    for &(c, _) in &w.collect {
                        w.vals[c].push_str(&text);
                    }
                }
            }
            Event::GeneralRef(g) => {
                let name: Cow<str> = g.xml10_content();
                let mut s = String::new();
                push_ref(&name, at, &mut s)?;
                for &(c, _) in &w.collect {
                    w.vals[c].push_str(&s);
                }
            }
            Event::DocType(_) | Event::Decl(_) => {
                return Err(xml_err(at, "a declaration inside an element"));
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => return Err(xml_err(at, "the record element is not closed")),
        }
    }
    for col in 0..n {
        if w.count[col] > 1 {
            return Err(RecordError {
                offset: 0,
                message: format!(
                    "{:?} matched {} elements: read repeated elements as child records with their own record path",
                    paths.columns[col], w.count[col]
                ),
                fatal: false,
                ambiguous: true,
                field: paths.columns[col].clone(),
            });
        }
        if w.present[col] {
            let s = out.buf.len();
            out.buf.push_str(&w.vals[col]);
            out.spans[col] = Some((s, out.buf.len()));
        }
    }
    Ok(())
}

/// Every leaf path of a record, for `convert` to discover its columns: the record's attributes (`@id`),
/// elements without child elements (`Address/City`) and their attributes (`Address/@type`).
pub fn leaf_paths(raw: &str, out: &mut Vec<String>) -> Result<(), RecordError> {
    let mut r = quick_xml::Reader::from_str(raw);
    // Path of open elements below the record, and whether each has child elements.
    let mut names: Vec<String> = Vec::new();
    let mut has_child: Vec<bool> = Vec::new();
    let push = |p: String, out: &mut Vec<String>| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    loop {
        let at = r.buffer_position();
        let ev = r.read_event().map_err(|e| xml_err(r.error_position(), e))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let depth = has_child.len();
                if let Some(h) = has_child.last_mut() {
                    *h = true;
                }
                let mut name = e.name().as_ref().to_string();
                // An element told apart by a `name` attribute (`<field name="x" value=".."/>`, the
                // Dynamics CMT layout) is addressed by it, so its repetitions become columns.
                let mut by_name = None;
                if depth > 0 {
                    if let Some(v) = attr_value(e, "name", at)? {
                        if !v.is_empty() && !v.contains([']', '/', '\'', '"']) {
                            name = format!("{name}[@name={v}]");
                            by_name = Some(());
                        }
                    }
                }
                let prefix = if depth == 0 {
                    String::new()
                } else {
                    let mut p = names[1..].join("/");
                    if !p.is_empty() {
                        p.push('/');
                    }
                    p.push_str(&name);
                    p
                };
                let mut attrs = 0;
                for a in e.attributes() {
                    let a = a.map_err(|err| xml_err(at, err))?;
                    let key = a.key.as_ref().to_string();
                    if key.starts_with("xmlns") || (by_name.is_some() && key == "name") {
                        continue;
                    }
                    attrs += 1;
                    let p = if prefix.is_empty() {
                        format!("@{key}")
                    } else {
                        format!("{prefix}/@{key}")
                    };
                    push(p, out);
                }
                if matches!(ev, Event::Empty(_)) {
                    if depth == 0 {
                        return Ok(());
                    }
                    // An empty element's text is a column only when it has nothing else to give.
                    if attrs == 0 {
                        push(prefix, out);
                    }
                } else {
                    names.push(name);
                    has_child.push(false);
                }
            }
            Event::End(_) => {
                let had = has_child.pop().unwrap_or(true);
                if has_child.is_empty() {
                    return Ok(());
                }
                if !had {
                    push(names[1..].join("/"), out);
                }
                names.pop();
            }
            Event::Eof => return Err(xml_err(at, "the record element is not closed")),
            _ => {}
        }
    }
}

/// Decodes HTML character references (`&amp;`, `&#39;`, `&eacute;`) left in a value after XML parsing,
/// as Dynamics CMT exports carry them. An `&` that starts no known reference stays as it is.
pub fn html_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(k) = rest.find('&') {
        out.push_str(&rest[..k]);
        rest = &rest[k..];
        let decoded = rest[1..]
            .find(';')
            .filter(|&e| e > 0 && e <= 32)
            .and_then(|e| {
                let name = &rest[1..1 + e];
                let text = if let Some(num) = name.strip_prefix('#') {
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok(),
                        None => num.parse().ok(),
                    };
                    code.and_then(char::from_u32).map(String::from)
                } else {
                    quick_xml::escape::resolve_html5_entity(name).map(str::to_string)
                };
                text.map(|t| (t, e + 2))
            });
        match decoded {
            Some((t, len)) => {
                out.push_str(&t);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(raw: &str, cols: &[&str]) -> Result<Vec<Option<String>>, RecordError> {
        let cols: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
        let paths = XmlPaths::new(&cols, false).unwrap();
        let mut out = Extracted::default();
        extract(raw, &paths, &mut out)?;
        Ok(out
            .spans
            .iter()
            .map(|s| s.map(|(a, b)| out.text(raw, a, b).to_string()))
            .collect())
    }

    #[test]
    fn elements_attributes_predicates_namespaces() {
        let raw = r#"<record id="r1" xmlns:a="urn:x"><Name>A &amp; B &#233;<![CDATA[ <raw> ]]></Name><a:Address type="home"><City>Oslo</City></a:Address><field name="x" value="1 &amp;amp; 2"/><field name="y" value="2"/><Empty/><Nil xsi:nil="true"/></record>"#;
        let v = get(
            raw,
            &[
                "@id",
                "Name",
                "Address/City",
                "a:Address/@type",
                "field[@name=x]/@value",
                "field[@name='y']/@value",
                "Empty",
                "Nil",
                "Missing",
                "@none",
            ],
        )
        .unwrap();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            v,
            vec![
                s("r1"),
                s("A & B é <raw> "),
                s("Oslo"),
                s("home"),
                s("1 &amp; 2"),
                s("2"),
                s(""),
                None,
                None,
                None
            ]
        );
        assert_eq!(
            html_decode("1 &amp; 2 &#39;x&#39; &eacute; AT&T &bogus;"),
            "1 & 2 'x' é AT&T &bogus;"
        );
    }

    #[test]
    fn repeated_elements_and_unknown_entities() {
        let e = get("<r><Tag>a</Tag><Tag>b</Tag></r>", &["Tag"]).unwrap_err();
        assert!(!e.fatal && e.message.contains("matched 2"), "{}", e.message);
        let e = get("<r><N>&lol;</N></r>", &["N"]).unwrap_err();
        assert!(
            e.fatal && e.message.contains("unknown entity"),
            "{}",
            e.message
        );
        let e = get("<r><N>x</M></r>", &["N"]).unwrap_err();
        assert!(e.fatal);
    }

    #[test]
    fn leaves() {
        let mut out = Vec::new();
        leaf_paths(
            r#"<r id="1"><A><B x="2">t</B><C/></A><D>d</D></r>"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, ["@id", "A/B/@x", "A/B", "A/C", "D"]);
        let mut out = Vec::new();
        leaf_paths(
            r#"<record id="1"><field name="a" value="x"/><field name="b" value="y" lookupentity="account"/></record>"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            [
                "@id",
                "field[@name=a]/@value",
                "field[@name=b]/@value",
                "field[@name=b]/@lookupentity"
            ]
        );
    }
}
