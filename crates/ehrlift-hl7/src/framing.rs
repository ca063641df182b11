//! Splitting a file into messages: single messages, many messages, FHS/BHS batches and
//! MLLP dumps, with CR, LF or CRLF segment endings and stray BOMs.

use crate::error::{ParseError, Reason};
use crate::message::{Message, is_segment_sep, safe_segment_id};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Iterator over the messages of a file, each a [`Message`] or the [`ParseError`] of
/// that message (or of a chunk that is not a message). An error never stops the rest.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    input: &'a [u8],
    /// Offset of `input[0]` in the file (non-zero when a [`crate::Reader`] window starts later).
    base: u64,
    pos: usize,
    index: usize,
    batch_open: bool,
    file_open: bool,
    pending: Option<(usize, usize)>,
}

/// Where framing stands between two items: what resuming at an item boundary must restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramingState {
    /// Items (messages and errors) yielded so far.
    pub items: usize,
    /// Inside a BHS batch.
    pub batch_open: bool,
    /// Inside an FHS file batch.
    pub file_open: bool,
}

#[derive(Clone, Copy)]
pub(crate) enum Chunk {
    Message(usize),
    Orphan(usize),
    Duplicate { at: usize, file: bool },
}

#[derive(PartialEq, Eq)]
enum Kind {
    Msh,
    Fhs,
    Bhs,
    Bts,
    Fts,
    Other,
}

fn kind(seg: &[u8]) -> Kind {
    let is = |id: &[u8]| seg.starts_with(id) && seg.get(3).is_none_or(|b| !b.is_ascii_alphanumeric());
    if is(b"MSH") {
        Kind::Msh
    } else if is(b"FHS") {
        Kind::Fhs
    } else if is(b"BHS") {
        Kind::Bhs
    } else if is(b"BTS") {
        Kind::Bts
    } else if is(b"FTS") {
        Kind::Fts
    } else {
        Kind::Other
    }
}

impl<'a> Messages<'a> {
    /// Starts reading `input`, a whole file's bytes.
    pub fn new(input: &'a [u8]) -> Messages<'a> {
        Messages::resume(input, 0, FramingState::default())
    }

    /// Continues reading at an item boundary: `input` starts at byte `base` of the file,
    /// where an earlier reader stood in `state`. Offsets and ordinals continue the file's.
    pub fn resume(input: &'a [u8], base: u64, state: FramingState) -> Messages<'a> {
        Messages { input, base, pos: 0, index: state.items, batch_open: state.batch_open, file_open: state.file_open, pending: None }
    }

    /// The framing state after the items yielded so far.
    pub fn state(&self) -> FramingState {
        FramingState { items: self.index, batch_open: self.batch_open, file_open: self.file_open }
    }

    /// Offset in the input where the next item (or envelope line) begins.
    pub fn offset(&self) -> usize {
        self.pending.map_or(self.pos, |(s, _)| s)
    }

    /// Whether the last chunk was ended by a following line rather than by the end of
    /// the input: only then is it known to be whole when the input is a window of a file.
    pub(crate) fn bounded(&self) -> bool {
        self.pending.is_some()
    }

    /// The next non-blank line, as (start, end) without its separator.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        let b = self.input;
        loop {
            while self.pos < b.len() && is_segment_sep(b[self.pos]) {
                self.pos += 1;
            }
            // A BOM at the start of any line: files concatenated with `cat` keep theirs.
            if b[self.pos..].starts_with(BOM) {
                self.pos += BOM.len();
                continue;
            }
            break;
        }
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        let end = b[start..].iter().position(|&c| is_segment_sep(c)).map_or(b.len(), |p| start + p);
        self.pos = end;
        Some((start, end))
    }

    pub(crate) fn emit(&mut self, chunk: Chunk, end: usize) -> Result<Message<'a>, ParseError> {
        let base = self.base;
        let err = |reason, at: usize, segment| ParseError { message_index: self.index, byte_offset: base + at as u64, segment, reason };
        match chunk {
            Chunk::Message(start) => Message::new(&self.input[start..end], base + start as u64, self.index),
            Chunk::Orphan(start) => Err(err(Reason::SegmentBeforeMsh, start, safe_segment_id(&self.input[start..end]))),
            Chunk::Duplicate { at, file, .. } => {
                let (reason, id) = if file { (Reason::DuplicateFileHeader, "FHS") } else { (Reason::DuplicateBatchHeader, "BHS") };
                Err(err(reason, at, Some(id.to_owned())))
            }
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (chunk, end) = self.next_chunk()?;
        Some(self.emit(chunk, end))
    }
}

impl Messages<'_> {
    /// Frames the next item without parsing it: its chunk and end, counted in `state`.
    pub(crate) fn next_chunk(&mut self) -> Option<(Chunk, usize)> {
        let mut cur: Option<Chunk> = None;
        let mut end = 0;
        while let Some((s, e)) = self.pending.take().or_else(|| self.next_line()) {
            match kind(&self.input[s..e]) {
                Kind::Msh => {
                    if cur.is_some() {
                        self.pending = Some((s, e));
                        break;
                    }
                    cur = Some(Chunk::Message(s));
                    end = e;
                }
                k @ (Kind::Fhs | Kind::Bhs) => {
                    let file = k == Kind::Fhs;
                    let duplicate = self.batch_open || (file && self.file_open);
                    if duplicate {
                        // The header breaks the message it lands in: that message and the
                        // segments after the header, up to the next MSH, become one error.
                        cur = Some(match cur {
                            Some(Chunk::Message(_) | Chunk::Orphan(_)) => Chunk::Duplicate { at: s, file },
                            Some(dup @ Chunk::Duplicate { .. }) => dup,
                            None => Chunk::Duplicate { at: s, file },
                        });
                        end = e;
                        continue;
                    }
                    if cur.is_some() {
                        self.pending = Some((s, e));
                        break;
                    }
                    if file {
                        self.file_open = true;
                    } else {
                        self.batch_open = true;
                    }
                }
                k @ (Kind::Bts | Kind::Fts) => {
                    if cur.is_some() {
                        self.pending = Some((s, e));
                        break;
                    }
                    self.batch_open = false;
                    if k == Kind::Fts {
                        self.file_open = false;
                    }
                }
                Kind::Other => {
                    if cur.is_none() {
                        cur = Some(Chunk::Orphan(s));
                    }
                    end = e;
                }
            }
        }
        let chunk = cur?;
        self.index += 1;
        Some((chunk, end))
    }
}
