//! Dataset digests: an order-independent fingerprint of an entity's typed rows, so that what a database
//! holds can be checked against what a run produced without sorting either.
//!
//! A row's material is its canonical CSV encoding (the run's CSV output row: RFC 4180, a null as an
//! empty field, an empty string as `""`), so it depends on the typed values only. Each row is hashed with
//! BLAKE3 and the hashes are summed as four 64-bit lanes (wrapping): the sum of a multiset, which does not
//! depend on row order and can take a row out again (deferred references change rows after they are
//! written). The digest is shown as `blake3-sum:` and 64 hex digits; the row count is beside it.

use crate::write::encode::{csv_field, Cell};

/// The sum of row hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest([u64; 4]);

impl Digest {
    pub fn add(&mut self, h: &[u64; 4]) {
        for (a, b) in self.0.iter_mut().zip(h) {
            *a = a.wrapping_add(*b);
        }
    }

    pub fn sub(&mut self, h: &[u64; 4]) {
        for (a, b) in self.0.iter_mut().zip(h) {
            *a = a.wrapping_sub(*b);
        }
    }

    /// `blake3-sum:` and the lanes as 64 hex digits.
    pub fn text(&self) -> String {
        let mut s = String::from("blake3-sum:");
        for l in self.0 {
            s.push_str(&format!("{l:016x}"));
        }
        s
    }
}

/// The hash of one row's material.
pub fn row_hash(material: &[u8]) -> [u64; 4] {
    let h = blake3::hash(material);
    let b = h.as_bytes();
    let lane = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    [lane(0), lane(1), lane(2), lane(3)]
}

/// Appends a row's material: its cells as a canonical CSV row.
pub fn material(cells: &[Cell], text: &str, out: &mut Vec<u8>) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(t) = c.text(text) {
            csv_field(t.as_bytes(), true, out);
        }
    }
    out.push(b'\n');
}

/// The material of values given as text (None: null).
pub fn material_of(values: &[Option<&str>], out: &mut Vec<u8>) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(t) = v {
            csv_field(t.as_bytes(), true, out);
        }
    }
    out.push(b'\n');
}

/// Splits a material row back into its values (an unquoted empty field is null).
pub fn parse_material(m: &[u8]) -> Vec<Option<String>> {
    let m = m.strip_suffix(b"\n").unwrap_or(m);
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        if m.get(i) == Some(&b'"') {
            let mut v = Vec::new();
            i += 1;
            while i < m.len() {
                if m[i] == b'"' {
                    if m.get(i + 1) == Some(&b'"') {
                        v.push(b'"');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                v.push(m[i]);
                i += 1;
            }
            out.push(Some(String::from_utf8_lossy(&v).into_owned()));
        } else {
            let end = m[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(m.len(), |p| i + p);
            let v = &m[i..end];
            out.push((!v.is_empty()).then(|| String::from_utf8_lossy(v).into_owned()));
            i = end;
        }
        if i >= m.len() {
            return out;
        }
        i += 1; // the comma
        if i == m.len() {
            out.push(None);
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_round_trips_and_sums_ignore_order() {
        let vals = [Some("a,b"), None, Some(""), Some("q\"x\ny"), None];
        let mut m = Vec::new();
        material_of(&vals, &mut m);
        let back = parse_material(&m);
        let back: Vec<Option<&str>> = back.iter().map(|v| v.as_deref()).collect();
        assert_eq!(back, vals);
        let rows: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("{i},x{i}\n").into_bytes())
            .collect();
        let mut a = Digest::default();
        let mut b = Digest::default();
        for r in &rows {
            a.add(&row_hash(r));
        }
        for r in rows.iter().rev() {
            b.add(&row_hash(r));
        }
        assert_eq!(a, b);
        b.sub(&row_hash(&rows[3]));
        assert_ne!(a, b);
        b.add(&row_hash(&rows[3]));
        assert_eq!(a.text(), b.text());
    }
}
