//! Date and timestamp parsing with explicit chrono formats.
//!
//! Formats made only of `%Y %m %d %H %M %S` and literal ASCII take a fast path
//! that reads fixed-width digits; anything it does not accept goes to chrono, so
//! the fast path changes speed, never results.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

use crate::model::ColumnType;
use ehrlift_core::Reason;

/// Default format of `date32` columns.
pub const DEFAULT_DATE_FORMAT: &str = "%Y-%m-%d";
/// Default format of `timestamp` and `timestamptz` columns.
pub const DEFAULT_TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Checks a format string at validation time.
pub(crate) fn check_format(fmt: &str, ty: ColumnType) -> Result<(), String> {
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{fmt}` is not a valid chrono format (see https://docs.rs/chrono/latest/chrono/format/strftime/)"));
    }
    if ty == ColumnType::Timestamp && has_offset(fmt) {
        return Err(format!("`{fmt}` reads a UTC offset; use type = \"timestamptz\" to keep the instant"));
    }
    Ok(())
}

fn has_offset(fmt: &str) -> bool {
    ["%z", "%:z", "%::z", "%:::z", "%#z", "%+", "%s"].iter().any(|p| fmt.contains(p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Lit(u8),
}

/// The format name that reads HL7 v2 date/times: `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`.
pub const HL7_FORMAT: &str = "hl7";

/// One compiled format.
#[derive(Debug, Clone)]
struct Format {
    text: String,
    fast: Option<Vec<Tok>>,
    offset: bool,
    /// `format = "hl7"`: HL7's variable-precision date/time instead of a chrono format.
    hl7: bool,
}

impl Format {
    fn new(text: &str) -> Self {
        let hl7 = text == HL7_FORMAT;
        Format { text: text.to_owned(), fast: if hl7 { None } else { compile_fast(text) }, offset: !hl7 && has_offset(text), hl7 }
    }
}

/// An HL7 date/time: the first component of the text (a TS's degree-of-precision
/// component, or a whole field read without a component, is ignored). Missing parts
/// read as their first value (`2024` is 2024-01-01 00:00:00).
fn hl7(s: &str) -> Option<ehrlift_hl7::Timestamp> {
    let first = s.split('^').next().unwrap_or_default();
    ehrlift_hl7::Timestamp::parse(first).ok()
}

fn compile_fast(fmt: &str) -> Option<Vec<Tok>> {
    let b = fmt.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let t = match b.get(i + 1)? {
                b'Y' => Tok::Year,
                b'm' => Tok::Month,
                b'd' => Tok::Day,
                b'H' => Tok::Hour,
                b'M' => Tok::Minute,
                b'S' => Tok::Second,
                _ => return None,
            };
            out.push(t);
            i += 2;
        } else if b[i].is_ascii() && !b[i].is_ascii_whitespace() {
            out.push(Tok::Lit(b[i]));
            i += 1;
        } else {
            // chrono treats whitespace in a format as "any amount": leave it to chrono.
            return None;
        }
    }
    Some(out)
}

fn digits(s: &[u8], at: &mut usize, n: usize) -> Option<u32> {
    let d = s.get(*at..*at + n)?;
    let mut v = 0u32;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    *at += n;
    Some(v)
}

fn fast_parse(toks: &[Tok], s: &str) -> Option<NaiveDateTime> {
    let s = s.as_bytes();
    let (mut y, mut mo, mut d, mut h, mut mi, mut se) = (None, None, None, 0, 0, 0);
    let mut at = 0;
    for t in toks {
        match *t {
            Tok::Year => y = Some(digits(s, &mut at, 4)? as i32),
            Tok::Month => mo = Some(digits(s, &mut at, 2)?),
            Tok::Day => d = Some(digits(s, &mut at, 2)?),
            Tok::Hour => h = digits(s, &mut at, 2)?,
            Tok::Minute => mi = digits(s, &mut at, 2)?,
            Tok::Second => se = digits(s, &mut at, 2)?,
            Tok::Lit(c) => {
                if s.get(at) != Some(&c) {
                    return None;
                }
                at += 1;
            }
        }
    }
    if at != s.len() {
        return None;
    }
    NaiveDate::from_ymd_opt(y?, mo?, d?)?.and_time(NaiveTime::from_hms_opt(h, mi, se)?).into()
}

/// A compiled list of formats for one column, tried in order.
#[derive(Debug, Clone)]
pub(crate) struct TemporalParser {
    formats: Vec<Format>,
}

impl TemporalParser {
    pub(crate) fn new(formats: &[String], default: &str) -> Self {
        let formats = if formats.is_empty() { vec![Format::new(default)] } else { formats.iter().map(|f| Format::new(f)).collect() };
        TemporalParser { formats }
    }

    /// Days since 1970-01-01.
    pub(crate) fn date(&self, s: &str) -> Result<i32, Reason> {
        for f in &self.formats {
            if f.hl7 {
                if let Some(t) = hl7(s) {
                    return Ok(days_since_epoch(t.datetime.date()));
                }
                continue;
            }
            let d = match &f.fast {
                Some(t) => fast_parse(t, s).map(|dt| dt.date()).or_else(|| NaiveDate::parse_from_str(s, &f.text).ok()),
                None => NaiveDate::parse_from_str(s, &f.text).ok(),
            };
            if let Some(d) = d {
                return Ok(days_since_epoch(d));
            }
        }
        Err(Reason::InvalidDate)
    }

    /// Microseconds since the epoch of a wall-clock time, no zone attached.
    pub(crate) fn naive_micros(&self, s: &str) -> Result<i64, Reason> {
        for f in &self.formats {
            if let Some(dt) = self.naive(f, s) {
                return Ok(dt.and_utc().timestamp_micros());
            }
        }
        Err(Reason::InvalidTimestamp)
    }

    /// Microseconds since the epoch (UTC) of an instant: from the value's offset when
    /// the format reads one, else from the wall-clock time in `tz`.
    pub(crate) fn instant_micros<Z: TimeZone>(&self, s: &str, tz: &Z) -> Result<i64, Reason> {
        let mut ambiguous = false;
        for f in &self.formats {
            if f.hl7 {
                match hl7(s) {
                    Some(ehrlift_hl7::Timestamp { datetime, offset: Some(o), .. }) => {
                        return Ok((datetime - chrono::Duration::seconds(i64::from(o.local_minus_utc()))).and_utc().timestamp_micros());
                    }
                    Some(t) => match tz.from_local_datetime(&t.datetime).single() {
                        Some(t) => return Ok(t.timestamp_micros()),
                        None => ambiguous = true,
                    },
                    None => {}
                }
                continue;
            }
            if f.offset {
                if let Ok(dt) = DateTime::parse_from_str(s, &f.text) {
                    return Ok(dt.timestamp_micros());
                }
            } else if let Some(dt) = self.naive(f, s) {
                match tz.from_local_datetime(&dt).single() {
                    Some(t) => return Ok(t.timestamp_micros()),
                    None => ambiguous = true,
                }
            }
        }
        Err(if ambiguous { Reason::AmbiguousLocalTime } else { Reason::InvalidTimestamp })
    }

    /// A wall-clock reading; an HL7 value's offset, if any, is not applied.
    fn naive(&self, f: &Format, s: &str) -> Option<NaiveDateTime> {
        if f.hl7 {
            return hl7(s).map(|t| t.datetime);
        }
        match &f.fast {
            Some(t) => fast_parse(t, s).or_else(|| NaiveDateTime::parse_from_str(s, &f.text).ok()),
            None => NaiveDateTime::parse_from_str(s, &f.text).ok(),
        }
    }
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
    chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_DAYS_FROM_CE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(f: &str) -> TemporalParser {
        TemporalParser::new(&[f.to_owned()], DEFAULT_DATE_FORMAT)
    }

    #[test]
    fn fast_path_and_chrono_agree() {
        for (fmt, s) in [("%m/%d/%Y", "03/06/2011"), ("%Y-%m-%d", "1970-01-02"), ("%m/%d/%Y", "3/6/2011"), ("%d %b %Y", "06 Mar 2011")] {
            let chrono = NaiveDate::parse_from_str(s, fmt).map(days_since_epoch).ok();
            assert_eq!(p(fmt).date(s).ok(), chrono, "{fmt} {s}");
        }
        assert_eq!(p("%Y-%m-%d").date("1970-01-02"), Ok(1));
    }

    #[test]
    fn rejects_impossible_dates() {
        assert_eq!(p("%Y-%m-%d").date("2021-02-30"), Err(Reason::InvalidDate));
        assert_eq!(p("%Y-%m-%d").date("2021-02-3x"), Err(Reason::InvalidDate));
        assert_eq!(p("%Y-%m-%d").date("2021-02-03 "), Err(Reason::InvalidDate));
    }

    #[test]
    fn instants_use_offsets_or_zone() {
        let t = TemporalParser::new(&["%Y-%m-%dT%H:%M:%SZ".into()], DEFAULT_TIMESTAMP_FORMAT);
        assert_eq!(t.instant_micros("1970-01-01T00:00:01Z", &chrono::Utc), Ok(1_000_000));
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let t = TemporalParser::new(&["%Y-%m-%d %H:%M:%S".into()], DEFAULT_TIMESTAMP_FORMAT);
        assert_eq!(t.instant_micros("1970-01-01 00:00:00", &ny), Ok(5 * 3600 * 1_000_000));
        // 02:30 on the spring-forward day does not exist in New York.
        assert_eq!(t.instant_micros("2021-03-14 02:30:00", &ny), Err(Reason::AmbiguousLocalTime));
        let t = TemporalParser::new(&["%Y-%m-%d %H:%M:%S%z".into()], DEFAULT_TIMESTAMP_FORMAT);
        assert_eq!(t.instant_micros("1970-01-01 01:00:00+0100", &ny), Ok(0));
    }

    #[test]
    fn hl7_date_times_keep_their_precision_and_offset() {
        let t = TemporalParser::new(&[HL7_FORMAT.into()], DEFAULT_TIMESTAMP_FORMAT);
        assert_eq!(t.date("19700102"), Ok(1));
        assert_eq!(t.date("1970"), Ok(0));
        assert_eq!(t.date("197001021230^D"), Ok(1));
        assert_eq!(t.naive_micros("19700101000001"), Ok(1_000_000));
        assert_eq!(t.naive_micros("19700101000000.25"), Ok(250_000));
        assert_eq!(t.instant_micros("19700101010000+0100", &chrono::Utc), Ok(0));
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        assert_eq!(t.instant_micros("197001010000", &ny), Ok(5 * 3600 * 1_000_000));
        assert_eq!(t.date("1970-01-02"), Err(Reason::InvalidDate));
        assert_eq!(t.naive_micros("19701301"), Err(Reason::InvalidTimestamp));
        assert_eq!(t.instant_micros("", &ny), Err(Reason::InvalidTimestamp));
    }

    #[test]
    fn formats_are_checked() {
        assert!(check_format("%Y-%m-%d", ColumnType::Date32).is_ok());
        assert!(check_format("%Y-%Q", ColumnType::Date32).is_err());
        assert!(check_format("%Y-%m-%d %H:%M:%S%z", ColumnType::Timestamp).is_err());
    }
}
