//! PostgreSQL's binary COPY format, written from the mapping's canonical value texts. The server then
//! parses no text at all (dates, timestamps and numerics are the costly part of a text COPY), and no
//! value needs escaping: a value is its length and its bytes.
//!
//! File: the signature, flags and header extension; per row the field count and, per field, its byte
//! length (-1 for null) and bytes in the type's binary form; a trailer of -1.

use crate::canon;
use crate::types::FieldType;

/// The file header: signature, flags (none), header-extension length (0).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Days from 2000-01-01 (PostgreSQL's epoch) to 1970-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// Starts a row of `fields` fields.
pub fn row_start(fields: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&(fields as i16).to_be_bytes());
}

/// Appends one field: null, or the binary form of a canonical value text of type `ty`. A text that is
/// not canonical for its type (which the mapping stage never produces) is written as null rather than
/// as bytes the server would misread.
pub fn value(ty: FieldType, v: Option<&str>, out: &mut Vec<u8>) {
    let Some(v) = v else {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return;
    };
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let ok = match ty {
        FieldType::Integer => v
            .parse::<i64>()
            .map(|n| out.extend_from_slice(&n.to_be_bytes()))
            .is_ok(),
        FieldType::Float => v
            .parse::<f64>()
            .map(|f| out.extend_from_slice(&f.to_bits().to_be_bytes()))
            .is_ok(),
        FieldType::Boolean => {
            out.push(u8::from(v == "true"));
            true
        }
        FieldType::Decimal { scale, .. } => numeric(v, scale, out),
        FieldType::Date => days(v)
            .map(|d| out.extend_from_slice(&(d as i32).to_be_bytes()))
            .is_some(),
        FieldType::Time => canon::micros_of_day(v)
            .map(|t| out.extend_from_slice(&t.to_be_bytes()))
            .is_some(),
        FieldType::Timestamp | FieldType::TimestampTz => canon::unix_micros(v)
            .map(|us| out.extend_from_slice(&(us - PG_EPOCH_DAYS * 86_400_000_000).to_be_bytes()))
            .is_some(),
        FieldType::Uuid => uuid(v, out),
        FieldType::Text | FieldType::Json => {
            out.extend_from_slice(v.as_bytes());
            true
        }
    };
    if ok {
        let len = (out.len() - at - 4) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    } else {
        out.truncate(at);
        out.extend_from_slice(&(-1i32).to_be_bytes());
    }
}

/// Days since 2000-01-01 of `YYYY-MM-DD`.
fn days(s: &str) -> Option<i64> {
    canon::unix_days(s).map(|d| d - PG_EPOCH_DAYS)
}

/// A UUID's 16 bytes from its hyphenated hex form.
fn uuid(s: &str, out: &mut Vec<u8>) -> bool {
    let mut bytes = [0u8; 16];
    let mut n = 0;
    let mut high: Option<u32> = None;
    for c in s.chars().filter(|c| *c != '-') {
        let Some(d) = c.to_digit(16) else {
            return false;
        };
        match high.take() {
            None => high = Some(d),
            Some(h) if n < 16 => {
                bytes[n] = (h * 16 + d) as u8;
                n += 1;
            }
            Some(_) => return false,
        }
    }
    if n != 16 || high.is_some() {
        return false;
    }
    out.extend_from_slice(&bytes);
    true
}

/// NUMERIC: digit count, weight (of the first base-10000 digit), sign, display scale, then the
/// base-10000 digits, leading and trailing zero digits left out.
fn numeric(s: &str, scale: u8, out: &mut Vec<u8>) -> bool {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || int.is_empty() {
        return false;
    }
    // Integer digits grouped by four from the point leftwards, fraction digits rightwards.
    let pad_left = (4 - int.len() % 4) % 4;
    let pad_right = (4 - frac.len() % 4) % 4;
    let digits: Vec<u8> = std::iter::repeat_n(b'0', pad_left)
        .chain(int.bytes())
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', pad_right))
        .collect();
    let mut groups: Vec<i16> = digits
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |a, d| a * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = ((pad_left + int.len()) / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let sign: u16 = if neg && !groups.is_empty() { 0x4000 } else { 0 };
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&i16::from(scale).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str, scale: u8) -> Vec<i16> {
        let mut out = Vec::new();
        assert!(numeric(s, scale, &mut out));
        out.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_in_base_10000() {
        // 12345678.90: digits 1234 5678 9000, weight 1, scale 2.
        assert_eq!(num("12345678.90", 2), [3, 1, 0, 2, 1234, 5678, 9000]);
        assert_eq!(num("-0.01", 2), [1, -1, 0x4000, 2, 100]);
        assert_eq!(num("0.00", 2), [0, 0, 0, 2]);
        assert_eq!(num("10000", 0), [1, 1, 0, 0, 1]);
        assert_eq!(num("99999999.99", 2), [3, 1, 0, 2, 9999, 9999, 9900]);
    }

    #[test]
    fn dates_and_times_from_the_postgresql_epoch() {
        assert_eq!(days("2000-01-01"), Some(0));
        assert_eq!(days("1999-12-31"), Some(-1));
        assert_eq!(days("2024-02-29"), Some(8825));
        assert_eq!(days("0001-01-01"), Some(-730_119));
        let mut out = Vec::new();
        value(
            FieldType::TimestampTz,
            Some("2000-01-01T00:00:01Z"),
            &mut out,
        );
        assert_eq!(out, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]);
        let mut out = Vec::new();
        value(FieldType::Integer, None, &mut out);
        assert_eq!(out, [0xff; 4]);
        let mut out = Vec::new();
        value(
            FieldType::Uuid,
            Some("0b8e4f2a-9c1d-4e5f-8a7b-1c2d3e4f5a6b"),
            &mut out,
        );
        assert_eq!(&out[..6], [0, 0, 0, 16, 0x0b, 0x8e]);
        assert_eq!(out[19], 0x6b);
        let mut out = Vec::new();
        value(FieldType::Uuid, Some("0b8e"), &mut out);
        assert_eq!(out, [0xff; 4], "not a UUID: null rather than bad bytes");
    }
}
