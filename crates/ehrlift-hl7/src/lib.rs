//! HL7 v2 parsing for ehrlift: the parsing layer of "HL7 v2 message files as sources".
//!
//! [`parse`] takes a whole file's bytes and yields each message (or that message's
//! [`ParseError`]); one bad message never stops the rest. Parsing is lazy and zero-copy:
//! segments and fields are borrowed slices found by byte scanning, and text is
//! unescaped and decoded only when read ([`Message::get`], [`Value::text`]).
//!
//! Choices worth knowing:
//! - A message runs from an `MSH` to the next `MSH` or batch envelope segment
//!   (FHS/BHS/BTS/FTS, skipped). Lines that are not segments (comments in test dumps)
//!   inside a message are kept as odd segments nobody asks for; before the first `MSH`
//!   they are one "a segment before MSH" error.
//! - `Message::get` returns `None` for an absent *or empty* element: HL7 does not tell
//!   them apart. The literal `""` (explicit null) is returned as text.
//! - MSH-18 empty or `ASCII` is read leniently (UTF-8 if valid, else Windows-1252);
//!   `8859/1` as ISO-8859-1; `UNICODE UTF-8` is validated and a bad byte fails the message.
//! - `MSH|^~\\&` (a doubled backslash, from a string literal) is read as `^~\&`.
//!
//! PHI: no error, `Display` or panic of this crate contains a field value, only the
//! message ordinal, a byte offset, a segment id and a reason.
//!
//! ```
//! let file = b"MSH|^~\\&|LAB|H|||20240102||ORU^R01|1|P|2.5\rPID|1||123^^^MRN||DOE^JANE\rOBX|1|NM|GLU||5.4\r";
//! for item in ehrlift_hl7::parse(file) {
//!     let msg = item.unwrap();
//!     assert_eq!(msg.get("PID-5.2").unwrap().as_deref(), Some("JANE"));
//!     for obx in msg.groups("OBX") {
//!         assert_eq!(obx.get("OBX-5").unwrap().as_deref(), Some("5.4"));
//!         assert_eq!(obx.get("PID-3.1").unwrap().as_deref(), Some("123"));
//!     }
//! }
//! ```

mod error;
mod framing;
mod message;
mod path;
mod stream;
mod text;
mod types;

pub use error::{ParseError, PathError, Reason, ValueError};
pub use framing::{FramingState, Messages};
pub use message::{Charset, Delimiters, Message, Segment, SegmentContext, Segments, Value};
pub use path::Path;
pub use stream::Reader;
pub use text::unescape;
pub use types::{Precision, Timestamp, parse_nm};

/// Reads the messages of a file (one message, many, batches or MLLP frames).
pub fn parse(input: &[u8]) -> Messages<'_> {
    Messages::new(input)
}
