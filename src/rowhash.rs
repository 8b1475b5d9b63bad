//! BLAKE3 of many short messages at once, eight side by side in the lanes of AVX2 registers.
//!
//! A dataset digest hashes every written row: a few hundred bytes, four to six 64-byte blocks. One
//! message at a time, each block's compression is one long chain of dependent steps; hashing rows that
//! way took a fifth of a CSV run's CPU time. Here a lane that finishes its message takes the next one,
//! so all eight stay busy whatever the lengths. Only messages of one BLAKE3 chunk (up to 1024 bytes) go
//! through the lanes; longer ones, and processors without AVX2, use the blake3 crate. The hashes equal
//! `blake3::hash` (tested on every length around the block and chunk edges).

/// Messages longer than this span several BLAKE3 chunks (a tree); the blake3 crate hashes them.
const CHUNK_LEN: usize = 1024;
const BLOCK_LEN: usize = 64;

const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];
const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const ROOT: u32 = 8;

/// The message words each of the seven rounds takes, in order: BLAKE3's permutation applied again
/// before each round after the first.
const SCHEDULE: [[usize; 16]; 7] = {
    const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
    let mut s = [[0; 16]; 7];
    let mut i = 0;
    while i < 16 {
        s[0][i] = i;
        i += 1;
    }
    let mut r = 1;
    while r < 7 {
        let mut i = 0;
        while i < 16 {
            s[r][i] = s[r - 1][PERMUTATION[i]];
            i += 1;
        }
        r += 1;
    }
    s
};

/// The first 32 bytes of each message's BLAKE3 hash as four little-endian words, in message order.
pub fn hash_all(msgs: &[&[u8]], out: &mut Vec<[u64; 4]>) {
    out.clear();
    out.resize(msgs.len(), [0; 4]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        unsafe { avx2::hash_lanes(msgs, out) };
        return;
    }
    for (m, o) in msgs.iter().zip(out.iter_mut()) {
        *o = words(blake3::hash(m).as_bytes());
    }
}

/// A BLAKE3 hash as four little-endian words: a row hash as digests add it up.
pub fn words(b: &[u8; 32]) -> [u64; 4] {
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("eight bytes"));
    [w(0), w(1), w(2), w(3)]
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{words, BLOCK_LEN, CHUNK_END, CHUNK_LEN, CHUNK_START, IV, ROOT, SCHEDULE};
    use std::arch::x86_64::*;

    const LANES: usize = 8;

    /// One message being hashed in a lane: its index and the block it is at.
    #[derive(Clone, Copy)]
    struct Lane {
        msg: usize,
        block: usize,
    }

    /// Fills `out` (one slot per message) with the hashes of `msgs`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn hash_lanes(msgs: &[&[u8]], out: &mut [[u64; 4]]) {
        let mut next = 0;
        // The next message for a lane; a long one is hashed whole by the blake3 crate on the way.
        let mut take = |out: &mut [[u64; 4]]| -> Option<Lane> {
            while next < msgs.len() {
                let i = next;
                next += 1;
                if msgs[i].len() <= CHUNK_LEN {
                    return Some(Lane { msg: i, block: 0 });
                }
                out[i] = words(blake3::hash(msgs[i]).as_bytes());
            }
            None
        };
        let mut lanes: [Option<Lane>; LANES] = [None; LANES];
        for l in &mut lanes {
            *l = take(out);
        }
        let iv: [__m256i; 8] = std::array::from_fn(|i| _mm256_set1_epi32(IV[i] as i32));
        let mut cv = iv;
        let mut pad = [[0u8; BLOCK_LEN]; LANES];
        while lanes.iter().any(Option::is_some) {
            let mut lens = [0u32; LANES];
            let mut flags = [0u32; LANES];
            // A lane's full block is read where it is; a short last block, zero-padded, from `pad` (and an
            // idle lane's block, whose result is not used).
            let mut full: [Option<&[u8; BLOCK_LEN]>; LANES] = [None; LANES];
            for (l, lane) in lanes.iter().enumerate() {
                let Some(lane) = lane else { continue };
                let m = msgs[lane.msg];
                let from = lane.block * BLOCK_LEN;
                let last = m.len() <= from + BLOCK_LEN;
                let len = if last { m.len() - from } else { BLOCK_LEN };
                if len == BLOCK_LEN {
                    full[l] = Some(m[from..from + BLOCK_LEN].try_into().expect("a block"));
                } else {
                    pad[l] = [0; BLOCK_LEN];
                    pad[l][..len].copy_from_slice(&m[from..]);
                }
                lens[l] = len as u32;
                flags[l] = if lane.block == 0 { CHUNK_START } else { 0 }
                    | if last { CHUNK_END | ROOT } else { 0 };
            }
            let lens_v = _mm256_loadu_si256(lens.as_ptr().cast());
            let flags_v = _mm256_loadu_si256(flags.as_ptr().cast());
            // A lane at its message's first block starts from the IV.
            let start = _mm256_cmpeq_epi32(
                _mm256_and_si256(flags_v, _mm256_set1_epi32(CHUNK_START as i32)),
                _mm256_set1_epi32(CHUNK_START as i32),
            );
            for (c, i) in cv.iter_mut().zip(&iv) {
                *c = _mm256_blendv_epi8(*c, *i, start);
            }
            let blocks: [&[u8; BLOCK_LEN]; LANES] =
                std::array::from_fn(|l| full[l].unwrap_or(&pad[l]));
            let m = transpose_blocks(&blocks);
            compress(&mut cv, &m, lens_v, flags_v);
            if flags.iter().any(|f| f & CHUNK_END != 0) {
                let mut w = [[0u32; LANES]; 8];
                for (w, c) in w.iter_mut().zip(&cv) {
                    _mm256_storeu_si256(w.as_mut_ptr().cast(), *c);
                }
                for l in 0..LANES {
                    if flags[l] & CHUNK_END == 0 {
                        continue;
                    }
                    let Some(lane) = lanes[l] else { continue };
                    let word = |i: usize| u64::from(w[2 * i][l]) | u64::from(w[2 * i + 1][l]) << 32;
                    out[lane.msg] = [word(0), word(1), word(2), word(3)];
                    lanes[l] = take(out);
                }
            }
            for (l, lane) in lanes.iter_mut().enumerate() {
                if let Some(lane) = lane {
                    if flags[l] & CHUNK_END == 0 {
                        lane.block += 1;
                    }
                }
            }
        }
    }

    /// The sixteen message words of the lanes' blocks, word `w` of every lane in vector `w`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn transpose_blocks(blocks: &[&[u8; BLOCK_LEN]; LANES]) -> [__m256i; 16] {
        let half = |h: usize| -> [__m256i; 8] {
            // SAFETY: each block is 64 bytes, so both 32-byte halves are in bounds.
            let v: [__m256i; 8] = std::array::from_fn(|l| unsafe {
                _mm256_loadu_si256(blocks[l].as_ptr().add(32 * h).cast())
            });
            transpose(v)
        };
        let (lo, hi) = (half(0), half(1));
        std::array::from_fn(|w| if w < 8 { lo[w] } else { hi[w - 8] })
    }

    /// An 8x8 transpose of 32-bit words: lane `l` of vector `w` becomes lane `w` of vector `l`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn transpose(v: [__m256i; 8]) -> [__m256i; 8] {
        let ab_0145 = _mm256_unpacklo_epi32(v[0], v[1]);
        let ab_2367 = _mm256_unpackhi_epi32(v[0], v[1]);
        let cd_0145 = _mm256_unpacklo_epi32(v[2], v[3]);
        let cd_2367 = _mm256_unpackhi_epi32(v[2], v[3]);
        let ef_0145 = _mm256_unpacklo_epi32(v[4], v[5]);
        let ef_2367 = _mm256_unpackhi_epi32(v[4], v[5]);
        let gh_0145 = _mm256_unpacklo_epi32(v[6], v[7]);
        let gh_2367 = _mm256_unpackhi_epi32(v[6], v[7]);
        let abcd_04 = _mm256_unpacklo_epi64(ab_0145, cd_0145);
        let abcd_15 = _mm256_unpackhi_epi64(ab_0145, cd_0145);
        let abcd_26 = _mm256_unpacklo_epi64(ab_2367, cd_2367);
        let abcd_37 = _mm256_unpackhi_epi64(ab_2367, cd_2367);
        let efgh_04 = _mm256_unpacklo_epi64(ef_0145, gh_0145);
        let efgh_15 = _mm256_unpackhi_epi64(ef_0145, gh_0145);
        let efgh_26 = _mm256_unpacklo_epi64(ef_2367, gh_2367);
        let efgh_37 = _mm256_unpackhi_epi64(ef_2367, gh_2367);
        [
            _mm256_permute2x128_si256(abcd_04, efgh_04, 0x20),
            _mm256_permute2x128_si256(abcd_15, efgh_15, 0x20),
            _mm256_permute2x128_si256(abcd_26, efgh_26, 0x20),
            _mm256_permute2x128_si256(abcd_37, efgh_37, 0x20),
            _mm256_permute2x128_si256(abcd_04, efgh_04, 0x31),
            _mm256_permute2x128_si256(abcd_15, efgh_15, 0x31),
            _mm256_permute2x128_si256(abcd_26, efgh_26, 0x31),
            _mm256_permute2x128_si256(abcd_37, efgh_37, 0x31),
        ]
    }

    /// Rotates every word right by `BYTES` whole bytes (1 or 2): one byte shuffle, where the other
    /// rotations take two shifts and an or.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn rot_bytes<const BYTES: u64>(x: __m256i) -> __m256i {
        // Per 128-bit half, byte j of the word at byte `base` comes from byte (j + BYTES) % 4 of it.
        const fn word(base: u64, bytes: u64) -> u64 {
            let mut w = 0;
            let mut j = 0;
            while j < 4 {
                w |= ((j + bytes) % 4 + base) << (8 * j);
                j += 1;
            }
            w
        }
        let lo = (word(0, BYTES) | word(4, BYTES) << 32) as i64;
        let hi = (word(8, BYTES) | word(12, BYTES) << 32) as i64;
        _mm256_shuffle_epi8(x, _mm256_setr_epi64x(lo, hi, lo, hi))
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn rot12(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_srli_epi32(x, 12), _mm256_slli_epi32(x, 20))
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn rot7(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_srli_epi32(x, 7), _mm256_slli_epi32(x, 25))
    }

    /// BLAKE3's G on four state words of every lane, with two message words.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn g(v: &mut [__m256i; 16], [a, b, c, d]: [usize; 4], x: __m256i, y: __m256i) {
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], v[b]), x);
        v[d] = rot_bytes::<2>(_mm256_xor_si256(v[d], v[a]));
        v[c] = _mm256_add_epi32(v[c], v[d]);
        v[b] = rot12(_mm256_xor_si256(v[b], v[c]));
        v[a] = _mm256_add_epi32(_mm256_add_epi32(v[a], v[b]), y);
        v[d] = rot_bytes::<1>(_mm256_xor_si256(v[d], v[a]));
        v[c] = _mm256_add_epi32(v[c], v[d]);
        v[b] = rot7(_mm256_xor_si256(v[b], v[c]));
    }

    /// Compresses one block in every lane (block counter 0: a single chunk), chaining into `cv`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn compress(cv: &mut [__m256i; 8], m: &[__m256i; 16], lens: __m256i, flags: __m256i) {
        let zero = _mm256_setzero_si256();
        let mut v = [
            cv[0],
            cv[1],
            cv[2],
            cv[3],
            cv[4],
            cv[5],
            cv[6],
            cv[7],
            _mm256_set1_epi32(IV[0] as i32),
            _mm256_set1_epi32(IV[1] as i32),
            _mm256_set1_epi32(IV[2] as i32),
            _mm256_set1_epi32(IV[3] as i32),
            zero,
            zero,
            lens,
            flags,
        ];
        for s in &SCHEDULE {
            g(&mut v, [0, 4, 8, 12], m[s[0]], m[s[1]]);
            g(&mut v, [1, 5, 9, 13], m[s[2]], m[s[3]]);
            g(&mut v, [2, 6, 10, 14], m[s[4]], m[s[5]]);
            g(&mut v, [3, 7, 11, 15], m[s[6]], m[s[7]]);
            g(&mut v, [0, 5, 10, 15], m[s[8]], m[s[9]]);
            g(&mut v, [1, 6, 11, 12], m[s[10]], m[s[11]]);
            g(&mut v, [2, 7, 8, 13], m[s[12]], m[s[13]]);
            g(&mut v, [3, 4, 9, 14], m[s[14]], m[s[15]]);
        }
        for i in 0..8 {
            cv[i] = _mm256_xor_si256(v[i], v[i + 8]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_blake3_on_every_length_near_block_and_chunk_edges() {
        let data: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let mut lens: Vec<usize> = (0..=200).collect();
        for edge in [256, 320, 512, 960, 1024, 2048] {
            lens.extend(edge - 3..=edge + 3);
        }
        // Mixed lengths in one call, so lanes finish at different blocks and take new messages.
        let msgs: Vec<&[u8]> = lens
            .iter()
            .enumerate()
            .map(|(k, &n)| &data[k * 7..k * 7 + n])
            .collect();
        let mut out = Vec::new();
        hash_all(&msgs, &mut out);
        for (m, h) in msgs.iter().zip(&out) {
            assert_eq!(*h, words(blake3::hash(m).as_bytes()), "length {}", m.len());
        }
    }
}
