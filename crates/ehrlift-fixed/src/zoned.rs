//! Zoned decimal (COBOL `PIC S9(n)` DISPLAY): one digit a byte, the sign overpunched on
//! the last byte.
//!
//! - EBCDIC (cp037): digits are 0xF0-0xF9; the last byte's zone nibble is C or F for
//!   positive, D for negative (0xC0-0xC9, 0xF0-0xF9, 0xD0-0xD9).
//! - ASCII and Latin-1: digits are `0`-`9`; the last byte is `{`, `A`-`I` for +0..+9 and
//!   `}`, `J`-`R` for -0..-9, or a plain digit (positive).
//!
//! A field of nothing but spaces (of its encoding) is blank: COBOL writes spaces into
//! numeric fields it never filled.

use crate::error::Reason;
use crate::layout::Encoding;
use crate::number::{signed_field, write_implied};

const ASCII_POSITIVE: &[u8; 10] = b"{ABCDEFGHI";
const ASCII_NEGATIVE: &[u8; 10] = b"}JKLMNOPQR";

/// Writes a zoned field as canonical text (nothing when blank).
pub(crate) fn decode(bytes: &[u8], enc: Encoding, decimals: usize, digits: &mut Vec<u8>, out: &mut String) -> Result<(), Reason> {
    let Some((head, last)) = signed_field(bytes, enc) else { return Ok(()) };
    digits.clear();
    let ebcdic = enc == Encoding::Cp037;
    for &b in head {
        let d = match b {
            0xF0..=0xF9 if ebcdic => b - 0xF0,
            b'0'..=b'9' if !ebcdic => b - b'0',
            _ => return Err(Reason::InvalidZoned),
        };
        digits.push(b'0' + d);
    }
    let (d, neg) = if ebcdic {
        let d = last & 0x0F;
        match last >> 4 {
            _ if d > 9 => return Err(Reason::InvalidZoned),
            0xF | 0xC => (d, false),
            0xD => (d, true),
            _ => return Err(Reason::InvalidZoned),
        }
    } else if last.is_ascii_digit() {
        (last - b'0', false)
    } else if let Some(d) = ASCII_POSITIVE.iter().position(|&c| c == last) {
        (d as u8, false)
    } else if let Some(d) = ASCII_NEGATIVE.iter().position(|&c| c == last) {
        (d as u8, true)
    } else {
        return Err(Reason::InvalidZoned);
    };
    digits.push(b'0' + d);
    write_implied(out, neg, digits, decimals);
    Ok(())
}

/// Encodes `value` (unscaled: 123.45 with 2 decimals is 12345) as `n_digits` zoned bytes
/// in `encoding`; the sign is C/D in EBCDIC and `{A-I`/`}J-R` in ASCII and Latin-1.
///
/// # Panics
/// If `n_digits` is 0 or `value` has more digits than `n_digits`.
pub fn encode(value: i128, n_digits: usize, encoding: Encoding) -> Vec<u8> {
    let magnitude = value.unsigned_abs().to_string();
    assert!(n_digits >= 1 && magnitude.len() <= n_digits, "a zoned value has more digits than its field holds");
    let mut out: Vec<u8> = std::iter::repeat_n(0, n_digits - magnitude.len()).chain(magnitude.bytes().map(|b| b - b'0')).collect();
    let last = out.pop().unwrap_or(0);
    let ebcdic = encoding == Encoding::Cp037;
    for d in &mut out {
        *d += if ebcdic { 0xF0 } else { b'0' };
    }
    out.push(match (ebcdic, value < 0) {
        (true, false) => 0xC0 | last,
        (true, true) => 0xD0 | last,
        (false, false) => ASCII_POSITIVE[last as usize],
        (false, true) => ASCII_NEGATIVE[last as usize],
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], enc: Encoding, d: usize) -> Result<String, Reason> {
        let mut out = String::new();
        decode(bytes, enc, d, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    #[test]
    fn ebcdic_signs() {
        assert_eq!(dec(&[0xF1, 0xF2, 0xC3], Encoding::Cp037, 0).unwrap(), "123");
        assert_eq!(dec(&[0xF1, 0xF2, 0xF3], Encoding::Cp037, 0).unwrap(), "123");
        assert_eq!(dec(&[0xF1, 0xF2, 0xD3], Encoding::Cp037, 2).unwrap(), "-1.23");
        assert_eq!(dec(&[0x40, 0x40], Encoding::Cp037, 0).unwrap(), "");
        assert_eq!(dec(&[0xF1, 0xC2, 0xC3], Encoding::Cp037, 0), Err(Reason::InvalidZoned));
        assert_eq!(dec(&[0xF1, 0xBA], Encoding::Cp037, 0), Err(Reason::InvalidZoned));
        assert_eq!(dec(&[0xF1, 0xDA], Encoding::Cp037, 0), Err(Reason::InvalidZoned));
    }

    #[test]
    fn ascii_overpunch() {
        assert_eq!(dec(b"12{", Encoding::Ascii, 0).unwrap(), "120");
        assert_eq!(dec(b"12I", Encoding::Ascii, 1).unwrap(), "12.9");
        assert_eq!(dec(b"12}", Encoding::Ascii, 0).unwrap(), "-120");
        assert_eq!(dec(b"00R", Encoding::Ascii, 2).unwrap(), "-0.09");
        assert_eq!(dec(b"007", Encoding::Latin1, 0).unwrap(), "7");
        assert_eq!(dec(b"0}", Encoding::Ascii, 0).unwrap(), "0");
        assert_eq!(dec(b"1 3", Encoding::Ascii, 0), Err(Reason::InvalidZoned));
        assert_eq!(dec(b"12S", Encoding::Ascii, 0), Err(Reason::InvalidZoned));
    }

    #[test]
    fn encode_round_trips() {
        for enc in [Encoding::Ascii, Encoding::Latin1, Encoding::Cp037] {
            for v in [0i128, 7, -7, 12345, -12345, 99999] {
                assert_eq!(dec(&encode(v, 5, enc), enc, 0).unwrap(), v.to_string());
            }
        }
        assert_eq!(encode(-125, 4, Encoding::Cp037), [0xF0, 0xF1, 0xF2, 0xD5]);
        assert_eq!(encode(125, 3, Encoding::Ascii), b"12E");
    }
}
