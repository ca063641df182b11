//! Fixed-width records for ehrlift: the parsing layer of "fixed-width files as sources".
//!
//! Four steps, each its own type:
//! 1. [`Layout::from_toml`] reads and validates a layout, reporting every mistake with
//!    its line.
//! 2. [`RecordReader`] cuts a file into records in bounded memory, and tells each
//!    record's number and byte offsets, so a run can resume at a record boundary.
//! 3. [`RecordDecoder`] picks a record's type, checks its length and decodes only the
//!    fields a mapping needs (a *projection*) to text, handed to a [`FieldSink`]; the
//!    pipeline types the text later. Empty text means blank (null).
//! 4. [`import`] turns NAACCR layout XML and csvkit schema CSV into layout TOML.
//!
//! # Layout TOML
//!
//! ```toml
//! [layout]
//! name = "claims"              # required, free text
//! encoding = "cp037"           # ascii (default) | latin1 | windows-1252 | cp037 (EBCDIC US/Canada)
//! framing = "fixed"            # lines (default): LF or CRLF ends each record
//!                              # fixed: records of exactly record_length bytes (RECFM=F)
//! record_length = 20           # required for fixed; for lines, other lengths are wrong_length
//! discriminator = { start = 1, length = 1 }   # with [[record_types]] only
//! # pad_short_lines = true     # lines only: a short line reads its missing fields as
//!                              # blank (csvkit's behaviour) instead of wrong_length
//!
//! [[fields]]                   # common to every record type
//! name = "kind"                # unique within a record type
//! start = 1                    # 1-based byte
//! length = 1                   # or `end = 1` (1-based, inclusive)
//!
//! [[record_types]]
//! code = "H"                   # the discriminator's text, spaces trimmed
//! name = "header"
//!   [[record_types.fields]]
//!   name = "batch"
//!   start = 2
//!   end = 9
//!
//! [[record_types]]
//! code = "D"
//! name = "detail"
//!   [[record_types.fields]]
//!   name = "amount"
//!   start = 2
//!   length = 4
//!   type = "packed"            # text (default) | integer | decimal | zoned | packed | binary
//!   decimals = 2               # implied decimal places
//!   phi = false                # any other key is kept for the mapping: Field::extra
//! ```
//!
//! Per field, also: `align` (`left`, the text default, or `right`, the number default),
//! `pad` (one ASCII character, default space), `trim = false` (text kept exactly as
//! written, except that all spaces is still blank) and, for binary, `signed = false`.
//! Overlapping fields are allowed (NAACCR groups overlap their parts). A record type's
//! fields are the common `[[fields]]`, then its own. Keys this crate does not know are
//! kept with their spans for the mapping loader: per field ([`Field::extra`]), per record
//! type ([`RecordType::extra`]) and at the top level ([`LayoutFile::other`]); only
//! `[layout]` rejects unknown keys, as nothing else reads it.
//!
//! With `pad_short_lines`, a field past the end of a short line is blank, and a text or
//! number field cut by it is read from the bytes there; a cut zoned, packed or binary
//! field is `wrong_length` (every byte of those counts).
//!
//! # Values
//!
//! - **text**: the padding is removed on the aligned side together with spaces, and
//!   spaces on the other side, as csvkit's `strip()` does for spaces. A right-aligned
//!   `pad = "0"` field thus loses its leading zeros; leave `pad` as a space for codes
//!   whose zeros matter.
//! - **integer** / **decimal**: digits with one leading or trailing `+`/`-`, spaces and
//!   non-digit padding around; `decimals` implied places (integer) or an explicit `.`
//!   (decimal). Canonical text: `-123.45`, leading zeros dropped, every fractional digit
//!   kept, no float anywhere, no `-0`.
//! - **zoned** (`PIC S9(n)` DISPLAY): EBCDIC zone C/F positive, D negative on the last
//!   byte; ASCII overpunch `{A`..`I` positive, `}J`..`R` negative, or a plain digit.
//! - **packed** (COMP-3): sign nibble C, A, E, F positive; B, D negative.
//! - **binary** (COMP/COMP-4): big-endian two's complement of 2, 4 or 8 bytes.
//!
//! Framing `lines` is for ASCII and Latin-1 files (a cp037 layout must be `fixed`: EBCDIC
//! has no ASCII line ends); a UTF-8 byte order mark at the start of a lines file is
//! skipped; empty lines are skipped but counted, so record numbers are line numbers.
//!
//! Packed and binary bytes are raw, never decoded as text; a zoned or packed field of
//! nothing but spaces is blank. Encodings: ASCII rejects bytes of 0x80 and up
//! (`invalid_encoding`); Latin-1 is ISO-8859-1; cp037 is IBM CCSID 37 ([`cp037`]).
//!
//! # PHI
//!
//! Any byte of a record may be patient data. No error, `Display`, `Debug` or panic of
//! this crate contains a record's bytes: only record numbers, byte offsets, lengths,
//! field names and other layout text, and [`Reason`] codes. Unknown record types are
//! reported without the discriminator's value.
//!
//! ```
//! use std::sync::Arc;
//! use ehrlift_fixed::{Layout, RecordDecoder, RecordReader, Row};
//!
//! let layout = Layout::from_toml(r#"
//!     [layout]
//!     name = "demo"
//!     record_length = 8
//!     [[fields]]
//!     name = "id"
//!     start = 1
//!     length = 3
//!     [[fields]]
//!     name = "amount"
//!     start = 4
//!     length = 5
//!     type = "integer"
//!     decimals = 2
//! "#).unwrap().layout;
//! let layout = Arc::new(layout);
//! let data = b"A1 -1234\nB2  0050\n";
//! let mut reader = RecordReader::new(&data[..], layout.framing(), 0, 0);
//! let mut decoder = RecordDecoder::new(layout.clone());
//! let (mut buf, mut row) = (Vec::new(), Row::new());
//! let mut rows = Vec::new();
//! while let Some(info) = reader.next_record(&mut buf).unwrap() {
//!     decoder.decode(&info, &buf, &mut row).unwrap();
//!     rows.push(row.to_vec());
//! }
//! assert_eq!(rows, [["A1", "-12.34"], ["B2", "0.50"]]);
//! ```

pub mod cp037;
mod decode;
mod error;
pub mod import;
mod layout;
mod number;
pub mod packed;
mod reader;
pub mod zoned;

pub use decode::{FieldSink, RecordDecoder, Row};
pub use error::{FieldError, ImportError, LayoutError, Reason, RecordError, RecordProblem};
pub use layout::{Align, Encoding, Extras, Field, FieldType, Layout, LayoutFile, RecordType};
pub use reader::{Framing, RecordInfo, RecordReader};
