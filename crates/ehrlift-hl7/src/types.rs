//! Typed readings of HL7 values: DTM/TS date-times and NM numbers. Errors give a reason,
//! never the value.

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};

use crate::error::ValueError;

/// How much of a date/time was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    /// `YYYY`
    Year,
    /// `YYYYMM`
    Month,
    /// `YYYYMMDD`
    Day,
    /// `YYYYMMDDHH`
    Hour,
    /// `YYYYMMDDHHMM`
    Minute,
    /// `YYYYMMDDHHMMSS`
    Second,
    /// `YYYYMMDDHHMMSS.S+`, with this many fraction digits (1 to 9 kept).
    Fraction(u8),
}

/// An HL7 date/time `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`, keeping its precision
/// and offset. Missing parts read as their first value (month 1, day 1, 00:00:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// The local date and time, missing parts filled with their first value.
    pub datetime: NaiveDateTime,
    /// How much was sent.
    pub precision: Precision,
    /// The UTC offset, when one was sent.
    pub offset: Option<FixedOffset>,
}

impl Timestamp {
    /// Parses an HL7 DTM/TS/DT value (a TS's degree-of-precision component must be
    /// split off first, e.g. by reading component 1).
    pub fn parse(s: &str) -> Result<Timestamp, ValueError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ValueError::Empty);
        }
        let (body, offset) = match s.find(['+', '-']) {
            Some(i) => (&s[..i], Some(parse_offset(&s[i..])?)),
            None => (s, None),
        };
        let (digits, frac) = match body.split_once('.') {
            Some((d, f)) => (d, Some(f)),
            None => (body, None),
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len()) {
            return Err(ValueError::DateTimeSyntax);
        }
        let n = |r: std::ops::Range<usize>, default: u32| digits.get(r).map_or(default, |t| t.parse().unwrap_or(u32::MAX));
        let (year, month, day) = (n(0..4, 0), n(4..6, 1), n(6..8, 1));
        let (hour, min, sec) = (n(8..10, 0), n(10..12, 0), n(12..14, 0));
        let mut precision = match digits.len() {
            4 => Precision::Year,
            6 => Precision::Month,
            8 => Precision::Day,
            10 => Precision::Hour,
            12 => Precision::Minute,
            _ => Precision::Second,
        };
        let mut nanos = 0;
        if let Some(f) = frac {
            if digits.len() != 14 || f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ValueError::DateTimeSyntax);
            }
            let kept = &f[..f.len().min(9)];
            nanos = kept.parse::<u32>().map_err(|_| ValueError::DateTimeSyntax)? * 10u32.pow(9 - kept.len() as u32);
            precision = Precision::Fraction(kept.len() as u8);
        }
        let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or(ValueError::DateTimeRange)?;
        let time = NaiveTime::from_hms_nano_opt(hour, min, sec, nanos).ok_or(ValueError::DateTimeRange)?;
        Ok(Timestamp { datetime: NaiveDateTime::new(date, time), precision, offset })
    }
}

fn parse_offset(s: &str) -> Result<FixedOffset, ValueError> {
    let (sign, hhmm) = s.split_at(1);
    if hhmm.len() != 4 || !hhmm.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::BadOffset);
    }
    let h: i32 = hhmm[..2].parse().map_err(|_| ValueError::BadOffset)?;
    let m: i32 = hhmm[2..].parse().map_err(|_| ValueError::BadOffset)?;
    if h > 14 || m > 59 {
        return Err(ValueError::BadOffset);
    }
    let secs = (h * 3600 + m * 60) * if sign == "-" { -1 } else { 1 };
    FixedOffset::east_opt(secs).ok_or(ValueError::BadOffset)
}

/// Parses an HL7 NM: optional `+`/`-`, digits, optional `.` and digits (surrounding
/// spaces allowed). Exponents, commas, `NaN` and `inf` are not NM and are rejected.
pub fn parse_nm(s: &str) -> Result<f64, ValueError> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(if t.is_empty() { ValueError::Empty } else { ValueError::NumberSyntax });
    }
    t.parse::<f64>().map_err(|_| ValueError::NumberSyntax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_precision_and_offset() {
        let t = Timestamp::parse("2024").unwrap();
        assert_eq!((t.precision, t.datetime.to_string()), (Precision::Year, "2024-01-01 00:00:00".into()));
        let t = Timestamp::parse("202402291530").unwrap();
        assert_eq!(t.precision, Precision::Minute);
        let t = Timestamp::parse("20240102030405.1234-0500").unwrap();
        assert_eq!(t.precision, Precision::Fraction(4));
        assert_eq!(t.offset, FixedOffset::west_opt(5 * 3600));
        assert_eq!(t.datetime.and_utc().timestamp_subsec_millis(), 123);
    }

    #[test]
    fn timestamp_errors_never_hold_the_value() {
        for (bad, want) in [
            ("", ValueError::Empty),
            ("20241", ValueError::DateTimeSyntax),
            ("20241301", ValueError::DateTimeRange),
            ("20230229", ValueError::DateTimeRange),
            ("2024010125", ValueError::DateTimeRange),
            ("20240101+05", ValueError::BadOffset),
            ("2024010112.5", ValueError::DateTimeSyntax),
            ("SECRET99", ValueError::DateTimeSyntax),
        ] {
            let e = Timestamp::parse(bad).unwrap_err();
            assert_eq!(e, want, "{bad}");
            assert!(!bad.is_empty() && !e.to_string().contains(bad) || bad.is_empty());
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_nm(" -12.50 ").unwrap(), -12.5);
        assert_eq!(parse_nm(".5").unwrap(), 0.5);
        assert_eq!(parse_nm("+3").unwrap(), 3.0);
        for bad in ["1e5", "1,5", "NaN", "inf", "-", ".", "1.2.3", "12a"] {
            assert_eq!(parse_nm(bad), Err(ValueError::NumberSyntax), "{bad}");
        }
        assert_eq!(parse_nm(""), Err(ValueError::Empty));
    }
}
