//! Column kernels: one compiled function per output column, from the raw utf8
//! source array to the typed output array.
//!
//! Per value: trim, null tokens, recode, then parse. A value that can't be
//! converted becomes null in the output and its row index and [`Reason`] are
//! reported, so the caller quarantines the row; the value itself is never kept.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer};
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
        Field::new(&self.name, data_type(self.ty), self.nullable)
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

    /// Converts one raw column. Failed rows are null in the result and listed in `errors`.
    pub fn apply(&self, input: &StringArray, errors: &mut Vec<CellError>) -> ArrayRef {
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
        match self.ty {
            ColumnType::Utf8 => {
                if !self.trim && self.recode.is_none() {
                    return self.null_tokens_only(input, errors);
                }
                run!(StringBuilder::with_capacity(n, input.value_data().len()), |v| Ok::<_, Reason>(v))
            }
            ColumnType::Int64 => run!(Int64Builder::with_capacity(n), |v| v.parse::<i64>().map_err(|_| Reason::InvalidInteger)),
            ColumnType::Float64 => run!(Float64Builder::with_capacity(n), |v| v.parse::<f64>().map_err(|_| Reason::InvalidFloat)),
            ColumnType::Decimal { precision, scale } => {
                run!(Decimal128Builder::with_capacity(n).with_precision_and_scale(precision, scale).expect("validated decimal"), |v| {
                    parse_decimal(v, precision, scale)
                })
            }
            ColumnType::Bool => run!(BooleanBuilder::with_capacity(n), |v| self.parse_bool(v)),
            ColumnType::Date32 => {
                let t = self.temporal.as_ref().expect("temporal parser");
                run!(Date32Builder::with_capacity(n), |v| t.date(v))
            }
            ColumnType::Timestamp => {
                let t = self.temporal.as_ref().expect("temporal parser");
                run!(TimestampMicrosecondBuilder::with_capacity(n), |v| t.naive_micros(v))
            }
            ColumnType::TimestampTz => {
                let t = self.temporal.as_ref().expect("temporal parser");
                run!(TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"), |v| t.instant_micros(v, &self.timezone))
            }
        }
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
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Date32 => DataType::Date32,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// Parses a plain decimal (`-12.50`, `+3`, `.5`) exactly: no exponent, and no digit
/// beyond the scale unless it is zero, so nothing is ever rounded.
pub fn parse_decimal(s: &str, precision: u8, scale: i8) -> Result<i128, Reason> {
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
    let mut v: i128 = 0;
    for &c in int.iter().chain(kept) {
        v = v * 10 + i128::from(c - b'0');
    }
    for _ in kept.len()..scale {
        v *= 10;
    }
    Ok(if neg { -v } else { v })
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

    #[test]
    fn utf8_keeps_leading_zeros_and_words() {
        let (a, errs) = run(&col(ColumnType::Utf8), &[Some("02134"), Some("NO")]);
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((a.value(0), a.value(1)), ("02134", "NO"));
        assert!(errs.is_empty());
    }
}
