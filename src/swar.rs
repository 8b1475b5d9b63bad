//! Byte searches sixteen bytes at a time with SSE2 on x86-64, else eight at a time (SWAR: SIMD within a
//! register). The CSV tokenizer, the CSV quoting check and the JSON string scan run on every field; a
//! byte loop there cost a tenth of a whole run.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The eight bytes at `s[i..i + 8]` as one word, first byte lowest.
#[inline]
pub fn word(s: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(s[i..i + 8].try_into().expect("eight bytes"))
}

/// Whether `a` and `b` hold the same bytes. Short slices (JSON keys) are compared as two overlapping
/// words each, where a call to `memcmp` cost more than the comparison.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("four bytes"));
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
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
    // Sixteen bytes at a time where SSE2 is sure to be there (every x86-64): most CSV fields fit in one
    // such step, where eight-byte words took two.
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 processor has it.
        match unsafe { find3_sse2(s, from, a, b, c) } {
            Ok(found) => return found,
            Err(rest) => from = rest,
        }
    }
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

/// Whether any byte of `s` is `a`, `b`, `c` or `d` (the CSV writer's check for a field that needs quotes).
#[inline]
pub fn any4(s: &[u8], a: u8, b: u8, c: u8, d: u8) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 processor has it.
        unsafe { any4_sse2(s, a, b, c, d) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut i = 0;
        while i + 8 <= s.len() {
            let w = word(s, i);
            if has_byte(w, a) | has_byte(w, b) | has_byte(w, c) | has_byte(w, d) != 0 {
                return true;
            }
            i += 8;
        }
        s[i..].iter().any(|&x| x == a || x == b || x == c || x == d)
    }
}

/// [`any4`] sixteen bytes at a time. No block is padded: a string of 16 bytes or more ends with a block
/// that overlaps the one before (a byte seen twice changes no answer), and a shorter one is gathered from
/// two overlapping loads into one block. Copying the short tail into a zeroed block stalled every field
/// on the 16-byte load of bytes just stored one by one (half of this check's cycles, in `perf`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn any4_sse2(s: &[u8], a: u8, b: u8, c: u8, d: u8) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x,
    };
    let (va, vb, vc, vd) = (
        _mm_set1_epi8(a as i8),
        _mm_set1_epi8(b as i8),
        _mm_set1_epi8(c as i8),
        _mm_set1_epi8(d as i8),
    );
    let hits = |w: __m128i| {
        let m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(w, va), _mm_cmpeq_epi8(w, vb)),
            _mm_or_si128(_mm_cmpeq_epi8(w, vc), _mm_cmpeq_epi8(w, vd)),
        );
        _mm_movemask_epi8(m) != 0
    };
    let len = s.len();
    // SAFETY (both loads): `s[i..i + 16]` is in bounds for every `i` used, at most `len - 16`; the loads
    // need no alignment.
    let load = |i: usize| unsafe { _mm_loadu_si128(s.as_ptr().add(i).cast::<__m128i>()) };
    if len >= 16 {
        let mut i = 0;
        while i + 16 < len {
            if hits(load(i)) {
                return true;
            }
            i += 16;
        }
        return hits(load(len - 16));
    }
    // Every lane holds one of the string's own bytes, so no filler can match.
    let (lo, hi) = if len >= 8 {
        (word(s, 0), word(s, len - 8))
    } else if len >= 4 {
        let half = |i: usize| u64::from(u32::from_le_bytes(s[i..i + 4].try_into().expect("four")));
        let w = half(0) | half(len - 4) << 32;
        (w, w)
    } else if len > 0 {
        let w = ONES * u64::from(s[0]);
        let w = w & !0xffff | u64::from(s[len / 2]) | u64::from(s[len - 1]) << 8;
        (w, w)
    } else {
        return false;
    };
    hits(_mm_set_epi64x(hi as i64, lo as i64))
}

/// [`find3`] over whole 16-byte blocks: Ok with the index of the first match, or Err with where the
/// fewer than 16 bytes left begin.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn find3_sse2(s: &[u8], from: usize, a: u8, b: u8, c: u8) -> Result<usize, usize> {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_or_si128, _mm_set1_epi8};
    let (va, vb, vc) = (
        _mm_set1_epi8(a as i8),
        _mm_set1_epi8(b as i8),
        _mm_set1_epi8(c as i8),
    );
    first_block_hit(s, from, |w| {
        _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(w, va), _mm_cmpeq_epi8(w, vb)),
            _mm_cmpeq_epi8(w, vc),
        )
    })
}

/// The block loop of the SSE2 searches: `hits` marks the matching bytes of a 16-byte block (0xff lanes).
/// Ok with the index of the first match at or after `from`, or Err with where the fewer than 16 bytes
/// left begin.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn first_block_hit(
    s: &[u8],
    mut from: usize,
    hits: impl Fn(std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i,
) -> Result<usize, usize> {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8};
    while from + 16 <= s.len() {
        // SAFETY: `s[from..from + 16]` is in bounds (checked just above); the load needs no alignment.
        let w = unsafe { _mm_loadu_si128(s.as_ptr().add(from).cast::<__m128i>()) };
        let m = _mm_movemask_epi8(hits(w)) as u32;
        if m != 0 {
            return Ok(from + m.trailing_zeros() as usize);
        }
        from += 16;
    }
    Err(from)
}

/// Index of the first `"`, `\\` or control character (below 0x20) at or after `from`, or `s.len()`: the
/// bytes that end the plain run of a JSON string. Strings are most of a JSON record.
#[inline]
pub fn find_json_special(s: &[u8], mut from: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 processor has it.
        match unsafe { find_json_special_sse2(s, from) } {
            Ok(found) => return found,
            Err(rest) => from = rest,
        }
    }
    while from + 8 <= s.len() {
        let w = word(s, from);
        // Bytes below 0x20 are those whose top three bits are clear; the shifts stay inside each byte
        // where they are read (bits 6 and 5 moved up to bit 7), so this is exact.
        let control = !w & (!w << 1) & (!w << 2) & HIGH;
        let m = has_byte(w, b'"') | has_byte(w, b'\\') | control;
        if m != 0 {
            return from + (m.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < s.len() && !matches!(s[from], b'"' | b'\\' | 0..=0x1f) {
        from += 1;
    }
    from
}

/// [`find_json_special`] over whole 16-byte blocks (see [`first_block_hit`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn find_json_special_sse2(s: &[u8], from: usize) -> Result<usize, usize> {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_min_epu8, _mm_or_si128, _mm_set1_epi8};
    let (quote, backslash, below) = (
        _mm_set1_epi8(b'"' as i8),
        _mm_set1_epi8(b'\\' as i8),
        _mm_set1_epi8(0x1f),
    );
    first_block_hit(s, from, |w| {
        // SSE2 compares bytes as signed; an unsigned min with 0x1f equals the byte only when it is at
        // most 0x1f, which catches control characters and not the high bytes of UTF-8.
        _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(w, quote), _mm_cmpeq_epi8(w, backslash)),
            _mm_cmpeq_epi8(_mm_min_epu8(w, below), w),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded xorshift string of 0 to 69 bytes drawn from `alphabet`.
    fn random_bytes(state: &mut u64, alphabet: &[u8]) -> Vec<u8> {
        let len = (*state % 70) as usize;
        (0..len)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                alphabet[(*state % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let a = random_bytes(&mut state, b"ab");
            let mut b = a.clone();
            // Equal, or one byte changed anywhere (the overlapping words must see every byte), or a
            // different length.
            match state % 3 {
                0 => {}
                1 if !b.is_empty() => {
                    let i = (state >> 8) as usize % b.len();
                    b[i] ^= 1;
                }
                _ => b.push(b'a'),
            }
            assert_eq!(same_bytes(&a, &b), a == b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn any4_agrees_with_a_byte_loop() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        // Mostly plain bytes, so that many strings have no match at all; zero as padding.
        let alphabet = b"aaaaaa\0\xff,\"\n\r";
        for _ in 0..4000 {
            let s = random_bytes(&mut state, alphabet);
            let len = s.len();
            for from in 0..=len {
                let t = &s[from..];
                let want = t.iter().any(|&x| matches!(x, b',' | b'"' | b'\n' | b'\r'));
                assert_eq!(any4(t, b',', b'"', b'\n', b'\r'), want, "{t:?}");
                // Short strings are gathered into a block from overlapping loads: no filler byte may
                // match, only the string's own zeros.
                assert_eq!(any4(t, 0, 0, 0, 0), t.contains(&0), "{t:?}");
            }
        }
    }

    /// Checks `search` against the first index at or after each start where `hit` holds, on seeded
    /// strings of `alphabet`.
    fn agrees_with_a_byte_loop(
        seed: u64,
        alphabet: &[u8],
        search: impl Fn(&[u8], usize) -> usize,
        hit: impl Fn(u8) -> bool,
    ) {
        let mut state = seed;
        for _ in 0..2000 {
            let s = random_bytes(&mut state, alphabet);
            let len = s.len();
            for from in 0..=len {
                let want = (from..len).find(|&i| hit(s[i])).unwrap_or(len);
                assert_eq!(search(&s, from), want, "{s:?} from {from}");
            }
        }
    }

    #[test]
    fn find_json_special_agrees_with_a_byte_loop() {
        agrees_with_a_byte_loop(
            0x6a09_e667_f3bc_c908,
            &[
                b'a', b'"', b'\\', 0, 0x1f, 0x20, 0x7f, 0x80, 0x9f, 0xa2, 0xdc, 0xff,
            ],
            find_json_special,
            |b| matches!(b, b'"' | b'\\' | 0..=0x1f),
        );
    }

    #[test]
    fn find3_agrees_with_a_byte_loop() {
        agrees_with_a_byte_loop(
            0x9e37_79b9_7f4a_7c15,
            &[b'a', b',', b'\n', b'\r', 0x80, 0xff, b'"', 0x2c ^ 0x80],
            |s, from| find3(s, from, b',', b'\n', b'\r'),
            |b| matches!(b, b',' | b'\n' | b'\r'),
        );
    }
}
