//! Cutting a byte stream into records, in bounded memory, resumable at a byte offset.

use std::io::{self, BufRead, ErrorKind};

/// How records are cut from a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Each record ends with LF or CRLF (the last one may have neither). A line longer
    /// than `max_line` bytes is returned as too long, its bytes skipped, not kept.
    Lines {
        /// The longest line kept in memory.
        max_line: usize,
    },
    /// No terminators: records of exactly `record_length` bytes back to back (mainframe
    /// RECFM=F). A shorter last record is returned as it is, to be `wrong_length`.
    Fixed {
        /// Bytes of every record.
        record_length: usize,
    },
}

/// Where a record is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordInfo {
    /// 1-based number of the record in the file (for lines framing, the line number,
    /// empty lines included).
    pub number: u64,
    /// Byte offset of its first byte.
    pub byte_offset: u64,
    /// Byte offset just past it and its line terminator: where to resume after it, with
    /// `number` as the records already read.
    pub end_offset: u64,
    /// Its length in bytes, without the terminator (also when too long and not kept).
    pub length: u64,
    /// The line was over the reader's limit: the buffer is empty and the record must be
    /// quarantined as `record_too_long`.
    pub too_long: bool,
}

/// Reads records one at a time into a caller's buffer.
///
/// ```
/// use ehrlift_fixed::{Framing, RecordReader};
/// let data = b"AB1\r\nCD2\nEF3";
/// let mut reader = RecordReader::new(&data[..], Framing::Lines { max_line: 100 }, 0, 0);
/// let mut buf = Vec::new();
/// let first = reader.next_record(&mut buf).unwrap().unwrap();
/// assert_eq!((first.number, first.byte_offset, first.end_offset, &buf[..]), (1, 0, 5, &b"AB1"[..]));
/// // Resuming after the first record: seek the file to 5 and say one record was read.
/// let mut again = RecordReader::new(&data[5..], Framing::Lines { max_line: 100 }, 5, 1);
/// let second = again.next_record(&mut buf).unwrap().unwrap();
/// assert_eq!((second.number, second.byte_offset, &buf[..]), (2, 5, &b"CD2"[..]));
/// ```
#[derive(Debug)]
pub struct RecordReader<R> {
    inner: R,
    framing: Framing,
    offset: u64,
    records: u64,
    at_start: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<R: BufRead> RecordReader<R> {
    /// A reader of `inner`, which the caller has already positioned at `start_byte`;
    /// `start_record` is the number of records before that point (0 at the start of the
    /// file; a previous [`RecordInfo::number`] when resuming at its `end_offset`).
    ///
    /// With lines framing, a UTF-8 byte order mark at byte 0 of the file is skipped: an
    /// exporter that wrote one meant the file as text, and in ASCII or Latin-1 those three
    /// bytes would only ever be the mark. Fixed framing never skips anything (binary and
    /// EBCDIC records may start with any byte).
    pub fn new(inner: R, framing: Framing, start_byte: u64, start_record: u64) -> Self {
        RecordReader { inner, framing, offset: start_byte, records: start_record, at_start: start_byte == 0 }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Reads the next record into `buf` (cleared first). `None` at the end of the input.
    ///
    /// Lines: the terminator (LF, or CRLF; a CR not followed by LF is data) is not kept;
    /// an empty line is no record but is counted, so record numbers are line numbers; a
    /// line over `max_line` comes back with [`RecordInfo::too_long`] set and an empty
    /// buffer, its bytes read past and never held. Fixed: a last record shorter than
    /// `record_length` comes back as it is, for the decoder to reject as `wrong_length`.
    pub fn next_record(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<RecordInfo>> {
        buf.clear();
        if std::mem::take(&mut self.at_start) && matches!(self.framing, Framing::Lines { .. }) {
            self.skip_bom()?;
        }
        match self.framing {
            Framing::Lines { max_line } => self.next_line(buf, max_line),
            Framing::Fixed { record_length } => self.next_fixed(buf, record_length),
        }
    }

    fn fill(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.offset += n as u64;
    }

    fn skip_bom(&mut self) -> io::Result<()> {
        // A reader whose first fill is shorter than the mark (only a pathological one)
        // keeps it as data.
        if self.fill()?.starts_with(BOM) {
            self.consume(BOM.len());
        }
        Ok(())
    }

    fn next_line(&mut self, buf: &mut Vec<u8>, max_line: usize) -> io::Result<Option<RecordInfo>> {
        loop {
            let start = self.offset;
            let Some((length, too_long)) = self.read_line(buf, max_line)? else {
                return Ok(None);
            };
            self.records += 1;
            // An empty line holds no record; it still counts, so numbers stay line numbers.
            if length == 0 {
                continue;
            }
            return Ok(Some(RecordInfo { number: self.records, byte_offset: start, end_offset: self.offset, length, too_long }));
        }
    }

    /// Reads one line into `buf` (at most `max_line` bytes kept): its length without the
    /// terminator and whether it was too long; `None` at the end of the input.
    fn read_line(&mut self, buf: &mut Vec<u8>, max_line: usize) -> io::Result<Option<(u64, bool)>> {
        buf.clear();
        let mut length: u64 = 0;
        let mut too_long = false;
        let mut any = false;
        // Whether the last byte seen is a CR: it belongs to the terminator if an LF follows.
        let mut last_cr = false;
        loop {
            let avail = self.fill()?;
            if avail.is_empty() {
                break;
            }
            any = true;
            let (take, eol) = match memchr::memchr(b'\n', avail) {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            if take > 0 {
                last_cr = avail[take - 1] == b'\r';
            }
            length += take as u64;
            // One byte of slack for a CR whose LF is still to come.
            if !too_long && length > max_line as u64 + 1 {
                too_long = true;
                buf.clear();
            }
            if !too_long {
                buf.extend_from_slice(&avail[..take]);
            }
            self.consume(take + usize::from(eol));
            if eol {
                if last_cr {
                    length -= 1;
                    buf.pop();
                }
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        if length > max_line as u64 {
            too_long = true;
            buf.clear();
        }
        Ok(Some((length, too_long)))
    }

    fn next_fixed(&mut self, buf: &mut Vec<u8>, record_length: usize) -> io::Result<Option<RecordInfo>> {
        let start = self.offset;
        while buf.len() < record_length {
            let avail = self.fill()?;
            if avail.is_empty() {
                break;
            }
            let n = avail.len().min(record_length - buf.len());
            buf.extend_from_slice(&avail[..n]);
            self.consume(n);
        }
        if buf.is_empty() {
            return Ok(None);
        }
        self.records += 1;
        Ok(Some(RecordInfo {
            number: self.records,
            byte_offset: start,
            end_offset: self.offset,
            length: buf.len() as u64,
            too_long: false,
        }))
    }
}
