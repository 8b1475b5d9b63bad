//! Text encodings: detect a byte-order mark, and decode non-UTF-8 input to UTF-8 while streaming. UTF-8
//! input passes through untouched so that byte offsets in messages are file offsets; its validity is
//! checked per record later, so one bad record becomes a reject instead of ending the run.

use std::fmt;
use std::io::{self, Read};

use crate::error::{FatalError, Position};
use crate::spec::Encoding;

/// What the input turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Utf8,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
    Windows1252,
    Iso88591,
}

impl Detected {
    /// Name as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Detected::Utf8 => "utf-8",
            Detected::Utf16Le => "utf-16le",
            Detected::Utf16Be => "utf-16be",
            Detected::Utf32Le => "utf-32le",
            Detected::Utf32Be => "utf-32be",
            Detected::Windows1252 => "windows-1252",
            Detected::Iso88591 => "iso-8859-1",
        }
    }
}

/// The encoding found, and the length of the byte-order mark that was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub encoding: Detected,
    pub bom_len: usize,
}

impl fmt::Display for Sniffed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bom_len > 0 {
            write!(f, "{} (byte-order mark)", self.encoding.name())
        } else {
            write!(f, "{}", self.encoding.name())
        }
    }
}

/// Decides the encoding from the declared one and the first bytes of the file.
pub fn sniff(declared: Encoding, head: &[u8]) -> Sniffed {
    let bom = if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        Some((Detected::Utf8, 3))
    } else if head.starts_with(&[0xFF, 0xFE, 0, 0]) {
        Some((Detected::Utf32Le, 4))
    } else if head.starts_with(&[0, 0, 0xFE, 0xFF]) {
        Some((Detected::Utf32Be, 4))
    } else if head.starts_with(&[0xFF, 0xFE]) {
        Some((Detected::Utf16Le, 2))
    } else if head.starts_with(&[0xFE, 0xFF]) {
        Some((Detected::Utf16Be, 2))
    } else {
        None
    };
    // Java writes "UTF-32" as a 2-byte UTF-16 mark followed by UTF-32 code units (Salesforce Data Loader's
    // own test files do). Read as UTF-16, that is valid but meaningless text: a NUL code unit right after
    // a byte-order mark never begins real text, so it identifies UTF-32.
    let bom = match (bom, head.get(2..6)) {
        (Some((Detected::Utf16Le | Detected::Utf16Be, 2)), Some([a, 0, 0, 0])) if *a != 0 => {
            Some((Detected::Utf32Le, 2))
        }
        (Some((Detected::Utf16Le | Detected::Utf16Be, 2)), Some([0, 0, 0, d])) if *d != 0 => {
            Some((Detected::Utf32Be, 2))
        }
        (b, _) => b,
    };
    let pick = |d: Detected| Sniffed {
        encoding: d,
        bom_len: match bom {
            Some((b, len)) if b == d => len,
            _ => 0,
        },
    };
    match declared {
        Encoding::Auto => match bom {
            Some((d, len)) => Sniffed {
                encoding: d,
                bom_len: len,
            },
            None => pick(Detected::Utf8),
        },
        Encoding::Utf8 => pick(Detected::Utf8),
        Encoding::Utf16Le => pick(Detected::Utf16Le),
        Encoding::Utf16Be => pick(Detected::Utf16Be),
        Encoding::Windows1252 => pick(Detected::Windows1252),
        Encoding::Iso88591 => pick(Detected::Iso88591),
    }
}

/// Carried inside an `io::Error` when the input has bytes invalid in its encoding.
#[derive(Debug)]
pub struct DecodeError {
    /// Offset of the bad bytes in the file.
    pub offset: u64,
    pub encoding: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: invalid {}", self.offset, self.encoding)
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// The fatal error for an I/O error that carries a decoding error, if it does.
    pub fn fatal_from(e: &std::io::Error, file: &str, line: u64) -> Option<FatalError> {
        let de = e.get_ref()?.downcast_ref::<DecodeError>()?;
        Some(FatalError::Encoding {
            pos: Position {
                file: file.to_string(),
                record: 0,
                line,
                byte: de.offset,
            },
            encoding: de.encoding.to_string(),
        })
    }
}

/// Streams UTF-8 decoded from another encoding. Invalid input is an error, never a silent U+FFFD.
pub struct DecodeReader<R> {
    inner: R,
    encoding: Detected,
    decoder: Option<encoding_rs::Decoder>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Decoded bytes that did not fit a caller's small buffer.
    pending: Vec<u8>,
    /// The decoder has been told the input ended (encoding_rs forbids using it after that).
    done: bool,
}

impl<R: Read> DecodeReader<R> {
    /// `offset` is the file offset of the first byte `inner` yields (after a byte-order mark).
    pub fn new(inner: R, encoding: Detected, offset: u64) -> Self {
        let decoder = match encoding {
            Detected::Utf16Le => Some(encoding_rs::UTF_16LE.new_decoder_without_bom_handling()),
            Detected::Utf16Be => Some(encoding_rs::UTF_16BE.new_decoder_without_bom_handling()),
            Detected::Windows1252 => {
                Some(encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling())
            }
            _ => None,
        };
        DecodeReader {
            inner,
            encoding,
            decoder,
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            eof: false,
            offset,
            pending: Vec::new(),
            done: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < self.buf.len() {
            let n = match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            self.end += n;
            if self.end >= 4 {
                break;
            }
        }
        Ok(())
    }

    fn bad(&self, at: u64) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            DecodeError {
                offset: at,
                encoding: self.encoding.name(),
            },
        )
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let k = self.pending.len().min(out.len());
            out[..k].copy_from_slice(&self.pending[..k]);
            self.pending.drain(..k);
            return Ok(k);
        }
        if out.len() < 8 {
            // Decoders need room for a whole character: decode into a larger buffer and keep the rest.
            let mut tmp = [0u8; 8];
            let n = self.read(&mut tmp)?;
            let k = n.min(out.len());
            out[..k].copy_from_slice(&tmp[..k]);
            self.pending.extend_from_slice(&tmp[k..n]);
            return Ok(k);
        }
        loop {
            if self.start == self.end || (self.end - self.start < 4 && !self.eof) {
                if self.eof && self.start == self.end {
                    if self.done {
                        return Ok(0);
                    }
                    self.done = true;
                    if let Some(d) = self.decoder.as_mut() {
                        let (res, _, w) = d.decode_to_utf8_without_replacement(&[], out, true);
                        if let encoding_rs::DecoderResult::Malformed(..) = res {
                            return Err(self.bad(self.offset));
                        }
                        return Ok(w);
                    }
                    return Ok(0);
                }
                if !self.eof {
                    self.fill()?;
                    continue;
                }
            }
            let src = &self.buf[self.start..self.end];
            let (read, written) = match self.encoding {
                Detected::Iso88591 => {
                    let mut r = 0;
                    let mut w = 0;
                    while r < src.len() && w + 2 <= out.len() {
                        let c = char::from(src[r]);
                        w += c.encode_utf8(&mut out[w..]).len();
                        r += 1;
                    }
                    (r, w)
                }
                Detected::Utf32Le | Detected::Utf32Be => {
                    let mut r = 0;
                    let mut w = 0;
                    while r + 4 <= src.len() && w + 4 <= out.len() {
                        let q = [src[r], src[r + 1], src[r + 2], src[r + 3]];
                        let v = if self.encoding == Detected::Utf32Le {
                            u32::from_le_bytes(q)
                        } else {
                            u32::from_be_bytes(q)
                        };
                        let Some(c) = char::from_u32(v) else {
                            return Err(self.bad(self.offset + r as u64));
                        };
                        w += c.encode_utf8(&mut out[w..]).len();
                        r += 4;
                    }
                    if r == 0 && w == 0 && self.eof {
                        // Fewer than 4 bytes left at the end: a truncated character.
                        return Err(self.bad(self.offset));
                    }
                    (r, w)
                }
                _ => {
                    // The end of input is signalled once, from the branch above.
                    let last = false;
                    let Some(d) = self.decoder.as_mut() else {
                        return Err(io::Error::other("internal error: no decoder"));
                    };
                    let (res, r, w) = d.decode_to_utf8_without_replacement(src, out, last);
                    if let encoding_rs::DecoderResult::Malformed(bad, extra) = res {
                        let at = (self.offset + r as u64)
                            .saturating_sub(u64::from(bad) + u64::from(extra));
                        return Err(self.bad(at));
                    }
                    (r, w)
                }
            };
            self.start += read;
            self.offset += read as u64;
            if written > 0 {
                return Ok(written);
            }
            if read == 0 && !self.eof {
                self.fill()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], enc: Detected, chunk: usize) -> io::Result<String> {
        struct Chunky<'a>(&'a [u8], usize);
        impl Read for Chunky<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = DecodeReader::new(Chunky(bytes, chunk), enc, 0);
        let mut s = String::new();
        r.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn sniffs_boms() {
        assert_eq!(
            sniff(Encoding::Auto, b"\xEF\xBB\xBFa").to_string(),
            "utf-8 (byte-order mark)"
        );
        assert_eq!(
            sniff(Encoding::Auto, b"\xFF\xFEa\0").encoding,
            Detected::Utf16Le
        );
        assert_eq!(
            sniff(Encoding::Auto, b"\xFF\xFE\0\0").encoding,
            Detected::Utf32Le
        );
        assert_eq!(
            sniff(Encoding::Auto, b"\xFE\xFF\0a").encoding,
            Detected::Utf16Be
        );
        assert_eq!(sniff(Encoding::Auto, b"abc").to_string(), "utf-8");
        assert_eq!(sniff(Encoding::Utf16Le, b"\xFF\xFEa\0").bom_len, 2);
        assert_eq!(sniff(Encoding::Utf16Le, b"a\0").bom_len, 0);
        // Java's UTF-32 with a 2-byte mark.
        let le = sniff(Encoding::Auto, b"\xFE\xFF\x22\0\0\0c\0");
        assert_eq!((le.encoding, le.bom_len), (Detected::Utf32Le, 2));
        let be = sniff(Encoding::Auto, b"\xFE\xFF\0\0\0\x22\0\0");
        assert_eq!((be.encoding, be.bom_len), (Detected::Utf32Be, 2));
        assert_eq!(
            sniff(Encoding::Auto, b"\xFE\xFF\0\x22\0c").encoding,
            Detected::Utf16Be
        );
    }

    #[test]
    fn decodes_every_encoding_in_tiny_chunks() {
        let text = "Zoë, 東京 €5 😀";
        let le: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let u32le: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        for chunk in [1, 3, 7, 4096] {
            assert_eq!(decode(&le, Detected::Utf16Le, chunk).unwrap(), text);
            assert_eq!(decode(&be, Detected::Utf16Be, chunk).unwrap(), text);
            assert_eq!(decode(&u32le, Detected::Utf32Le, chunk).unwrap(), text);
        }
        assert_eq!(
            decode(b"Zo\xEB \x80", Detected::Windows1252, 1).unwrap(),
            "Zoë €"
        );
        assert_eq!(
            decode(b"Zo\xEB \x80", Detected::Iso88591, 2).unwrap(),
            "Zoë \u{80}"
        );
    }

    #[test]
    fn invalid_utf16_is_an_error_with_its_offset() {
        // "ab" then a lone low surrogate at byte 4.
        let bytes = [b'a', 0, b'b', 0, 0x00, 0xDC, b'c', 0];
        let err = decode(&bytes, Detected::Utf16Le, 3).unwrap_err();
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<DecodeError>())
            .unwrap();
        assert_eq!(inner.offset, 4);
        // A truncated final code unit.
        assert!(decode(&[b'a', 0, b'b'], Detected::Utf16Le, 2).is_err());
    }
}
