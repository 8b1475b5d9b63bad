//! Byte searches eight bytes at a time (SWAR: SIMD within a register). The CSV tokenizer and the CSV
//! quoting check run on every field; a byte loop there cost a tenth of a whole run.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `s[i..i + 8]` as one word, first byte lowest.
#[inline]
pub fn word(s: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"))
}

/// A word whose high bit is set in exactly the bytes of `w` equal to `b`. Exact (no false positives):
/// every byte's high bit is cleared before the carry trick, so no borrow crosses bytes.
#[inline]
pub fn has_byte(w: u64, b: u8) -> u64 {
    let x = w ^ (ONES * u64::from(b));
    let low = x & !HIGH;
    !((low + !HIGH) | x) & HIGH
}

/// Index of the first byte at or after `from` that is one of `a`, `b`, `c`, or `s.len()`.
#[inline]
pub fn find3(s: &[u8], mut from: usize, a: u8, b: u8, c: u8) -> usize {
    while from + 8 <= s.len() {
        let w = word(s, from);
        let m = has_byte(w, a) | has_byte(w, b) | has_byte(w, c);
        if m != 0 {
            return from + (m.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < s.len() && s[from] != a && s[from] != b && s[from] != c {
        from += 1;
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find3_agrees_with_a_byte_loop() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            let len = (state % 40) as usize;
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    [b'a', b',', b'\n', b'\r', 0x80, 0xff, b'"', 0x2c ^ 0x80][(state % 8) as usize]
                })
                .collect();
            for from in 0..=len {
                let want = (from..len)
                    .find(|&i| matches!(s[i], b',' | b'\n' | b'\r'))
                    .unwrap_or(len);
                assert_eq!(
                    find3(&s, from, b',', b'\n', b'\r'),
                    want,
                    "{s:?} from {from}"
                );
            }
        }
    }
}
