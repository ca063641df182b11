//! What the record-file sources (HL7 and fixed-width) share: walking a table's files
//! one at a time, each read to its end before the next, with a resume position and
//! batch numbers.

use arrow_array::RecordBatch;
use ehrlift_core::{Position, Rejection, RowOrigin, SourceBatch};
use ehrlift_mapping::Compression;

use crate::SourceError;
use crate::csv_source::{SourceFile, bytes_before, check_open, plain_total};

/// One batch read from the current file.
pub(crate) struct FileRead {
    pub batch: RecordBatch,
    pub rows: Vec<RowOrigin>,
    pub rejected: Vec<Rejection>,
    /// Items of other types passed over.
    pub passed_over: u64,
    /// The file is read to its end.
    pub at_end: bool,
}

/// How one kind of record file is opened and read.
pub(crate) trait RecordFiles {
    /// An open file.
    type Reader;

    /// Opens `file` ready to read at `at` (a position inside it, or its start).
    fn open(&self, file: &SourceFile, at: &Position) -> Result<Self::Reader, SourceError>;

    /// Reads about `limit` rows and rejections of the open file, moving `pos` past them.
    fn read(&mut self, reader: &mut Self::Reader, file: &SourceFile, pos: &mut Position, limit: usize) -> Result<FileRead, SourceError>;
}

/// A table's files and where reading stands in them.
pub(crate) struct FileWalk<R> {
    table: String,
    files: Vec<SourceFile>,
    pos: Position,
    seq: u64,
    reader: Option<R>,
    /// `line` of a position at the start of a file (1 for line-addressed records, else 0).
    first_line: u64,
}

impl<R> FileWalk<R> {
    pub(crate) fn new(table: &str, files: Vec<SourceFile>, resume: Position, first_line: u64) -> Self {
        FileWalk { table: table.to_owned(), files, pos: resume, seq: 0, reader: None, first_line }
    }

    /// Total bytes to read, when every file is uncompressed (for a determinate bar).
    pub(crate) fn total_bytes(&self) -> Option<u64> {
        plain_total(&self.files, Compression::Auto)
    }

    /// Bytes of the files before `pos`'s plus the offset in it.
    pub(crate) fn bytes_done(&self, pos: &Position) -> u64 {
        bytes_before(&self.files, pos)
    }

    pub(crate) fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Opens every file once, to fail before a run.
    pub(crate) fn check_files(&self) -> Result<(), SourceError> {
        check_open(&self.files)
    }

    /// The next batch (never across a file boundary); `Ok(None)` after the last file.
    pub(crate) fn next_batch<D: RecordFiles<Reader = R>>(&mut self, d: &mut D, limit: usize) -> Result<Option<SourceBatch>, SourceError> {
        loop {
            let Some(file) = self.files.get(self.pos.file as usize) else { return Ok(None) };
            let reader = match &mut self.reader {
                Some(r) => r,
                None => self.reader.insert(d.open(file, &self.pos)?),
            };
            let start = self.pos.clone();
            let FileRead { batch, rows, rejected, passed_over, at_end } = d.read(reader, file, &mut self.pos, limit)?;
            // A read that found nothing at all ends the file; one that only passed items
            // over is still a batch, so that the count reaches a commit record.
            if at_end && batch.num_rows() == 0 && rejected.is_empty() && passed_over == 0 {
                self.advance_file();
                continue;
            }
            let seq = self.seq;
            self.seq += 1;
            let out = SourceBatch { table: self.table.clone(), seq, batch, rows, start, end: self.pos.clone(), rejected, passed_over };
            if at_end {
                self.advance_file();
            }
            return Ok(Some(out));
        }
    }

    fn advance_file(&mut self) {
        self.reader = None;
        self.pos = Position { file: self.pos.file + 1, byte: 0, record: 0, line: self.first_line, cursor: None };
    }
}
