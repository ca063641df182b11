use std::fmt;

/// The four classes every ehrlift error belongs to; each maps to one exit status.
///
/// A class says what a caller can do about the error: fix the plan
/// (configuration), look at the quarantine (data), retry (transient) or report
/// a bug (internal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The plan, a mapping or a flag is wrong; nothing was read or written.
    Configuration,
    /// Input rows were rejected over the plan's threshold.
    Data,
    /// Storage or a service failed in a way a retry may cure.
    Transient,
    /// A bug in ehrlift.
    Internal,
}

impl ErrorClass {
    /// Process exit status for this class, as documented in the README.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Data => 1,
            ErrorClass::Configuration => 2,
            ErrorClass::Transient => 3,
            ErrorClass::Internal => 4,
        }
    }
}

/// Why a row went to quarantine. Codes are stable: reports and alerts key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// A field is not valid in the file's declared encoding.
    InvalidEncoding,
    /// The record has fewer fields than the header.
    MissingFields,
    /// The record has more fields than the header.
    ExtraFields,
    /// The CSV reader could not split the record.
    MalformedRecord,
    /// Text is not an integer.
    InvalidInteger,
    /// Text is not a floating-point number.
    InvalidFloat,
    /// Text is not a decimal number.
    InvalidDecimal,
    /// A decimal has more digits than its declared precision or scale holds.
    DecimalOutOfRange,
    /// Text is none of the configured true/false tokens.
    InvalidBoolean,
    /// Text does not match the column's date format.
    InvalidDate,
    /// Text does not match the column's timestamp format.
    InvalidTimestamp,
    /// A local time that does not exist or is ambiguous in the column's time zone.
    AmbiguousLocalTime,
    /// A code missing from the column's recode table.
    UnmappedCode,
    /// A null in a column declared `nullable = false`.
    NullNotAllowed,
    /// The whole file is in an encoding ehrlift cannot read (e.g. UTF-16).
    UnsupportedFileEncoding,
    /// A `shift_date` column's patient key is null: the date cannot be shifted, so it is not written.
    MissingShiftKey,
    /// Text is not a time of day.
    InvalidTime,
    /// Text is not a UUID.
    InvalidUuid,
    /// Text is not JSON.
    InvalidJson,
    /// A typed source value does not fit the column's declared type without loss.
    OutOfRange,
    /// A MySQL zero date (`0000-00-00`, or a zero month or day) under `zero_dates = "quarantine"`.
    ZeroDate,
    /// A source value Arrow cannot hold (`infinity` dates, `NaN` decimals, multi-dimensional arrays).
    UnrepresentableValue,
    /// HL7: segments that no `MSH` precedes (a file or chunk that is not a message).
    Hl7SegmentBeforeMsh,
    /// HL7: MSH-1/MSH-2 do not declare a usable field separator and encoding characters.
    Hl7BadEncodingCharacters,
    /// HL7: MSH-18 names a character set ehrlift does not decode.
    Hl7UnsupportedCharset,
    /// HL7: a BHS or FHS inside an open batch.
    Hl7DuplicateBatchHeader,
    /// HL7: MSH-9 (message type), required in every message, is empty.
    Hl7MissingMessageType,
    /// HL7: the message lacks a segment the mapping's `required_segments` names.
    Hl7MissingSegment,
    /// Fixed-width: a record whose length is not the layout's.
    WrongLength,
    /// Fixed-width: a record whose discriminator names no record type of the layout.
    UnknownRecordType,
    /// Fixed-width: a line longer than any record could be (its bytes were not kept).
    RecordTooLong,
    /// Fixed-width: a numeric field that is not a number.
    InvalidNumber,
    /// Fixed-width: a zoned decimal (COBOL DISPLAY, overpunched sign) that is not valid.
    InvalidZoned,
    /// Fixed-width: a packed decimal (COMP-3) with a bad digit or sign nibble.
    InvalidPacked,
    /// Fixed-width: a binary (COMP) field of a length other than 2, 4 or 8 bytes.
    InvalidBinary,
}

impl Reason {
    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::InvalidEncoding => "invalid_encoding",
            Reason::MissingFields => "missing_fields",
            Reason::ExtraFields => "extra_fields",
            Reason::MalformedRecord => "malformed_record",
            Reason::InvalidInteger => "invalid_integer",
            Reason::InvalidFloat => "invalid_float",
            Reason::InvalidDecimal => "invalid_decimal",
            Reason::DecimalOutOfRange => "decimal_out_of_range",
            Reason::InvalidBoolean => "invalid_boolean",
            Reason::InvalidDate => "invalid_date",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::AmbiguousLocalTime => "ambiguous_local_time",
            Reason::UnmappedCode => "unmapped_code",
            Reason::NullNotAllowed => "null_not_allowed",
            Reason::UnsupportedFileEncoding => "unsupported_file_encoding",
            Reason::MissingShiftKey => "missing_shift_key",
            Reason::InvalidTime => "invalid_time",
            Reason::InvalidUuid => "invalid_uuid",
            Reason::InvalidJson => "invalid_json",
            Reason::OutOfRange => "value_out_of_range",
            Reason::ZeroDate => "zero_date",
            Reason::UnrepresentableValue => "unrepresentable_value",
            Reason::Hl7SegmentBeforeMsh => "hl7_segment_before_msh",
            Reason::Hl7BadEncodingCharacters => "hl7_bad_encoding_characters",
            Reason::Hl7UnsupportedCharset => "hl7_unsupported_charset",
            Reason::Hl7DuplicateBatchHeader => "hl7_duplicate_batch_header",
            Reason::Hl7MissingMessageType => "hl7_missing_message_type",
            Reason::Hl7MissingSegment => "hl7_missing_segment",
            Reason::WrongLength => "wrong_length",
            Reason::UnknownRecordType => "unknown_record_type",
            Reason::RecordTooLong => "record_too_long",
            Reason::InvalidNumber => "invalid_number",
            Reason::InvalidZoned => "invalid_zoned",
            Reason::InvalidPacked => "invalid_packed",
            Reason::InvalidBinary => "invalid_binary",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
