//! The binary row form of the columnar outputs (Parquet, Arrow). The parallel mapping stage turns each
//! row's canonical texts into numbers here, so that the sequential writer only copies fixed-width values
//! into its column buffers.
//!
//! A row is its cells in field order. A cell is a tag byte (0: null, 1: a value) and, for a value, by the
//! column's type: integer, time (nanoseconds of the day), timestamp (microseconds since the Unix epoch)
//! and float as 8 little-endian bytes; date as 4 (days since the epoch); boolean as 1; decimal as 16 (the
//! unscaled integer); text, uuid and json as a 4-byte length and UTF-8 bytes.

use crate::canon;
use crate::plan::FieldPlan;
use crate::types::FieldType;
use crate::write::encode::{Cell, Texts};

/// Appends one row. A text that is not canonical for its type (which the mapping stage never writes)
/// becomes null rather than a wrong number; `debug_assert` catches it in tests.
pub fn encode_row(fields: &[FieldPlan], cells: &[Cell], text: Texts, out: &mut Vec<u8>) {
    for (f, c) in fields.iter().zip(cells) {
        let ty = f.out_ty();
        let Some(v) = c.text(text) else {
            out.push(0);
            continue;
        };
        let at = out.len();
        out.push(1);
        let ok = match ty {
            FieldType::Integer => put(v.parse::<i64>().ok(), out, i64::to_le_bytes),
            FieldType::Float => put(v.parse::<f64>().ok(), out, f64::to_le_bytes),
            FieldType::Boolean => {
                out.push(u8::from(v == "true"));
                true
            }
            FieldType::Decimal { scale, .. } => {
                put(canon::decimal_mantissa(v, scale), out, i128::to_le_bytes)
            }
            FieldType::Date => put(
                canon::unix_days(v).and_then(|d| i32::try_from(d).ok()),
                out,
                i32::to_le_bytes,
            ),
            FieldType::Time => put(canon::nanos_of_day(v), out, i64::to_le_bytes),
            FieldType::Timestamp | FieldType::TimestampTz => {
                put(canon::unix_micros(v), out, i64::to_le_bytes)
            }
            FieldType::Text | FieldType::Uuid | FieldType::Json => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v.as_bytes());
                true
            }
        };
        if !ok {
            debug_assert!(false, "not a canonical {ty} text: {v:?}");
            out.truncate(at);
            out.push(0);
        }
    }
}

fn put<T, const N: usize>(v: Option<T>, out: &mut Vec<u8>, bytes: fn(T) -> [u8; N]) -> bool {
    match v {
        Some(v) => {
            out.extend_from_slice(&bytes(v));
            true
        }
        None => false,
    }
}

/// Reads rows of the binary form back, cell by cell; the caller knows each column's type.
pub struct Cells<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cells<'a> {
    pub fn new(bytes: &'a [u8]) -> Cells<'a> {
        Cells { bytes, at: 0 }
    }

    pub fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// The next cell's tag: whether it holds a value.
    pub fn present(&mut self) -> bool {
        let t = self.bytes[self.at];
        self.at += 1;
        t == 1
    }

    pub fn fixed<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        a
    }

    /// A length-prefixed value's bytes.
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = u32::from_le_bytes(self.fixed()) as usize;
        let b = &self.bytes[self.at..self.at + n];
        self.at += n;
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let text = "42-1.50true2024-02-2913:14:15.5é2024-02-29T13:14:15.000001Z";
        let cells = [
            Cell::Num(0, 2),
            Cell::Num(2, 7),
            Cell::Bool(true),
            Cell::Text(11, 21),
            Cell::Text(21, 31),
            Cell::Text(31, 33),
            Cell::Null,
            Cell::Text(33, text.len()),
        ];
        let types = [
            FieldType::Integer,
            FieldType::Decimal {
                precision: 5,
                scale: 2,
            },
            FieldType::Boolean,
            FieldType::Date,
            FieldType::Time,
            FieldType::Text,
            FieldType::Float,
            FieldType::TimestampTz,
        ];
        let fields: Vec<FieldPlan> = types
            .iter()
            .map(|&ty| FieldPlan {
                ty,
                ..FieldPlan::text_column("x", 0)
            })
            .collect();
        let mut out = Vec::new();
        encode_row(&fields, &cells, Texts::own(text), &mut out);
        let mut c = Cells::new(&out);
        assert!(c.present());
        assert_eq!(i64::from_le_bytes(c.fixed()), 42);
        assert!(c.present());
        assert_eq!(i128::from_le_bytes(c.fixed()), -150);
        assert!(c.present());
        assert_eq!(c.fixed::<1>(), [1]);
        assert!(c.present());
        assert_eq!(i32::from_le_bytes(c.fixed()), 19_782);
        assert!(c.present());
        assert_eq!(i64::from_le_bytes(c.fixed()), 47_655_500_000_000);
        assert!(c.present());
        assert_eq!(c.bytes(), "é".as_bytes());
        assert!(!c.present());
        assert!(c.present());
        assert_eq!(i64::from_le_bytes(c.fixed()), 1_709_212_455_000_001);
        assert!(c.done());
    }
}
