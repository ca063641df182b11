//! Errors. A record's bytes may be patient data, so no error of this crate holds any of
//! them: record errors carry the record number, byte offsets, lengths, a field name (from
//! the layout) and a [`Reason`]; layout and import errors carry lines and layout text,
//! which is configuration, not data.

use std::fmt;

/// Why a record was rejected. A closed set with stable snake_case codes ([`Reason::code`])
/// for quarantine files and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The record is not `record_length` bytes long, or ends before a field it needs.
    WrongLength,
    /// The discriminator bytes name no record type of the layout.
    UnknownRecordType,
    /// A text field holds a byte its encoding does not allow (non-ASCII under `ascii`).
    InvalidEncoding,
    /// An `integer` or `decimal` field is not a number.
    InvalidNumber,
    /// A `zoned` field has a byte that is neither a digit nor, in last place, a signed digit.
    InvalidZoned,
    /// A `packed` field has a nibble that is not a digit, or a last nibble that is not a sign.
    InvalidPacked,
    /// A `binary` field cannot be read. Every 2, 4 or 8 byte pattern is a valid integer,
    /// so the decoder of this version never gives it; the code is kept so the set is stable.
    InvalidBinary,
    /// A line is longer than the reader's limit; its bytes were skipped, not kept.
    RecordTooLong,
}

impl Reason {
    /// The stable snake_case code, as written in quarantine files.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::WrongLength => "wrong_length",
            Reason::UnknownRecordType => "unknown_record_type",
            Reason::InvalidEncoding => "invalid_encoding",
            Reason::InvalidNumber => "invalid_number",
            Reason::InvalidZoned => "invalid_zoned",
            Reason::InvalidPacked => "invalid_packed",
            Reason::InvalidBinary => "invalid_binary",
            Reason::RecordTooLong => "record_too_long",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A field that could not be decoded: its name (from the layout) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name in the layout.
    pub field: String,
    /// What is wrong with its bytes.
    pub reason: Reason,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.reason)
    }
}

/// What is wrong with a record (see [`RecordError`] for where).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordProblem {
    /// The record has `found` bytes; it needs exactly `expected` (the layout's
    /// `record_length`), or at least `expected` when `field` names the field (or
    /// `discriminator`) that reaches past its end.
    WrongLength {
        /// Bytes the layout wants.
        expected: usize,
        /// Bytes the record has.
        found: usize,
        /// The field that needs the missing bytes, when the layout has no `record_length`.
        field: Option<String>,
    },
    /// The discriminator names no record type. Its value is not kept: it is record data.
    UnknownRecordType,
    /// A line of `found` bytes is over the reader's limit of `limit` bytes.
    TooLong {
        /// Length of the line, without its terminator.
        found: u64,
        /// The reader's limit.
        limit: usize,
    },
    /// One field failed.
    Field(FieldError),
}

/// A record could not be decoded: quarantine it under its number with [`RecordError::reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// 1-based number of the record in the file.
    pub record: u64,
    /// Byte offset of the record's first byte in the file.
    pub byte_offset: u64,
    /// What is wrong.
    pub problem: RecordProblem,
}

impl RecordError {
    /// The reason code.
    pub fn reason(&self) -> Reason {
        match &self.problem {
            RecordProblem::WrongLength { .. } => Reason::WrongLength,
            RecordProblem::UnknownRecordType => Reason::UnknownRecordType,
            RecordProblem::TooLong { .. } => Reason::RecordTooLong,
            RecordProblem::Field(e) => e.reason,
        }
    }

    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match &self.problem {
            RecordProblem::WrongLength { field, .. } => field.as_deref(),
            RecordProblem::Field(e) => Some(&e.field),
            _ => None,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} at byte {}: ", self.record, self.byte_offset)?;
        match &self.problem {
            RecordProblem::WrongLength { expected, found, field: None } => {
                write!(f, "wrong_length: {found} bytes, expected {expected}")
            }
            RecordProblem::WrongLength { expected, found, field: Some(name) } => {
                write!(f, "wrong_length: {found} bytes, `{name}` needs at least {expected}")
            }
            RecordProblem::UnknownRecordType => f.write_str("unknown_record_type: the discriminator names no record type"),
            RecordProblem::TooLong { found, limit } => {
                write!(f, "record_too_long: {found} bytes, over the limit of {limit}")
            }
            RecordProblem::Field(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RecordError {}

/// A layout file mistake, with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    /// 1-based line in the layout TOML.
    pub line: usize,
    /// What is wrong, naming the table and key.
    pub message: String,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for LayoutError {}

/// A layout to import (NAACCR XML, csvkit schema CSV) cannot be turned into TOML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ImportError {
    /// 1-based line of the input, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ImportError {
    pub(crate) fn new(line: Option<usize>, message: impl Into<String>) -> Self {
        ImportError { line, message: message.into() }
    }
}
