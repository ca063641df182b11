//! A message, its segments and their fields: borrowed slices of the input, split on
//! demand; text is unescaped and decoded only when a value is read.

use std::borrow::Cow;

use crate::error::{ParseError, PathError, Reason};
use crate::path::Path;
use crate::text;

/// Segment separators: CR, LF (so CRLF and mixed endings too) and the MLLP frame bytes.
#[inline]
pub(crate) fn is_segment_sep(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | 0x0B | 0x1C)
}

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    /// MSH-1, usually `|`.
    pub field: u8,
    /// Usually `^`.
    pub component: u8,
    /// Usually `~`.
    pub repetition: u8,
    /// Usually `\`.
    pub escape: u8,
    /// Usually `&`.
    pub subcomponent: u8,
    /// HL7 2.7+ truncation character, usually `#`; values keep it literally.
    pub truncation: Option<u8>,
}

impl Delimiters {
    /// `|^~\&`.
    pub const STANDARD: Delimiters =
        Delimiters { field: b'|', component: b'^', repetition: b'~', escape: b'\\', subcomponent: b'&', truncation: None };

    /// Reads the delimiters from the MSH segment (`MSH|^~\&|...`).
    pub(crate) fn from_msh(msh: &[u8]) -> Result<Delimiters, Reason> {
        let bad = |b: u8| b.is_ascii_alphanumeric() || b <= b' ' || b >= 0x7F;
        let &field = msh.get(3).ok_or(Reason::MshTooShort)?;
        if bad(field) {
            return Err(Reason::BadFieldSeparator);
        }
        let rest = &msh[4..];
        let mut enc = &rest[..rest.iter().position(|&b| b == field).unwrap_or(rest.len())];
        // `^~\\&`: a message copied out of a string literal with its backslash doubled
        // (seen in converter test data). Unambiguous, so read it as `^~\&`.
        let fixed;
        if enc.len() == 5 && enc[2] == b'\\' && enc[3] == b'\\' {
            fixed = [enc[0], enc[1], enc[2], enc[4]];
            enc = &fixed;
        }
        match enc.len() {
            0..=3 => return Err(Reason::TooFewEncodingChars),
            4 | 5 => {}
            _ => return Err(Reason::TooManyEncodingChars),
        }
        if enc.iter().any(|&b| bad(b)) {
            return Err(Reason::BadEncodingChar);
        }
        let mut all = [field, 0, 0, 0, 0, 0];
        all[1..=enc.len()].copy_from_slice(enc);
        let all = &all[..=enc.len()];
        if (1..all.len()).any(|i| all[..i].contains(&all[i])) {
            return Err(Reason::RepeatedEncodingChar);
        }
        Ok(Delimiters {
            field,
            component: enc[0],
            repetition: enc[1],
            escape: enc[2],
            subcomponent: enc[3],
            truncation: enc.get(4).copied(),
        })
    }
}

/// How field text is decoded, from MSH-18.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Charset {
    /// MSH-18 empty or `ASCII`: UTF-8 when valid, else Windows-1252. Senders that
    /// declare ASCII routinely send UTF-8 or Windows-1252 text; rejecting it would lose
    /// the message for no safety gain.
    Lenient,
    /// `8859/1`: ISO-8859-1, every byte one character.
    Latin1,
    /// `UNICODE UTF-8`: validated when the message is parsed.
    Utf8,
}

/// HL7 table 0211 names: an unsupported MSH-18 is named in errors only if listed here,
/// so a misaligned field holding free text (maybe PHI) is never echoed.
const TABLE_0211: &[&str] = &[
    "8859/2",
    "8859/3",
    "8859/4",
    "8859/5",
    "8859/6",
    "8859/7",
    "8859/8",
    "8859/9",
    "8859/15",
    "ISO IR14",
    "ISO IR87",
    "ISO IR159",
    "GB 18030-2000",
    "KS X 1001",
    "CNS 11643-1992",
    "BIG-5",
    "UNICODE",
    "UNICODE UTF-16",
    "UNICODE UTF-32",
];

impl Charset {
    fn from_msh18(value: &[u8], d: &Delimiters) -> Result<Charset, Reason> {
        let first = value.split(|&b| b == d.repetition).next().unwrap_or_default();
        let first = first.split(|&b| b == d.component).next().unwrap_or_default();
        let name = first.trim_ascii();
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if name.is_empty() || is("ASCII") || is("ISO IR6") {
            Ok(Charset::Lenient)
        } else if is("8859/1") || is("ISO IR100") {
            Ok(Charset::Latin1)
        } else if is("UNICODE UTF-8") || is("UTF-8") {
            Ok(Charset::Utf8)
        } else {
            let known = TABLE_0211.iter().find(|n| is(n)).map(|n| (*n).to_owned());
            Err(Reason::UnsupportedCharset(known))
        }
    }
}

/// Segment id for errors: only when it really is one (three ASCII letters/digits).
pub(crate) fn safe_segment_id(seg: &[u8]) -> Option<String> {
    let id = seg.get(..3)?;
    let ends = seg.len() == 3 || !seg[3].is_ascii_alphanumeric();
    (ends && id.iter().all(u8::is_ascii_alphanumeric)).then(|| String::from_utf8_lossy(id).into_owned())
}

/// One HL7 message: `MSH` up to the next `MSH` or envelope segment.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    offset: u64,
    index: usize,
    ctx: Ctx,
}

#[derive(Debug, Clone, Copy)]
struct Ctx {
    d: Delimiters,
    charset: Charset,
}

impl<'a> Message<'a> {
    /// Parses the message header; `bytes` starts at `MSH`, `offset` is its place in the
    /// file and `index` its 1-based ordinal.
    pub(crate) fn new(bytes: &'a [u8], offset: u64, index: usize) -> Result<Message<'a>, ParseError> {
        let err = |reason, at: usize| ParseError {
            message_index: index,
            byte_offset: offset + at as u64,
            segment: Some("MSH".to_owned()),
            reason,
        };
        let msh_end = bytes.iter().position(|&b| is_segment_sep(b)).unwrap_or(bytes.len());
        let msh = &bytes[..msh_end];
        let d = Delimiters::from_msh(msh).map_err(|r| err(r, 0))?;
        let msh18 = msh.split(|&b| b == d.field).nth(17).unwrap_or_default();
        let charset = Charset::from_msh18(msh18, &d).map_err(|r| err(r, 0))?;
        if charset == Charset::Utf8
            && let Err(e) = std::str::from_utf8(bytes)
        {
            let at = e.valid_up_to();
            let seg_start = bytes[..at].iter().rposition(|&b| is_segment_sep(b)).map_or(0, |p| p + 1);
            let mut e = err(Reason::InvalidUtf8, at);
            e.segment = safe_segment_id(&bytes[seg_start..]);
            return Err(e);
        }
        Ok(Message { bytes, offset, index, ctx: Ctx { d, charset } })
    }

    /// The raw bytes of the message, segment separators included.
    pub fn raw(&self) -> &'a [u8] {
        self.bytes
    }

    /// Byte offset of `MSH` in the input.
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }

    /// 1-based ordinal among the items of the file (messages and errors).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The declared delimiters.
    pub fn delimiters(&self) -> Delimiters {
        self.ctx.d
    }

    /// The character set from MSH-18.
    pub fn charset(&self) -> Charset {
        self.ctx.charset
    }

    /// All segments in order.
    pub fn segments(&self) -> Segments<'a> {
        Segments { bytes: self.bytes, pos: 0, offset: self.offset, ctx: self.ctx }
    }

    /// The segments with this id, in order.
    pub fn segments_with_id<'s>(&self, id: &'s str) -> impl Iterator<Item = Segment<'a>> + 's
    where
        'a: 's,
    {
        self.segments().filter(move |s| s.id_bytes() == id.as_bytes())
    }

    /// The unescaped, decoded value at `path` (like `PID-3[1].1`, `OBX[2]-5`); `None`
    /// when the segment, field, repetition or component is absent or empty.
    pub fn get(&self, path: &str) -> Result<Option<Cow<'a, str>>, PathError> {
        self.get_path(&Path::parse(path)?)
    }

    /// Like [`Message::get`] with a path parsed once (for reading many messages).
    pub fn get_path(&self, p: &Path) -> Result<Option<Cow<'a, str>>, PathError> {
        let seg = self.segments().filter(|s| s.id_bytes() == p.segment).nth(p.occurrence - 1);
        match seg {
            Some(seg) => seg.get_parsed(p),
            None => Ok(None),
        }
    }

    /// One [`SegmentContext`] per segment with id `repeating` (e.g. one per `OBX`), each
    /// carrying the nearest preceding segment of every other id (MSH, PID, PV1, OBR ...).
    pub fn groups(&self, repeating: &str) -> impl Iterator<Item = SegmentContext<'a>> + use<'a> {
        let want: Vec<u8> = repeating.as_bytes().to_ascii_uppercase();
        let mut seen: Vec<Segment<'a>> = Vec::new();
        self.segments().filter_map(move |s| {
            if s.id_bytes() == want.as_slice() {
                return Some(SegmentContext { segment: s, before: seen.clone() });
            }
            match seen.iter_mut().find(|x| x.id_bytes() == s.id_bytes()) {
                Some(slot) => *slot = s,
                None => seen.push(s),
            }
            None
        })
    }
}

/// Iterator over a message's segments.
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    bytes: &'a [u8],
    pos: usize,
    offset: u64,
    ctx: Ctx,
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        let b = self.bytes;
        while self.pos < b.len() && is_segment_sep(b[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        let end = b[start..].iter().position(|&c| is_segment_sep(c)).map_or(b.len(), |p| start + p);
        self.pos = end;
        Some(Segment { bytes: &b[start..end], offset: self.offset + start as u64, ctx: self.ctx })
    }
}

/// One segment: its id, then fields separated by the field separator.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    bytes: &'a [u8],
    offset: u64,
    ctx: Ctx,
}

impl<'a> Segment<'a> {
    /// The segment id bytes (text before the first field separator).
    pub fn id_bytes(&self) -> &'a [u8] {
        let end = self.bytes.iter().position(|&b| b == self.ctx.d.field).unwrap_or(self.bytes.len());
        &self.bytes[..end]
    }

    /// The segment id, when it is a well-formed one (three ASCII letters or digits).
    pub fn id(&self) -> Option<&'a str> {
        let id = self.id_bytes();
        (id.len() == 3 && id.iter().all(u8::is_ascii_alphanumeric)).then(|| std::str::from_utf8(id).ok()).flatten()
    }

    /// The raw segment bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.bytes
    }

    /// Byte offset of the segment in the input.
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }

    fn is_msh(&self) -> bool {
        self.bytes.starts_with(b"MSH")
    }

    /// Fields 1.. in order, by the standard numbering (for MSH the first is the field
    /// separator itself, the second the encoding characters).
    pub fn fields(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        let ctx = self.ctx;
        let sep = ctx.d.field;
        let (head, body): (Option<&'a [u8]>, &'a [u8]) = if self.is_msh() && self.bytes.len() >= 4 {
            (Some(&self.bytes[3..4]), &self.bytes[4..])
        } else {
            let id = self.id_bytes().len();
            (None, self.bytes.get(id + 1..).unwrap_or_default())
        };
        let has_body = self.is_msh() || self.bytes.len() > self.id_bytes().len();
        let body = has_body.then(|| body.split(move |&b| b == sep)).into_iter().flatten();
        head.into_iter().chain(body).map(move |raw| Value { raw, ctx })
    }

    /// Field `n` (1-based, standard numbering), if present.
    pub fn field(&self, n: usize) -> Option<Value<'a>> {
        self.fields().nth(n.checked_sub(1)?)
    }

    /// Like [`Message::get`] for this segment; the path's segment id must match and its
    /// occurrence is ignored.
    pub fn get(&self, path: &str) -> Result<Option<Cow<'a, str>>, PathError> {
        let p = Path::parse(path)?;
        if p.segment != self.id_bytes() {
            return Err(PathError::WrongSegment { path: path.to_owned(), segment: self.id().unwrap_or("?").to_owned() });
        }
        self.get_parsed(&p)
    }

    fn get_parsed(&self, p: &Path) -> Result<Option<Cow<'a, str>>, PathError> {
        let Some(field) = self.field(p.field) else { return Ok(None) };
        if self.is_msh() && p.field <= 2 {
            // MSH-1 and MSH-2 are the delimiters themselves: no splitting, no escapes.
            let whole = p.repetition == 1 && p.component.is_none_or(|c| c == 1) && p.subcomponent.is_none_or(|s| s == 1);
            return Ok(whole.then(|| String::from_utf8_lossy(field.raw)));
        }
        let d = self.ctx.d;
        let Some(mut v) = field.split(d.repetition).nth(p.repetition - 1) else { return Ok(None) };
        if let Some(c) = p.component {
            let Some(c) = v.split(d.component).nth(c - 1) else { return Ok(None) };
            v = c;
            if let Some(s) = p.subcomponent {
                let Some(s) = v.split(d.subcomponent).nth(s - 1) else { return Ok(None) };
                v = s;
            }
        }
        if v.raw.is_empty() {
            return Ok(None);
        }
        v.text().map(Some).ok_or_else(|| PathError::InvalidText { path: p.to_string() })
    }
}

/// A field, repetition, component or subcomponent: raw bytes plus the message's
/// delimiters and charset.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    raw: &'a [u8],
    ctx: Ctx,
}

impl<'a> Value<'a> {
    /// The raw bytes, escapes and inner delimiters untouched.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    fn split(&self, sep: u8) -> impl Iterator<Item = Value<'a>> + use<'a> {
        let ctx = self.ctx;
        self.raw.split(move |&b| b == sep).map(move |raw| Value { raw, ctx })
    }

    /// The field's repetitions.
    pub fn repetitions(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.split(self.ctx.d.repetition)
    }

    /// The components (of a repetition; on a repeating field, use `repetitions` first).
    pub fn components(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.split(self.ctx.d.component)
    }

    /// The subcomponents of a component.
    pub fn subcomponents(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.split(self.ctx.d.subcomponent)
    }

    /// The unescaped text in the message's charset; `None` only when `\X..\` escapes
    /// produced bytes that are not valid in it. On a value above the leaf level the
    /// inner delimiters are kept and escapes decoded, so the two can no longer be told apart.
    pub fn text(&self) -> Option<Cow<'a, str>> {
        text::decode(text::unescape(self.raw, &self.ctx.d), self.ctx.charset)
    }
}

/// A repeating segment (like one `OBX`) with the nearest preceding segment of each other
/// id, for "one row per OBX" with its MSH, PID, PV1 and OBR carried down.
#[derive(Debug, Clone)]
pub struct SegmentContext<'a> {
    /// The repeating segment itself.
    pub segment: Segment<'a>,
    before: Vec<Segment<'a>>,
}

impl<'a> SegmentContext<'a> {
    /// The nearest segment with `id` before this one, or this one if `id` is its own.
    pub fn segment(&self, id: &str) -> Option<Segment<'a>> {
        if self.segment.id_bytes().eq_ignore_ascii_case(id.as_bytes()) {
            return Some(self.segment);
        }
        self.before.iter().find(|s| s.id_bytes().eq_ignore_ascii_case(id.as_bytes())).copied()
    }

    /// A value by path from this segment or its context (the occurrence is ignored).
    pub fn get(&self, path: &str) -> Result<Option<Cow<'a, str>>, PathError> {
        self.get_path(&Path::parse(path)?)
    }

    /// Like [`SegmentContext::get`] with a path parsed once.
    pub fn get_path(&self, p: &Path) -> Result<Option<Cow<'a, str>>, PathError> {
        match self.segment(p.segment_id()) {
            Some(s) => s.get_parsed(p),
            None => Ok(None),
        }
    }
}
