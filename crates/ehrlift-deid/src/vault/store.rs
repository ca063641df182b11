//! The vault's in-memory crosswalk: a sorted array with a radix index, plus a small
//! hash map of recent assignments that is merged into the array as it grows.
//!
//! A hash map of 1M 32-byte entries takes 70 MB (power-of-two growth, control bytes);
//! the sorted array takes exactly 32 bytes per entry, and lookups stay at two or three
//! cache misses: the index maps the top bits of a lookup key (uniform HMAC output) to a
//! bucket of about eight entries, searched by binary search.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use super::{ENTRY_LEN, Surrogate, key_order};

/// A lookup key, already uniform: hashed by its first 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct LookupKey(pub(super) [u8; 16]);

impl Hash for LookupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(prefix_be(&self.0));
    }
}

/// Passes the key's prefix through: HMAC output needs no further mixing, and nobody
/// without the lookup key can craft colliding inputs.
#[derive(Clone, Copy, Default)]
pub(super) struct PrefixHash;

impl BuildHasher for PrefixHash {
    type Hasher = PrefixHasher;
    fn build_hasher(&self) -> PrefixHasher {
        PrefixHasher(0)
    }
}

pub(super) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    // Only `LookupKey` is hashed here, and it calls `write_u64`; this is a safe fallback.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The first 8 bytes of a key as a big-endian integer (the order `sorted` is in).
pub(super) fn prefix_be(b: &[u8; 16]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&b[..8]);
    u64::from_be_bytes(p)
}

/// Lookup key → surrogate.
pub(super) struct Store {
    /// `lookup key ‖ surrogate`, sorted by lookup key, no duplicates.
    sorted: Vec<[u8; ENTRY_LEN]>,
    /// `index[b]..index[b + 1]` is the range of `sorted` whose keys' top `bits` bits are `b`.
    index: Vec<u32>,
    bits: u32,
    /// Assignments not yet merged into `sorted`.
    recent: HashMap<LookupKey, Surrogate, PrefixHash>,
}

impl Store {
    /// A store over entries already sorted by key and free of duplicates.
    pub(super) fn from_sorted(sorted: Vec<[u8; ENTRY_LEN]>) -> Self {
        let mut s = Store { sorted, index: Vec::new(), bits: 0, recent: HashMap::with_hasher(PrefixHash) };
        s.reindex();
        s
    }

    pub(super) fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    /// The surrogate of `key`, if it has one.
    #[inline]
    pub(super) fn get(&self, key: &[u8; 16]) -> Option<Surrogate> {
        if let Some(s) = self.recent.get(&LookupKey(*key)) {
            return Some(*s);
        }
        let b = (prefix_be(key) >> (64 - self.bits)) as usize;
        let bucket = &self.sorted[self.index[b] as usize..self.index[b + 1] as usize];
        let k = u128::from_be_bytes(*key);
        bucket.binary_search_by_key(&k, key_order).ok().map(|i| {
            let mut s = [0u8; 16];
            s.copy_from_slice(&bucket[i][16..]);
            s
        })
    }

    /// Adds an entry for a key that has none.
    pub(super) fn insert_new(&mut self, key: [u8; 16], sur: Surrogate) {
        self.recent.insert(LookupKey(key), sur);
    }

    /// Merges the recent assignments into the array once they are a quarter of it (at
    /// least 16k), so each entry is copied a bounded number of times.
    pub(super) fn maybe_merge(&mut self) {
        if self.recent.len() >= (self.sorted.len() / 4).max(16 * 1024) {
            self.merge();
        }
    }

    fn merge(&mut self) {
        let mut new: Vec<[u8; ENTRY_LEN]> = self
            .recent
            .drain()
            .map(|(k, s)| {
                let mut e = [0u8; ENTRY_LEN];
                e[..16].copy_from_slice(&k.0);
                e[16..].copy_from_slice(&s);
                e
            })
            .collect();
        self.recent.shrink_to_fit();
        new.sort_unstable_by_key(key_order);
        let old = self.sorted.len();
        self.sorted.reserve_exact(new.len());
        self.sorted.resize(old + new.len(), [0; ENTRY_LEN]);
        // Merge from the back, in place.
        let (mut i, mut j, mut w) = (old, new.len(), old + new.len());
        while j > 0 {
            if i > 0 && key_order(&self.sorted[i - 1]) > key_order(&new[j - 1]) {
                self.sorted[w - 1] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[w - 1] = new[j - 1];
                j -= 1;
            }
            w -= 1;
        }
        self.reindex();
    }

    /// About eight entries per bucket, 2^8 to 2^24 buckets.
    fn reindex(&mut self) {
        let n = self.sorted.len();
        self.bits = (n / 8).clamp(256, 1 << 24).next_power_of_two().trailing_zeros();
        let buckets = 1usize << self.bits;
        self.index.clear();
        self.index.reserve_exact(buckets + 1);
        let mut pos = 0usize;
        for b in 0..buckets {
            while pos < n && (prefix_be(self.sorted[pos][..16].try_into().expect("16 bytes")) >> (64 - self.bits)) < b as u64 {
                pos += 1;
            }
            self.index.push(pos as u32);
        }
        self.index.push(n as u32);
    }

    /// Every entry as `(lookup key, surrogate)`, in no particular order.
    pub(super) fn for_each(&self, mut f: impl FnMut(&[u8; 16], &Surrogate)) {
        for e in &self.sorted {
            let (k, s) = e.split_at(16);
            f(k.try_into().expect("16 bytes"), s.try_into().expect("16 bytes"));
        }
        for (k, s) in &self.recent {
            f(&k.0, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: u128, s: u8) -> [u8; ENTRY_LEN] {
        let mut e = [s; ENTRY_LEN];
        e[..16].copy_from_slice(&k.to_be_bytes());
        e
    }

    #[test]
    fn finds_every_entry_before_and_after_merges() {
        // Keys spread like HMAC output, plus the extremes.
        let mut keys: Vec<u128> = (0..50_000u128).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).collect();
        keys.push(u128::MAX); // i = 0 gives the key 0
        let (first, rest) = keys.split_at(20_000);
        let mut sorted: Vec<_> = first.iter().map(|&k| entry(k, 1)).collect();
        sorted.sort_unstable_by_key(key_order);
        let mut store = Store::from_sorted(sorted);
        for &k in rest {
            assert!(store.get(&k.to_be_bytes()).is_none());
            store.insert_new(k.to_be_bytes(), [2; 16]);
            store.maybe_merge();
        }
        assert_eq!(store.len(), keys.len());
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(store.get(&k.to_be_bytes()), Some(if i < 20_000 { [1; 16] } else { [2; 16] }), "key {i}");
        }
        store.merge();
        assert!(store.sorted.windows(2).all(|w| key_order(&w[0]) < key_order(&w[1])));
        assert!(store.get(&12345u128.to_be_bytes()).is_none());
        let mut n = 0;
        store.for_each(|_, _| n += 1);
        assert_eq!(n, keys.len());
    }
}
