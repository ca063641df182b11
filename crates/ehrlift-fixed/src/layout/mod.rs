//! The layout model: record types, their fields, the encoding and the framing.
//!
//! A [`Layout`] is built only by [`Layout::from_toml`] (in `load.rs`), which validates
//! everything, so the decoder can trust every range and option it finds here.

mod load;

use std::collections::BTreeMap;
use std::ops::Range;

use toml::{Spanned, Value};

use crate::reader::Framing;

/// Keys of a field or record type that this crate does not interpret (`phi`, `rule`, `to`,
/// `description`...), kept with their spans for the mapping loader.
pub type Extras = BTreeMap<String, Spanned<Value>>;

/// A parsed layout file: the [`Layout`] and the top-level keys that are not the layout's.
#[derive(Debug, Clone)]
pub struct LayoutFile {
    /// The validated layout.
    pub layout: Layout,
    /// Top-level keys other than `layout`, `fields` and `record_types`, with their spans,
    /// for the caller to use or reject.
    pub other: Extras,
}

/// The text encoding of a file's text, integer, decimal and zoned fields (packed and
/// binary fields are raw bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// 7-bit ASCII: a byte of 0x80 or more is an `invalid_encoding` error.
    Ascii,
    /// ISO-8859-1: every byte is the code point of the same value.
    Latin1,
    /// Windows-1252 (what many "Latin-1" exports really are): ISO-8859-1 with printable
    /// characters such as `€`, `“` and `”` in 0x80–0x9F, decoded as the WHATWG standard does.
    Windows1252,
    /// EBCDIC code page 037 (IBM CCSID 37, US/Canada).
    Cp037,
}

impl Encoding {
    /// The layout TOML name.
    pub const fn name(self) -> &'static str {
        match self {
            Encoding::Ascii => "ascii",
            Encoding::Latin1 => "latin1",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Cp037 => "cp037",
        }
    }

    /// The byte of an ASCII character in this encoding.
    pub(crate) fn byte_of(self, ascii: u8) -> u8 {
        match self {
            Encoding::Ascii | Encoding::Latin1 | Encoding::Windows1252 => ascii,
            Encoding::Cp037 => crate::cp037::FROM_LATIN1[ascii as usize],
        }
    }

    /// The ASCII character a byte stands for, or 0xFF when it is not ASCII.
    #[inline]
    pub(crate) fn ascii_of(self, byte: u8) -> u8 {
        let c = match self {
            Encoding::Ascii | Encoding::Latin1 | Encoding::Windows1252 => byte,
            Encoding::Cp037 => crate::cp037::TO_LATIN1[byte as usize],
        };
        if c < 0x80 { c } else { 0xFF }
    }
}

/// How a field's bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Characters in the layout's encoding; padding removed.
    Text,
    /// Digits with an optional sign, implied `decimals`.
    Integer,
    /// Digits with an optional sign and an explicit `.`.
    Decimal,
    /// COBOL `PIC S9(n)` DISPLAY: digits, the sign overpunched on the last one.
    Zoned,
    /// COBOL COMP-3: two BCD digits a byte, the last nibble the sign.
    Packed,
    /// COBOL COMP/COMP-4: big-endian two's complement of 2, 4 or 8 bytes.
    Binary,
}

impl FieldType {
    /// The layout TOML name.
    pub const fn name(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Zoned => "zoned",
            FieldType::Packed => "packed",
            FieldType::Binary => "binary",
        }
    }

    /// Whether the field's value is a number (canonical text like `-123.45`).
    pub const fn is_numeric(self) -> bool {
        !matches!(self, FieldType::Text)
    }
}

/// Which side of a field its padding is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Align {
    /// Value first, padding after (the default for text).
    Left,
    /// Padding first, value after (the default for numbers).
    Right,
}

/// One field of a record type.
#[derive(Debug, Clone)]
pub struct Field {
    pub(crate) name: String,
    pub(crate) range: Range<usize>,
    pub(crate) kind: FieldType,
    pub(crate) decimals: u8,
    pub(crate) align: Align,
    pub(crate) pad: u8,
    pub(crate) trim: bool,
    pub(crate) signed: bool,
    pub(crate) line: usize,
    pub(crate) extra: Extras,
}

impl Field {
    /// The field's name, unique within its record type.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bytes in the record, 0-based and end-exclusive.
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Always false: a field has at least one byte. (Present for `len`'s sake.)
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// How its bytes are read.
    pub fn field_type(&self) -> FieldType {
        self.kind
    }

    /// Implied decimal places (integer, zoned, packed, binary); 0 otherwise.
    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    /// Side of the padding.
    pub fn align(&self) -> Align {
        self.align
    }

    /// The pad character (ASCII).
    pub fn pad(&self) -> char {
        char::from(self.pad)
    }

    /// Whether padding and surrounding spaces are removed (`trim = false` keeps a text
    /// value exactly as written, except that an all-space value is still empty).
    pub fn trims(&self) -> bool {
        self.trim
    }

    /// For binary fields: two's complement (true, the default) or unsigned.
    pub fn signed(&self) -> bool {
        self.signed
    }

    /// The 1-based line of the field's table in the layout file.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Keys this crate does not interpret, with their spans.
    pub fn extra(&self) -> &Extras {
        &self.extra
    }
}

/// One kind of record: the layout's common fields, then its own.
#[derive(Debug, Clone)]
pub struct RecordType {
    pub(crate) code: Option<String>,
    /// The code as bytes of the layout's encoding, for comparing without decoding.
    pub(crate) code_bytes: Vec<u8>,
    pub(crate) name: String,
    pub(crate) fields: Vec<Field>,
    pub(crate) line: usize,
    pub(crate) extra: Extras,
    /// The furthest end of any field, for the short-record check.
    pub(crate) max_end: usize,
}

impl RecordType {
    /// The discriminator value that selects it; `None` for the single type of a layout
    /// without `record_types`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Its name (the layout's name for the single default type).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its fields: the common `[[fields]]` first, then the type's own, each in file order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The index (in [`fields`](Self::fields)) of the field named `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The 1-based line of its `[[record_types]]` table (of `[layout]` for the default type).
    pub fn line(&self) -> usize {
        self.line
    }

    /// Keys of its table this crate does not interpret.
    pub fn extra(&self) -> &Extras {
        &self.extra
    }
}

/// A validated fixed-width layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub(crate) name: String,
    pub(crate) encoding: Encoding,
    pub(crate) framing: Framing,
    pub(crate) record_length: Option<usize>,
    pub(crate) pad_short_lines: bool,
    pub(crate) discriminator: Option<Range<usize>>,
    pub(crate) record_types: Vec<RecordType>,
}

impl Layout {
    /// The layout's free-text name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The encoding of its text.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// How records are cut from the file; give it to [`crate::RecordReader::new`].
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The exact record length, when the layout sets one.
    pub fn record_length(&self) -> Option<usize> {
        self.record_length
    }

    /// Whether a line shorter than the layout reads its missing fields as blank
    /// (`pad_short_lines = true`, as csvkit does) instead of being `wrong_length`.
    pub fn pads_short_lines(&self) -> bool {
        self.pad_short_lines
    }

    /// The discriminator's bytes (0-based, end-exclusive), when there are record types.
    pub fn discriminator(&self) -> Option<Range<usize>> {
        self.discriminator.clone()
    }

    /// The record types: one default type when the layout has no `[[record_types]]`.
    pub fn record_types(&self) -> &[RecordType] {
        &self.record_types
    }

    /// The index and record type named `name`.
    pub fn record_type(&self, name: &str) -> Option<(usize, &RecordType)> {
        self.record_types.iter().enumerate().find(|(_, t)| t.name == name)
    }
}
