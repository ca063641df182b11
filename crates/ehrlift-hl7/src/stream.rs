//! Reading a file's messages through a bounded window, for files of any size.
//!
//! [`crate::parse`] wants the whole file in memory. [`Reader`] keeps only the item being
//! read (plus the read-ahead that proves it is whole: the line after it), so memory
//! stays at a few MiB for an archive of any size, and it can resume at an item boundary.

use std::io::{self, Read};

use crate::error::ParseError;
use crate::framing::{Chunk, FramingState, Messages};
use crate::message::Message;

/// Bytes read at a time (the window grows by doubling for a larger message).
const READ_CHUNK: usize = 1 << 20;

/// Reads a file's items (messages, or errors of chunks that are not messages) one at a
/// time, through a window that holds the current item and not much more.
///
/// Items, offsets and ordinals are exactly those of [`crate::parse`] over the whole file.
pub struct Reader<R> {
    src: R,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    state: FramingState,
    max_item: usize,
    /// The next item as `ready` framed it (chunk, its end and the read position after it,
    /// relative to `start`, and the state after it), so it is not framed twice.
    framed: Option<(Chunk, usize, usize, FramingState)>,
}

impl<R: Read> Reader<R> {
    /// Reads `src` from its first byte. One item (a message with its attachments) may
    /// be at most `max_item` bytes; a larger one is an `InvalidData` error.
    pub fn new(src: R, max_item: usize) -> Self {
        Reader { src, buf: Vec::new(), start: 0, base: 0, eof: false, state: FramingState::default(), max_item, framed: None }
    }

    /// File offset of the next item: where a later reader resumes with [`Reader::skip_to`].
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Items (messages and errors) read so far.
    pub fn items(&self) -> usize {
        self.state.items
    }

    /// Frames items without parsing them until the next one starts at `offset`, so a
    /// resumed reader continues with the ordinals and batch state of an unbroken read.
    /// `false` when no item starts there (the file is not the one read before).
    pub fn skip_to(&mut self, offset: u64) -> io::Result<bool> {
        while self.offset() < offset {
            if !self.ready()? {
                break;
            }
            let (_, _, after, state) = self.framed.take().expect("ready() framed an item");
            self.start += after;
            self.state = state;
        }
        Ok(self.offset() == offset)
    }

    /// The next item, borrowed from the window until the next call; `None` at the end.
    pub fn next_item(&mut self) -> io::Result<Option<Result<Message<'_>, ParseError>>> {
        if !self.ready()? {
            return Ok(None);
        }
        let (chunk, end, after, state) = self.framed.take().expect("ready() framed an item");
        // Emitting needs the window from the item's start and the state after framing it.
        let mut it = Messages::resume(&self.buf[self.start..], self.base + self.start as u64, state);
        self.start += after;
        self.state = state;
        Ok(Some(it.emit(chunk, end)))
    }

    /// Reads until the window holds a whole next item and frames it into `framed`:
    /// `false` at the end of the file (trailing envelope segments consumed).
    fn ready(&mut self) -> io::Result<bool> {
        loop {
            let mut it = Messages::resume(&self.buf[self.start..], self.offset(), self.state);
            match it.next_chunk() {
                Some((chunk, end)) if it.bounded() || self.eof => {
                    self.framed = Some((chunk, end, it.offset(), it.state()));
                    return Ok(true);
                }
                None if self.eof => {
                    self.start = self.buf.len();
                    self.state = it.state();
                    return Ok(false);
                }
                _ => self.fill()?,
            }
        }
    }

    /// Drops consumed bytes and reads more, at least doubling what the window holds.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        if self.buf.len() >= self.max_item {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an HL7 item at byte {} is larger than {} MiB", self.base, self.max_item >> 20),
            ));
        }
        let want = self.buf.len().max(READ_CHUNK);
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        let mut filled = old;
        while filled < self.buf.len() {
            match self.src.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(filled);
                    return Err(e);
                }
            }
        }
        self.buf.truncate(filled);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` through readers that return at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn summary(item: Result<Message<'_>, ParseError>) -> String {
        match item {
            Ok(m) => format!("ok #{} @{} {}", m.index(), m.byte_offset(), m.raw().len()),
            Err(e) => format!("err {e}"),
        }
    }

    fn sample() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"FHS|^~\\&\rBHS|^~\\&\r");
        for i in 0..50 {
            s.extend_from_slice(format!("MSH|^~\\&|A|B|||2024||ADT^A01|{i}|P|2.5\rPID|1||{i}^^^MRN\r").as_bytes());
            if i % 7 == 3 {
                s.extend_from_slice(b"BHS|^~\\&\r");
            }
        }
        s.extend_from_slice(b"BTS|50\rFTS|1\r");
        s
    }

    #[test]
    fn windows_give_what_a_whole_read_gives() {
        let data = sample();
        let whole: Vec<String> = crate::parse(&data).map(summary).collect();
        assert!(whole.iter().any(|s| s.starts_with("err")), "the sample has duplicate BHS errors");
        for step in [1, 7, 64, 4096] {
            let mut r = Reader::new(Trickle { data: &data, step }, 1 << 20);
            let mut got = Vec::new();
            while let Some(item) = r.next_item().unwrap() {
                got.push(summary(item));
            }
            assert_eq!(got, whole, "step {step}");
            assert_eq!(r.offset(), data.len() as u64);
        }
    }

    #[test]
    fn resumes_at_any_item_with_the_same_ordinals() {
        let data = sample();
        let whole: Vec<String> = crate::parse(&data).map(summary).collect();
        let mut r = Reader::new(&data[..], 1 << 20);
        let mut offsets = vec![r.offset()];
        while r.next_item().unwrap().is_some() {
            offsets.push(r.offset());
        }
        for (k, &at) in offsets.iter().enumerate() {
            let mut r = Reader::new(Trickle { data: &data, step: 100 }, 1 << 20);
            assert!(r.skip_to(at).unwrap());
            assert_eq!(r.items(), k);
            let mut rest = Vec::new();
            while let Some(item) = r.next_item().unwrap() {
                rest.push(summary(item));
            }
            assert_eq!(rest, whole[k.min(whole.len())..], "resume at item {k}");
        }
        // No item starts in the middle of one.
        let mut r = Reader::new(&data[..], 1 << 20);
        assert!(!r.skip_to(offsets[2] + 3).unwrap());
    }

    #[test]
    fn an_oversized_item_is_an_error_naming_its_offset() {
        let mut data = b"MSH|^~\\&|A\rOBX|1|ED|X||".to_vec();
        data.extend(std::iter::repeat_n(b'Q', 3 << 20));
        data.extend_from_slice(b"\rMSH|^~\\&|A\r");
        let mut r = Reader::new(&data[..], 2 << 20);
        let e = r.next_item().expect_err("too large");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "an HL7 item at byte 0 is larger than 2 MiB");
    }
}
