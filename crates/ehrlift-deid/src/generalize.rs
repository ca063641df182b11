//! Generalizations (year, birth year, ZIP3, age, numeric buckets) and masking.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{Int32Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use chrono::{DateTime, Datelike, NaiveDate};

/// The restricted three-digit ZIP prefixes, versioned data shipped with ehrlift.
pub struct RestrictedZip3 {
    /// Version recorded in manifests, e.g. `census-2000+2010`.
    pub version: String,
    prefixes: HashSet<[u8; 3]>,
}

impl RestrictedZip3 {
    /// Whether `prefix` must be written as `000`.
    pub fn contains(&self, prefix: [u8; 3]) -> bool {
        self.prefixes.contains(&prefix)
    }

    /// The prefixes, sorted.
    pub fn prefixes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.prefixes.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
        v.sort();
        v
    }
}

/// The shipped list (`data/zip3-restricted.toml`).
pub static RESTRICTED_ZIP3: LazyLock<RestrictedZip3> = LazyLock::new(|| {
    #[derive(serde::Deserialize)]
    struct Doc {
        version: String,
        prefixes: Vec<String>,
    }
    let doc: Doc = toml::from_str(include_str!("../data/zip3-restricted.toml")).expect("shipped ZIP3 list parses");
    let prefixes = doc
        .prefixes
        .iter()
        .map(|p| <[u8; 3]>::try_from(p.as_bytes()).ok().filter(|b| b.iter().all(u8::is_ascii_digit)).expect("three-digit prefixes"))
        .collect();
    RestrictedZip3 { version: doc.version, prefixes }
});

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const EPOCH_CE_DAYS: i32 = 719_163;

fn year_of_days(days: i32) -> Option<i32> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(EPOCH_CE_DAYS)?).map(|d| d.year())
}

fn year_of_micros(us: i64) -> Option<i32> {
    DateTime::from_timestamp_micros(us).map(|d| d.year())
}

/// Years of a date32 or timestamp array. With `oldest`, years before it (ages over 89
/// at the reference date) become null.
pub fn years(input: &dyn Array, oldest: Option<i32>) -> ArrayRef {
    let mut b = Int32Builder::with_capacity(input.len());
    let keep = |y: Option<i32>| y.filter(|y| oldest.is_none_or(|o| *y >= o));
    match input.data_type() {
        DataType::Date32 => input.as_primitive::<Date32Type>().iter().for_each(|v| b.append_option(keep(v.and_then(year_of_days)))),
        DataType::Timestamp(..) => {
            input.as_primitive::<TimestampMicrosecondType>().iter().for_each(|v| b.append_option(keep(v.and_then(year_of_micros))))
        }
        other => unreachable!("year generalization is validated to dates and timestamps, found {other}"),
    }
    Arc::new(b.finish())
}

/// The earliest birth year that can be written at `reference`: anyone born earlier
/// may be 90 or older, and Safe Harbor counts such years as identifying. (Someone
/// born in `reference.year() - 90` is 89 or 90; the year is suppressed either way.)
pub fn oldest_birth_year(reference: NaiveDate) -> i32 {
    reference.year() - 89
}

/// ZIP codes to their first three digits, restricted prefixes as `000`. Values that
/// are not a 5-digit ZIP or ZIP+4 (`02134`, `02134-1234`, `021341234`) become null.
pub fn zip3(input: &dyn Array) -> ArrayRef {
    let list = &*RESTRICTED_ZIP3;
    let a = input.as_string::<i32>();
    let mut b = StringBuilder::with_capacity(a.len(), a.len() * 3);
    for v in a {
        match v.and_then(|v| zip_prefix(v.trim())) {
            Some(p) if list.contains(p) => b.append_value("000"),
            Some(p) => b.append_value(std::str::from_utf8(&p).expect("digits")),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

fn zip_prefix(v: &str) -> Option<[u8; 3]> {
    let b = v.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let ok = match b.len() {
        5 | 9 => digits(b),
        10 => digits(&b[..5]) && matches!(b[5], b'-' | b' ') && digits(&b[6..]),
        _ => false,
    };
    ok.then(|| [b[0], b[1], b[2]])
}

/// Ages in years to text, every age over 89 as `90+`; negative ages become null.
pub fn ages(input: &dyn Array) -> ArrayRef {
    // Any integer width; an unsigned age beyond i64 is no age and becomes null.
    let wide = arrow_cast::cast(input, &DataType::Int64).expect("integers cast to int64");
    let a = wide.as_primitive::<Int64Type>();
    let mut b = StringBuilder::with_capacity(a.len(), a.len() * 3);
    let mut buf = itoa::Buffer::new();
    for v in a {
        match v {
            Some(v) if v >= 90 => b.append_value("90+"),
            Some(v) if v >= 0 => b.append_value(buf.format(v)),
            _ => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// Labels of the ranges between increasing `bounds`: `<b0`, `[b0,b1)`, ..., `>=bn`.
pub fn bucket_labels(bounds: &[f64]) -> Vec<String> {
    let n = |x: f64| if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") };
    let mut labels = vec![format!("<{}", n(bounds[0]))];
    labels.extend(bounds.windows(2).map(|w| format!("[{},{})", n(w[0]), n(w[1]))));
    labels.push(format!(">={}", n(bounds[bounds.len() - 1])));
    labels
}

/// Numbers to the label of their range (see [`bucket_labels`]); NaN becomes null.
pub fn buckets(input: &dyn Array, bounds: &[f64], labels: &[String]) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(input.len(), input.len() * 8);
    let mut put = |x: Option<f64>| match x.filter(|x| !x.is_nan()) {
        Some(x) => b.append_value(&labels[bounds.partition_point(|&e| e <= x)]),
        None => b.append_null(),
    };
    match input.data_type() {
        DataType::Int64 => input.as_primitive::<Int64Type>().iter().for_each(|v| put(v.map(|v| v as f64))),
        DataType::Float64 => input.as_primitive::<Float64Type>().iter().for_each(put),
        _ => {
            let wide = arrow_cast::cast(input, &DataType::Float64).expect("bucket is validated to integer and float types");
            wide.as_primitive::<Float64Type>().iter().for_each(put)
        }
    }
    Arc::new(b.finish())
}

/// Every character but the last `keep_last` as `*`; a value no longer than
/// `keep_last` is masked whole, so short values never pass through.
pub fn mask(input: &dyn Array, keep_last: usize) -> ArrayRef {
    let a = input.as_string::<i32>();
    let mut b = StringBuilder::with_capacity(a.len(), a.value_data().len());
    let mut s = String::new();
    for v in a {
        match v {
            Some(v) => {
                let n = v.chars().count();
                s.clear();
                if n <= keep_last {
                    s.extend(std::iter::repeat_n('*', n));
                } else {
                    s.extend(std::iter::repeat_n('*', n - keep_last));
                    s.extend(v.chars().skip(n - keep_last));
                }
                b.append_value(&s);
            }
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};

    fn strings(a: &ArrayRef) -> Vec<Option<&str>> {
        a.as_string::<i32>().iter().collect()
    }

    #[test]
    fn the_shipped_zip3_list_is_the_hhs_union() {
        let l = &*RESTRICTED_ZIP3;
        assert_eq!(l.version, "census-2000+2010");
        assert_eq!(l.prefixes().join(" "), "036 059 063 102 203 205 369 556 692 790 821 823 830 831 878 879 884 890 893");
    }

    #[test]
    fn zip3_keeps_three_digits_and_hides_restricted_prefixes() {
        let a = zip3(&StringArray::from(vec![
            Some("02134"),
            Some("03601"),
            Some("02134-1234"),
            Some(" 893011234 "),
            Some("2134"),
            Some("ABCDE"),
            None,
            Some("12345-"),
        ]));
        assert_eq!(strings(&a), vec![Some("021"), Some("000"), Some("021"), Some("000"), None, None, None, None]);
    }

    #[test]
    fn years_and_birth_years() {
        let d = Date32Array::from(vec![Some(0), Some(-20_000), None]); // 1970, 1915
        let y = years(&d, None);
        assert_eq!(y.as_primitive::<arrow_array::types::Int32Type>().iter().collect::<Vec<_>>(), vec![Some(1970), Some(1915), None]);
        let reference = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        assert_eq!(oldest_birth_year(reference), 1937);
        let b = years(&d, Some(oldest_birth_year(reference)));
        assert_eq!(b.as_primitive::<arrow_array::types::Int32Type>().iter().collect::<Vec<_>>(), vec![Some(1970), None, None]);
        let t = TimestampMicrosecondArray::from(vec![Some(1_600_000_000_000_000)]).with_timezone("UTC");
        assert_eq!(years(&t, None).as_primitive::<arrow_array::types::Int32Type>().value(0), 2020);
    }

    #[test]
    fn ages_over_89_are_one_category() {
        let a = ages(&Int64Array::from(vec![Some(0), Some(89), Some(90), Some(104), Some(-1), None]));
        assert_eq!(strings(&a), vec![Some("0"), Some("89"), Some("90+"), Some("90+"), None, None]);
    }

    #[test]
    fn buckets_label_half_open_ranges() {
        let bounds = [0.0, 18.0, 65.0];
        let labels = bucket_labels(&bounds);
        assert_eq!(labels, vec!["<0", "[0,18)", "[18,65)", ">=65"]);
        let a = buckets(&Int64Array::from(vec![Some(-1), Some(0), Some(17), Some(18), Some(90), None]), &bounds, &labels);
        assert_eq!(strings(&a), vec![Some("<0"), Some("[0,18)"), Some("[0,18)"), Some("[18,65)"), Some(">=65"), None]);
        let f = buckets(&Float64Array::from(vec![Some(17.99), Some(f64::NAN)]), &bounds, &labels);
        assert_eq!(strings(&f), vec![Some("[0,18)"), None]);
        assert_eq!(bucket_labels(&[0.5, 1.5]), vec!["<0.5", "[0.5,1.5)", ">=1.5"]);
    }

    #[test]
    fn mask_keeps_the_tail_and_hides_short_values() {
        let a = mask(&StringArray::from(vec![Some("123-45-6789"), Some("abc"), Some("Zoë1234"), None]), 4);
        assert_eq!(strings(&a), vec![Some("*******6789"), Some("***"), Some("***1234"), None]);
    }
}
