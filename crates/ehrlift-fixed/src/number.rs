//! Numbers as canonical text: an optional `-`, the integer digits without leading zeros
//! (at least `0`), and, with decimals, a `.` and every fractional digit. No float is ever
//! involved, so no digit is rounded away; negative zero is written without its sign.

use crate::error::Reason;
use crate::layout::{Align, Encoding};

/// Writes `int` `.` (`frac_zeros` zeros then `frac`) as canonical text.
pub(crate) fn write_number(out: &mut String, neg: bool, int: &[u8], frac_zeros: usize, frac: &[u8]) {
    let int = &int[int.iter().position(|&d| d != b'0').unwrap_or(int.len())..];
    let zero = int.is_empty() && frac.iter().all(|&d| d == b'0');
    if neg && !zero {
        out.push('-');
    }
    if int.is_empty() {
        out.push('0');
    } else {
        push_digits(out, int);
    }
    if frac_zeros + frac.len() > 0 {
        out.push('.');
        out.extend(std::iter::repeat_n('0', frac_zeros));
        push_digits(out, frac);
    }
}

/// A zoned or packed field split into its leading bytes and its last byte (which
/// carries the sign); `None` when it is empty or blank (nothing but spaces of its
/// encoding, as COBOL leaves fields it never filled), which decodes to nothing.
pub(crate) fn signed_field(bytes: &[u8], enc: crate::layout::Encoding) -> Option<(&[u8], u8)> {
    let space = enc.byte_of(b' ');
    if bytes.iter().all(|&b| b == space) {
        return None;
    }
    bytes.split_last().map(|(&last, head)| (head, last))
}

/// Writes `digits` with `decimals` implied decimal places.
pub(crate) fn write_implied(out: &mut String, neg: bool, digits: &[u8], decimals: usize) {
    if digits.len() > decimals {
        let (int, frac) = digits.split_at(digits.len() - decimals);
        write_number(out, neg, int, 0, frac);
    } else {
        write_number(out, neg, &[], decimals - digits.len(), digits);
    }
}

fn push_digits(out: &mut String, digits: &[u8]) {
    out.extend(digits.iter().map(|&d| char::from(d)));
}

/// An `integer` (`allow_point` false) or `decimal` field: digits with a leading or trailing
/// `+`/`-`, spaces and padding around; blank writes nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn text_number(
    bytes: &[u8],
    enc: Encoding,
    pad: u8,
    align: Align,
    decimals: usize,
    allow_point: bool,
    digits: &mut Vec<u8>,
    out: &mut String,
) -> Result<(), Reason> {
    let a = |b: u8| enc.ascii_of(b);
    // A digit pad ("0") is part of the number: leading zeros vanish in canonical text
    // anyway, and an all-zero field is the number 0, not a blank.
    let pad = if pad.is_ascii_digit() { b' ' } else { pad };
    let (mut s, mut e) = (0, bytes.len());
    let (lead_pad, trail_pad) = match align {
        Align::Right => (pad, b' '),
        Align::Left => (b' ', pad),
    };
    while s < e && matches!(a(bytes[s]), c if c == b' ' || c == lead_pad) {
        s += 1;
    }
    while e > s && matches!(a(bytes[e - 1]), c if c == b' ' || c == trail_pad) {
        e -= 1;
    }
    if s == e {
        return Ok(());
    }
    let t = &bytes[s..e];
    let (mut i, mut j, mut neg) = (0, t.len(), false);
    match a(t[0]) {
        b'-' => (i, neg) = (1, true),
        b'+' => i = 1,
        _ => {}
    }
    if i == 0 && j > 1 {
        match a(t[j - 1]) {
            b'-' => (j, neg) = (j - 1, true),
            b'+' => j -= 1,
            _ => {}
        }
    }
    digits.clear();
    let mut point = None;
    for &b in &t[i..j] {
        match a(b) {
            c @ b'0'..=b'9' => digits.push(c),
            b'.' if allow_point && point.is_none() => point = Some(digits.len()),
            _ => return Err(Reason::InvalidNumber),
        }
    }
    if digits.is_empty() {
        return Err(Reason::InvalidNumber);
    }
    match point {
        Some(p) => write_number(out, neg, &digits[..p], 0, &digits[p..]),
        None => write_implied(out, neg, digits, decimals),
    }
    Ok(())
}

/// A big-endian `binary` field of 2, 4 or 8 bytes.
pub(crate) fn binary(bytes: &[u8], signed: bool, decimals: usize, out: &mut String) {
    let negative = signed && bytes.first().is_some_and(|b| b & 0x80 != 0);
    // Sign-extend by starting from all ones; after 8 shifts the start no longer matters.
    let mut v: u64 = if negative { u64::MAX } else { 0 };
    for &b in bytes {
        v = (v << 8) | u64::from(b);
    }
    let magnitude = if negative { (v as i64).unsigned_abs() } else { v };
    let mut buf = itoa::Buffer::new();
    write_implied(out, negative, buf.format(magnitude).as_bytes(), decimals);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str, decimals: usize, allow_point: bool) -> Result<String, Reason> {
        let mut out = String::new();
        text_number(s.as_bytes(), Encoding::Ascii, b' ', Align::Right, decimals, allow_point, &mut Vec::new(), &mut out)?;
        Ok(out)
    }

    #[test]
    fn integers_with_signs_spaces_and_implied_decimals() {
        assert_eq!(num("  00123", 0, false).unwrap(), "123");
        assert_eq!(num("-12345", 2, false).unwrap(), "-123.45");
        assert_eq!(num("12345-", 2, false).unwrap(), "-123.45");
        assert_eq!(num("+5", 3, false).unwrap(), "0.005");
        assert_eq!(num("-000", 2, false).unwrap(), "0.00");
        assert_eq!(num("0", 0, false).unwrap(), "0");
        assert_eq!(num("      ", 2, false).unwrap(), "");
        assert_eq!(num("123456789012345678901234567890123456789012", 0, false).unwrap(), "123456789012345678901234567890123456789012");
        for bad in ["1 2", "--1", "-1-", "+", "1.5", "12a", "-"] {
            assert_eq!(num(bad, 0, false), Err(Reason::InvalidNumber), "{bad}");
        }
    }

    #[test]
    fn decimals_keep_every_digit() {
        assert_eq!(num(" -0012.3400", 0, true).unwrap(), "-12.3400");
        assert_eq!(num(".5", 0, true).unwrap(), "0.5");
        assert_eq!(num("12.", 0, true).unwrap(), "12");
        assert_eq!(num("-0.00", 0, true).unwrap(), "0.00");
        assert_eq!(num("42", 0, true).unwrap(), "42");
        assert_eq!(num("1.2.3", 0, true), Err(Reason::InvalidNumber));
        assert_eq!(num(".", 0, true), Err(Reason::InvalidNumber));
    }

    #[test]
    fn non_digit_padding_is_removed_on_its_side() {
        let mut out = String::new();
        text_number(b"**-42", Encoding::Ascii, b'*', Align::Right, 0, false, &mut Vec::new(), &mut out).unwrap();
        assert_eq!(out, "-42");
        out.clear();
        text_number(b"0000", Encoding::Ascii, b'0', Align::Right, 0, false, &mut Vec::new(), &mut out).unwrap();
        assert_eq!(out, "0", "an all-zero zero-padded number is 0, not blank");
    }

    #[test]
    fn binary_two_complement_and_unsigned() {
        let b = |bytes: &[u8], signed, d| {
            let mut out = String::new();
            binary(bytes, signed, d, &mut out);
            out
        };
        assert_eq!(b(&[0xFF, 0xFE], true, 0), "-2");
        assert_eq!(b(&[0xFF, 0xFE], false, 0), "65534");
        assert_eq!(b(&[0x80, 0, 0, 0, 0, 0, 0, 0], true, 0), "-9223372036854775808");
        assert_eq!(b(&[0xFF; 8], false, 0), "18446744073709551615");
        assert_eq!(b(&[0, 0, 0x30, 0x39], true, 2), "123.45");
        assert_eq!(b(&[0xFF, 0xFF, 0xCF, 0xC7], true, 2), "-123.45");
    }
}
