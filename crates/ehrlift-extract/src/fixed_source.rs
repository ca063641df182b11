//! Fixed-width record files as a table: one row per record of the mapping's record type.
//!
//! Records are cut by the layout's framing (lines, or RECFM=F fixed-length records) and
//! decoded by [`ehrlift_fixed::RecordDecoder`], only the fields the mapping reads, each
//! materialized as utf8 text (numbers as canonical text like `-123.45`) that the
//! mapping's kernels type. A record of the wrong length, of an unknown record type or
//! with a field that does not decode is quarantined with its record number and field
//! name; records of the layout's other types are passed over. The resume position is
//! the file, the byte offset after the last record read and the records read.

use std::io::{BufReader, Read};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use ehrlift_core::{Position, Reason, Rejection, RowOrigin, SourceBatch};
use ehrlift_fixed::{FieldSink, Framing, RecordDecoder, RecordError, RecordReader};
use ehrlift_mapping::{Compression, Mapping};

use crate::SourceError;
use crate::csv_source::{SourceFile, compression_of_path, open_stream};
use crate::files::{FileRead, FileWalk, RecordFiles};

/// A table's fixed-width files read as one stream of raw utf8 batches.
pub struct FixedTableSource {
    walk: FileWalk<RecordReader<BufReader<Box<dyn Read + Send>>>>,
    rows: FixedRows,
}

/// How records become rows.
struct FixedRows {
    framing: Framing,
    decoder: RecordDecoder,
    record_type: usize,
    schema: Arc<Schema>,
    buf: Vec<u8>,
    /// Records of the layout's other types passed over in this attempt.
    skipped: u64,
}

/// Appends a record's values to the column builders (an empty value is null).
struct Builders(Vec<StringBuilder>);

impl FieldSink for Builders {
    fn value(&mut self, index: usize, text: &str) {
        if text.is_empty() {
            self.0[index].append_null();
        } else {
            self.0[index].append_value(text);
        }
    }
}

impl FixedTableSource {
    /// Opens `mapping`'s files, ready to read from `resume`.
    ///
    /// # Panics
    /// If the mapping is not a fixed-width mapping or reads a field its record type does
    /// not have: the plan loader refuses both.
    pub fn open(mapping: &Mapping, files: Vec<SourceFile>, resume: Position) -> Self {
        let fixed = mapping.fixed.as_ref().expect("a fixed-width mapping");
        let needed = mapping.source_columns();
        let layout = fixed.layout.clone();
        let rt = &layout.record_types()[fixed.record_type];
        let projection = needed.iter().map(|n| rt.field_index(n).expect("the plan loader checks fields")).collect();
        let mut decoder = RecordDecoder::new(layout.clone());
        for t in 0..layout.record_types().len() {
            // Other types are only recognized (and their length checked), not decoded.
            decoder.set_projection(t, Vec::new());
        }
        decoder.set_projection(fixed.record_type, projection);
        let schema = Arc::new(Schema::new(needed.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>()));
        let framing = layout.framing();
        let first_line = u64::from(matches!(framing, Framing::Lines { .. }));
        FixedTableSource {
            walk: FileWalk::new(&mapping.table, files, resume, first_line),
            rows: FixedRows { framing, decoder, record_type: fixed.record_type, schema, buf: Vec::new(), skipped: 0 },
        }
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

    /// Records of the layout's other record types passed over so far.
    pub fn skipped(&self) -> u64 {
        self.rows.skipped
    }

    /// Checks that every file can be opened.
    pub fn check_files(&self) -> Result<(), SourceError> {
        self.walk.check_files()
    }

    /// Reads up to `limit` records (never across a file boundary). `Ok(None)` at the end
    /// of the last file.
    pub fn next_batch(&mut self, limit: usize) -> Result<Option<SourceBatch>, SourceError> {
        self.walk.next_batch(&mut self.rows, limit)
    }
}

impl RecordFiles for FixedRows {
    type Reader = RecordReader<BufReader<Box<dyn Read + Send>>>;

    fn open(&self, file: &SourceFile, at: &Position) -> Result<Self::Reader, SourceError> {
        let stream = open_stream(&file.path, compression_of_path(Compression::Auto, &file.path), at.byte)?;
        Ok(RecordReader::new(stream, self.framing, at.byte, at.record))
    }

    fn read(&mut self, reader: &mut Self::Reader, source: &SourceFile, pos: &mut Position, limit: usize) -> Result<FileRead, SourceError> {
        let file = pos.file;
        let lines = matches!(self.framing, Framing::Lines { .. });
        let width = self.schema.fields().len();
        let mut sink = Builders((0..width).map(|_| StringBuilder::with_capacity(limit, limit * 8)).collect());
        let mut rows = Vec::with_capacity(limit);
        let mut rejected = Vec::new();
        let mut at_end = false;
        let before = self.skipped;
        let mut n = 0;
        while n < limit {
            let byte = pos.byte;
            let info = reader.next_record(&mut self.buf).map_err(|e| SourceError::Io { file: source.path.clone(), byte, source: e })?;
            let Some(info) = info else {
                at_end = true;
                break;
            };
            *pos =
                Position { file, byte: info.end_offset, record: info.number, line: if lines { info.number + 1 } else { 0 }, cursor: None };
            let origin = RowOrigin { file, record: info.number, line: if lines { info.number } else { 0 }, byte: info.byte_offset };
            match self.decoder.decode(&info, &self.buf, &mut sink) {
                Ok(t) if t == self.record_type => {
                    rows.push(origin);
                    n += 1;
                }
                Ok(_) => self.skipped += 1,
                Err(e) => {
                    rejected.push(rejection(origin, &e));
                    n += 1;
                }
            }
        }
        let columns: Vec<ArrayRef> = sink.0.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).expect("utf8 columns match the raw schema");
        Ok(FileRead { batch, rows, rejected, passed_over: self.skipped - before, at_end })
    }
}

fn rejection(origin: RowOrigin, e: &RecordError) -> Rejection {
    use ehrlift_fixed::Reason as R;
    let reason = match e.reason() {
        R::WrongLength => Reason::WrongLength,
        R::UnknownRecordType => Reason::UnknownRecordType,
        R::InvalidEncoding => Reason::InvalidEncoding,
        R::InvalidNumber => Reason::InvalidNumber,
        R::InvalidZoned => Reason::InvalidZoned,
        R::InvalidPacked => Reason::InvalidPacked,
        R::InvalidBinary => Reason::InvalidBinary,
        R::RecordTooLong => Reason::RecordTooLong,
        // A reason added to the decoder later: the closest stable code.
        _ => Reason::MalformedRecord,
    };
    Rejection { origin, column: e.field().map(str::to_owned), reason }
}

#[cfg(test)]
#[path = "fixed_source_tests.rs"]
mod tests;
