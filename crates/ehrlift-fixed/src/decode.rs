//! Decoding a record's projected fields to text.
//!
//! A record is decoded in two passes: every projected field is checked and, when it
//! needs converting (numbers, Latin-1 beyond ASCII, EBCDIC), written into one reused
//! scratch string; only when all of them succeeded does the sink see the values, in
//! projection order. So a bad record sends nothing, and a caller appending to column
//! builders never has half a row to undo. ASCII text is borrowed straight from the
//! record: no per-field allocation on any path.

use std::sync::Arc;

use crate::error::{FieldError, Reason, RecordError, RecordProblem};
use crate::layout::{Align, Encoding, Field, FieldType, Layout};
use crate::reader::{Framing, RecordInfo};
use crate::{number, packed, zoned};

/// Receives a record's values.
pub trait FieldSink {
    /// Called once per decoded record before its values, with its record type's index in
    /// [`Layout::record_types`].
    fn begin(&mut self, record_type: usize) {
        let _ = record_type;
    }

    /// The value of the `index`-th field of the projection; empty for a blank field (the
    /// caller's null).
    fn value(&mut self, index: usize, text: &str);
}

impl<F: FnMut(usize, &str)> FieldSink for F {
    fn value(&mut self, index: usize, text: &str) {
        self(index, text)
    }
}

/// A sink that keeps the last record's values, reusing its memory from record to record.
#[derive(Debug, Clone, Default)]
pub struct Row {
    text: String,
    ends: Vec<usize>,
    record_type: usize,
}

impl Row {
    /// An empty row.
    pub fn new() -> Self {
        Row::default()
    }

    /// The record type of the values.
    pub fn record_type(&self) -> usize {
        self.record_type
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th value.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    /// The values in projection order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The values as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl FieldSink for Row {
    fn begin(&mut self, record_type: usize) {
        self.text.clear();
        self.ends.clear();
        self.record_type = record_type;
    }

    fn value(&mut self, _index: usize, text: &str) {
        self.text.push_str(text);
        self.ends.push(self.text.len());
    }
}

/// Where a decoded value is: in the record (ASCII borrowed) or in the scratch string.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Record(usize, usize),
    Scratch(usize, usize),
}

const BLANK: Slot = Slot::Scratch(0, 0);

/// Decodes records of one layout, with the fields chosen per record type.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    layout: Arc<Layout>,
    projections: Vec<Vec<usize>>,
    /// Per record type: whether its projection reads enough of a record that checking
    /// the whole record as ASCII once beats checking each field.
    whole_record: Vec<bool>,
    slots: Vec<Slot>,
    scratch: String,
    digits: Vec<u8>,
}

impl RecordDecoder {
    /// A decoder of every field of every record type; narrow it with
    /// [`set_projection`](Self::set_projection).
    pub fn new(layout: Arc<Layout>) -> Self {
        let projections: Vec<Vec<usize>> = layout.record_types.iter().map(|t| (0..t.fields.len()).collect()).collect();
        let whole_record = vec![false; projections.len()];
        let mut decoder =
            RecordDecoder { layout, projections, whole_record, slots: Vec::new(), scratch: String::new(), digits: Vec::new() };
        for t in 0..decoder.projections.len() {
            decoder.plan(t);
        }
        decoder
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Decodes only `fields` (indices into that type's [`fields`](crate::RecordType::fields),
    /// for instance from [`field_index`](crate::RecordType::field_index)) of records of
    /// type `record_type`, and gives them to the sink in this order.
    ///
    /// # Panics
    /// If `record_type` or a field index is out of range (a caller's bug).
    pub fn set_projection(&mut self, record_type: usize, fields: Vec<usize>) {
        let n = self.layout.record_types[record_type].fields.len();
        assert!(fields.iter().all(|&i| i < n), "a projected field index is out of range for record type {record_type}");
        self.projections[record_type] = fields;
        self.plan(record_type);
    }

    /// Checking a whole record as ASCII (and making it a `&str`) costs about as much as
    /// checking a quarter of it field by field, with a call per field: when the
    /// projection's text covers more than that, a record is checked once.
    fn plan(&mut self, t: usize) {
        let rt = &self.layout.record_types[t];
        let text_bytes: usize =
            self.projections[t].iter().map(|&i| &rt.fields[i]).filter(|f| f.kind == FieldType::Text).map(|f| f.range.len()).sum();
        self.whole_record[t] = self.layout.encoding != Encoding::Cp037 && text_bytes * 4 >= rt.max_end;
    }

    /// The projection of a record type.
    pub fn projection(&self, record_type: usize) -> &[usize] {
        &self.projections[record_type]
    }

    /// Decodes `record` (described by `info`, from [`crate::RecordReader`]): chooses its
    /// record type, checks its length, decodes the type's projection and, only when every
    /// field succeeded, gives the values to `sink`. Returns the record type's index.
    pub fn decode<S: FieldSink + ?Sized>(&mut self, info: &RecordInfo, record: &[u8], sink: &mut S) -> Result<usize, RecordError> {
        let at = |problem| RecordError { record: info.number, byte_offset: info.byte_offset, problem };
        let layout = &*self.layout;
        if info.too_long {
            let limit = match layout.framing {
                Framing::Lines { max_line } => max_line,
                Framing::Fixed { record_length } => record_length,
            };
            return Err(at(RecordProblem::TooLong { found: info.length, limit }));
        }
        let len = record.len();
        if let Some(expected) = layout.record_length
            && len != expected
            && !(layout.pad_short_lines && len < expected)
        {
            return Err(at(RecordProblem::WrongLength { expected, found: len, field: None }));
        }
        let t = match &layout.discriminator {
            None => 0,
            Some(r) => {
                if r.end > len && !layout.pad_short_lines {
                    return Err(at(RecordProblem::WrongLength { expected: r.end, found: len, field: Some("discriminator".into()) }));
                }
                let code = trim_spaces(&record[r.start.min(len)..r.end.min(len)], layout.encoding.byte_of(b' '));
                match layout.record_types.iter().position(|t| t.code_bytes == code) {
                    Some(t) => t,
                    None => return Err(at(RecordProblem::UnknownRecordType)),
                }
            }
        };
        let rt = &layout.record_types[t];
        // The record as text when it is all ASCII: then no field needs its own check.
        let whole = if self.whole_record[t] { std::str::from_utf8(record).ok().filter(|s| s.is_ascii()) } else { None };
        self.slots.clear();
        self.scratch.clear();
        for &i in &self.projections[t] {
            let f = &rt.fields[i];
            let slot = decode_field(f, record, whole.is_some(), layout, &mut self.scratch, &mut self.digits).map_err(|fail| {
                at(match fail {
                    Fail::Short => RecordProblem::WrongLength { expected: f.range.end, found: len, field: Some(f.name.clone()) },
                    Fail::Bad(reason) => RecordProblem::Field(FieldError { field: f.name.clone(), reason }),
                })
            })?;
            self.slots.push(slot);
        }
        sink.begin(t);
        for (i, slot) in self.slots.iter().enumerate() {
            let text = match *slot {
                Slot::Record(s, e) => match whole {
                    Some(text) => &text[s..e],
                    None => std::str::from_utf8(&record[s..e]).expect("a borrowed value is checked ASCII"),
                },
                Slot::Scratch(s, e) => &self.scratch[s..e],
            };
            sink.value(i, text);
        }
        Ok(t)
    }
}

/// Why a field failed; made into a [`RecordProblem`] by the caller, who knows its name.
enum Fail {
    /// The record ends before the field's bytes.
    Short,
    /// The bytes are bad.
    Bad(Reason),
}

#[inline]
fn decode_field(
    f: &Field,
    record: &[u8],
    ascii_record: bool,
    layout: &Layout,
    scratch: &mut String,
    digits: &mut Vec<u8>,
) -> Result<Slot, Fail> {
    let len = record.len();
    let mut bytes = match record.get(f.range.clone()) {
        Some(b) => b,
        None => {
            if !layout.pad_short_lines {
                return Err(Fail::Short);
            }
            if f.range.start >= len {
                return Ok(BLANK);
            }
            if !matches!(f.kind, FieldType::Text | FieldType::Integer | FieldType::Decimal) {
                return Err(Fail::Short);
            }
            &record[f.range.start..]
        }
    };
    let enc = layout.encoding;
    let start = scratch.len();
    let wrote = |scratch: &String| if scratch.len() == start { BLANK } else { Slot::Scratch(start, scratch.len()) };
    match f.kind {
        FieldType::Text => {
            let space = enc.byte_of(b' ');
            let offset;
            (bytes, offset) = if f.trim { trim_text(bytes, space, enc.byte_of(f.pad), f.align) } else { untrimmed(bytes, space) };
            if bytes.is_empty() {
                return Ok(BLANK);
            }
            let s = f.range.start + offset;
            match enc {
                Encoding::Ascii | Encoding::Latin1 | Encoding::Windows1252 if ascii_record => Ok(Slot::Record(s, s + bytes.len())),
                Encoding::Ascii if bytes.is_ascii() => Ok(Slot::Record(s, s + bytes.len())),
                Encoding::Ascii => Err(Fail::Bad(Reason::InvalidEncoding)),
                Encoding::Latin1 if bytes.is_ascii() => Ok(Slot::Record(s, s + bytes.len())),
                Encoding::Latin1 => {
                    scratch.extend(bytes.iter().map(|&b| char::from(b)));
                    Ok(wrote(scratch))
                }
                Encoding::Windows1252 if bytes.is_ascii() => Ok(Slot::Record(s, s + bytes.len())),
                Encoding::Windows1252 => {
                    scratch.push_str(&encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0);
                    Ok(wrote(scratch))
                }
                Encoding::Cp037 => {
                    crate::cp037::decode_into(bytes, scratch);
                    Ok(wrote(scratch))
                }
            }
        }
        FieldType::Integer | FieldType::Decimal => {
            let point = f.kind == FieldType::Decimal;
            number::text_number(bytes, enc, f.pad, f.align, f.decimals.into(), point, digits, scratch).map_err(Fail::Bad)?;
            Ok(wrote(scratch))
        }
        FieldType::Zoned => {
            zoned::decode(bytes, enc, f.decimals.into(), digits, scratch).map_err(Fail::Bad)?;
            Ok(wrote(scratch))
        }
        FieldType::Packed => {
            packed::decode(bytes, enc, f.decimals.into(), digits, scratch).map_err(Fail::Bad)?;
            Ok(wrote(scratch))
        }
        FieldType::Binary => {
            number::binary(bytes, f.signed, f.decimals.into(), scratch);
            Ok(wrote(scratch))
        }
    }
}

/// Removes the padding (on the aligned side, with spaces) and spaces (on the other side);
/// returns the value and its offset in `bytes`.
#[inline]
fn trim_text(bytes: &[u8], space: u8, pad: u8, align: Align) -> (&[u8], usize) {
    let (lead, trail) = match align {
        Align::Left => (space, pad),
        Align::Right => (pad, space),
    };
    let mut s = 0;
    let mut e = bytes.len();
    while s < e && (bytes[s] == space || bytes[s] == lead) {
        s += 1;
    }
    while e > s && (bytes[e - 1] == space || bytes[e - 1] == trail) {
        e -= 1;
    }
    (&bytes[s..e], s)
}

/// `trim = false`: the value as written, but all spaces is still blank.
fn untrimmed(bytes: &[u8], space: u8) -> (&[u8], usize) {
    if bytes.iter().all(|&b| b == space) { (&[], 0) } else { (bytes, 0) }
}

fn trim_spaces(bytes: &[u8], space: u8) -> &[u8] {
    trim_text(bytes, space, space, Align::Left).0
}
