//! A compact set of 128-bit key hashes, each with the record number that first had it. Open addressing
//! with linear probing in one flat vector sized to the expected key count (not to a power of two), so a
//! million keys take about 27 MB where a general hash map took 50.

/// Entries are `[high, low, record]`; a record number of 0 marks an empty slot (records start at 1).
pub struct KeySet {
    slots: Vec<[u64; 3]>,
    len: usize,
}

impl Default for KeySet {
    fn default() -> Self {
        KeySet {
            slots: vec![[0; 3]; 1024],
            len: 0,
        }
    }
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the table.
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<[u64; 3]>()
    }

    /// Makes room for `n` keys in all, at a load of at most 7/8.
    pub fn reserve(&mut self, n: usize) {
        let want = n + n / 7 + 16;
        if want > self.slots.len() {
            self.rehash(want);
        }
    }

    fn slot(&self, key: [u64; 2]) -> usize {
        // Multiply-shift maps the (already random) high word onto any table size without a modulo.
        ((u128::from(key[0]) * self.slots.len() as u128) >> 64) as usize
    }

    fn rehash(&mut self, size: usize) {
        let old = std::mem::replace(&mut self.slots, vec![[0; 3]; size]);
        self.len = 0;
        for e in old.into_iter().filter(|e| e[2] != 0) {
            self.insert([e[0], e[1]], e[2]);
        }
    }

    /// Asks the processor to bring `key`'s first slot into cache. A million keys spread over 27 MB, so
    /// nearly every probe misses the cache; the writer thread prefetches the slots of the rows a few
    /// ahead of the one it checks, so their misses overlap instead of coming one after another.
    #[inline]
    pub fn prefetch(&self, key: [u64; 2]) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.slots[self.slot(key)].as_ptr();
            // SAFETY: a prefetch is only a hint: it never faults and changes no memory, and `p` points
            // into `slots` anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// The record number stored with `key`, if any.
    pub fn get(&self, key: [u64; 2]) -> Option<u64> {
        let n = self.slots.len();
        let mut i = self.slot(key);
        loop {
            let e = &self.slots[i];
            if e[2] == 0 {
                return None;
            }
            if e[0] == key[0] && e[1] == key[1] {
                return Some(e[2]);
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
        let mut i = self.slot(key);
        loop {
            let e = &self.slots[i];
            if e[2] == 0 {
                return (i, false);
            }
            if e[0] == key[0] && e[1] == key[1] {
                return (i, true);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// Inserts `key` with `record` (at least 1) unless present; returns the record already stored.
    pub fn insert(&mut self, key: [u64; 2], record: u64) -> Option<u64> {
        match self.entry(key) {
            (i, true) => Some(self.slots[i][2]),
            (i, false) => {
                self.slots[i] = [key[0], key[1], record.max(1)];
                self.len += 1;
                None
            }
        }
    }

    /// Stores `record` (below 2^63) with `key`, replacing what was there, and marks the key with
    /// [`KeySet::REPEATED`] when it was already present: the duplicate pre-pass keeps each key's last
    /// record and whether it had more than one.
    pub fn upsert(&mut self, key: [u64; 2], record: u64) {
        match self.entry(key) {
            (i, true) => self.slots[i][2] = record.max(1) | Self::REPEATED,
            (i, false) => {
                self.slots[i] = [key[0], key[1], record.max(1)];
                self.len += 1;
            }
        }
    }

    /// Flag bit of [`KeySet::upsert`]: the key was stored more than once.
    pub const REPEATED: u64 = 1 << 63;
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
        assert_eq!(s.get([699, 699]), Some(4899 | KeySet::REPEATED));
        let mut one = KeySet::default();
        one.upsert([1, 1], 7);
        assert_eq!(one.get([1, 1]), Some(7));
    }
}
