//! Relations between entities: the order in which entities run (parents before children), the key
//! index a parent leaves for its children (a reference value -> the parent's primary key), and the
//! Salesforce id forms that may match each other.

use std::collections::BTreeMap;

use crate::keyset::KeyMap;
use crate::spec::Mapping;

/// The 128-bit key of one value's text, as written by the mapping stage for uniqueness and references.
pub fn text_key(t: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(t.len() as u64).to_le_bytes());
    h.update(t.as_bytes());
    h.digest128().max(1)
}

fn split(k: u128) -> [u64; 2] {
    [(k >> 64) as u64, k as u64]
}

/// The 15-character form of a Salesforce id: a 15-character id itself, or the first 15 characters of an
/// 18-character id whose last 3 characters are the case checksum of the first 15. None for anything else.
pub fn salesforce_15(id: &str) -> Option<&str> {
    let b = id.as_bytes();
    if !b.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    match b.len() {
        15 => Some(id),
        18 => {
            const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
            for chunk in 0..3 {
                let mut bits = 0usize;
                for k in 0..5 {
                    if b[chunk * 5 + k].is_ascii_uppercase() {
                        bits |= 1 << k;
                    }
                }
                if b[15 + chunk] != ALPHABET[bits] {
                    return None;
                }
            }
            Some(&id[..15])
        }
        _ => None,
    }
}

/// A parent entity's values of one field mapped to its primary key text, built as its rows are written
/// and read by its children's mapping threads.
#[derive(Default)]
pub struct KeyIndex {
    set: KeyMap,
    texts: Vec<u8>,
}

impl KeyIndex {
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn reserve(&mut self, n: usize) {
        self.set.reserve(n);
    }

    /// Records `key` as present, its target being the looked-up value itself (a reference by the
    /// parent's primary key, where storing the text again would double the memory).
    pub fn insert_present(&mut self, key: u128) {
        if self.set.get(split(key)).is_none() {
            self.set.insert(split(key), u64::MAX);
        }
    }

    /// Maps `key` to `target`. The first mapping of a key stays.
    pub fn insert(&mut self, key: u128, target: &str) {
        if self.set.get(split(key)).is_some() {
            return;
        }
        let start = self.texts.len() as u64;
        self.texts.extend_from_slice(target.as_bytes());
        // Offset and length packed in the set's value: 44 and 20 bits, never 0.
        let len = (target.len() as u64).min((1 << 20) - 1);
        self.set.insert(split(key), ((start + 1) << 20) | len);
    }

    /// The target of `key`: `Some(None)` when it is the looked-up value itself.
    pub fn get(&self, key: u128) -> Option<Option<&str>> {
        let v = self.set.get(split(key))?;
        if v == u64::MAX {
            return Some(None);
        }
        let start = ((v >> 20) - 1) as usize;
        let len = (v & ((1 << 20) - 1)) as usize;
        Some(std::str::from_utf8(&self.texts[start..start + len]).ok())
    }

    /// Bytes held, for the benchmark's bytes-per-key figure.
    pub fn bytes(&self) -> usize {
        self.set.bytes() + self.texts.capacity()
    }
}

/// The order in which entities run: mapping order, except that every entity runs after the entities its
/// fields reference (deferred references aside). A cycle (an entity that references itself, directly or through others) is an error
/// that names it.
pub fn order(m: &Mapping) -> Result<Vec<usize>, String> {
    let index: BTreeMap<&str, usize> = m
        .entities
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    let parents: Vec<Vec<usize>> = m
        .entities
        .iter()
        .map(|e| {
            let mut p: Vec<usize> = e
                .fields
                .iter()
                .filter_map(|f| f.references.as_ref())
                // A deferred reference is set by an update after every entity has run: no order needed.
                .filter(|r| !r.defer)
                .filter_map(|r| index.get(r.entity.as_str()).copied())
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        })
        .collect();
    // Kahn's algorithm, always taking the first ready entity in mapping order: entities listed parents
    // first (as a Salesforce plan lists them) run exactly in that order.
    let n = m.entities.len();
    let mut waiting: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut placed = vec![false; n];
    let mut ordered = Vec::with_capacity(n);
    while let Some(next) = (0..n).find(|&i| !placed[i] && waiting[i] == 0) {
        placed[next] = true;
        ordered.push(next);
        for (child, ps) in parents.iter().enumerate() {
            waiting[child] -= ps.iter().filter(|&&p| p == next).count();
        }
    }
    if ordered.len() == n {
        return Ok(ordered);
    }
    // A cycle is left: find and name it, depth-first; `state` 1 = on the current path, 2 = placed.
    let mut state = vec![0u8; m.entities.len()];
    let mut out = Vec::with_capacity(m.entities.len());
    fn visit(
        i: usize,
        parents: &[Vec<usize>],
        state: &mut [u8],
        path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for &p in &parents[i] {
            visit(p, parents, state, path, out)?;
        }
        path.pop();
        state[i] = 2;
        out.push(i);
        Ok(())
    }
    for i in 0..m.entities.len() {
        let mut path = Vec::new();
        if let Err(cycle) = visit(i, &parents, &mut state, &mut path, &mut out) {
            let names: Vec<&str> = cycle
                .iter()
                .rev()
                .map(|&k| m.entities[k].name.as_str())
                .collect();
            return Err(format!(
                "the references form a cycle: {} (each entity must run after the entities it references: break the cycle with `defer = true` on one of these references, which writes it as null first and sets it from `<entity>.updates.csv` afterwards)",
                names.join(" -> ")
            ));
        }
    }
    Err("the references leave no order in which every entity runs after its parents".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salesforce_id_forms() {
        // A real-looking pair: the 18-character form's suffix encodes the case of the first 15.
        assert_eq!(salesforce_15("001D000000IqhSL"), Some("001D000000IqhSL"));
        assert_eq!(salesforce_15("001D000000IqhSLIAZ"), Some("001D000000IqhSL"));
        assert_eq!(salesforce_15("001D000000IqhSLIAA"), None, "wrong checksum");
        assert_eq!(salesforce_15("001d000000iqhslAAA"), Some("001d000000iqhsl"));
        assert_eq!(salesforce_15("not-an-id"), None);
    }

    #[test]
    fn index_maps_keys_to_targets() {
        let mut ix = KeyIndex::default();
        for i in 0..5000u32 {
            ix.insert(text_key(&format!("k{i}")), &format!("target-{i}"));
        }
        assert_eq!(ix.get(text_key("k42")), Some(Some("target-42")));
        assert_eq!(ix.get(text_key("k4999")), Some(Some("target-4999")));
        assert_eq!(ix.get(text_key("nope")), None);
        assert_eq!(ix.len(), 5000);
        ix.insert_present(text_key("same"));
        assert_eq!(ix.get(text_key("same")), Some(None));
    }
}
