//! The surrogate vault behind the `surrogate` privacy rule.
//!
//! HIPAA §164.514(c) lets a de-identified data set carry a re-identification code only if
//! the code is not derived from the identifier. So `surrogate` gives each distinct source
//! value a *random* identifier (a UUID v4 drawn from the operating system's CSPRNG) and
//! keeps it consistent — the same value gets the same surrogate in every table, source and
//! run — through an encrypted crosswalk stored with the destination under
//! `_ehrlift/vault/`.
//!
//! This module does no I/O. The pipeline reads the segment objects and hands their bytes to
//! [`Vault::open`]; it writes what [`Vault::take_pending`] returns *durably, before*
//! committing the part that uses those surrogates, and compacts with [`Vault::seal_all`].
//! If writing a pending segment fails, retry the same bytes or stop the run: the entries are
//! not handed out again (a later `seal_all` does contain them).
//!
//! # What is kept
//!
//! Source values never sit in memory maps or on disk. An entry is
//! `lookup key (16 bytes) → surrogate (16 bytes)`, where the lookup key is
//! `HMAC-SHA256(keys.lookup, len(namespace) as u64 LE || namespace || value)` truncated to
//! 16 bytes. The length prefix keeps namespaces apart (`("ab", "c")` ≠ `("a", "bc")`).
//!
//! # Segment format, version 1
//!
//! All integers little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EHRLVLT1` |
//! | 8 | 2 | format version, `1` |
//! | 10 | 8 | entry count `n` |
//! | 18 | 12 | random nonce |
//! | 30 | 32·n | AES-256-GCM ciphertext of the entries, each `lookup key ‖ surrogate`, sorted by lookup key (bytewise), no duplicates |
//! | 30 + 32·n | 16 | GCM tag |
//!
//! The 30-byte header is the associated data, so the count, version and nonce are
//! authenticated too: a wrong key or any changed, missing or added byte is an error.
//!
//! # Limits
//!
//! - Memory: entries live in a sorted array (exactly 32 bytes each) with a radix index
//!   (about 1 byte per entry), plus a hash map of recent assignments that is merged into
//!   the array whenever it reaches a quarter of it; and 2–4 bytes per entry for the
//!   surrogate filter. Opening holds the decrypted segments (32 bytes per entry) until
//!   the array is built and checked; `seal_all` briefly needs another 32 bytes per entry.
//! - A segment holds at most 2³¹ entries (GCM's 64 GiB message limit). Nonces are random,
//!   so keep well under 2³² segments per seal key (rotate the project key long before).
//! - The vault hides the crosswalk from whoever lacks the keys. Whoever has `lookup` and a
//!   candidate identifier can find its surrogate — that is its purpose — and so can test
//!   guesses. It does not hide how many entries a segment has or when segments were
//!   written, and it cannot tell that a whole segment was deleted or replaced by an older
//!   one (the run manifest's object hashes must catch that): a lost segment means new
//!   surrogates for its values, not wrong ones.
//! - The raw keys are zeroized on drop, and so are the AES round keys (with the `aes` and
//!   `ghash` crates' `zeroize` features). The HMAC pad states derived per call live on the
//!   stack and are not wiped (hmac 0.12 does not support it). The crosswalk itself is not
//!   wiped: without `lookup` it says nothing about any source value.

mod store;

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use arrow_array::builder::StringBuilder;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use store::Store;

/// The first 8 bytes of every segment.
pub const MAGIC: &[u8; 8] = b"EHRLVLT1";
/// The segment format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 8 + 2 + 8 + NONCE_LEN;
const ENTRY_LEN: usize = 32;

type Surrogate = [u8; 16];
type HmacSha256 = Hmac<Sha256>;

/// Keys of a vault, derived by the caller from the project key (32 bytes each).
/// Zeroized on drop; never printed.
pub struct VaultKeys {
    /// Keys the HMAC that turns `(namespace, value)` into a lookup key.
    pub lookup: Zeroizing<[u8; 32]>,
    /// Keys AES-256-GCM for the segments.
    pub seal: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VaultKeys { .. }")
    }
}

/// Why a vault could not be opened. Names segments, never their content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The segment is not a well-formed vault segment.
    #[error("vault segment {segment} is corrupt: {reason}")]
    Corrupt { segment: String, reason: &'static str },
    /// AES-GCM authentication failed.
    #[error(
        "vault segment {segment} failed authentication: the vault was written with another \
         key, or the segment was altered after it was written"
    )]
    WrongKey { segment: String },
    /// The segment was written by a newer (or unknown) format.
    #[error("vault segment {segment} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion { segment: String, found: u16, supported: u16 },
    /// Two segments give one value different surrogates.
    #[error("vault segments {first} and {second} give the same value two different surrogates; the vault is corrupt")]
    Conflict { first: String, second: String },
    /// Two different values share one surrogate.
    #[error("vault segments {first} and {second} give two different values the same surrogate; the vault is corrupt")]
    SharedSurrogate { first: String, second: String },
}

/// A surrogate vault: the consistent, random value → surrogate crosswalk. `Send + Sync`.
pub struct Vault {
    keys: VaultKeys,
    inner: Mutex<Inner>,
    segments: usize,
}

struct Inner {
    map: Store,
    filter: SurrogateFilter,
    /// Entries assigned since the last `take_pending`, as `lookup key ‖ surrogate`.
    pending: Vec<[u8; ENTRY_LEN]>,
}

impl Vault {
    /// Opens a vault from its existing segments (name, bytes), in any order. An empty
    /// iterator makes a new vault. Identical entries in several segments (compaction
    /// overlap) are fine; anything else inconsistent is an error.
    pub fn open(keys: VaultKeys, segments: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<Self, VaultError> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&keys.seal[..]));
        let mut segs: Vec<(String, Vec<u8>)> = segments.into_iter().collect();
        let mut total = 0usize;
        for (name, bytes) in &mut segs {
            total += decrypt_segment(&cipher, name, bytes)?;
        }

        // All entries, sorted by key; identical repeats (compaction overlap) collapse, and
        // one key with two surrogates is a conflict between the segments holding them.
        // The segments' bytes stay until the checks are done, to name segments in errors.
        let mut all: Vec<[u8; ENTRY_LEN]> = Vec::with_capacity(total);
        for (_, bytes) in &segs {
            all.extend_from_slice(entries(bytes));
        }
        all.sort_unstable();
        all.dedup();
        if let Some(w) = all.windows(2).find(|w| w[0][..16] == w[1][..16]) {
            let name = |e: &[u8; ENTRY_LEN]| segment_with_entry(&segs, e).cloned().unwrap_or_default();
            return Err(VaultError::Conflict { first: name(&w[0]), second: name(&w[1]) });
        }
        let map = Store::from_sorted(all);

        // Build the filter; any surrogate whose filter bit is already taken is a suspect,
        // and only suspects are compared exactly, so a clean 1M vault costs one more pass.
        let mut filter = SurrogateFilter::for_entries(map.len());
        let mut suspect = SurrogateFilter::for_entries(map.len());
        let mut any_suspect = false;
        map.for_each(|_, s| {
            if !filter.insert(s) {
                suspect.insert(s);
                any_suspect = true;
            }
        });
        if any_suspect {
            let mut hits: Vec<(Surrogate, [u8; 16])> = Vec::new();
            map.for_each(|k, s| {
                if suspect.contains(s) {
                    hits.push((*s, *k));
                }
            });
            hits.sort_unstable();
            if let Some(w) = hits.windows(2).find(|w| w[0].0 == w[1].0) {
                let name = |k: &[u8; 16]| segment_holding(&segs, k).cloned().unwrap_or_default();
                return Err(VaultError::SharedSurrogate { first: name(&w[0].1), second: name(&w[1].1) });
            }
        }

        let segments = segs.len();
        Ok(Self { keys, inner: Mutex::new(Inner { map, filter, pending: Vec::new() }), segments })
    }

    /// Appends the surrogate of each value in `namespace` to `out`, assigning a new random
    /// one to values not seen before. `None` stays `None` (a null). Surrogates are UUID v4
    /// text, 36 characters. Takes the lock once, after hashing the whole batch.
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn surrogates<'a>(&self, namespace: &str, values: impl Iterator<Item = Option<&'a str>>, out: &mut StringBuilder) {
        let mut slots = self.lookup_keys(namespace, values);
        self.resolve(&mut slots);
        for slot in &slots {
            match slot {
                Some(s) => out.append_value(uuid_text(s).as_str()),
                None => out.append_null(),
            }
        }
    }

    /// The surrogate of one value (for tests and tools).
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn surrogate(&self, namespace: &str, value: &str) -> String {
        let mut slots = self.lookup_keys(namespace, std::iter::once(Some(value)));
        self.resolve(&mut slots);
        slots[0].map(|s| uuid_text(&s).as_str().to_owned()).unwrap_or_default()
    }

    /// Entries assigned since the last call, sealed as one new segment (`None` if none).
    /// Write it durably *before* committing the part that uses them. Everything assigned
    /// before this call is in its result or an earlier one, exactly once.
    pub fn take_pending(&self) -> Option<Vec<u8>> {
        let pending = std::mem::take(&mut self.lock().pending);
        if pending.is_empty() {
            return None;
        }
        let mut buf = Vec::with_capacity(HEADER_LEN + pending.len() * ENTRY_LEN + TAG_LEN);
        buf.resize(HEADER_LEN, 0);
        buf.extend_from_slice(pending.as_flattened());
        drop(pending);
        Some(self.seal(buf))
    }

    /// Every entry sealed as one segment, for compaction: write it, then delete the segments
    /// it replaces. Pending entries stay pending (a later `take_pending` repeats them, which
    /// is harmless).
    pub fn seal_all(&self) -> Vec<u8> {
        let buf = {
            let inner = self.lock();
            let mut buf = Vec::with_capacity(HEADER_LEN + inner.map.len() * ENTRY_LEN + TAG_LEN);
            buf.resize(HEADER_LEN, 0);
            inner.map.for_each(|k, s| {
                buf.extend_from_slice(k);
                buf.extend_from_slice(s);
            });
            buf
        };
        self.seal(buf)
    }

    /// Entries in a sealed segment, from its header (0 if it is not one).
    pub fn entries_in(segment: &[u8]) -> u64 {
        match segment.get(10..18) {
            Some(c) if segment.starts_with(MAGIC) => u64::from_le_bytes(c.try_into().expect("8 bytes")),
            _ => 0,
        }
    }

    /// Entries assigned and not yet taken by [`Vault::take_pending`].
    pub fn pending_len(&self) -> usize {
        self.lock().pending.len()
    }

    /// Number of entries in the vault.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the vault has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments the vault was opened from.
    pub fn segments(&self) -> usize {
        self.segments
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section keeps `map`, `pending` and `filter` consistent at each
        // point it can panic (a filter bit set ahead of its entry only causes a redraw),
        // so a poisoned lock still guards a good vault.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// HMACs the batch without holding the lock.
    fn lookup_keys<'a>(&self, namespace: &str, values: impl Iterator<Item = Option<&'a str>>) -> Vec<Option<[u8; 16]>> {
        let mut base = <HmacSha256 as Mac>::new_from_slice(&self.keys.lookup[..]).expect("HMAC accepts keys of any length");
        base.update(&(namespace.len() as u64).to_le_bytes());
        base.update(namespace.as_bytes());
        values
            .map(|v| {
                v.map(|v| {
                    let mut mac = base.clone();
                    mac.update(v.as_bytes());
                    let tag = mac.finalize().into_bytes();
                    let mut key = [0u8; 16];
                    key.copy_from_slice(&tag[..16]);
                    key
                })
            })
            .collect()
    }

    /// Replaces each lookup key in `slots` with its surrogate, assigning new ones.
    fn resolve(&self, slots: &mut [Option<[u8; 16]>]) {
        let mut guard = self.lock();
        let Inner { map, filter, pending } = &mut *guard;
        let mut misses = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Some(key) = slot {
                match map.get(key) {
                    Some(s) => *key = s,
                    None => misses.push(i),
                }
            }
        }
        if misses.is_empty() {
            return;
        }
        if filter.needs_room(map.len() + misses.len()) {
            filter.rebuild(map.len() + misses.len(), |f| map.for_each(|_, s| _ = f.insert(s)));
        }
        pending.reserve(misses.len());
        // One getrandom call for the whole batch. It is made under the lock because only
        // here do we know how many values are new; it costs tens of microseconds.
        let mut pool = RandomPool::new(misses.len());
        for i in misses {
            let Some(key) = slots[i] else { continue };
            let sur = match map.get(&key) {
                // The value occurred earlier in this same batch.
                Some(s) => s,
                None => {
                    let sur = loop {
                        let candidate = pool.next_uuid();
                        if filter.insert(&candidate) {
                            break candidate;
                        }
                    };
                    map.insert_new(key, sur);
                    let mut entry = [0u8; ENTRY_LEN];
                    entry[..16].copy_from_slice(&key);
                    entry[16..].copy_from_slice(&sur);
                    pending.push(entry);
                    sur
                }
            };
            slots[i] = Some(sur);
        }
        map.maybe_merge();
    }

    /// Sorts, encrypts and frames `buf` (`HEADER_LEN` placeholder bytes, then entries).
    fn seal(&self, mut buf: Vec<u8>) -> Vec<u8> {
        let count = (buf.len() - HEADER_LEN) / ENTRY_LEN;
        let (head, body) = buf.split_at_mut(HEADER_LEN);
        body.as_chunks_mut::<ENTRY_LEN>().0.sort_unstable_by_key(key_order);
        head[..8].copy_from_slice(MAGIC);
        head[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        head[10..18].copy_from_slice(&(count as u64).to_le_bytes());
        fill_random(&mut head[18..HEADER_LEN]);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.keys.seal[..]));
        let nonce = *Nonce::from_slice(&head[18..HEADER_LEN]);
        let tag = cipher.encrypt_in_place_detached(&nonce, head, body).expect("a segment holds fewer than 2^31 entries");
        buf.extend_from_slice(&tag);
        buf
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Vault")
            .field("entries", &inner.map.len())
            .field("pending", &inner.pending.len())
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

/// Checks and decrypts one segment in place; returns its entry count.
fn decrypt_segment(cipher: &Aes256Gcm, name: &str, bytes: &mut [u8]) -> Result<usize, VaultError> {
    let corrupt = |reason| VaultError::Corrupt { segment: name.to_owned(), reason };
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(corrupt("shorter than a segment header"));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("not a vault segment (bad magic)"));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != FORMAT_VERSION {
        return Err(VaultError::UnsupportedVersion { segment: name.to_owned(), found: version, supported: FORMAT_VERSION });
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&bytes[10..18]);
    let count = u64::from_le_bytes(count);
    let body_len = bytes.len() - HEADER_LEN - TAG_LEN;
    if !body_len.is_multiple_of(ENTRY_LEN) || (body_len / ENTRY_LEN) as u64 != count {
        return Err(corrupt("length does not match the entry count"));
    }
    let (head, rest) = bytes.split_at_mut(HEADER_LEN);
    let (body, tag) = rest.split_at_mut(body_len);
    let nonce = *Nonce::from_slice(&head[18..HEADER_LEN]);
    let tag = *Tag::from_slice(tag);
    cipher.decrypt_in_place_detached(&nonce, head, body, &tag).map_err(|_| VaultError::WrongKey { segment: name.to_owned() })?;
    let entries = body.as_chunks::<ENTRY_LEN>().0;
    // Authentic but unsorted means a faulty writer; sortedness also lets `segment_holding`
    // binary-search.
    if entries.windows(2).any(|w| key_order(&w[0]) >= key_order(&w[1])) {
        return Err(corrupt("entries are not sorted by lookup key, or repeat one"));
    }
    Ok(entries.len())
}

/// The entries of a segment already checked and decrypted by `decrypt_segment`.
fn entries(bytes: &[u8]) -> &[[u8; ENTRY_LEN]] {
    bytes[HEADER_LEN..bytes.len() - TAG_LEN].as_chunks::<ENTRY_LEN>().0
}

/// Bytewise order of an entry's lookup key, as one integer compare instead of a memcmp.
fn key_order(e: &[u8; ENTRY_LEN]) -> u128 {
    let mut k = [0u8; 16];
    k.copy_from_slice(&e[..16]);
    u128::from_be_bytes(k)
}

/// The name of the first decrypted segment that holds exactly `entry`.
fn segment_with_entry<'s>(segs: &'s [(String, Vec<u8>)], entry: &[u8; ENTRY_LEN]) -> Option<&'s String> {
    segs.iter()
        .find(|(_, bytes)| entries(bytes).binary_search_by_key(&key_order(entry), key_order).is_ok_and(|i| entries(bytes)[i] == *entry))
        .map(|(name, _)| name)
}

/// The name of the first decrypted segment that holds `key`.
fn segment_holding<'s>(segs: &'s [(String, Vec<u8>)], key: &[u8; 16]) -> Option<&'s String> {
    segs.iter().find(|(_, bytes)| entries(bytes).binary_search_by_key(&u128::from_be_bytes(*key), key_order).is_ok()).map(|(name, _)| name)
}

fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed: {e}");
    }
}

/// Random bytes for a batch, drawn with one system call (more only after many redraws).
struct RandomPool {
    buf: Vec<u8>,
    pos: usize,
}

impl RandomPool {
    fn new(needed: usize) -> Self {
        // Slack for redraws: the filter rejects at most 1 in 16 candidates.
        let mut buf = vec![0u8; (needed + needed / 8 + 4) * 16];
        fill_random(&mut buf);
        Self { buf, pos: 0 }
    }

    fn next_uuid(&mut self) -> Surrogate {
        if self.pos + 16 > self.buf.len() {
            fill_random(&mut self.buf);
            self.pos = 0;
        }
        let mut s = [0u8; 16];
        s.copy_from_slice(&self.buf[self.pos..self.pos + 16]);
        self.pos += 16;
        s[6] = (s[6] & 0x0f) | 0x40; // version 4
        s[8] = (s[8] & 0x3f) | 0x80; // RFC 9562 variant
        s
    }
}

/// Formats a surrogate as lowercase hyphenated UUID text.
fn uuid_text(s: &Surrogate) -> UuidText {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut pos = 0;
    for (i, b) in s.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            pos += 1;
        }
        out[pos] = HEX[usize::from(b >> 4)];
        out[pos + 1] = HEX[usize::from(b & 0x0f)];
        pos += 2;
    }
    UuidText(out)
}

struct UuidText([u8; 36]);

impl UuidText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits and hyphens are ASCII")
    }
}

fn prefix_u64(b: &[u8; 16]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&b[..8]);
    u64::from_le_bytes(p)
}

/// A one-hash Bloom filter over surrogates, at least 16 bits per entry.
///
/// It guarantees a fresh surrogate never repeats an existing one: a candidate whose bit is
/// set is redrawn, whether or not it truly collides. That rejects 3–6% of draws (costing
/// only random bytes) and needs 2–4 bytes per entry, where an exact reverse set would
/// double the vault's memory to guard against a 2⁻¹²² event.
struct SurrogateFilter {
    words: Vec<u64>,
}

impl SurrogateFilter {
    const BITS_PER_ENTRY: usize = 16;

    fn for_entries(n: usize) -> Self {
        let bits = (n.max(1024) * Self::BITS_PER_ENTRY).next_power_of_two();
        Self { words: vec![0; bits / 64] }
    }

    fn bit(&self, s: &Surrogate) -> (usize, u64) {
        // Bytes 0..8 are random except the version nibble at bits 52..56, which a filter
        // below 2^52 bits never reaches.
        let i = prefix_u64(s) & (self.words.len() as u64 * 64 - 1);
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn contains(&self, s: &Surrogate) -> bool {
        let (w, m) = self.bit(s);
        self.words[w] & m != 0
    }

    /// Sets the surrogate's bit; false if it was already set.
    fn insert(&mut self, s: &Surrogate) -> bool {
        let (w, m) = self.bit(s);
        let fresh = self.words[w] & m == 0;
        self.words[w] |= m;
        fresh
    }

    /// Whether `n` entries would exceed the budget.
    fn needs_room(&self, n: usize) -> bool {
        n * Self::BITS_PER_ENTRY > self.words.len() * 64
    }

    /// Grows to hold `n` entries and refills with `fill`.
    fn rebuild(&mut self, n: usize, fill: impl FnOnce(&mut Self)) {
        *self = Self::for_entries(n);
        fill(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use std::collections::HashSet;
    use std::sync::atomic::Ordering;

    fn keys(n: u8) -> VaultKeys {
        VaultKeys { lookup: Zeroizing::new([n; 32]), seal: Zeroizing::new([n.wrapping_add(100); 32]) }
    }

    fn named(segs: Vec<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
        segs.into_iter().enumerate().map(|(i, b)| (format!("_ehrlift/vault/{i:06}.seg"), b)).collect()
    }

    fn is_uuid_v4(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
            })
            && b[14] == b'4'
            && matches!(b[19], b'8' | b'9' | b'a' | b'b')
    }

    #[test]
    fn same_value_same_surrogate_across_calls_and_reopen() {
        let v = Vault::open(keys(1), []).unwrap();
        let a = v.surrogate("patient", "MRN-0001");
        assert_eq!(a, v.surrogate("patient", "MRN-0001"));
        let pending = v.take_pending().unwrap();
        assert!(v.take_pending().is_none());
        let b = v.surrogate("patient", "MRN-0002");
        let pending2 = v.take_pending().unwrap();

        let reopened = Vault::open(keys(1), named(vec![pending2, pending])).unwrap();
        assert_eq!((reopened.len(), reopened.segments()), (2, 2));
        assert_eq!(reopened.surrogate("patient", "MRN-0001"), a);
        assert_eq!(reopened.surrogate("patient", "MRN-0002"), b);
        assert!(reopened.take_pending().is_none(), "known values are not pending again");

        let compacted = Vault::open(keys(1), named(vec![reopened.seal_all()])).unwrap();
        assert_eq!(compacted.surrogate("patient", "MRN-0001"), a);
        assert_eq!(compacted.surrogate("patient", "MRN-0002"), b);
    }

    #[test]
    fn namespaces_are_separate_and_length_prefixed() {
        let v = Vault::open(keys(1), []).unwrap();
        assert_ne!(v.surrogate("patient", "42"), v.surrogate("encounter", "42"));
        assert_ne!(v.surrogate("ab", "c"), v.surrogate("a", "bc"));
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn distinct_values_get_distinct_valid_uuids_never_the_input() {
        let v = Vault::open(keys(1), []).unwrap();
        let values: Vec<String> = (0..20_000).map(|i| format!("{i:08x}-0000-4000-8000-000000000000")).collect();
        let mut out = StringBuilder::new();
        for chunk in values.chunks(4096) {
            v.surrogates("patient", chunk.iter().map(|s| Some(s.as_str())), &mut out);
        }
        let arr = out.finish();
        let mut seen = HashSet::new();
        for (i, s) in arr.iter().enumerate() {
            let s = s.unwrap();
            assert!(is_uuid_v4(s), "not a UUID v4: {s}");
            assert_ne!(s, values[i]);
            assert!(seen.insert(s.to_owned()), "surrogate repeated");
        }
        assert_eq!(v.len(), 20_000);
    }

    #[test]
    fn none_passes_through_and_repeats_in_a_batch_agree() {
        let v = Vault::open(keys(1), []).unwrap();
        let mut out = StringBuilder::new();
        let input = [Some("x"), None, Some("y"), Some("x"), None];
        v.surrogates("patient", input.into_iter(), &mut out);
        let arr = out.finish();
        assert_eq!(arr.len(), 5);
        assert_eq!((arr.null_count(), arr.is_null(1), arr.is_null(4)), (2, true, true));
        assert_eq!(arr.value(0), arr.value(3));
        assert_ne!(arr.value(0), arr.value(2));
        assert_eq!(v.len(), 2);
        assert_eq!(v.take_pending().map(|p| p.len()), Some(HEADER_LEN + 2 * ENTRY_LEN + TAG_LEN));
    }

    #[test]
    fn wrong_key_is_rejected_naming_the_segment() {
        let v = Vault::open(keys(1), []).unwrap();
        v.surrogate("patient", "MRN-0001");
        let err = Vault::open(keys(2), named(vec![v.take_pending().unwrap()])).unwrap_err();
        assert!(matches!(err, VaultError::WrongKey { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("_ehrlift/vault/000000.seg") && msg.contains("another key"), "{msg}");
        assert!(!msg.contains("MRN"));
    }

    #[test]
    fn every_flipped_byte_and_bad_length_is_an_error() {
        let v = Vault::open(keys(1), []).unwrap();
        v.surrogate("patient", "a");
        v.surrogate("patient", "b");
        let seg = v.take_pending().unwrap();
        for i in 0..seg.len() {
            for bit in [0x01, 0x80] {
                let mut bad = seg.clone();
                bad[i] ^= bit;
                assert!(Vault::open(keys(1), named(vec![bad])).is_err(), "flip at byte {i} accepted");
            }
        }
        for bad in [seg[..seg.len() - 1].to_vec(), [seg.as_slice(), &[0]].concat(), Vec::new()] {
            assert!(matches!(Vault::open(keys(1), named(vec![bad])), Err(VaultError::Corrupt { .. })));
        }
        let mut future = seg.clone();
        future[8] = 2;
        assert!(matches!(Vault::open(keys(1), named(vec![future])), Err(VaultError::UnsupportedVersion { found: 2, .. })));
    }

    #[test]
    fn identical_overlap_is_fine_but_conflicts_are_errors() {
        let v = Vault::open(keys(1), []).unwrap();
        v.surrogate("patient", "a");
        let first = v.take_pending().unwrap();
        v.surrogate("patient", "b");
        let all = v.seal_all();
        let ok = Vault::open(keys(1), named(vec![first.clone(), all])).unwrap();
        assert_eq!(ok.len(), 2);

        // Another vault with the same keys that assigned "a" independently.
        let other = Vault::open(keys(1), []).unwrap();
        other.surrogate("patient", "a");
        let segs = named(vec![first, other.take_pending().unwrap()]);
        let err = Vault::open(keys(1), segs).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, VaultError::Conflict { .. }));
        assert!(msg.contains("000000.seg") && msg.contains("000001.seg"), "{msg}");
    }

    #[test]
    fn shared_surrogate_and_unsorted_segments_are_errors() {
        let v = Vault::open(keys(1), []).unwrap();
        let entry = |k: u8, s: u8| [[k; 16], [s; 16]].concat();
        let seal = |entries: Vec<u8>| v.seal([vec![0; HEADER_LEN], entries].concat());
        let segs = named(vec![seal(entry(1, 7)), seal(entry(2, 7))]);
        let err = Vault::open(keys(1), segs).unwrap_err();
        assert!(matches!(err, VaultError::SharedSurrogate { .. }), "{err:?}");

        // `seal` sorts, so frame an unsorted segment by hand.
        let mut seg = [MAGIC.as_slice(), &1u16.to_le_bytes(), &2u64.to_le_bytes(), &[9; 12]].concat();
        let mut body = [entry(2, 2), entry(1, 1)].concat();
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[101; 32]));
        let tag = cipher.encrypt_in_place_detached(Nonce::from_slice(&[9; 12]), &seg, &mut body).unwrap();
        seg.extend_from_slice(&body);
        seg.extend_from_slice(&tag);
        let err = Vault::open(keys(1), named(vec![seg])).unwrap_err();
        assert!(matches!(err, VaultError::Corrupt { reason, .. } if reason.contains("sorted")));
    }

    #[test]
    fn concurrent_assign_and_take_pending_lose_and_duplicate_nothing() {
        let v = Vault::open(keys(1), []).unwrap();
        let (batches, per) = (200, 500);
        // Every 10th batch the writer waits for one more `take_pending`, so the two really
        // interleave even on one core.
        let takes = std::sync::atomic::AtomicUsize::new(0);
        let (outputs, segs) = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut out = StringBuilder::new();
                for b in 0..batches {
                    if b % 10 == 9 {
                        let seen = takes.load(Ordering::SeqCst);
                        while takes.load(Ordering::SeqCst) == seen {
                            std::thread::yield_now();
                        }
                    }
                    let vals: Vec<String> = (0..per).map(|i| format!("p{}", (b * per + i) / 2)).collect();
                    v.surrogates("patient", vals.iter().map(|s| Some(s.as_str())), &mut out);
                }
                out.finish()
            });
            let mut segs = Vec::new();
            while !writer.is_finished() {
                segs.extend(v.take_pending());
                takes.fetch_add(1, Ordering::SeqCst);
                std::thread::yield_now();
            }
            let out = writer.join().unwrap();
            segs.extend(v.take_pending());
            (out, segs)
        });
        let distinct = batches * per / 2;
        let sealed: usize = segs.iter().map(|s| (s.len() - HEADER_LEN - TAG_LEN) / ENTRY_LEN).sum();
        assert_eq!(sealed, distinct, "every entry sealed exactly once");
        assert!(segs.len() >= batches / 10, "take_pending ran alongside the writer");
        let reopened = Vault::open(keys(1), named(segs)).unwrap();
        assert_eq!(reopened.len(), distinct);
        for i in (0..batches * per).step_by(37) {
            assert_eq!(reopened.surrogate("patient", &format!("p{}", i / 2)), outputs.value(i));
        }
        assert!(reopened.take_pending().is_none());
    }

    #[test]
    fn vault_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Vault>();
    }

    #[test]
    fn debug_shows_counts_only() {
        let v = Vault::open(keys(7), []).unwrap();
        v.surrogate("patient", "MRN-0001");
        let dbg = format!("{v:?} {:?}", keys(7));
        assert_eq!(dbg, "Vault { entries: 1, pending: 1, segments: 0, .. } VaultKeys { .. }");
    }

    #[test]
    fn filter_grows_and_never_admits_a_known_surrogate() {
        let mut f = SurrogateFilter::for_entries(0);
        let start = f.words.len();
        let surs: Vec<Surrogate> = (0..5000u32)
            .map(|i| {
                let mut s = [0u8; 16];
                s[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
                s
            })
            .collect();
        for (n, s) in surs.iter().enumerate() {
            if f.needs_room(n + 1) {
                f.rebuild(n + 1, |f| surs[..n].iter().for_each(|s| _ = f.insert(s)));
            }
            f.insert(s);
        }
        assert!(f.words.len() > start);
        assert!(surs.iter().all(|s| f.contains(s)));
    }
}
