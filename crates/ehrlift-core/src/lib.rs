//! Shared vocabulary of ehrlift.
//!
//! Every other crate depends on this one and on nothing above it: the batch that
//! flows from a source to a sink, the position a table resumes after, the class
//! every error belongs to, and the [`Reporter`] through which libraries tell the
//! terminal (or a log stack) how far they are without knowing which it is.
//!
//! Nothing here ever holds a cell value in a message: any value may be PHI.

mod error;
mod keys;
mod position;
mod report;

pub use error::{ErrorClass, Reason};
pub use keys::{DataKey, KeyContext, KeyError, KeyProvider, KeyWrapper, ProjectKey};
pub use position::{Position, SourceRange};
pub use report::{NullReporter, Reporter, TableEvent};

use arrow_array::RecordBatch;

/// A batch of source rows on its way through the pipeline.
///
/// `position` is where reading resumes *after* this batch, so a checkpoint that
/// stores it never re-reads a committed row and never skips one.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Output table the rows belong to.
    pub table: String,
    /// Sequence number of the batch within the table, from 0, stable across resumes.
    pub seq: u64,
    /// The raw (untyped, utf8) source columns, one per mapped source column.
    pub batch: RecordBatch,
    /// Provenance of each row: which file and record it came from.
    pub rows: Vec<RowOrigin>,
    /// Position of the first row of the batch.
    pub start: Position,
    /// Position just after the last row of the batch.
    pub end: Position,
    /// Rows the source itself had to reject (bad encoding, ragged records).
    pub rejected: Vec<Rejection>,
    /// Items between `start` and `end` that are not this table's to read (HL7 messages or
    /// fixed-width records of other types): neither rows nor rejections, but counted so
    /// the manifest accounts for every item of the input.
    pub passed_over: u64,
}

/// Where one source row came from, to name it in quarantine without its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowOrigin {
    /// Index into the table's sorted file list.
    pub file: u32,
    /// 1-based record number in that file, header excluded.
    pub record: u64,
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// Byte offset of the record in the (decompressed) file.
    pub byte: u64,
}

/// A row rejected with a reason: file, record, column and a reason code. Never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Where the row came from.
    pub origin: RowOrigin,
    /// Output or source column concerned, if the reason is about one column.
    pub column: Option<String>,
    /// Machine-readable reason code.
    pub reason: Reason,
}
