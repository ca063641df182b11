//! Per-row 64-bit hashes of Arrow values and a small HyperLogLog over them.
//!
//! Hashes stay in memory only: they are never written, logged or reported.

use std::hash::Hasher;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use siphasher::sip::SipHasher13;

/// Fixed keys: hashes only need to be consistent within one report.
const K0: u64 = 0x6568_726c_6966_7431;
const K1: u64 = 0x7072_6f66_696c_6531;
/// The hash of a null (never stored as a value: callers skip nulls where it matters).
pub(crate) const NULL_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(K0, K1);
    h.write(b);
    h.finish()
}

/// Combines hashes of a tuple's members (order matters).
pub(crate) fn combine(acc: u64, h: u64) -> u64 {
    let mut s = SipHasher13::new_with_keys(K0, K1);
    s.write_u64(acc);
    s.write_u64(h);
    s.finish()
}

/// Calls `f(row, Some(hash))` for each non-null value of `a` and `f(row, None)` for nulls.
/// Values of one type hash the same across batches; text of non-text types goes
/// through Arrow's display formatting only for types without a fixed-width image.
pub(crate) fn for_each_hash(a: &ArrayRef, mut f: impl FnMut(usize, Option<u64>)) {
    let n = a.len();
    match a.data_type() {
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            (0..n).for_each(|i| f(i, s.is_valid(i).then(|| hash_bytes(s.value(i).as_bytes()))));
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            (0..n).for_each(|i| f(i, s.is_valid(i).then(|| hash_bytes(s.value(i).as_bytes()))));
        }
        DataType::Binary => {
            let s = a.as_binary::<i32>();
            (0..n).for_each(|i| f(i, s.is_valid(i).then(|| hash_bytes(s.value(i)))));
        }
        DataType::FixedSizeBinary(_) => {
            let s = a.as_fixed_size_binary();
            (0..n).for_each(|i| f(i, s.is_valid(i).then(|| hash_bytes(s.value(i)))));
        }
        DataType::Boolean => {
            let s = a.as_boolean();
            (0..n).for_each(|i| f(i, s.is_valid(i).then(|| hash_bytes(&[u8::from(s.value(i))]))));
        }
        dt if dt.primitive_width().is_some() => {
            let w = dt.primitive_width().expect("checked");
            let data = a.to_data();
            let values = &data.buffers()[0].as_slice()[data.offset() * w..];
            (0..n).for_each(|i| f(i, a.is_valid(i).then(|| hash_bytes(&values[i * w..(i + 1) * w]))));
        }
        _ => for_each_text_hash(a, f),
    }
}

/// Like [`for_each_hash`] but of each value's text, so `123` (int) and `"123"` (text)
/// hash the same: for references between columns of different types.
pub(crate) fn for_each_text_hash(a: &ArrayRef, mut f: impl FnMut(usize, Option<u64>)) {
    if let Some(s) = a.as_string_opt::<i32>() {
        return (0..a.len()).for_each(|i| f(i, s.is_valid(i).then(|| hash_bytes(s.value(i).as_bytes()))));
    }
    let fmt = arrow_cast::display::ArrayFormatter::try_new(a.as_ref(), &Default::default());
    let mut buf = String::new();
    for i in 0..a.len() {
        if a.is_null(i) {
            f(i, None);
            continue;
        }
        buf.clear();
        let h = match &fmt {
            Ok(fmt) => {
                use std::fmt::Write;
                let _ = write!(buf, "{}", fmt.value(i));
                hash_bytes(buf.as_bytes())
            }
            Err(_) => NULL_HASH ^ i as u64,
        };
        f(i, Some(h));
    }
}

/// HyperLogLog with 2^14 registers (about 0.8% standard error), 16 KiB.
pub(crate) struct HyperLogLog {
    registers: Vec<u8>,
}

const P: u32 = 14;
const M: usize = 1 << P;

impl HyperLogLog {
    pub(crate) fn new() -> Self {
        HyperLogLog { registers: vec![0; M] }
    }

    pub(crate) fn add(&mut self, hash: u64) {
        let idx = (hash >> (64 - P)) as usize;
        let rest = (hash << P) | (1 << (P - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.registers[idx] {
            self.registers[idx] = rank;
        }
    }

    /// The estimate, with the small-range (linear counting) correction.
    pub(crate) fn estimate(&self) -> u64 {
        let m = M as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let (sum, zeros) =
            self.registers.iter().fold((0.0f64, 0usize), |(s, z), &r| (s + 2f64.powi(-i32::from(r)), z + usize::from(r == 0)));
        let raw = alpha * m * m / sum;
        let e = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
        e.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hll_within_two_percent() {
        for n in [0u64, 1, 100, 10_000, 200_000] {
            let mut h = HyperLogLog::new();
            for i in 0..n {
                h.add(hash_bytes(format!("value-{i}").as_bytes()));
                h.add(hash_bytes(format!("value-{i}").as_bytes()));
            }
            let e = h.estimate() as f64;
            assert!((e - n as f64).abs() <= (n as f64 * 0.02).max(1.0), "n={n} estimate={e}");
        }
    }
}
