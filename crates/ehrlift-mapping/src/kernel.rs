//! Column kernels: one compiled function per output column, from the raw utf8
//! source array to the typed output array.
//!
//! Per value: trim, null tokens, recode, then parse. A value that can't be
//! converted becomes null in the output and its row index and [`Reason`] are
//! reported, so the caller quarantines the row; the value itself is never kept.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder, FixedSizeBinaryBuilder, Float32Builder, Float64Builder,
    PrimitiveBuilder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, i256};
use arrow_schema::{DataType, Field, TimeUnit};
use ehrlift_core::Reason;

use crate::model::{Column, ColumnType, Mapping, Recode, Rule, Unmapped};
use crate::temporal::{DEFAULT_DATE_FORMAT, DEFAULT_TIMESTAMP_FORMAT, TemporalParser};

/// A failed conversion: the row index within the batch and why. No value.
pub type CellError = (u32, Reason);

/// The compiled kernel of one output column.
#[derive(Debug, Clone)]
pub struct ColumnKernel {
    name: String,
    ty: ColumnType,
    trim: bool,
    /// Whether the empty string is a null token (the default), tested apart from the
    /// others: comparing against an empty `String` costs a memcmp on a dangling pointer.
    null_empty: bool,
    /// Non-empty null tokens.
    null: Vec<String>,
    recode: Option<Recode>,
    nullable: bool,
    true_values: Vec<String>,
    false_values: Vec<String>,
    temporal: Option<TemporalParser>,
    timezone: chrono_tz::Tz,
}

impl ColumnKernel {
    /// Compiles `col`; the column was validated when the plan loaded.
    pub fn compile(col: &Column) -> Self {
        let temporal = match col.ty {
            ColumnType::Date32 => Some(TemporalParser::new(&col.formats, DEFAULT_DATE_FORMAT)),
            ColumnType::Timestamp | ColumnType::TimestampTz => Some(TemporalParser::new(&col.formats, DEFAULT_TIMESTAMP_FORMAT)),
            _ => None,
        };
        ColumnKernel {
            name: col.name.clone(),
            ty: col.ty,
            trim: col.trim,
            null_empty: col.null.iter().any(String::is_empty),
            null: col.null.iter().filter(|t| !t.is_empty()).cloned().collect(),
            recode: col.recode.clone(),
            nullable: col.nullable,
            true_values: col.true_values.clone(),
            false_values: col.false_values.clone(),
            temporal,
            timezone: col.timezone.unwrap_or(chrono_tz::UTC),
        }
    }

    /// The output field.
    pub fn field(&self) -> Field {
        field(&self.name, self.ty, self.nullable)
    }

    /// Output column name.
    pub fn name(&self) -> &str {
        &self.name
    }

    #[inline]
    fn is_null_token(&self, v: &str) -> bool {
        if v.is_empty() { self.null_empty } else { !self.null.is_empty() && self.null.iter().any(|t| t.len() == v.len() && t == v) }
    }

    /// Trim, null tokens and recode: `Ok(None)` is null.
    #[inline]
    fn prepare<'a>(&'a self, raw: Option<&'a str>) -> Result<Option<&'a str>, Reason> {
        let Some(mut v) = raw else { return Ok(None) };
        if self.trim {
            v = v.trim();
        }
        if self.is_null_token(v) {
            return Ok(None);
        }
        if let Some(r) = &self.recode {
            match r.map.get(v) {
                Some(to) if to.is_empty() => return Ok(None),
                Some(to) => v = to,
                None => match r.unmapped {
                    Unmapped::Keep => {}
                    Unmapped::Null => return Ok(None),
                    Unmapped::Quarantine => return Err(Reason::UnmappedCode),
                },
            }
        }
        Ok(Some(v))
    }

    /// Converts one raw column: text from file sources (trim, null tokens, recode, parse),
    /// or typed values from databases (checked conversion). Failed rows are null in the
    /// result and listed in `errors`.
    pub fn apply(&self, input: &dyn Array, errors: &mut Vec<CellError>) -> ArrayRef {
        match input.as_string_opt::<i32>() {
            Some(text) => self.apply_text(text, errors),
            None => self.apply_typed(input, errors),
        }
    }

    fn apply_text(&self, input: &StringArray, errors: &mut Vec<CellError>) -> ArrayRef {
        let n = input.len();
        macro_rules! run {
            ($builder:expr, |$v:ident| $parse:expr) => {{
                let mut b = $builder;
                for i in 0..n {
                    let raw = if input.is_null(i) { None } else { Some(input.value(i)) };
                    match self.prepare(raw) {
                        Ok(Some($v)) => match $parse {
                            Ok(x) => b.append_value(x),
                            Err(reason) => {
                                b.append_null();
                                errors.push((i as u32, reason));
                            }
                        },
                        Ok(None) => {
                            b.append_null();
                            if !self.nullable {
                                errors.push((i as u32, Reason::NullNotAllowed));
                            }
                        }
                        Err(reason) => {
                            b.append_null();
                            errors.push((i as u32, reason));
                        }
                    }
                }
                Arc::new(b.finish()) as ArrayRef
            }};
        }
        fn ints<T: ArrowPrimitiveType>() -> PrimitiveBuilder<T> {
            PrimitiveBuilder::<T>::new()
        }
        macro_rules! int {
            ($t:ty, $native:ty) => {
                run!(ints::<$t>(), |v| v.parse::<$native>().map_err(|_| Reason::InvalidInteger))
            };
        }
        match self.ty {
            ColumnType::Utf8 => {
                if !self.trim && self.recode.is_none() {
                    return self.null_tokens_only(input, errors);
                }
                run!(StringBuilder::with_capacity(n, input.value_data().len()), |v| Ok::<_, Reason>(v))
            }
            ColumnType::Json => run!(StringBuilder::with_capacity(n, input.value_data().len()), |v| {
                serde_json::from_str::<serde::de::IgnoredAny>(v).map(|_| v).map_err(|_| Reason::InvalidJson)
            }),
            ColumnType::Int8 => int!(Int8Type, i8),
            ColumnType::Int16 => int!(Int16Type, i16),
            ColumnType::Int32 => int!(Int32Type, i32),
            ColumnType::Int64 => int!(Int64Type, i64),
            ColumnType::UInt8 => int!(UInt8Type, u8),
            ColumnType::UInt16 => int!(UInt16Type, u16),
            ColumnType::UInt32 => int!(UInt32Type, u32),
            ColumnType::UInt64 => int!(UInt64Type, u64),
            ColumnType::Float32 => run!(Float32Builder::with_capacity(n), |v| v.parse::<f32>().map_err(|_| Reason::InvalidFloat)),
            ColumnType::Float64 => run!(Float64Builder::with_capacity(n), |v| v.parse::<f64>().map_err(|_| Reason::InvalidFloat)),
            ColumnType::Decimal { precision, scale } if precision <= 38 => {
                run!(Decimal128Builder::with_capacity(n).with_precision_and_scale(precision, scale).expect("validated decimal"), |v| {
                    parse_decimal(v, precision, scale)
                })
            }
            ColumnType::Decimal { precision, scale } => {
                run!(Decimal256Builder::with_capacity(n).with_precision_and_scale(precision, scale).expect("validated decimal"), |v| {
                    parse_decimal256(v, precision, scale)
                })
            }
            ColumnType::Bool => run!(BooleanBuilder::with_capacity(n), |v| self.parse_bool(v)),
            ColumnType::Date32 => {
                let t = self.temporal.as_ref().expect("temporal parser");
                run!(Date32Builder::with_capacity(n), |v| t.date(v))
            }
            ColumnType::Time => run!(Time64MicrosecondBuilder::with_capacity(n), |v| parse_time(v)),
            ColumnType::Timestamp => {
                let t = self.temporal.as_ref().expect("temporal parser");
                run!(TimestampMicrosecondBuilder::with_capacity(n), |v| t.naive_micros(v))
            }
            ColumnType::TimestampTz => {
                let t = self.temporal.as_ref().expect("temporal parser");
                run!(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"), |v| t.instant_micros(v, &self.timezone))
            }
            ColumnType::Uuid => run!(UuidBuilder(FixedSizeBinaryBuilder::with_capacity(n, 16)), |v| parse_uuid(v)),
            ColumnType::Binary | ColumnType::List(_) => {
                // Loading refuses these types for text sources; a text column of a database
                // declared binary or list is a mapping error found when the table opens.
                unreachable!("binary and list columns read typed database values")
            }
        }
    }

    /// A database value already typed: passed through when it is the declared type, else
    /// converted and checked so that nothing is rounded, truncated or wrapped silently.
    fn apply_typed(&self, input: &dyn Array, errors: &mut Vec<CellError>) -> ArrayRef {
        let target = data_type(self.ty);
        let out: ArrayRef = if input.data_type() == &target {
            input.slice(0, input.len())
        } else if let (DataType::Timestamp(TimeUnit::Microsecond, None), ColumnType::TimestampTz) = (input.data_type(), self.ty) {
            // A wall-clock time of a zone-less column: the instant it was in the column's zone.
            let naive = input.as_primitive::<TimestampMicrosecondType>();
            let mut b = TimestampMicrosecondBuilder::with_capacity(naive.len()).with_timezone("UTC");
            for (i, v) in naive.iter().enumerate() {
                match v.map(|v| local_micros_to_instant(v, &self.timezone)) {
                    Some(Ok(x)) => b.append_value(x),
                    Some(Err(reason)) => {
                        b.append_null();
                        errors.push((i as u32, reason));
                    }
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        } else {
            let opts = arrow_cast::CastOptions { safe: true, ..Default::default() };
            let out = arrow_cast::cast_with_options(input, &target, &opts).expect("conversion checked when the table opened");
            // Floats and text are explicit lossy or exact choices; everything else must
            // convert back to the very same value.
            let exact = !matches!(self.ty, ColumnType::Float32 | ColumnType::Float64 | ColumnType::Utf8 | ColumnType::Json);
            let back = if exact { arrow_cast::cast_with_options(&out, input.data_type(), &opts).ok() } else { None };
            let same = back.as_ref().map(|b| arrow_ord::cmp::not_distinct(&b.as_ref(), &input).expect("same types"));
            let reason = match (self.ty, input.data_type()) {
                (ColumnType::Decimal { .. }, _) => Reason::DecimalOutOfRange,
                (_, DataType::Binary) => Reason::InvalidEncoding,
                _ => Reason::OutOfRange,
            };
            let mut bad = Vec::new();
            for i in 0..input.len() {
                if input.is_valid(i) && (out.is_null(i) || same.as_ref().is_some_and(|s| !s.value(i))) {
                    bad.push(i);
                    errors.push((i as u32, reason));
                }
            }
            if bad.is_empty() {
                out
            } else {
                let mut valid = BooleanBufferBuilder::new(out.len());
                for i in 0..out.len() {
                    valid.append(out.is_valid(i));
                }
                for i in bad {
                    valid.set_bit(i, false);
                }
                let data = out.to_data().into_builder().nulls(Some(NullBuffer::new(valid.finish()))).build().expect("same layout");
                arrow_array::make_array(data)
            }
        };
        if !self.nullable {
            for i in 0..input.len() {
                if input.is_null(i) {
                    errors.push((i as u32, Reason::NullNotAllowed));
                }
            }
        }
        out
    }

    /// Text with only null tokens to apply: the values buffer is shared, only the
    /// validity bitmap is new, so the common case copies no string data.
    fn null_tokens_only(&self, input: &StringArray, errors: &mut Vec<CellError>) -> ArrayRef {
        let n = input.len();
        let mut valid = BooleanBufferBuilder::new(n);
        for i in 0..n {
            let ok = input.is_valid(i) && !self.is_null_token(input.value(i));
            if !ok && !self.nullable {
                errors.push((i as u32, Reason::NullNotAllowed));
            }
            valid.append(ok);
        }
        let nulls = NullBuffer::new(valid.finish());
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Arc::new(StringArray::new(input.offsets().clone(), input.values().clone(), nulls))
    }

    fn parse_bool(&self, v: &str) -> Result<bool, Reason> {
        if self.true_values.iter().any(|t| t.eq_ignore_ascii_case(v)) {
            Ok(true)
        } else if self.false_values.iter().any(|t| t.eq_ignore_ascii_case(v)) {
            Ok(false)
        } else {
            Err(Reason::InvalidBoolean)
        }
    }
}

/// Arrow type of an output column type.
pub fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Utf8 | ColumnType::Json => DataType::Utf8,
        ColumnType::Int8 => DataType::Int8,
        ColumnType::Int16 => DataType::Int16,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::UInt8 => DataType::UInt8,
        ColumnType::UInt16 => DataType::UInt16,
        ColumnType::UInt32 => DataType::UInt32,
        ColumnType::UInt64 => DataType::UInt64,
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Decimal { precision, scale } if precision <= 38 => DataType::Decimal128(precision, scale),
        ColumnType::Decimal { precision, scale } => DataType::Decimal256(precision, scale),
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date32 => DataType::Date32,
        ColumnType::Time => DataType::Time64(TimeUnit::Microsecond),
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ColumnType::Binary => DataType::Binary,
        ColumnType::Uuid => DataType::FixedSizeBinary(16),
        ColumnType::List(e) => DataType::List(Arc::new(field("item", e.scalar(), true))),
    }
}

/// The Arrow field of a column: its type, and Arrow's canonical extension name for
/// UUIDs and JSON so readers know what the bytes and text are.
pub fn field(name: &str, ty: ColumnType, nullable: bool) -> Field {
    let f = Field::new(name, data_type(ty), nullable);
    let ext = match ty {
        ColumnType::Uuid => "arrow.uuid",
        ColumnType::Json => "arrow.json",
        _ => return f,
    };
    f.with_metadata(std::collections::HashMap::from([("ARROW:extension:name".to_owned(), ext.to_owned())]))
}

/// A builder of 16-byte UUIDs with the infallible interface the text loop expects.
struct UuidBuilder(FixedSizeBinaryBuilder);

impl UuidBuilder {
    fn append_value(&mut self, v: [u8; 16]) {
        self.0.append_value(v).expect("16 bytes");
    }

    fn append_null(&mut self) {
        self.0.append_null();
    }

    fn finish(&mut self) -> arrow_array::FixedSizeBinaryArray {
        self.0.finish()
    }
}

/// Whether a raw source column can be read as `ty` (the check is per value after that).
pub fn can_convert(from: &DataType, ty: ColumnType) -> bool {
    let to = data_type(ty);
    if from == &to {
        return true;
    }
    match from {
        // Text goes through the text parsers, never through a cast.
        DataType::Utf8 => ty.parses_from_text(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => ty == ColumnType::TimestampTz || arrow_cast::can_cast_types(from, &to),
        // Text a driver reports as bytes (MySQL text with a binary collation): UTF-8 checked per value.
        DataType::Binary => matches!(ty, ColumnType::Utf8 | ColumnType::Json),
        DataType::FixedSizeBinary(_) => false,
        _ => !matches!(ty, ColumnType::Uuid | ColumnType::Json) && arrow_cast::can_cast_types(from, &to),
    }
}

/// A wall-clock microsecond count in `tz` to the UTC instant; gaps and overlaps quarantine.
fn local_micros_to_instant(v: i64, tz: &chrono_tz::Tz) -> Result<i64, Reason> {
    use chrono::TimeZone;
    let dt = chrono::DateTime::from_timestamp_micros(v).ok_or(Reason::OutOfRange)?.naive_utc();
    tz.from_local_datetime(&dt).single().map(|t| t.timestamp_micros()).ok_or(Reason::AmbiguousLocalTime)
}

/// `HH:MM[:SS[.ffffff]]` to microseconds since midnight.
fn parse_time(v: &str) -> Result<i64, Reason> {
    let t = chrono::NaiveTime::parse_from_str(v, "%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveTime::parse_from_str(v, "%H:%M"))
        .map_err(|_| Reason::InvalidTime)?;
    use chrono::Timelike;
    Ok(i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000))
}

/// A UUID in its usual text forms (hyphens optional, braces allowed, any case).
pub fn parse_uuid(v: &str) -> Result<[u8; 16], Reason> {
    let v = v.strip_prefix('{').and_then(|r| r.strip_suffix('}')).unwrap_or(v);
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut hi: Option<u8> = None;
    for c in v.bytes() {
        if c == b'-' {
            continue;
        }
        let d = (c as char).to_digit(16).ok_or(Reason::InvalidUuid)? as u8;
        match hi.take() {
            None => hi = Some(d),
            Some(h) => {
                *out.get_mut(n).ok_or(Reason::InvalidUuid)? = h << 4 | d;
                n += 1;
            }
        }
    }
    if n == 16 && hi.is_none() && (v.len() == 32 || v.len() == 36) { Ok(out) } else { Err(Reason::InvalidUuid) }
}

/// Parses a plain decimal (`-12.50`, `+3`, `.5`) exactly: no exponent, and no digit
/// beyond the scale unless it is zero, so nothing is ever rounded.
pub fn parse_decimal(s: &str, precision: u8, scale: i8) -> Result<i128, Reason> {
    let (neg, int, kept, pad) = decimal_parts(s, precision, scale)?;
    let mut v: i128 = 0;
    for &c in int.iter().chain(kept) {
        v = v * 10 + i128::from(c - b'0');
    }
    for _ in 0..pad {
        v *= 10;
    }
    Ok(if neg { -v } else { v })
}

/// [`parse_decimal`] for precisions above 38 (256-bit).
pub fn parse_decimal256(s: &str, precision: u8, scale: i8) -> Result<i256, Reason> {
    let (neg, int, kept, pad) = decimal_parts(s, precision, scale)?;
    let mut digits = String::with_capacity(precision as usize + 1);
    digits.push('0');
    digits.extend(int.iter().chain(kept).map(|&c| c as char));
    digits.extend(std::iter::repeat_n('0', pad));
    let v = i256::from_string(&digits).ok_or(Reason::DecimalOutOfRange)?;
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// A plain decimal checked against precision and scale: its sign, its significant integer
/// digits, the fraction digits kept, and how many zeros fill the scale.
type DecimalParts<'a> = (bool, &'a [u8], &'a [u8], usize);

fn decimal_parts(s: &str, precision: u8, scale: i8) -> Result<DecimalParts<'_>, Reason> {
    let b = s.as_bytes();
    let (neg, body) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (int, frac) = match body.iter().position(|&c| c == b'.') {
        Some(p) => (&body[..p], &body[p + 1..]),
        None => (body, &body[..0]),
    };
    if (int.is_empty() && frac.is_empty()) || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return Err(Reason::InvalidDecimal);
    }
    let scale = scale as usize;
    let (kept, extra) = frac.split_at(frac.len().min(scale));
    if extra.iter().any(|&c| c != b'0') {
        return Err(Reason::DecimalOutOfRange);
    }
    let int = &int[int.iter().position(|&c| c != b'0').unwrap_or(int.len())..];
    if int.len() > precision as usize - scale {
        return Err(Reason::DecimalOutOfRange);
    }
    Ok((neg, int, kept, scale - kept.len()))
}

/// The compiled kernels of a table's columns whose values are written (every rule but
/// `drop` and `null`), in mapping order, each with the index of its input among
/// [`Mapping::source_columns`] and of its column in `Mapping::columns`.
#[derive(Debug, Clone)]
pub struct TableKernels {
    /// `(input index, column index, kernel)` in mapping order.
    pub columns: Vec<(usize, usize, ColumnKernel)>,
}

impl TableKernels {
    /// Compiles every column of `mapping` whose value is read.
    pub fn compile(mapping: &Mapping) -> Self {
        let inputs = mapping.source_columns();
        let columns = mapping
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.rule.outputs() && c.rule != Rule::Null)
            .map(|(i, c)| (inputs.iter().position(|s| s == &c.from).expect("source column listed"), i, ColumnKernel::compile(c)))
            .collect();
        TableKernels { columns }
    }

    /// The kernel output of `mapping.columns[column]`, by position in `columns`.
    pub fn position_of(&self, column: usize) -> Option<usize> {
        self.columns.iter().position(|(_, c, _)| *c == column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, Phi};
    use std::collections::HashMap;

    fn col(ty: ColumnType) -> Column {
        Column {
            name: "c".into(),
            from: "c".into(),
            line: 1,
            ty,
            formats: vec![],
            timezone: None,
            trim: false,
            null: vec![String::new()],
            recode: None,
            nullable: true,
            true_values: vec!["y".into()],
            false_values: vec!["n".into()],
            rule: Rule::Keep,
            phi: Some(Phi::None),
            dictionary: true,
            references: None,
        }
    }

    fn run(c: &Column, vals: &[Option<&str>]) -> (ArrayRef, Vec<CellError>) {
        let mut errs = vec![];
        let a = ColumnKernel::compile(c).apply(&StringArray::from(vals.to_vec()), &mut errs);
        (a, errs)
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("12.5", 5, 2), Ok(1250));
        assert_eq!(parse_decimal("-0.05", 5, 2), Ok(-5));
        assert_eq!(parse_decimal("+.5", 5, 2), Ok(50));
        assert_eq!(parse_decimal("1.230", 5, 2), Ok(123));
        assert_eq!(parse_decimal("1.235", 5, 2), Err(Reason::DecimalOutOfRange));
        assert_eq!(parse_decimal("1234", 5, 2), Err(Reason::DecimalOutOfRange));
        assert_eq!(parse_decimal("00123", 5, 2), Ok(12300));
        assert_eq!(parse_decimal("1e3", 5, 2), Err(Reason::InvalidDecimal));
        assert_eq!(parse_decimal("-", 5, 2), Err(Reason::InvalidDecimal));
        assert_eq!(parse_decimal(".", 5, 2), Err(Reason::InvalidDecimal));
    }

    #[test]
    fn failures_are_null_and_reported_by_row() {
        let (a, errs) = run(&col(ColumnType::Int64), &[Some("1"), Some("x"), Some(""), None, Some(" 2")]);
        assert_eq!(a.null_count(), 4);
        assert_eq!(errs, vec![(1, Reason::InvalidInteger), (4, Reason::InvalidInteger)]);
        let mut c = col(ColumnType::Int64);
        c.trim = true;
        c.nullable = false;
        let (_, errs) = run(&c, &[Some(" 2 "), Some("")]);
        assert_eq!(errs, vec![(1, Reason::NullNotAllowed)]);
    }

    #[test]
    fn recode_then_parse() {
        let mut c = col(ColumnType::Utf8);
        c.recode =
            Some(Recode { map: HashMap::from([("1".into(), "M".into()), ("9".into(), String::new())]), unmapped: Unmapped::Quarantine });
        let (a, errs) = run(&c, &[Some("1"), Some("9"), Some("3")]);
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(a.value(0), "M");
        assert!(a.is_null(1));
        assert_eq!(errs, vec![(2, Reason::UnmappedCode)]);
    }

    #[test]
    fn utf8_null_tokens_share_the_values_buffer() {
        let mut c = col(ColumnType::Utf8);
        c.null = vec![String::new(), "NULL".into()];
        c.nullable = false;
        let (a, errs) = run(&c, &[Some("a"), Some(""), Some("NULL"), None, Some("null")]);
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((a.value(0), a.value(4)), ("a", "null"));
        assert_eq!(a.null_count(), 3);
        assert_eq!(errs, vec![(1, Reason::NullNotAllowed), (2, Reason::NullNotAllowed), (3, Reason::NullNotAllowed)]);
    }

    #[test]
    fn bools_use_configured_tokens_only() {
        let (_, errs) = run(&col(ColumnType::Bool), &[Some("Y"), Some("n"), Some("NO")]);
        assert_eq!(errs, vec![(2, Reason::InvalidBoolean)]);
    }

    fn typed(c: &Column, input: &dyn Array) -> (ArrayRef, Vec<CellError>) {
        let mut errs = vec![];
        let a = ColumnKernel::compile(c).apply(input, &mut errs);
        (a, errs)
    }

    #[test]
    fn typed_values_convert_only_when_nothing_is_lost() {
        use arrow_array::{BinaryArray, Decimal128Array, Int64Array, TimestampMicrosecondArray};
        // Narrowing: in-range values pass, the rest are null and reported.
        let (a, errs) = typed(&col(ColumnType::Int16), &Int64Array::from(vec![Some(7), Some(70_000), None]));
        assert_eq!(a.data_type(), &DataType::Int16);
        assert_eq!(errs, vec![(1, Reason::OutOfRange)]);
        // A smaller scale keeps 1.20 but never rounds 1.25.
        let dec = Decimal128Array::from(vec![120, 125]).with_precision_and_scale(5, 2).unwrap();
        let (a, errs) = typed(&col(ColumnType::Decimal { precision: 5, scale: 1 }), &dec);
        assert_eq!(errs, vec![(1, Reason::DecimalOutOfRange)]);
        assert_eq!(a.as_primitive::<arrow_array::types::Decimal128Type>().value(0), 12);
        // The same type passes through untouched; a non-nullable null is still reported.
        let mut c = col(ColumnType::Int64);
        c.nullable = false;
        let (_, errs) = typed(&c, &Int64Array::from(vec![Some(i64::MIN), None]));
        assert_eq!(errs, vec![(1, Reason::NullNotAllowed)]);
        // Wall-clock time read in the column's zone; a time in a DST gap is reported.
        let mut c = col(ColumnType::TimestampTz);
        c.timezone = Some(chrono_tz::America::New_York);
        let local = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp_micros();
        let input = TimestampMicrosecondArray::from(vec![local("2026-01-15 12:00:00"), local("2026-03-08 02:30:00")]);
        let (a, errs) = typed(&c, &input);
        assert_eq!(a.as_primitive::<TimestampMicrosecondType>().value(0), local("2026-01-15 17:00:00"));
        assert_eq!(errs, vec![(1, Reason::AmbiguousLocalTime)]);
        // Bytes a driver reports for text: UTF-8 checked.
        let (a, errs) = typed(&col(ColumnType::Utf8), &BinaryArray::from(vec![&b"ok"[..], &[0xff, 0xfe][..]]));
        assert_eq!(a.as_string::<i32>().value(0), "ok");
        assert_eq!(errs, vec![(1, Reason::InvalidEncoding)]);
        assert!(!can_convert(&DataType::Utf8, ColumnType::Binary));
        assert!(can_convert(&DataType::Int32, ColumnType::Int64));
    }

    #[test]
    fn text_parses_the_database_types_too() {
        let (a, errs) = run(
            &col(ColumnType::Uuid),
            &[Some("{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"), Some("a0eebc999c0b4ef8bb6d6bb9bd380a1"), Some("zz")],
        );
        assert_eq!(a.as_fixed_size_binary().value(0)[0], 0xa0);
        assert_eq!(errs, vec![(1, Reason::InvalidUuid), (2, Reason::InvalidUuid)]);
        let (_, errs) = run(&col(ColumnType::Json), &[Some("{\"a\": [1, 2]}"), Some("{a:1}")]);
        assert_eq!(errs, vec![(1, Reason::InvalidJson)]);
        let (a, errs) = run(&col(ColumnType::Time), &[Some("23:59:59.999999"), Some("24:00:00"), Some("07:05")]);
        assert_eq!(a.as_primitive::<arrow_array::types::Time64MicrosecondType>().value(0), 86_399_999_999);
        assert_eq!(errs, vec![(1, Reason::InvalidTime)]);
        let (_, errs) = run(&col(ColumnType::Int8), &[Some("127"), Some("128")]);
        assert_eq!(errs, vec![(1, Reason::InvalidInteger)]);
        let big = "-1234567890123456789012345678901234567890.1234567890";
        let (a, errs) = run(&col(ColumnType::Decimal { precision: 60, scale: 10 }), &[Some(big), Some("1.12345678901")]);
        assert_eq!(errs, vec![(1, Reason::DecimalOutOfRange)]);
        let d = a.as_primitive::<arrow_array::types::Decimal256Type>();
        assert_eq!(d.value_as_string(0), big);
    }

    #[test]
    fn utf8_keeps_leading_zeros_and_words() {
        let (a, errs) = run(&col(ColumnType::Utf8), &[Some("02134"), Some("NO")]);
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((a.value(0), a.value(1)), ("02134", "NO"));
        assert!(errs.is_empty());
    }
}
