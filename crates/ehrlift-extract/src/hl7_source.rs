//! HL7 v2 message files as a table: one row per message, or per occurrence of a
//! repeating segment (one per OBX) with the segments before it carried down.
//!
//! Files are read through [`ehrlift_hl7::Reader`]'s bounded window, so an archive of any
//! size takes a few MiB. Each needed source column is a field path (`PID-3[1].1`),
//! materialized as utf8 like every source's columns; the mapping's kernels type them
//! (`format = "hl7"` reads HL7 date/times).
//!
//! A message that cannot be parsed, has no message type (MSH-9) or lacks a segment the
//! mapping requires is quarantined whole (file, message index, byte offset, segment,
//! reason) and the file goes on. The resume position is the file and
//! the byte offset of the next message (`record` counts the file's items so far).

use std::borrow::Cow;
use std::io::{self, Read};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use ehrlift_core::{Position, Reason, Rejection, RowOrigin, SourceBatch};
use ehrlift_hl7::{Message, ParseError, Path, Reader};
use ehrlift_mapping::{Compression, Hl7Table, Mapping};

use crate::SourceError;
use crate::csv_source::{SourceFile, compression_of_path, open_stream};
use crate::files::{FileRead, FileWalk, RecordFiles};

/// The largest message (with its attachments) read; a larger item stops the table
/// with an error naming the file and byte, rather than holding gigabytes.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A table's HL7 files read as one stream of raw utf8 batches.
pub struct Hl7TableSource {
    walk: FileWalk<Reader<Box<dyn Read + Send>>>,
    rows: Hl7Rows,
}

/// How messages become rows.
struct Hl7Rows {
    spec: Hl7Table,
    /// Source columns (field paths) to materialize, in order, and their parsed forms.
    needed: Vec<String>,
    paths: Vec<Path>,
    schema: Arc<Schema>,
    /// Messages of other types passed over in this attempt.
    skipped: u64,
}

impl Hl7TableSource {
    /// Opens `mapping`'s files, ready to read from `resume`.
    ///
    /// # Panics
    /// If the mapping is not an HL7 mapping or a column's path does not parse: the plan
    /// loader refuses both.
    pub fn open(mapping: &Mapping, files: Vec<SourceFile>, resume: Position) -> Self {
        let needed = mapping.source_columns();
        let paths = needed.iter().map(|n| Path::parse(n).expect("the plan loader checks HL7 paths")).collect();
        let schema = Arc::new(Schema::new(needed.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>()));
        let spec = mapping.hl7.clone().expect("an HL7 mapping");
        Hl7TableSource { walk: FileWalk::new(&mapping.table, files, resume, 0), rows: Hl7Rows { spec, needed, paths, schema, skipped: 0 } }
    }

    /// Total bytes to read, when every file is uncompressed (for a determinate bar).
    pub fn total_bytes(&self) -> Option<u64> {
        self.walk.total_bytes()
    }

    /// Bytes of the files before the current one plus the offset in it.
    pub fn bytes_done(&self, pos: &Position) -> u64 {
        self.walk.bytes_done(pos)
    }

    /// Sets the sequence number of the next batch (after a resume).
    pub fn set_seq(&mut self, seq: u64) {
        self.walk.set_seq(seq);
    }

    /// Messages of other types than the mapping's `message_types` passed over so far.
    pub fn skipped(&self) -> u64 {
        self.rows.skipped
    }

    /// Checks that every file can be opened.
    pub fn check_files(&self) -> Result<(), SourceError> {
        self.walk.check_files()
    }

    /// Reads items until about `limit` rows or rejections (never across a file
    /// boundary, never splitting a message). `Ok(None)` at the end of the last file.
    pub fn next_batch(&mut self, limit: usize) -> Result<Option<SourceBatch>, SourceError> {
        self.walk.next_batch(&mut self.rows, limit)
    }
}

impl RecordFiles for Hl7Rows {
    type Reader = Reader<Box<dyn Read + Send>>;

    fn open(&self, file: &SourceFile, at: &Position) -> Result<Self::Reader, SourceError> {
        let path = &file.path;
        let stream = open_stream(path, compression_of_path(Compression::Auto, path), 0)?;
        let mut reader = Reader::new(Box::new(stream) as Box<dyn Read + Send>, MAX_MESSAGE_BYTES);
        if at.byte > 0 {
            let io_err = |source| SourceError::Io { file: path.clone(), byte: at.byte, source };
            if !reader.skip_to(at.byte).map_err(io_err)? {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no HL7 message starts at the saved resume position: the file changed since the interrupted attempt",
                )));
            }
        }
        Ok(reader)
    }

    /// Reads whole items into a batch (a message's rows are never split).
    fn read(&mut self, reader: &mut Self::Reader, source: &SourceFile, pos: &mut Position, limit: usize) -> Result<FileRead, SourceError> {
        let file = pos.file;
        let mut builders: Vec<StringBuilder> = (0..self.needed.len()).map(|_| StringBuilder::with_capacity(limit, limit * 16)).collect();
        let mut rows = Vec::with_capacity(limit);
        let mut rejected = Vec::new();
        let mut at_end = false;
        let before = self.skipped;
        while rows.len() + rejected.len() < limit {
            let byte = reader.offset();
            let item = reader.next_item().map_err(|e| SourceError::Io { file: source.path.clone(), byte, source: e })?;
            match item {
                None => {
                    at_end = true;
                    break;
                }
                Some(Err(e)) => rejected.push(message_rejection(file, &e)),
                Some(Ok(msg)) => {
                    let mut values = Vec::with_capacity(self.paths.len());
                    let whole = |column: &str, reason| Rejection {
                        origin: RowOrigin { file, record: msg.index() as u64, line: 0, byte: msg.byte_offset() },
                        column: Some(column.to_owned()),
                        reason,
                    };
                    let Some(code) = msg.get("MSH-9.1").ok().flatten() else {
                        rejected.push(whole("MSH-9", Reason::Hl7MissingMessageType));
                        continue;
                    };
                    if !reads(&self.spec, &code, &msg) {
                        self.skipped += 1;
                    } else if let Some(seg) = self.spec.required_segments.iter().find(|s| msg.segments_with_id(s).next().is_none()) {
                        rejected.push(whole(seg, Reason::Hl7MissingSegment));
                    } else if let Some(seg) = &self.spec.segment {
                        for ctx in msg.groups(seg) {
                            let origin = RowOrigin { file, record: msg.index() as u64, line: 0, byte: ctx.segment.byte_offset() };
                            let got = row(&self.paths, &mut values, |p| ctx.get_path(p));
                            push(&mut builders, &mut rows, &mut rejected, &self.needed, &values, origin, got);
                        }
                    } else {
                        let origin = RowOrigin { file, record: msg.index() as u64, line: 0, byte: msg.byte_offset() };
                        let got = row(&self.paths, &mut values, |p| msg.get_path(p));
                        push(&mut builders, &mut rows, &mut rejected, &self.needed, &values, origin, got);
                    }
                }
            }
        }
        *pos = Position { file, byte: reader.offset(), record: reader.items() as u64, line: 0, cursor: None };
        let columns: Vec<ArrayRef> = builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).expect("utf8 columns match the raw schema");
        Ok(FileRead { batch, rows, rejected, passed_over: self.skipped - before, at_end })
    }
}

/// Whether the mapping reads this message, whose MSH-9.1 is `code` (by it and MSH-9.2).
fn reads(spec: &Hl7Table, code: &str, msg: &Message<'_>) -> bool {
    if spec.message_types.is_empty() {
        return true;
    }
    let event = msg.get("MSH-9.2").ok().flatten().unwrap_or_default();
    spec.reads(code, &event)
}

/// Reads one row's values; on a value that cannot be decoded, the index of its path.
fn row<'a>(
    paths: &[Path],
    values: &mut Vec<Option<Cow<'a, str>>>,
    get: impl Fn(&Path) -> Result<Option<Cow<'a, str>>, ehrlift_hl7::PathError>,
) -> Result<(), usize> {
    values.clear();
    for (k, p) in paths.iter().enumerate() {
        match get(p) {
            // HL7's explicit null `""` reads as null, like an empty field.
            Ok(Some(v)) if v == "\"\"" => values.push(None),
            Ok(v) => values.push(v),
            Err(_) => return Err(k),
        }
    }
    Ok(())
}

/// Appends a decoded row, or rejects it naming the path that could not be decoded.
fn push(
    builders: &mut [StringBuilder],
    rows: &mut Vec<RowOrigin>,
    rejected: &mut Vec<Rejection>,
    needed: &[String],
    values: &[Option<Cow<'_, str>>],
    origin: RowOrigin,
    got: Result<(), usize>,
) {
    match got {
        Ok(()) => {
            for (b, v) in builders.iter_mut().zip(values) {
                b.append_option(v.as_deref());
            }
            rows.push(origin);
        }
        Err(k) => rejected.push(Rejection { origin, column: Some(needed[k].clone()), reason: Reason::InvalidEncoding }),
    }
}

/// A message that could not be parsed: quarantined whole, with its segment id if any.
fn message_rejection(file: u32, e: &ParseError) -> Rejection {
    use ehrlift_hl7::Reason as R;
    let reason = match &e.reason {
        R::SegmentBeforeMsh => Reason::Hl7SegmentBeforeMsh,
        R::UnsupportedCharset(_) => Reason::Hl7UnsupportedCharset,
        R::InvalidUtf8 => Reason::InvalidEncoding,
        R::DuplicateBatchHeader | R::DuplicateFileHeader => Reason::Hl7DuplicateBatchHeader,
        // MSH too short, bad separators or encoding characters (and any later reason:
        // all are about the header's delimiters).
        _ => Reason::Hl7BadEncodingCharacters,
    };
    Rejection {
        origin: RowOrigin { file, record: e.message_index as u64, line: 0, byte: e.byte_offset },
        column: e.segment.clone(),
        reason,
    }
}

#[cfg(test)]
#[path = "hl7_source_tests.rs"]
mod tests;
