//! Packed decimal (COBOL COMP-3): two BCD digits a byte, the last nibble the sign
//! (C, A, E, F positive; B, D negative). A field of `n` bytes holds `2n-1` digits.
//! Packed bytes are raw: never decoded through the text encoding. A field of nothing but
//! spaces (of its encoding) is blank: it cannot be a packed number (its last nibble is
//! no sign), and COBOL writes spaces into fields it never filled.

use crate::error::Reason;
use crate::layout::Encoding;
use crate::number::{signed_field, write_implied};

/// Writes a packed field as canonical text (nothing when blank).
pub(crate) fn decode(bytes: &[u8], enc: Encoding, decimals: usize, digits: &mut Vec<u8>, out: &mut String) -> Result<(), Reason> {
    let Some((head, last)) = signed_field(bytes, enc) else { return Ok(()) };
    digits.clear();
    for &b in head {
        let (hi, lo) = (b >> 4, b & 0x0F);
        if hi > 9 || lo > 9 {
            return Err(Reason::InvalidPacked);
        }
        digits.extend([b'0' + hi, b'0' + lo]);
    }
    let (hi, sign) = (last >> 4, last & 0x0F);
    if hi > 9 {
        return Err(Reason::InvalidPacked);
    }
    digits.push(b'0' + hi);
    let neg = match sign {
        0xA | 0xC | 0xE | 0xF => false,
        0xB | 0xD => true,
        _ => return Err(Reason::InvalidPacked),
    };
    write_implied(out, neg, digits, decimals);
    Ok(())
}

/// Encodes `value` (unscaled: 123.45 with 2 decimals is 12345) as `n_bytes` of packed
/// decimal with sign nibble C (positive) or D (negative).
///
/// # Panics
/// If `n_bytes` is 0 or `value` has more than `2 * n_bytes - 1` digits.
pub fn encode(value: i128, n_bytes: usize) -> Vec<u8> {
    let magnitude = value.unsigned_abs().to_string();
    let n_digits = (2 * n_bytes).saturating_sub(1);
    assert!(n_bytes >= 1 && magnitude.len() <= n_digits, "a packed value has more digits than its field holds");
    let nibbles: Vec<u8> = std::iter::repeat_n(0, n_digits - magnitude.len())
        .chain(magnitude.bytes().map(|b| b - b'0'))
        .chain([if value < 0 { 0x0D } else { 0x0C }])
        .collect();
    nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], d: usize) -> Result<String, Reason> {
        let mut out = String::new();
        decode(bytes, Encoding::Cp037, d, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    #[test]
    fn signs_and_decimals() {
        assert_eq!(dec(&[0x12, 0x34, 0x5C], 2).unwrap(), "123.45");
        assert_eq!(dec(&[0x12, 0x34, 0x5D], 2).unwrap(), "-123.45");
        assert_eq!(dec(&[0x12, 0x34, 0x5F], 0).unwrap(), "12345");
        assert_eq!(dec(&[0x00, 0x0B], 0).unwrap(), "0");
        assert_eq!(dec(&[0x1A], 0).unwrap(), "1");
        assert_eq!(dec(&[0x40, 0x40], 0).unwrap(), "");
        assert_eq!(dec(&[0x1C, 0x5C], 0), Err(Reason::InvalidPacked));
        assert_eq!(dec(&[0x12, 0x39], 0), Err(Reason::InvalidPacked));
        assert_eq!(dec(&[0xA1, 0x2C], 0), Err(Reason::InvalidPacked));
    }

    #[test]
    fn encode_round_trips() {
        assert_eq!(encode(12345, 3), [0x12, 0x34, 0x5C]);
        assert_eq!(encode(-7, 2), [0x00, 0x7D]);
        for v in [0i128, 1, -1, 9_999_999, -9_999_999, 10_i128.pow(37) - 1] {
            let n = 19;
            assert_eq!(dec(&encode(v, n), 0).unwrap(), v.to_string());
        }
    }
}
