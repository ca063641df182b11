//! Errors. None of them ever holds a field value: any value may be PHI. They carry the
//! message ordinal, a byte offset, a segment id (only when it looks like one) and a reason.

use std::fmt;

/// One message (or one unframeable chunk) of a file could not be parsed.
///
/// `message_index` counts the items the [`crate::Messages`] iterator yields, from 1, so
/// an error and the valid messages around it share one numbering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based ordinal of the item (message or bad chunk) in the file.
    pub message_index: usize,
    /// Byte offset in the input where the problem was found.
    pub byte_offset: u64,
    /// Segment id (like `PID`) where the problem is; only set when the id is three
    /// ASCII letters or digits, so a stray line of text never leaks through here.
    pub segment: Option<String>,
    /// What is wrong.
    pub reason: Reason,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message #{} at byte {}", self.message_index, self.byte_offset)?;
        if let Some(seg) = &self.segment {
            write!(f, " ({seg})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Why a message failed. Closed set; the texts are stable enough for reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// Segments that are not preceded by an `MSH` (after skipping batch envelopes).
    #[error("a segment before MSH")]
    SegmentBeforeMsh,
    /// The MSH segment ends before its field separator and encoding characters.
    #[error("MSH segment too short for its delimiters")]
    MshTooShort,
    /// MSH-1 is a letter, digit, space or control character.
    #[error("invalid field separator in MSH-1")]
    BadFieldSeparator,
    /// MSH-2 holds fewer than 4 encoding characters.
    #[error("fewer than 4 encoding characters in MSH-2")]
    TooFewEncodingChars,
    /// MSH-2 holds more than 5 encoding characters.
    #[error("too many encoding characters in MSH-2")]
    TooManyEncodingChars,
    /// The same delimiter is used twice (in MSH-1/MSH-2).
    #[error("a delimiter is repeated in MSH-1/MSH-2")]
    RepeatedEncodingChar,
    /// An encoding character is a letter, digit, space or control character.
    #[error("an encoding character in MSH-2 is alphanumeric, space or control")]
    BadEncodingChar,
    /// MSH-18 names a character set this parser does not decode. The name is given
    /// only when it is a registered HL7 table 0211 value, never free text.
    #[error("unsupported character set in MSH-18{}", .0.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
    UnsupportedCharset(Option<String>),
    /// The message declares UTF-8 (MSH-18) but a byte sequence is not UTF-8; the error's
    /// byte offset points at it.
    #[error("invalid UTF-8 under MSH-18 UNICODE UTF-8")]
    InvalidUtf8,
    /// A second BHS inside an open batch.
    #[error("a BHS inside an open batch")]
    DuplicateBatchHeader,
    /// A second FHS inside an open file.
    #[error("an FHS inside an open file batch")]
    DuplicateFileHeader,
}

/// A field path (like `PID-3[1].1`) is wrong, or the addressed text cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path text does not follow `SEG[occ]-field[rep].component.subcomponent`.
    /// Paths come from configuration, so the path itself may be shown.
    #[error("invalid HL7 path `{path}`: {reason}")]
    Syntax {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`crate::Segment::get`] was given a path for another segment id.
    #[error("path `{path}` does not address segment {segment}")]
    WrongSegment {
        /// The path as given.
        path: String,
        /// The id of the segment asked.
        segment: String,
    },
    /// After decoding `\X..\` escapes, the text is not valid in the message's charset.
    #[error("text at `{path}` is not valid in the message's character set after unescaping")]
    InvalidText {
        /// The path as given.
        path: String,
    },
}

/// A typed value (date/time, number) does not parse. Never holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The text is empty.
    #[error("empty value")]
    Empty,
    /// Wrong number of digits or a non-digit in a date/time.
    #[error("date/time does not match YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]")]
    DateTimeSyntax,
    /// The digits form an impossible date or time (month 13, Feb 30, hour 25).
    #[error("date/time out of range")]
    DateTimeRange,
    /// The time zone offset is not `+HHMM`/`-HHMM` within ±14:00.
    #[error("invalid time zone offset")]
    BadOffset,
    /// Not an HL7 NM: optional sign, digits, optional decimal point and digits.
    #[error("not an HL7 number (NM)")]
    NumberSyntax,
}
