//! BLAKE3 of many short messages at once, side by side in the lanes of vector registers: sixteen with
//! AVX-512, eight with AVX2.
//!
//! A dataset digest hashes every written row: a few hundred bytes, four to six 64-byte blocks. One
//! message at a time, each block's compression is one long chain of dependent steps; hashing rows that
//! way took a fifth of a CSV run's CPU time. Here a lane that finishes its message takes the next one,
//! so all lanes stay busy whatever the lengths. Only messages of one BLAKE3 chunk (up to 1024 bytes) go
//! through the lanes; longer ones, and processors without AVX2, use the blake3 crate. The hashes equal
//! `blake3::hash` (tested on every length around the block and chunk edges, for each kernel).

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
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            // SAFETY: the processor has AVX-512F and AVX-512BW (checked just above).
            unsafe { hash_lanes::<x86::Avx512, 16>(msgs, out) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above).
            unsafe { hash_lanes::<x86::Avx2, 8>(msgs, out) };
            return;
        }
    }
    hash_each(msgs, out);
}

/// One message at a time, through the blake3 crate.
fn hash_each(msgs: &[&[u8]], out: &mut [[u64; 4]]) {
    for (m, o) in msgs.iter().zip(out.iter_mut()) {
        *o = words(blake3::hash(m).as_bytes());
    }
}

/// A BLAKE3 hash as four little-endian words: a row hash as digests add it up.
pub fn words(b: &[u8; 32]) -> [u64; 4] {
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("eight bytes"));
    [w(0), w(1), w(2), w(3)]
}

/// One block's compression in each of `N` lanes.
///
/// # Safety
/// An implementation may use instructions the processor lacks: call it only after checking for them.
unsafe trait Kernel<const N: usize> {
    /// Compresses the block of lane `l`, the `lens[l]` bytes (at most 64) at `blocks[l]` zero-padded,
    /// with flags `flags[l]` (block counter 0: a single chunk), into its chaining value, held word by
    /// word: `cv[w][l]`.
    ///
    /// # Safety
    /// Each pointer must be valid for reading its lane's `lens[l]` bytes.
    unsafe fn compress(
        cv: &mut [[u32; N]; 8],
        blocks: &[*const u8; N],
        lens: &[u32; N],
        flags: &[u32; N],
    );
}

/// Fills `out` (one slot per message) with the hashes of `msgs`, `N` at a time with kernel `K`.
///
/// # Safety
/// The processor must have the instructions `K` uses.
unsafe fn hash_lanes<'m, K: Kernel<N>, const N: usize>(msgs: &[&'m [u8]], out: &mut [[u64; 4]]) {
    // Per lane: its message (`usize::MAX`: none), the bytes of it not yet compressed, and whether its
    // first block is next. Sixteen wide, the scalar steps around the kernel cost as much as the kernel
    // itself: per block they are a slice step, and the zero padding of last blocks is the kernel's.
    let mut msg = [usize::MAX; N];
    let mut rest: [&'m [u8]; N] = [&[]; N];
    let mut first = [true; N];
    let mut cv = [[0u32; N]; 8];
    let mut next = 0;
    // Gives lane `l` the next message that fits one chunk; a longer one is hashed whole by the blake3
    // crate on the way. Returns whether the lane has a message.
    let mut take = |l: usize,
                    msg: &mut [usize; N],
                    rest: &mut [&'m [u8]; N],
                    first: &mut [bool; N],
                    cv: &mut [[u32; N]; 8],
                    out: &mut [[u64; 4]]| {
        while next < msgs.len() {
            let i = next;
            next += 1;
            if msgs[i].len() > CHUNK_LEN {
                hash_each(&msgs[i..=i], &mut out[i..=i]);
                continue;
            }
            msg[l] = i;
            rest[l] = msgs[i];
            first[l] = true;
            for (w, iv) in cv.iter_mut().zip(IV) {
                w[l] = iv;
            }
            return true;
        }
        msg[l] = usize::MAX;
        rest[l] = &[];
        false
    };
    let mut active = 0;
    for l in 0..N {
        active += usize::from(take(l, &mut msg, &mut rest, &mut first, &mut cv, out));
    }
    while active > 0 {
        // An idle lane compresses an empty block; its result is never read.
        let mut blocks = [std::ptr::null(); N];
        let mut lens = [0u32; N];
        let mut flags = [0u32; N];
        for l in 0..N {
            let r = rest[l];
            blocks[l] = r.as_ptr();
            lens[l] = r.len().min(BLOCK_LEN) as u32;
            flags[l] = if first[l] { CHUNK_START } else { 0 }
                | if r.len() <= BLOCK_LEN {
                    CHUNK_END | ROOT
                } else {
                    0
                };
        }
        // SAFETY: the caller checked that the processor has what `K` needs; each pointer starts a
        // slice of at least its lane's length.
        unsafe { K::compress(&mut cv, &blocks, &lens, &flags) };
        for l in 0..N {
            if rest[l].len() > BLOCK_LEN {
                rest[l] = &rest[l][BLOCK_LEN..];
                first[l] = false;
                continue;
            }
            if msg[l] == usize::MAX {
                continue;
            }
            let word = |i: usize| u64::from(cv[2 * i][l]) | u64::from(cv[2 * i + 1][l]) << 32;
            out[msg[l]] = [word(0), word(1), word(2), word(3)];
            if !take(l, &mut msg, &mut rest, &mut first, &mut cv, out) {
                active -= 1;
            }
        }
    }
}

/// BLAKE3's seven rounds over vectors of lanes, for the kernel module it is expanded in, which defines
/// `add`, `xor`, `splat` and the four rotations for its vector type under its target feature.
macro_rules! rounds {
    ($feature:literal, $v:ty) => {
        /// BLAKE3's G on four state words of every lane, with two message words.
        #[target_feature(enable = $feature)]
        #[inline]
        fn g(v: &mut [$v; 16], [a, b, c, d]: [usize; 4], x: $v, y: $v) {
            v[a] = add(add(v[a], v[b]), x);
            v[d] = rot16(xor(v[d], v[a]));
            v[c] = add(v[c], v[d]);
            v[b] = rot12(xor(v[b], v[c]));
            v[a] = add(add(v[a], v[b]), y);
            v[d] = rot8(xor(v[d], v[a]));
            v[c] = add(v[c], v[d]);
            v[b] = rot7(xor(v[b], v[c]));
        }

        /// The compression of one block in every lane, chaining into `cv`.
        #[target_feature(enable = $feature)]
        #[inline]
        fn rounds(cv: &mut [$v; 8], m: &[$v; 16], lens: $v, flags: $v) {
            let zero = splat(0);
            let mut v = [
                cv[0],
                cv[1],
                cv[2],
                cv[3],
                cv[4],
                cv[5],
                cv[6],
                cv[7],
                splat(IV[0]),
                splat(IV[1]),
                splat(IV[2]),
                splat(IV[3]),
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
                cv[i] = xor(v[i], v[i + 8]);
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Kernel, BLOCK_LEN, IV, SCHEDULE};
    use std::arch::x86_64::*;

    /// Eight lanes in AVX2 registers.
    pub struct Avx2;

    /// Sixteen lanes in AVX-512 registers, with native rotations and byte-masked loads.
    pub struct Avx512;

    mod avx2 {
        use super::*;

        rounds!("avx2", __m256i);

        #[target_feature(enable = "avx2")]
        #[inline]
        fn add(a: __m256i, b: __m256i) -> __m256i {
            _mm256_add_epi32(a, b)
        }

        #[target_feature(enable = "avx2")]
        #[inline]
        fn xor(a: __m256i, b: __m256i) -> __m256i {
            _mm256_xor_si256(a, b)
        }

        #[target_feature(enable = "avx2")]
        #[inline]
        fn splat(w: u32) -> __m256i {
            _mm256_set1_epi32(w as i32)
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
        fn rot16(x: __m256i) -> __m256i {
            rot_bytes::<2>(x)
        }

        #[target_feature(enable = "avx2")]
        #[inline]
        fn rot8(x: __m256i) -> __m256i {
            rot_bytes::<1>(x)
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

        /// The sixteen message words of the lanes' blocks, word `w` of every lane in vector `w`.
        ///
        /// # Safety
        /// Each pointer must be valid for reading 64 bytes.
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn transpose_blocks(blocks: &[*const u8; 8]) -> [__m256i; 16] {
            let half = |h: usize| -> [__m256i; 8] {
                // SAFETY: each block is 64 bytes (the caller's promise), so both halves are in bounds.
                let v: [__m256i; 8] = std::array::from_fn(|l| unsafe {
                    _mm256_loadu_si256(blocks[l].add(32 * h).cast())
                });
                transpose(v)
            };
            let (lo, hi) = (half(0), half(1));
            std::array::from_fn(|w| if w < 8 { lo[w] } else { hi[w - 8] })
        }

        /// Compresses a block in each of eight lanes (see [`Kernel::compress`]).
        ///
        /// # Safety
        /// Each block pointer must be valid for reading its lane's length.
        #[target_feature(enable = "avx2")]
        pub unsafe fn compress(
            cv: &mut [[u32; 8]; 8],
            blocks: &[*const u8; 8],
            lens: &[u32; 8],
            flags: &[u32; 8],
        ) {
            // A short (last) block is zero-padded in a copy: AVX2 has no byte-masked load.
            let mut padded = [[0u8; BLOCK_LEN]; 8];
            let mut full = *blocks;
            for l in 0..8 {
                let len = lens[l] as usize;
                if len < BLOCK_LEN {
                    // SAFETY: the block is valid for `len` bytes (the caller's promise).
                    padded[l][..len]
                        .copy_from_slice(unsafe { std::slice::from_raw_parts(blocks[l], len) });
                    full[l] = padded[l].as_ptr();
                }
            }
            // SAFETY: the chaining values, lengths and flags are eight u32s, one vector's width.
            unsafe {
                let load = |w: &[u32; 8]| _mm256_loadu_si256(w.as_ptr().cast());
                let mut v: [__m256i; 8] = std::array::from_fn(|w| load(&cv[w]));
                rounds(&mut v, &transpose_blocks(&full), load(lens), load(flags));
                for (w, x) in cv.iter_mut().zip(v) {
                    _mm256_storeu_si256(w.as_mut_ptr().cast(), x);
                }
            }
        }
    }

    mod avx512 {
        use super::*;

        rounds!("avx512f,avx512bw", __m512i);

        #[target_feature(enable = "avx512f")]
        #[inline]
        fn add(a: __m512i, b: __m512i) -> __m512i {
            _mm512_add_epi32(a, b)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        fn xor(a: __m512i, b: __m512i) -> __m512i {
            _mm512_xor_si512(a, b)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        fn splat(w: u32) -> __m512i {
            _mm512_set1_epi32(w as i32)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        fn rot16(x: __m512i) -> __m512i {
            _mm512_ror_epi32::<16>(x)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        fn rot12(x: __m512i) -> __m512i {
            _mm512_ror_epi32::<12>(x)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        fn rot8(x: __m512i) -> __m512i {
            _mm512_ror_epi32::<8>(x)
        }

        #[target_feature(enable = "avx512f")]
        #[inline]
        fn rot7(x: __m512i) -> __m512i {
            _mm512_ror_epi32::<7>(x)
        }

        /// A 16x16 transpose of 32-bit words: lane `l` of vector `w` becomes lane `w` of vector `l`.
        /// Words, then pairs of words, interleave within 128-bit quarters; two shuffles of whole
        /// quarters then put each word's four quarters in place.
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn transpose(v: [__m512i; 16]) -> [__m512i; 16] {
            // Per quarter k, `pairs[p][0]` holds words 4k, 4k+1 and `pairs[p][1]` words 4k+2, 4k+3 of
            // vectors 2p and 2p+1, interleaved.
            let pairs: [[__m512i; 2]; 8] = std::array::from_fn(|p| {
                [
                    _mm512_unpacklo_epi32(v[2 * p], v[2 * p + 1]),
                    _mm512_unpackhi_epi32(v[2 * p], v[2 * p + 1]),
                ]
            });
            // `fours[q][j]`: per quarter k, word 4k+j of vectors 4q..4q+4.
            let fours: [[__m512i; 4]; 4] = std::array::from_fn(|q| {
                let (a, b) = (pairs[2 * q], pairs[2 * q + 1]);
                [
                    _mm512_unpacklo_epi64(a[0], b[0]),
                    _mm512_unpackhi_epi64(a[0], b[0]),
                    _mm512_unpacklo_epi64(a[1], b[1]),
                    _mm512_unpackhi_epi64(a[1], b[1]),
                ]
            });
            // Even quarters (0x88) and odd quarters (0xDD) of two vectors.
            let even = |a, b| _mm512_shuffle_i32x4::<0x88>(a, b);
            let odd = |a, b| _mm512_shuffle_i32x4::<0xDD>(a, b);
            let mut out = [_mm512_setzero_si512(); 16];
            for j in 0..4 {
                let (p, q) = (
                    even(fours[0][j], fours[1][j]),
                    odd(fours[0][j], fours[1][j]),
                );
                let (r, s) = (
                    even(fours[2][j], fours[3][j]),
                    odd(fours[2][j], fours[3][j]),
                );
                out[j] = even(p, r);
                out[j + 4] = even(q, s);
                out[j + 8] = odd(p, r);
                out[j + 12] = odd(q, s);
            }
            out
        }

        /// Compresses a block in each of sixteen lanes (see [`Kernel::compress`]).
        ///
        /// # Safety
        /// Each block pointer must be valid for reading its lane's length.
        #[target_feature(enable = "avx512f,avx512bw")]
        pub unsafe fn compress(
            cv: &mut [[u32; 16]; 8],
            blocks: &[*const u8; 16],
            lens: &[u32; 16],
            flags: &[u32; 16],
        ) {
            // SAFETY: a byte-masked load reads only the bytes its mask selects, here the lane's
            // length, which the caller promises are readable; the bytes beyond are zeros, BLAKE3's
            // padding. Chaining values, lengths and flags are sixteen u32s, one vector's width.
            unsafe {
                let block = |l: usize| {
                    let mask = match lens[l] {
                        64.. => u64::MAX,
                        n => (1u64 << n) - 1,
                    };
                    _mm512_maskz_loadu_epi8(mask, blocks[l].cast())
                };
                let m = transpose(std::array::from_fn(block));
                let load = |w: *const u32| _mm512_loadu_si512(w.cast());
                let mut v: [__m512i; 8] = std::array::from_fn(|w| load(cv[w].as_ptr()));
                rounds(&mut v, &m, load(lens.as_ptr()), load(flags.as_ptr()));
                for (w, x) in cv.iter_mut().zip(v) {
                    _mm512_storeu_si512(w.as_mut_ptr().cast(), x);
                }
            }
        }
    }

    // SAFETY: `hash_all` uses this kernel only after checking for AVX2.
    unsafe impl Kernel<8> for Avx2 {
        unsafe fn compress(
            cv: &mut [[u32; 8]; 8],
            blocks: &[*const u8; 8],
            lens: &[u32; 8],
            flags: &[u32; 8],
        ) {
            // SAFETY: the caller checked for AVX2, and passes readable blocks.
            unsafe { avx2::compress(cv, blocks, lens, flags) }
        }
    }

    // SAFETY: `hash_all` uses this kernel only after checking for AVX-512F and AVX-512BW.
    unsafe impl Kernel<16> for Avx512 {
        unsafe fn compress(
            cv: &mut [[u32; 16]; 8],
            blocks: &[*const u8; 16],
            lens: &[u32; 16],
            flags: &[u32; 16],
        ) {
            // SAFETY: the caller checked for AVX-512F and AVX-512BW, and passes readable blocks.
            unsafe { avx512::compress(cv, blocks, lens, flags) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages of every length near the block and chunk edges, mixed in one call so that lanes finish
    /// at different blocks and take new messages.
    fn messages(data: &[u8]) -> Vec<&[u8]> {
        let mut lens: Vec<usize> = (0..=200).collect();
        for edge in [256, 320, 512, 960, 1024, 2048] {
            lens.extend(edge - 3..=edge + 3);
        }
        lens.iter()
            .enumerate()
            .map(|(k, &n)| &data[k * 7..k * 7 + n])
            .collect()
    }

    fn check(hash: impl Fn(&[&[u8]], &mut [[u64; 4]]), name: &str) {
        let data: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        let msgs = messages(&data);
        let mut out = vec![[0; 4]; msgs.len()];
        hash(&msgs, &mut out);
        for (m, h) in msgs.iter().zip(&out) {
            assert_eq!(
                *h,
                words(blake3::hash(m).as_bytes()),
                "{name}, length {}",
                m.len()
            );
        }
    }

    #[test]
    fn equals_blake3_on_every_length_near_block_and_chunk_edges() {
        check(
            |m, o| {
                let mut v = Vec::new();
                hash_all(m, &mut v);
                o.copy_from_slice(&v);
            },
            "hash_all",
        );
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: checked just above.
                check(|m, o| unsafe { hash_lanes::<x86::Avx2, 8>(m, o) }, "avx2");
            } else {
                eprintln!("NOT RUN: the AVX2 kernel (this processor lacks AVX2)");
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                // SAFETY: checked just above.
                check(
                    |m, o| unsafe { hash_lanes::<x86::Avx512, 16>(m, o) },
                    "avx512",
                );
            } else {
                eprintln!("NOT RUN: the AVX-512 kernel (this processor lacks AVX-512F or BW)");
            }
        }
    }
}
