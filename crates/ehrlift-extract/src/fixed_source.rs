//! Fixed-width record files as a table: one row per record of the mapping's record type.
//!
//! Records are cut by the layout's framing (lines, or RECFM=F fixed-length records) and
//! decoded by [`ehrlift_fixed::RecordDecoder`], only the fields the mapping reads, each
//! materialized as utf8 text (numbers as canonical text like `-123.45`) that the
//! mapping's kernels type. A record of the wrong length, of an unknown record type or
//! with a field that does not decode is quarantined with its record number and field
//! name; records of the layout's other types are passed over. The resume position is
//! the file, the byte offset after the last record read and the records read.

use std::io::Read;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use ehrlift_core::{Position, Reason, Rejection, RowOrigin, SourceBatch};
use ehrlift_fixed::{FieldSink, Framing, RecordDecoder, RecordError, RecordReader};
use ehrlift_mapping::{Compression, Mapping};

use crate::SourceError;
use crate::csv_source::{SourceFile, bytes_before, check_open, compression_of_path, open_stream, plain_total};

/// A table's fixed-width files read as one stream of raw utf8 batches.
pub struct FixedTableSource {
    table: String,
    files: Vec<SourceFile>,
    framing: Framing,
    decoder: RecordDecoder,
    record_type: usize,
    schema: Arc<Schema>,
    pos: Position,
    seq: u64,
    open: Option<RecordReader<std::io::BufReader<Box<dyn Read + Send>>>>,
    buf: Vec<u8>,
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
        FixedTableSource {
            table: mapping.table.clone(),
            files,
            framing: layout.framing(),
            decoder,
            record_type: fixed.record_type,
            schema,
            pos: resume,
            seq: 0,
            open: None,
            buf: Vec::new(),
            skipped: 0,
        }
    }

    /// Total bytes to read, when every file is uncompressed (for a determinate bar).
    pub fn total_bytes(&self) -> Option<u64> {
        plain_total(&self.files, Compression::Auto)
    }

    /// Bytes of the files before the current one plus the offset in it.
    pub fn bytes_done(&self, pos: &Position) -> u64 {
        bytes_before(&self.files, pos)
    }

    /// Sets the sequence number of the next batch (after a resume).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Records of the layout's other record types passed over so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Checks that every file can be opened.
    pub fn check_files(&self) -> Result<(), SourceError> {
        check_open(&self.files)
    }

    /// Reads up to `limit` records (never across a file boundary). `Ok(None)` at the end
    /// of the last file.
    pub fn next_batch(&mut self, limit: usize) -> Result<Option<SourceBatch>, SourceError> {
        loop {
            if self.pos.file as usize >= self.files.len() {
                return Ok(None);
            }
            if self.open.is_none() {
                let path = &self.files[self.pos.file as usize].path;
                let stream = open_stream(path, compression_of_path(Compression::Auto, path), self.pos.byte)?;
                self.open = Some(RecordReader::new(stream, self.framing, self.pos.byte, self.pos.record));
            }
            let start = self.pos.clone();
            let (batch, rows, rejected, at_end) = self.read_records(limit)?;
            if at_end && batch.num_rows() == 0 && rejected.is_empty() {
                self.advance_file();
                continue;
            }
            let seq = self.seq;
            self.seq += 1;
            let out = SourceBatch { table: self.table.clone(), seq, batch, rows, start, end: self.pos.clone(), rejected };
            if at_end {
                self.advance_file();
            }
            return Ok(Some(out));
        }
    }

    fn advance_file(&mut self) {
        self.open = None;
        self.pos = Position { file: self.pos.file + 1, byte: 0, record: 0, line: 1, cursor: None };
    }

    #[allow(clippy::type_complexity)]
    fn read_records(&mut self, limit: usize) -> Result<(RecordBatch, Vec<RowOrigin>, Vec<Rejection>, bool), SourceError> {
        let file = self.pos.file;
        let path = self.files[file as usize].path.clone();
        let lines = matches!(self.framing, Framing::Lines { .. });
        let width = self.schema.fields().len();
        let mut sink = Builders((0..width).map(|_| StringBuilder::with_capacity(limit, limit * 8)).collect());
        let mut rows = Vec::with_capacity(limit);
        let mut rejected = Vec::new();
        let mut at_end = false;
        let reader = self.open.as_mut().expect("opened");
        let mut n = 0;
        while n < limit {
            let byte = self.pos.byte;
            let info = reader.next_record(&mut self.buf).map_err(|source| SourceError::Io { file: path.clone(), byte, source })?;
            let Some(info) = info else {
                at_end = true;
                break;
            };
            self.pos =
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
        Ok((batch, rows, rejected, at_end))
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
