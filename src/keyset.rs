//! Compact tables of 128-bit key hashes, each key with a value. Open addressing with linear probing in
//! one flat vector sized to the expected key count (not to a power of two). Two slot layouts:
//!
//! - [`KeySet`], for uniqueness checks: 16-byte slots holding the key's high word and, in a second word,
//!   the top 24 bits of its low word above a 40-bit value (a record number below 2^39 and the
//!   [`REPEATED`] flag). Two keys are taken as equal when those 88 bits are: for n keys a false match
//!   has a probability of about n²/2⁸⁹ (1 in 600 million for a billion keys). A million keys take 18 MB;
//!   24-byte slots with the whole key took 27 MB, and a general hash map 50.
//! - [`KeyMap`], for the key index a parent leaves its children: 24-byte slots, the whole key and a
//!   64-bit value (where the parent key's text is).

/// Flag on a value: the key was stored more than once (see [`Table::upsert`]).
pub const REPEATED: u64 = 1 << 63;

/// One slot's layout. A value of 0 marks an empty slot: values start at 1.
pub trait Slot: Copy {
    const EMPTY: Self;
    fn new(key: [u64; 2], value: u64) -> Self;
    fn is_empty(&self) -> bool;
    fn holds(&self, key: [u64; 2]) -> bool;
    fn value(&self) -> u64;
    /// The key's high word, which places it in the table.
    fn high(&self) -> u64;
}

/// `[high, low's top 24 bits << 40 | value]`.
#[derive(Clone, Copy)]
pub struct Narrow([u64; 2]);

/// The value bits of a narrow slot's second word: 39 of record number and the repeated flag above them.
const VALUE: u64 = (1 << 40) - 1;
const FLAG: u64 = 1 << 39;
/// The largest record number a narrow slot holds; larger ones are stored as this (only the first-seen
/// message and the duplicate policies' row numbers use them, and no export comes near 5 * 10^11 records).
pub const MAX_RECORD: u64 = FLAG - 1;

impl Slot for Narrow {
    const EMPTY: Self = Narrow([0; 2]);
    fn new(key: [u64; 2], value: u64) -> Self {
        let flag = if value & REPEATED != 0 { FLAG } else { 0 };
        let record = (value & !REPEATED).clamp(1, MAX_RECORD);
        Narrow([key[0], (key[1] & !VALUE) | flag | record])
    }
    fn is_empty(&self) -> bool {
        self.0[1] & VALUE == 0
    }
    fn holds(&self, key: [u64; 2]) -> bool {
        self.0[0] == key[0] && self.0[1] & !VALUE == key[1] & !VALUE
    }
    fn value(&self) -> u64 {
        let v = self.0[1] & VALUE;
        (v & MAX_RECORD) | if v & FLAG != 0 { REPEATED } else { 0 }
    }
    fn high(&self) -> u64 {
        self.0[0]
    }
}

/// `[high, low, value]`.
#[derive(Clone, Copy)]
pub struct Wide([u64; 3]);

impl Slot for Wide {
    const EMPTY: Self = Wide([0; 3]);
    fn new(key: [u64; 2], value: u64) -> Self {
        Wide([key[0], key[1], value.max(1)])
    }
    fn is_empty(&self) -> bool {
        self.0[2] == 0
    }
    fn holds(&self, key: [u64; 2]) -> bool {
        self.0[0] == key[0] && self.0[1] == key[1]
    }
    fn value(&self) -> u64 {
        self.0[2]
    }
    fn high(&self) -> u64 {
        self.0[0]
    }
}

/// An open-addressing table of keys in slots of layout `S`, kept at a load of at most 7/8.
pub struct Table<S> {
    slots: Vec<S>,
    len: usize,
}

/// Keys with the record that first had them.
pub type KeySet = Table<Narrow>;
/// Keys with a 64-bit value.
pub type KeyMap = Table<Wide>;

impl<S: Slot> Default for Table<S> {
    fn default() -> Self {
        Table {
            slots: vec![S::EMPTY; 1024],
            len: 0,
        }
    }
}

impl<S: Slot> Table<S> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the table.
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<S>()
    }

    /// Makes room for `n` keys in all, at a load of at most 7/8.
    pub fn reserve(&mut self, n: usize) {
        let want = n + n / 7 + 16;
        if want > self.slots.len() {
            self.rehash(want);
        }
    }

    fn slot(&self, high: u64) -> usize {
        // Multiply-shift maps the (already random) high word onto any table size without a modulo.
        ((u128::from(high) * self.slots.len() as u128) >> 64) as usize
    }

    fn rehash(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![S::EMPTY; size]);
        let n = self.slots.len();
        for e in old.into_iter().filter(|e| !e.is_empty()) {
            let mut i = self.slot(e.high());
            while !self.slots[i].is_empty() {
                i = if i + 1 == n { 0 } else { i + 1 };
            }
            self.slots[i] = e;
        }
    }

    /// Asks the processor to bring `key`'s first slot into cache. A million keys spread over 18 MB, so
    /// nearly every probe misses the cache; the writer thread prefetches the slots of the rows a few
    /// ahead of the one it checks, so their misses overlap instead of coming one after another.
    #[inline]
    pub fn prefetch(&self, key: [u64; 2]) {
        #[cfg(target_arch = "x86_64")]
        {
            let p: *const S = &self.slots[self.slot(key[0])];
            // SAFETY: a prefetch is only a hint: it never faults and changes no memory, and `p` points
            // into `slots` anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// The value stored with `key`, if any.
    pub fn get(&self, key: [u64; 2]) -> Option<u64> {
        let n = self.slots.len();
        let mut i = self.slot(key[0]);
        loop {
            let e = &self.slots[i];
            if e.is_empty() {
                return None;
            }
            if e.holds(key) {
                return Some(e.value());
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// The slot holding `key`, or the empty slot where it goes (the table grown first if needed), and
    /// whether the key is there.
    fn entry(&mut self, key: [u64; 2]) -> (usize, bool) {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            let grown = self.slots.len() + self.slots.len() / 2;
            self.rehash(grown);
        }
        let n = self.slots.len();
        let mut i = self.slot(key[0]);
        loop {
            let e = &self.slots[i];
            if e.is_empty() {
                return (i, false);
            }
            if e.holds(key) {
                return (i, true);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// Inserts `key` with `value` (at least 1) unless present; returns the value already stored.
    pub fn insert(&mut self, key: [u64; 2], value: u64) -> Option<u64> {
        match self.entry(key) {
            (i, true) => Some(self.slots[i].value()),
            (i, false) => {
                self.slots[i] = S::new(key, value);
                self.len += 1;
                None
            }
        }
    }

    /// Stores `value` (below 2^63) with `key`, replacing what was there, and marks the key with
    /// [`REPEATED`] when it was already present: the duplicate pre-pass keeps each key's last record
    /// and whether it had more than one.
    pub fn upsert(&mut self, key: [u64; 2], value: u64) {
        let (i, present) = self.entry(key);
        if !present {
            self.len += 1;
        }
        let flag = if present { REPEATED } else { 0 };
        self.slots[i] = S::new(key, value.max(1) | flag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_through_growth() {
        let mut s = KeySet::default();
        let mut model = std::collections::HashMap::new();
        let mut x = 1u64;
        for n in 1..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Reuse some keys to exercise duplicates.
            let k = [(x % 5000).wrapping_mul(0x9E37_79B9_7F4A_7C15), x % 5000];
            let got = s.insert(k, n);
            let want = model.get(&k).copied();
            if want.is_none() {
                model.insert(k, n);
            }
            assert_eq!(got, want);
        }
        assert_eq!(s.len(), model.len());
        for (k, v) in &model {
            assert_eq!(s.get(*k), Some(*v));
        }
        assert_eq!(s.get([1, 2]), None);
    }

    #[test]
    fn upsert_keeps_the_last_record_and_flags_repeats() {
        let mut s = KeySet::default();
        for n in 1..5000u64 {
            s.upsert([n % 700, n % 700], n);
        }
        assert_eq!(s.len(), 700);
        // 699 was stored at 699 and 1399, ..., last at 4899.
        assert_eq!(s.get([699, 699]), Some(4899 | REPEATED));
        let mut one = KeySet::default();
        one.upsert([1, 1], 7);
        assert_eq!(one.get([1, 1]), Some(7));
    }

    #[test]
    fn keys_are_told_apart_by_the_high_word_and_the_low_words_top_bits() {
        let mut s = KeySet::default();
        assert_eq!(s.insert([5, 1 << 63], 1), None);
        assert_eq!(s.insert([5, 1 << 40], 2), None);
        assert_eq!(s.insert([6, 1 << 40], 3), None);
        // The low word's bottom 40 bits hold the value: keys differing only there are one key.
        assert_eq!(s.insert([5, (1 << 40) | 12345], 4), Some(2));
        assert_eq!(s.len(), 3);
        // Record numbers beyond the slot's 39 bits are kept as the largest it holds.
        assert_eq!(s.insert([7, 0], 1 << 50), None);
        assert_eq!(s.get([7, 0]), Some(MAX_RECORD));
    }
}
