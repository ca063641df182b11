//! Keyed operators: pseudonyms (HMAC-SHA256), tokens (AES-SIV) and date-shift offsets
//! (SipHash-2-4). Each takes its own key, derived from the project key with a purpose
//! label that names the operator and the namespace.

use std::sync::Arc;

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::DataType;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ehrlift_core::ProjectKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use zeroize::Zeroizing;

/// Text of each value of a utf8 or int64 array (`None` for nulls), the form keyed
/// operators see: integers in plain decimal, so `007` read as int64 keys as `7`.
pub(crate) fn for_each_text(input: &dyn Array, mut f: impl FnMut(Option<&str>)) {
    match input.data_type() {
        DataType::Utf8 => input.as_string::<i32>().iter().for_each(f),
        DataType::Int64 => {
            let mut buf = itoa::Buffer::new();
            for v in input.as_primitive::<Int64Type>() {
                f(v.map(|v| buf.format(v)));
            }
        }
        DataType::UInt64 => {
            let mut buf = itoa::Buffer::new();
            for v in input.as_primitive::<UInt64Type>() {
                f(v.map(|v| buf.format(v)));
            }
        }
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => {
            // Every narrower integer fits in i64, so the text is the same as for int64.
            let wide = arrow_cast::cast(input, &DataType::Int64).expect("integers widen to int64");
            for_each_text(wide.as_ref(), f)
        }
        DataType::FixedSizeBinary(16) => {
            // UUIDs key as their canonical lowercase hyphenated text, as a text column holds them.
            let mut s = String::with_capacity(36);
            for v in input.as_fixed_size_binary() {
                match v {
                    Some(b) => {
                        s.clear();
                        for (i, byte) in b.iter().enumerate() {
                            if matches!(i, 4 | 6 | 8 | 10) {
                                s.push('-');
                            }
                            s.push_str(&format!("{byte:02x}"));
                        }
                        f(Some(&s));
                    }
                    None => f(None),
                }
            }
        }
        other => unreachable!("keyed rules are validated to text, integers and uuids, found {other}"),
    }
}

/// HMAC-SHA256 pseudonyms of one namespace: 32 lowercase hex digits (128 bits).
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl Pseudonymizer {
    /// Length of every pseudonym.
    pub const LEN: usize = 32;

    /// The pseudonymizer of `namespace` under `key`.
    pub fn new(key: &ProjectKey, namespace: &str) -> Self {
        let k = key.derive(&format!("ehrlift/pseudonym/v1/{namespace}"));
        Pseudonymizer { mac: <Hmac<Sha256> as Mac>::new_from_slice(k.as_ref()).expect("HMAC takes any key length") }
    }

    /// Writes the pseudonym of `value` into `out`.
    #[inline]
    pub fn pseudonym(&self, value: &[u8], out: &mut [u8; Self::LEN]) {
        let mut m = self.mac.clone();
        m.update(value);
        let tag = m.finalize().into_bytes();
        hex::encode_to_slice(&tag[..Self::LEN / 2], out).expect("32 hex digits fit");
    }

    /// Pseudonyms of a utf8 or int64 array; nulls stay null.
    pub fn apply(&self, input: &dyn Array) -> ArrayRef {
        let mut b = StringBuilder::with_capacity(input.len(), input.len() * Self::LEN);
        let mut buf = [0u8; Self::LEN];
        for_each_text(input, |v| match v {
            Some(v) => {
                self.pseudonym(v.as_bytes(), &mut buf);
                b.append_value(std::str::from_utf8(&buf).expect("hex is ASCII"));
            }
            None => b.append_null(),
        });
        Arc::new(b.finish())
    }
}

/// Deterministic, reversible tokens: AES-SIV (RFC 5297, AES-256) of the value with the
/// namespace as associated data, written as `tok_` and unpadded base64url.
pub struct Tokenizer {
    key: Zeroizing<[u8; 64]>,
    namespace: String,
}

/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "tok_";

impl Tokenizer {
    /// The tokenizer of `namespace` under `key`.
    pub fn new(key: &ProjectKey, namespace: &str) -> Self {
        Tokenizer { key: key.derive64(&format!("ehrlift/tokenize/v1/{namespace}")), namespace: namespace.to_owned() }
    }

    fn cipher(&self) -> Aes256Siv {
        Aes256Siv::new(self.key.as_ref().into())
    }

    /// Tokens of a utf8 or int64 array; nulls stay null.
    pub fn apply(&self, input: &dyn Array) -> ArrayRef {
        let mut cipher = self.cipher();
        let mut b = StringBuilder::with_capacity(input.len(), input.len() * 40);
        let mut text = String::new();
        for_each_text(input, |v| match v {
            Some(v) => {
                let ct = cipher.encrypt([self.namespace.as_bytes()], v.as_bytes()).expect("AES-SIV encrypts any length");
                text.clear();
                text.push_str(TOKEN_PREFIX);
                URL_SAFE_NO_PAD.encode_string(&ct, &mut text);
                b.append_value(&text);
            }
            None => b.append_null(),
        });
        Arc::new(b.finish())
    }

    /// The value of one token, or `None` when it is not a token of this key and
    /// namespace (wrong key, wrong column, damaged).
    pub fn reveal(&self, token: &str) -> Option<Zeroizing<String>> {
        let ct = URL_SAFE_NO_PAD.decode(token.trim().strip_prefix(TOKEN_PREFIX)?).ok()?;
        let pt = self.cipher().decrypt([self.namespace.as_bytes()], &ct).ok()?;
        String::from_utf8(pt).ok().map(Zeroizing::new)
    }
}

/// Per-patient date offsets: SipHash-2-4 (a keyed PRF for short inputs) of the patient
/// key picks a whole number of days in the plan's range, never 0.
#[derive(Clone)]
pub struct DateShifter {
    key: [u8; 16],
    lo: i32,
    hi: i32,
}

impl Drop for DateShifter {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl DateShifter {
    /// Offsets in `[lo, hi]` without 0, keyed by the project key.
    pub fn new(key: &ProjectKey, (lo, hi): (i32, i32)) -> Self {
        let k = key.derive("ehrlift/shift_date/v1");
        let mut key = [0u8; 16];
        key.copy_from_slice(&k[..16]);
        DateShifter { key, lo, hi }
    }

    /// The offset in days of `patient`.
    #[inline]
    pub fn offset(&self, patient: &[u8]) -> i32 {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(patient);
        let x = h.finish();
        let zero_inside = self.lo <= 0 && 0 <= self.hi;
        let count = (i64::from(self.hi) - i64::from(self.lo) + 1 - i64::from(zero_inside)) as u64;
        let d = self.lo as i64 + (x % count) as i64;
        (if zero_inside && d >= 0 { d + 1 } else { d }) as i32
    }

    /// Offsets of a batch of patient keys (`None` where the key is null or empty).
    pub fn offsets(&self, keys: &dyn Array) -> Vec<Option<i32>> {
        let mut out = Vec::with_capacity(keys.len());
        for_each_text(keys, |k| out.push(k.map(str::trim).filter(|k| !k.is_empty()).map(|k| self.offset(k.as_bytes()))));
        out
    }
}

/// Shifts a date32 or timestamp array by per-row offsets. A value whose offset is
/// `None` becomes null and its row is listed in `missing`.
pub fn shift(input: &dyn Array, offsets: &[Option<i32>], missing: &mut Vec<u32>) -> ArrayRef {
    const DAY_MICROS: i64 = 86_400_000_000;
    match input.data_type() {
        DataType::Date32 => Arc::new(shift_values(input.as_primitive::<Date32Type>(), offsets, missing, |v, o| v.checked_add(o))),
        DataType::Timestamp(_, tz) => {
            let a = input.as_primitive::<TimestampMicrosecondType>();
            let out = shift_values(a, offsets, missing, |v, o| v.checked_add(i64::from(o) * DAY_MICROS));
            Arc::new(out.with_timezone_opt(tz.clone()))
        }
        other => unreachable!("shift_date is validated to dates and timestamps, found {other}"),
    }
}

/// `add(value, offset)` per row; a value without an offset is null and listed in `missing`.
fn shift_values<T: ArrowPrimitiveType>(
    a: &PrimitiveArray<T>,
    offsets: &[Option<i32>],
    missing: &mut Vec<u32>,
    add: impl Fn(T::Native, i32) -> Option<T::Native>,
) -> PrimitiveArray<T> {
    a.iter()
        .zip(offsets)
        .enumerate()
        .map(|(i, (v, o))| match (v, o) {
            (Some(v), Some(o)) => add(v, *o),
            (Some(_), None) => {
                missing.push(i as u32);
                None
            }
            (None, _) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Date32Array, Int64Array, StringArray};

    fn key(b: u8) -> ProjectKey {
        ProjectKey::new("local", Zeroizing::new([b; 32]))
    }

    #[test]
    fn pseudonyms_are_keyed_namespaced_and_fixed_length() {
        let p = Pseudonymizer::new(&key(1), "mrn");
        let a = p.apply(&StringArray::from(vec![Some("MRN001"), None, Some("MRN001"), Some("")]));
        let a = a.as_string::<i32>();
        assert_eq!(a.value(0), a.value(2));
        assert!(a.is_null(1));
        assert_eq!(a.value(0).len(), 32);
        assert_eq!(a.value(3).len(), 32);
        let other_ns = Pseudonymizer::new(&key(1), "ssn").apply(&StringArray::from(vec!["MRN001"]));
        let other_key = Pseudonymizer::new(&key(2), "mrn").apply(&StringArray::from(vec!["MRN001"]));
        assert_ne!(other_ns.as_string::<i32>().value(0), a.value(0));
        assert_ne!(other_key.as_string::<i32>().value(0), a.value(0));
        // Integers key by their decimal text.
        let i = p.apply(&Int64Array::from(vec![7]));
        let s = p.apply(&StringArray::from(vec!["7"]));
        assert_eq!(i.as_string::<i32>().value(0), s.as_string::<i32>().value(0));
    }

    #[test]
    fn tokens_reveal_only_with_their_key_and_namespace() {
        let t = Tokenizer::new(&key(1), "mrn");
        let a = t.apply(&StringArray::from(vec![Some("MRN001"), None, Some("MRN001"), Some("Zoë ∑")]));
        let a = a.as_string::<i32>();
        assert_eq!(a.value(0), a.value(2));
        assert!(a.value(0).starts_with(TOKEN_PREFIX));
        assert_eq!(t.reveal(a.value(0)).as_deref().map(String::as_str), Some("MRN001"));
        assert_eq!(t.reveal(a.value(3)).as_deref().map(String::as_str), Some("Zoë ∑"));
        assert!(Tokenizer::new(&key(2), "mrn").reveal(a.value(0)).is_none());
        assert!(Tokenizer::new(&key(1), "ssn").reveal(a.value(0)).is_none());
        assert!(t.reveal("tok_AAAA").is_none() && t.reveal("MRN001").is_none());
    }

    #[test]
    fn offsets_stay_in_range_never_zero_and_follow_the_key() {
        let s = DateShifter::new(&key(1), (-3, 3));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2000 {
            let o = s.offset(format!("p{i}").as_bytes());
            assert!((-3..=3).contains(&o) && o != 0);
            seen.insert(o);
        }
        assert_eq!(seen.len(), 6);
        assert_eq!(s.offset(b"p1"), DateShifter::new(&key(1), (-3, 3)).offset(b"p1"));
        let differs =
            (0..50).any(|i| s.offset(format!("p{i}").as_bytes()) != DateShifter::new(&key(2), (-3, 3)).offset(format!("p{i}").as_bytes()));
        assert!(differs);
        let only_past = DateShifter::new(&key(1), (-10, -1));
        assert!((0..500).all(|i| (-10..=-1).contains(&only_past.offset(format!("{i}").as_bytes()))));
    }

    /// A small deterministic generator, so the property tests need no extra crate and
    /// every failure reproduces.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self) -> String {
            const ALPHABET: [char; 12] = ['a', 'Z', '0', '9', '-', ' ', 'é', 'ß', '中', '\'', '\n', '🙂'];
            (0..self.next() % 24).map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize]).collect()
        }
    }

    #[test]
    fn property_keyed_rules_are_deterministic_key_bound_and_reversible() {
        let mut rng = XorShift(0x5eed_1234_abcd_ef01);
        let values: Vec<String> = (0..2000).map(|_| rng.text()).collect();
        let array = StringArray::from(values.iter().map(String::as_str).collect::<Vec<_>>());
        let (k1, k2) = (key(11), key(12));
        let p1 = Pseudonymizer::new(&k1, "mrn").apply(&array);
        let p1 = p1.as_string::<i32>();
        let again = Pseudonymizer::new(&key(11), "mrn").apply(&array);
        let p2 = Pseudonymizer::new(&k2, "mrn").apply(&array);
        let p2 = p2.as_string::<i32>();
        let t = Tokenizer::new(&k1, "mrn");
        let tokens = t.apply(&array);
        let tokens = tokens.as_string::<i32>();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(p1.value(i), again.as_string::<i32>().value(i), "same input and key, same pseudonym");
            assert_ne!(p1.value(i), p2.value(i), "another key, another pseudonym");
            assert_ne!(p1.value(i), v, "a pseudonym never equals its input");
            assert_eq!(p1.value(i).len(), Pseudonymizer::LEN);
            assert_eq!(t.reveal(tokens.value(i)).as_deref().map(String::as_str), Some(v.as_str()), "tokens reverse");
        }
        // Equal inputs, and only they, share a pseudonym.
        let mut by_value = std::collections::HashMap::new();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(*by_value.entry(p1.value(i)).or_insert(v), v);
        }
    }

    #[test]
    fn property_shifts_keep_every_patients_intervals() {
        let mut rng = XorShift(0x0ddb_a11c_afe0_0001);
        let s = DateShifter::new(&key(3), (-400, 400));
        let n = 5000;
        let patients: Vec<String> = (0..n).map(|_| format!("p{}", rng.next() % 300)).collect();
        let days: Vec<i32> = (0..n).map(|_| (rng.next() % 40_000) as i32 - 10_000).collect();
        let keys = StringArray::from(patients.iter().map(String::as_str).collect::<Vec<_>>());
        let mut missing = vec![];
        let out = shift(&Date32Array::from(days.clone()), &s.offsets(&keys), &mut missing);
        let out = out.as_primitive::<Date32Type>();
        let mut offset = std::collections::HashMap::new();
        for i in 0..n {
            let o = out.value(i) - days[i];
            assert!((-400..=400).contains(&o) && o != 0);
            assert_eq!(*offset.entry(patients[i].as_str()).or_insert(o), o, "one offset per patient, so intervals are kept");
        }
        assert!(missing.is_empty());
    }

    #[test]
    fn shifting_preserves_a_patients_intervals() {
        let s = DateShifter::new(&key(1), (-365, 365));
        let keys = StringArray::from(vec![Some("a"), Some("a"), Some("b"), None, Some("a")]);
        let offs = s.offsets(&keys);
        let dates = Date32Array::from(vec![Some(100), Some(130), Some(100), Some(5), None]);
        let mut missing = vec![];
        let out = shift(&dates, &offs, &mut missing);
        let out = out.as_primitive::<Date32Type>();
        assert_eq!(out.value(1) - out.value(0), 30);
        assert_ne!(out.value(0), 100);
        assert!(out.is_null(3) && out.is_null(4));
        assert_eq!(missing, vec![3]);
    }
}
