//! What a database column becomes in the raw batch (its [`Kind`]), the Arrow builders
//! that collect it, and the keyset cursor: the last row's key, sealed.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use arrow_array::builder::ArrayBuilder as _;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field, TimeUnit};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The raw Arrow type a database column is read as: the natural, lossless image of the
/// database type. The mapping kernels convert it to the declared type afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Boolean.
    Bool,
    /// Signed integers.
    I8,
    /// 16-bit.
    I16,
    /// 32-bit.
    I32,
    /// 64-bit.
    I64,
    /// Unsigned integers (MySQL).
    U8,
    /// 16-bit.
    U16,
    /// 32-bit.
    U32,
    /// 64-bit.
    U64,
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// Text.
    Text,
    /// NUMERIC/DECIMAL as exact decimal text, parsed to the declared precision later.
    Decimal,
    /// JSON text.
    Json,
    /// Bytes.
    Binary,
    /// Date.
    Date,
    /// Time of day, microseconds.
    Time,
    /// Timestamp without zone, microseconds.
    Timestamp,
    /// Instant, microseconds UTC.
    TimestampTz,
    /// 16-byte UUID.
    Uuid,
    /// One-dimensional array.
    List(Box<Kind>),
}

impl Kind {
    /// The Arrow type of the raw column.
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::I8 => DataType::Int8,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::U8 => DataType::UInt8,
            Kind::U16 => DataType::UInt16,
            Kind::U32 => DataType::UInt32,
            Kind::U64 => DataType::UInt64,
            Kind::F32 => DataType::Float32,
            Kind::F64 => DataType::Float64,
            Kind::Text | Kind::Decimal | Kind::Json => DataType::Utf8,
            Kind::Binary => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Uuid => DataType::FixedSizeBinary(16),
            Kind::List(e) => DataType::List(Arc::new(Field::new("item", e.data_type(), true))),
        }
    }

    /// Whether a keyset cursor can hold this kind (orderable scalars).
    pub fn orderable(&self) -> bool {
        !matches!(self, Kind::List(_) | Kind::Bool | Kind::F32 | Kind::F64 | Kind::Json)
    }
}

/// A column being collected.
pub enum Builder {
    /// Boolean.
    Bool(BooleanBuilder),
    /// i8.
    I8(Int8Builder),
    /// i16.
    I16(Int16Builder),
    /// i32.
    I32(Int32Builder),
    /// i64.
    I64(Int64Builder),
    /// u8.
    U8(UInt8Builder),
    /// u16.
    U16(UInt16Builder),
    /// u32.
    U32(UInt32Builder),
    /// u64.
    U64(UInt64Builder),
    /// f32.
    F32(Float32Builder),
    /// f64.
    F64(Float64Builder),
    /// Text, as bytes validated once per batch (see [`TextBuilder`]).
    Text(TextBuilder),
    /// Bytes.
    Binary(BinaryBuilder),
    /// Days since the epoch.
    Date(Date32Builder),
    /// Microseconds since midnight.
    Time(Time64MicrosecondBuilder),
    /// Microseconds since the epoch, naive or UTC.
    Ts(TimestampMicrosecondBuilder),
    /// 16 bytes.
    Uuid(FixedSizeBinaryBuilder),
    /// Arrays: the elements' builder, offsets and validity.
    List(Box<ListParts>),
}

/// Text collected as bytes and checked as UTF-8 once per batch: one pass over the whole
/// buffer plus a boundary check per value (what Arrow's own validation does) costs far
/// less than validating thousands of short strings one by one.
#[derive(Default)]
pub struct TextBuilder(BinaryBuilder);

impl TextBuilder {
    /// Appends text already known to be UTF-8.
    pub fn append_str(&mut self, v: &str) {
        self.0.append_value(v.as_bytes());
    }

    /// Appends bytes that should be UTF-8; checked when the batch is finished.
    pub fn append_bytes(&mut self, v: &[u8]) {
        self.0.append_value(v);
    }

    /// The text array, and the rows whose bytes were not UTF-8 (null in the array).
    pub fn finish(&mut self) -> (arrow_array::StringArray, Vec<usize>) {
        let bin = self.0.finish();
        match arrow_array::StringArray::try_from_binary(bin.clone()) {
            Ok(s) => (s, Vec::new()),
            Err(_) => {
                let mut bad = Vec::new();
                let s = bin
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.and_then(|v| {
                            let t = std::str::from_utf8(v).ok();
                            if t.is_none() {
                                bad.push(i);
                            }
                            t
                        })
                    })
                    .collect();
                (s, bad)
            }
        }
    }
}

/// A list column under construction, so elements decode with the scalar code.
pub struct ListParts {
    /// Element builder.
    pub values: Builder,
    field: Arc<Field>,
    offsets: Vec<i32>,
    valid: Vec<bool>,
}

impl ListParts {
    /// The list array over finished `values`; the parts are empty afterwards.
    fn assemble(&mut self, values: ArrayRef) -> ArrayRef {
        let offsets = arrow_buffer::OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        let valid = std::mem::take(&mut self.valid);
        let nulls = valid.iter().any(|v| !v).then(|| arrow_buffer::NullBuffer::from(valid));
        Arc::new(arrow_array::ListArray::new(self.field.clone(), offsets, values, nulls))
    }

    /// Closes the current list after its elements were appended to `values`.
    pub fn close(&mut self, valid: bool) {
        self.offsets.push(self.values.len() as i32);
        self.valid.push(valid);
    }
}

impl Builder {
    /// An empty builder for `kind`.
    pub fn new(kind: &Kind) -> Builder {
        match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::I8 => Builder::I8(Int8Builder::new()),
            Kind::I16 => Builder::I16(Int16Builder::new()),
            Kind::I32 => Builder::I32(Int32Builder::new()),
            Kind::I64 => Builder::I64(Int64Builder::new()),
            Kind::U8 => Builder::U8(UInt8Builder::new()),
            Kind::U16 => Builder::U16(UInt16Builder::new()),
            Kind::U32 => Builder::U32(UInt32Builder::new()),
            Kind::U64 => Builder::U64(UInt64Builder::new()),
            Kind::F32 => Builder::F32(Float32Builder::new()),
            Kind::F64 => Builder::F64(Float64Builder::new()),
            Kind::Text | Kind::Decimal | Kind::Json => Builder::Text(TextBuilder::default()),
            Kind::Binary => Builder::Binary(BinaryBuilder::new()),
            Kind::Date => Builder::Date(Date32Builder::new()),
            Kind::Time => Builder::Time(Time64MicrosecondBuilder::new()),
            Kind::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new()),
            Kind::TimestampTz => Builder::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            Kind::Uuid => Builder::Uuid(FixedSizeBinaryBuilder::new(16)),
            Kind::List(e) => Builder::List(Box::new(ListParts {
                values: Builder::new(e),
                field: Arc::new(Field::new("item", e.data_type(), true)),
                offsets: vec![0],
                valid: Vec::new(),
            })),
        }
    }

    /// Appends a null.
    pub fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::I8(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::U8(b) => b.append_null(),
            Builder::U16(b) => b.append_null(),
            Builder::U32(b) => b.append_null(),
            Builder::U64(b) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Text(b) => b.0.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
            Builder::Uuid(b) => b.append_null(),
            Builder::List(b) => b.close(false),
        }
    }

    /// The finished array and the rows whose text was not UTF-8 (null in the array).
    pub fn finish_checked(&mut self) -> (ArrayRef, Vec<usize>) {
        match self {
            Builder::Text(b) => {
                let (a, bad) = b.finish();
                (Arc::new(a), bad)
            }
            Builder::List(l) => {
                // A bad element makes its whole row bad.
                let ends = l.offsets[1..].to_vec();
                let (values, bad_elems) = l.values.finish_checked();
                let mut bad: Vec<usize> = bad_elems.iter().map(|&e| ends.partition_point(|&end| end as usize <= e)).collect();
                bad.dedup();
                (l.assemble(values), bad)
            }
            other => (other.finish(), Vec::new()),
        }
    }

    /// The finished array; the builder is empty and reusable afterwards.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::I8(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U16(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish().0),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::Uuid(b) => Arc::new(b.finish()),
            Builder::List(b) => {
                let values = b.values.finish();
                b.assemble(values)
            }
        }
    }

    /// Values appended so far.
    pub fn len(&self) -> usize {
        match self {
            Builder::Bool(b) => b.len(),
            Builder::I8(b) => b.len(),
            Builder::I16(b) => b.len(),
            Builder::I32(b) => b.len(),
            Builder::I64(b) => b.len(),
            Builder::U8(b) => b.len(),
            Builder::U16(b) => b.len(),
            Builder::U32(b) => b.len(),
            Builder::U64(b) => b.len(),
            Builder::F32(b) => b.len(),
            Builder::F64(b) => b.len(),
            Builder::Text(b) => b.0.len(),
            Builder::Binary(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Time(b) => b.len(),
            Builder::Ts(b) => b.len(),
            Builder::Uuid(b) => b.len(),
            Builder::List(b) => b.valid.len(),
        }
    }
}

/// One key column's value in a keyset cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum KeyValue {
    /// Any signed integer.
    Int(i64),
    /// Any unsigned integer.
    Uint(u64),
    /// Text (and exact decimal text).
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since the epoch (naive or UTC, as the column).
    Micros(i64),
    /// UUID bytes.
    Uuid([u8; 16]),
}

impl KeyValue {
    /// Row `i` of a raw key array; `None` for a null (a key may not be null).
    pub fn of(a: &dyn Array, i: usize) -> Option<KeyValue> {
        if a.is_null(i) {
            return None;
        }
        Some(match a.data_type() {
            DataType::Int8 => KeyValue::Int(a.as_primitive::<Int8Type>().value(i).into()),
            DataType::Int16 => KeyValue::Int(a.as_primitive::<Int16Type>().value(i).into()),
            DataType::Int32 => KeyValue::Int(a.as_primitive::<Int32Type>().value(i).into()),
            DataType::Int64 => KeyValue::Int(a.as_primitive::<Int64Type>().value(i)),
            DataType::UInt8 => KeyValue::Uint(a.as_primitive::<UInt8Type>().value(i).into()),
            DataType::UInt16 => KeyValue::Uint(a.as_primitive::<UInt16Type>().value(i).into()),
            DataType::UInt32 => KeyValue::Uint(a.as_primitive::<UInt32Type>().value(i).into()),
            DataType::UInt64 => KeyValue::Uint(a.as_primitive::<UInt64Type>().value(i)),
            DataType::Utf8 => KeyValue::Text(a.as_string::<i32>().value(i).to_owned()),
            DataType::Binary => KeyValue::Bytes(a.as_binary::<i32>().value(i).to_vec()),
            DataType::Date32 => KeyValue::Date(a.as_primitive::<Date32Type>().value(i)),
            DataType::Time64(_) => KeyValue::Time(a.as_primitive::<arrow_array::types::Time64MicrosecondType>().value(i)),
            DataType::Timestamp(..) => KeyValue::Micros(a.as_primitive::<TimestampMicrosecondType>().value(i)),
            DataType::FixedSizeBinary(16) => KeyValue::Uuid(a.as_fixed_size_binary().value(i).try_into().expect("16 bytes")),
            // Floats and booleans are refused as keys when the table opens.
            DataType::Float32 => KeyValue::Text(a.as_primitive::<Float32Type>().value(i).to_string()),
            DataType::Float64 => KeyValue::Text(a.as_primitive::<Float64Type>().value(i).to_string()),
            _ => return None,
        })
    }
}

/// Seals keyset cursors: AES-256-GCM under a key derived from the project key, bound
/// to the table, so a checkpoint at the destination never shows a key value in clear.
#[derive(Clone)]
pub struct CursorSeal {
    cipher: Arc<Aes256Gcm>,
}

impl std::fmt::Debug for CursorSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSeal(..)")
    }
}

/// Why a stored cursor cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the resume cursor cannot be opened: it was sealed with another project key, for another table, or altered")]
pub struct CursorError;

impl CursorSeal {
    /// A seal from 32 bytes of key material (`ProjectKey::derive("ehrlift/cursor/v1")`).
    pub fn new(key: &[u8; 32]) -> Self {
        CursorSeal { cipher: Arc::new(Aes256Gcm::new(key.into())) }
    }

    /// `base64(nonce ‖ ciphertext)` of the key values, bound to `table`.
    pub fn seal(&self, table: &str, key: &[KeyValue]) -> String {
        let plain = serde_json::to_vec(key).expect("key values serialize");
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let ct = self.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: table.as_bytes() }).expect("AES-GCM seals");
        let mut out = nonce.to_vec();
        out.extend(ct);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The key values of a sealed cursor.
    pub fn open(&self, table: &str, sealed: &str) -> Result<Vec<KeyValue>, CursorError> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| CursorError)?;
        if raw.len() < 12 {
            return Err(CursorError);
        }
        let (nonce, ct) = raw.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: table.as_bytes() }).map_err(|_| CursorError)?;
        serde_json::from_slice(&plain).map_err(|_| CursorError)
    }
}

/// Days between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
pub const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds between the two epochs.
pub const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * 86_400_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_key_and_table() {
        let seal = CursorSeal::new(&[7; 32]);
        let key = vec![KeyValue::Int(-9_000_000_000), KeyValue::Text("MRN-ZZSENTINEL".into()), KeyValue::Uuid([1; 16])];
        let s = seal.seal("patients", &key);
        assert!(!s.contains("ZZSENTINEL"));
        assert_eq!(seal.open("patients", &s).unwrap(), key);
        assert!(seal.open("visits", &s).is_err());
        assert!(CursorSeal::new(&[8; 32]).open("patients", &s).is_err());
        assert_ne!(seal.seal("patients", &key), s, "a fresh nonce each time");
    }

    #[test]
    fn every_key_kind_round_trips_through_a_seal() {
        // Split points of sharded runs cross processes sealed: every kind, at its extremes.
        let seal = CursorSeal::new(&[9; 32]);
        let key = vec![
            KeyValue::Int(i64::MIN),
            KeyValue::Int(i64::MAX),
            KeyValue::Uint(u64::MAX),
            KeyValue::Text("O'Brien \"ZZSENTINEL\" é \u{1F600}\n".into()),
            KeyValue::Text(String::new()),
            KeyValue::Bytes(vec![0, 255, 10, 34]),
            KeyValue::Date(i32::MIN),
            KeyValue::Date(-719_162),
            KeyValue::Time(86_399_999_999),
            KeyValue::Micros(i64::MIN),
            KeyValue::Micros(-1),
            KeyValue::Uuid([0xab; 16]),
        ];
        let s = seal.seal("visits", &key);
        assert!(!s.contains("ZZSENTINEL") && !s.contains("Brien"));
        assert_eq!(seal.open("visits", &s).unwrap(), key);
    }

    #[test]
    fn text_is_checked_once_per_batch_and_bad_rows_are_named() {
        let mut b = Builder::new(&Kind::Text);
        let Builder::Text(t) = &mut b else { unreachable!() };
        t.append_bytes("é".as_bytes());
        t.append_bytes(&[0xc3]); // half of a two-byte character
        t.append_bytes(&[0xa9]); // the other half, as its own value
        t.0.append_null();
        let (a, bad) = b.finish_checked();
        assert_eq!(bad, [1, 2]);
        assert_eq!(a.as_string::<i32>().value(0), "é");
        assert_eq!(a.null_count(), 3);
        // In a list, a bad element makes its row bad.
        let mut l = Builder::new(&Kind::List(Box::new(Kind::Text)));
        let Builder::List(parts) = &mut l else { unreachable!() };
        for row in [&[&b"a"[..], b"b"][..], &[&[0xff][..]], &[b"c"]] {
            for v in row {
                let Builder::Text(t) = &mut parts.values else { unreachable!() };
                t.append_bytes(v);
            }
            parts.close(true);
        }
        let (_, bad) = l.finish_checked();
        assert_eq!(bad, [1]);
    }
}
