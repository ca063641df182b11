//! Streaming CSV: bounded memory, explicit dialect, resumable at any record boundary.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use ehrlift_core::{Position, Reason, Rejection, RowOrigin, SourceBatch};
use ehrlift_mapping::{Compression, CsvOptions, Mapping, TextEncoding};

use crate::SourceError;

/// One file of a table, as listed at open time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path on disk.
    pub path: PathBuf,
    /// Size in bytes (compressed size for compressed files).
    pub size: u64,
}

/// Lists the files a table's globs match under `dir`, less those an `exclude` glob
/// matches (relative to `dir` too), sorted and without duplicates.
pub fn list_files(table: &str, dir: &Path, patterns: &[String], exclude: &[String]) -> Result<Vec<SourceFile>, SourceError> {
    let excluded = exclude
        .iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| SourceError::Glob { pattern: p.clone(), message: e.to_string() }))
        .collect::<Result<Vec<_>, _>>()?;
    let mut paths = Vec::new();
    for p in patterns {
        let full = dir.join(p);
        let matches = glob::glob(&full.to_string_lossy()).map_err(|e| SourceError::Glob { pattern: p.clone(), message: e.to_string() })?;
        for m in matches {
            let m = m.map_err(|e| SourceError::Io { file: e.path().to_path_buf(), byte: 0, source: io::Error::other(e.to_string()) })?;
            let rel = m.strip_prefix(dir).unwrap_or(&m);
            if m.is_file() && !excluded.iter().any(|x| x.matches_path(rel)) {
                paths.push(m);
            }
        }
    }
    paths.sort();
    paths.dedup();
    if paths.is_empty() {
        return Err(SourceError::NoFiles { table: table.to_owned(), patterns: patterns.join(", "), dir: dir.to_path_buf() });
    }
    paths
        .into_iter()
        .map(|path| {
            let size = std::fs::metadata(&path).map_err(|source| SourceError::Io { file: path.clone(), byte: 0, source })?.len();
            Ok(SourceFile { path, size })
        })
        .collect()
}

/// A table's CSV files read as one stream of raw utf8 batches.
pub struct CsvTableSource {
    table: String,
    files: Vec<SourceFile>,
    options: CsvOptions,
    /// Source columns to materialize, in order.
    needed: Vec<String>,
    /// Source columns the mapping accounts for (read or dropped).
    classified: HashSet<String>,
    schema: Arc<Schema>,
    pos: Position,
    seq: u64,
    open: Option<OpenFile>,
    /// Value bytes per column in the last batch: the next batch's buffer sizes.
    value_bytes: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Base {
    byte: u64,
    line: u64,
    record: i64,
}

impl Base {
    fn origin(&self, file: u32, p: &csv::Position) -> RowOrigin {
        RowOrigin { file, record: (self.record + p.record() as i64 + 1) as u64, line: self.line + p.line() - 1, byte: self.byte + p.byte() }
    }

    fn end(&self, file: u32, p: &csv::Position) -> Position {
        Position {
            file,
            byte: self.byte + p.byte(),
            record: (self.record + p.record() as i64) as u64,
            line: self.line + p.line() - 1,
            cursor: None,
        }
    }
}

struct OpenFile {
    reader: csv::Reader<Box<dyn Read + Send>>,
    /// For each needed column, its index in the file's records.
    projection: Vec<usize>,
    /// Names of the needed columns (for rejections).
    width: usize,
    /// What to add to the reader's own positions: the resume point, or for a reader
    /// that started at byte 0, minus the header record it consumed.
    base: Base,
    /// Whole file rejected before any record (e.g. UTF-16).
    rejected_file: Option<Reason>,
}

impl CsvTableSource {
    /// Opens `mapping`'s files under `dir`, ready to read from `resume`.
    pub fn open(mapping: &Mapping, files: Vec<SourceFile>, resume: Position) -> Self {
        let needed = mapping.source_columns();
        let schema = Arc::new(Schema::new(needed.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>()));
        CsvTableSource {
            table: mapping.table.clone(),
            files,
            options: mapping.csv.clone(),
            classified: mapping.classified_source_columns().into_iter().map(str::to_owned).collect(),
            needed,
            schema,
            pos: resume,
            seq: 0,
            open: None,
            value_bytes: Vec::new(),
        }
    }

    /// Total bytes to read, when every file is uncompressed (for a determinate bar).
    pub fn total_bytes(&self) -> Option<u64> {
        plain_total(&self.files, self.options.compression)
    }

    /// Bytes of the files before the current one plus the offset in it.
    pub fn bytes_done(&self, pos: &Position) -> u64 {
        bytes_before(&self.files, pos)
    }

    /// Sets the sequence number of the next batch (after a resume).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Checks every file's header against the mapping without reading data.
    pub fn check_headers(&self) -> Result<(), SourceError> {
        for (i, _) in self.files.iter().enumerate() {
            self.open_file(i as u32, Position { file: i as u32, ..Position::default() })?;
        }
        Ok(())
    }

    /// Reads up to `limit` records (never across a file boundary).
    ///
    /// `Ok(None)` at the end of the last file.
    pub fn next_batch(&mut self, limit: usize) -> Result<Option<SourceBatch>, SourceError> {
        loop {
            if self.pos.file as usize >= self.files.len() {
                return Ok(None);
            }
            if self.open.is_none() {
                self.open = Some(self.open_file(self.pos.file, self.pos.clone())?);
            }
            let open = self.open.as_mut().expect("opened");
            if let Some(reason) = open.rejected_file.take() {
                let start = self.pos.clone();
                let origin = RowOrigin { file: start.file, record: 0, line: 1, byte: 0 };
                self.advance_file();
                let batch = RecordBatch::new_empty(self.schema.clone());
                let rejected = vec![Rejection { origin, column: None, reason }];
                return Ok(Some(self.emit(batch, Vec::new(), rejected, start)));
            }
            let start = self.pos.clone();
            let (batch, rows, rejected, end) = self.read_records(limit)?;
            if batch.num_rows() == 0 && rejected.is_empty() {
                self.advance_file();
                continue;
            }
            self.pos = end;
            return Ok(Some(self.emit(batch, rows, rejected, start)));
        }
    }

    fn emit(&mut self, batch: RecordBatch, rows: Vec<RowOrigin>, rejected: Vec<Rejection>, start: Position) -> SourceBatch {
        let seq = self.seq;
        self.seq += 1;
        SourceBatch { table: self.table.clone(), seq, batch, rows, start, end: self.pos.clone(), rejected, passed_over: 0 }
    }

    fn advance_file(&mut self) {
        self.open = None;
        self.pos = Position { file: self.pos.file + 1, byte: 0, record: 0, line: 1, cursor: None };
    }

    #[allow(clippy::type_complexity)]
    fn read_records(&mut self, limit: usize) -> Result<(RecordBatch, Vec<RowOrigin>, Vec<Rejection>, Position), SourceError> {
        let file_idx = self.pos.file;
        let path = self.files[file_idx as usize].path.clone();
        let encoding = self.options.encoding;
        let open = self.open.as_mut().expect("opened");
        // Size each column's value buffer from the previous batch so it rarely regrows.
        let hints = &self.value_bytes;
        let mut builders: Vec<StringBuilder> =
            (0..self.needed.len()).map(|k| StringBuilder::with_capacity(limit, hints.get(k).map_or(limit * 16, |b| b + b / 8))).collect();
        let mut rows = Vec::with_capacity(limit);
        let mut rejected = Vec::new();
        let mut rec = csv::ByteRecord::new();
        let mut scratch = String::new();
        let mut n = 0;
        while n < limit {
            let more = open.reader.read_byte_record(&mut rec).map_err(|e| csv_error(&path, open.base.byte, e))?;
            if !more {
                break;
            }
            n += 1;
            let p = rec.position().expect("csv records carry positions");
            let origin = open.base.origin(file_idx, p);
            if rec.len() != open.width {
                let reason = if rec.len() < open.width { Reason::MissingFields } else { Reason::ExtraFields };
                rejected.push(Rejection { origin, column: None, reason });
                continue;
            }
            // UTF-8 records are validated whole: slicing valid UTF-8 at the ASCII delimiters
            // gives valid fields, so the common case checks each byte once and copies once.
            // A delimiter inside a multi-byte character (a corrupt export) leaves a valid
            // record whose field ranges are not on character boundaries: the boundary check
            // sends it to the per-field path below, which quarantines the row.
            let whole = if encoding == TextEncoding::Utf8 { std::str::from_utf8(rec.as_slice()).ok() } else { None };
            let on_boundaries = |text: &str| {
                open.projection
                    .iter()
                    .all(|&idx| rec.range(idx).is_some_and(|r| text.is_char_boundary(r.start) && text.is_char_boundary(r.end)))
            };
            if let Some(text) = whole.filter(|t| on_boundaries(t)) {
                for (b, &idx) in builders.iter_mut().zip(&open.projection) {
                    b.append_value(&text[rec.range(idx).expect("checked above")]);
                }
            } else {
                // Decode every needed field before appending any, so a bad row leaves no trace.
                let bad = open.projection.iter().position(|&idx| decode(encoding, &rec[idx], &mut scratch).is_err());
                if let Some(k) = bad {
                    rejected.push(Rejection { origin, column: Some(self.needed[k].clone()), reason: Reason::InvalidEncoding });
                    continue;
                }
                for (b, &idx) in builders.iter_mut().zip(&open.projection) {
                    decode(encoding, &rec[idx], &mut scratch).expect("checked above");
                    b.append_value(&scratch);
                }
            }
            rows.push(origin);
        }
        let end = open.base.end(file_idx, open.reader.position());
        let columns: Vec<ArrayRef> = builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        self.value_bytes = columns.iter().map(|c| c.to_data().buffers()[1].len()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).expect("utf8 columns match the raw schema");
        Ok((batch, rows, rejected, end))
    }

    fn reader_builder(&self) -> csv::ReaderBuilder {
        let o = &self.options;
        let mut b = csv::ReaderBuilder::new();
        b.has_headers(false)
            .flexible(true)
            .delimiter(o.delimiter.0)
            .quote(o.quote.0)
            .double_quote(o.double_quote)
            .escape(o.escape.map(|e| e.0))
            .comment(o.comment.map(|c| c.0))
            .buffer_capacity(256 * 1024);
        b
    }

    /// Opens file `idx`, checks its header, and positions the reader at `at`.
    fn open_file(&self, idx: u32, at: Position) -> Result<OpenFile, SourceError> {
        let path = &self.files[idx as usize].path;
        let mut stream = open_stream(path, compression_of(&self.options, path), 0)?;
        let head = stream.fill_buf().map_err(|source| SourceError::Io { file: path.clone(), byte: 0, source })?;
        if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
            return Ok(OpenFile {
                reader: self.reader_builder().from_reader(Box::new(io::empty())),
                projection: Vec::new(),
                width: 0,
                base: Base { byte: 0, line: 1, record: 0 },
                rejected_file: Some(Reason::UnsupportedFileEncoding),
            });
        }
        let mut reader = self.reader_builder().from_reader(Box::new(stream) as Box<dyn Read + Send>);
        let (names, data_start) = if self.options.header {
            let Some(names) = self.read_names(path, &mut reader)? else {
                // An empty file: nothing to read, nothing to check.
                return Ok(OpenFile {
                    reader,
                    projection: Vec::new(),
                    width: 0,
                    base: Base { byte: 0, line: 1, record: 0 },
                    rejected_file: None,
                });
            };
            let p = reader.position();
            (names, Position { file: idx, byte: p.byte(), record: 0, line: p.line(), cursor: None })
        } else {
            (self.options.columns.clone(), Position { file: idx, byte: 0, record: 0, line: 1, cursor: None })
        };
        let projection = self.project(path, &names)?;
        let width = names.len();
        let (reader, base) = if at.byte > data_start.byte {
            let stream = open_stream(path, compression_of(&self.options, path), at.byte)?;
            let base = Base { byte: at.byte, line: at.line, record: at.record as i64 };
            (self.reader_builder().from_reader(Box::new(stream) as Box<dyn Read + Send>), base)
        } else {
            // This reader started at byte 0: its positions are absolute but count the header.
            (reader, Base { byte: 0, line: 1, record: -i64::from(self.options.header) })
        };
        Ok(OpenFile { reader, projection, width, base, rejected_file: None })
    }

    /// Reads and decodes the header record; `None` for an empty file.
    fn read_names(&self, path: &Path, reader: &mut csv::Reader<Box<dyn Read + Send>>) -> Result<Option<Vec<String>>, SourceError> {
        let mut rec = csv::ByteRecord::new();
        if !reader.read_byte_record(&mut rec).map_err(|e| csv_error(path, 0, e))? {
            return Ok(None);
        }
        let mut names = Vec::with_capacity(rec.len());
        let mut s = String::new();
        for (i, f) in rec.iter().enumerate() {
            decode(self.options.encoding, f, &mut s).map_err(|_| SourceError::Schema {
                file: path.to_path_buf(),
                message: format!("header field #{} is not valid {:?} text", i + 1, self.options.encoding),
            })?;
            names.push(s.clone());
        }
        Ok(Some(names))
    }

    /// Every distinct source column name over the files' headers (or the dialect's
    /// `columns` without a header), in first-seen order, whether the mapping accounts for
    /// it or not: for reports of what a run would refuse.
    pub fn header_names(&self) -> Result<Vec<String>, SourceError> {
        if !self.options.header {
            return Ok(self.options.columns.clone());
        }
        let mut out: Vec<String> = Vec::new();
        for f in &self.files {
            let stream = open_stream(&f.path, compression_of(&self.options, &f.path), 0)?;
            let mut reader = self.reader_builder().from_reader(Box::new(stream) as Box<dyn Read + Send>);
            for n in self.read_names(&f.path, &mut reader)?.unwrap_or_default() {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    fn project(&self, path: &Path, names: &[String]) -> Result<Vec<usize>, SourceError> {
        let schema_err = |message: String| SourceError::Schema { file: path.to_path_buf(), message };
        let unclassified: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| !self.classified.contains(n.as_str()))
            .map(|(i, n)| if n.is_empty() { format!("#{} (empty name)", i + 1) } else { format!("`{n}`") })
            .collect();
        if !unclassified.is_empty() {
            return Err(schema_err(format!(
                "table `{}`: source column(s) {} are neither mapped nor listed in `drop`; every source column must be classified",
                self.table,
                unclassified.join(", ")
            )));
        }
        self.needed
            .iter()
            .map(|n| {
                let mut hits = names.iter().enumerate().filter(|(_, h)| *h == n).map(|(i, _)| i);
                match (hits.next(), hits.next()) {
                    (Some(i), None) => Ok(i),
                    (None, _) => Err(schema_err(format!("table `{}`: mapped source column `{n}` is not in the header", self.table))),
                    (Some(_), Some(_)) => {
                        Err(schema_err(format!("table `{}`: source column `{n}` appears more than once in the header", self.table)))
                    }
                }
            })
            .collect()
    }
}

/// Decodes one field into `out`. Only UTF-8 can fail.
fn decode(encoding: TextEncoding, bytes: &[u8], out: &mut String) -> Result<(), ()> {
    out.clear();
    match encoding {
        TextEncoding::Utf8 => out.push_str(std::str::from_utf8(bytes).map_err(|_| ())?),
        TextEncoding::Latin1 => out.extend(bytes.iter().map(|&b| b as char)),
        TextEncoding::Windows1252 => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            out.push_str(&text);
        }
    }
    Ok(())
}

fn compression_of(options: &CsvOptions, path: &Path) -> Compression {
    compression_of_path(options.compression, path)
}

/// Total bytes of `files` when none of them is compressed (for a determinate bar).
pub(crate) fn plain_total(files: &[SourceFile], compression: Compression) -> Option<u64> {
    let plain = files.iter().all(|f| compression_of_path(compression, &f.path) == Compression::None);
    plain.then(|| files.iter().map(|f| f.size).sum())
}

/// Bytes of the files before `pos`'s plus the offset in it.
pub(crate) fn bytes_before(files: &[SourceFile], pos: &Position) -> u64 {
    files.iter().take(pos.file as usize).map(|f| f.size).sum::<u64>() + pos.byte
}

/// Opens every file once (compressed ones by their extension), to fail before a run.
pub(crate) fn check_open(files: &[SourceFile]) -> Result<(), SourceError> {
    for f in files {
        open_stream(&f.path, compression_of_path(Compression::Auto, &f.path), 0)?;
    }
    Ok(())
}

/// `compression`, or for `auto` the compression its extension names (`.gz`, `.zst`).
pub(crate) fn compression_of_path(compression: Compression, path: &Path) -> Compression {
    match compression {
        Compression::Auto => match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Compression::Gzip,
            Some("zst") => Compression::Zstd,
            _ => Compression::None,
        },
        c => c,
    }
}

/// A plain file, or its decompressed contents, buffered, starting `skip` (decompressed)
/// bytes in: a seek for plain files, reading and discarding for compressed ones.
pub(crate) fn open_stream(path: &Path, compression: Compression, skip: u64) -> Result<BufReader<Box<dyn Read + Send>>, SourceError> {
    let io_err = |source| SourceError::Io { file: path.to_path_buf(), byte: skip, source };
    let mut file = File::open(path).map_err(io_err)?;
    let inner: Box<dyn Read + Send> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(256 * 1024, file))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file).map_err(io_err)?),
        Compression::None | Compression::Auto => {
            if skip > 0 {
                let len = file.metadata().map_err(io_err)?.len();
                if len < skip {
                    return Err(io_err(io::Error::new(io::ErrorKind::UnexpectedEof, "file is shorter than the saved resume position")));
                }
                file.seek(SeekFrom::Start(skip)).map_err(io_err)?;
            }
            return Ok(BufReader::with_capacity(256 * 1024, Box::new(file)));
        }
    };
    let mut stream = BufReader::with_capacity(256 * 1024, inner);
    if skip > 0 {
        let copied = io::copy(&mut stream.by_ref().take(skip), &mut io::sink()).map_err(io_err)?;
        if copied < skip {
            return Err(io_err(io::Error::new(io::ErrorKind::UnexpectedEof, "file is shorter than the saved resume position")));
        }
    }
    Ok(stream)
}

fn csv_error(path: &Path, base: u64, e: csv::Error) -> SourceError {
    let byte = base + e.position().map_or(0, csv::Position::byte);
    let source = match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        // With flexible records and byte records, other kinds carry no cell value but are unexpected.
        _ => io::Error::new(io::ErrorKind::InvalidData, "malformed CSV record"),
    };
    SourceError::Io { file: path.to_path_buf(), byte, source }
}

#[cfg(test)]
#[path = "csv_source_tests.rs"]
mod tests;
