//! Reading a layout from TOML, collecting every mistake with its line.
//!
//! The document is parsed with `toml`'s spanned document model (`DeTable`), so every key
//! and value, however deeply nested in arrays of tables, keeps its position; each key is
//! then checked on its own and a mistake is recorded instead of stopping.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::{Spanned, Value};

use super::{Align, Encoding, Extras, Field, FieldType, Layout, LayoutFile, RecordType};
use crate::error::LayoutError;
use crate::reader::Framing;

/// Above this, a line with no `record_length` to go by is returned as too long.
const DEFAULT_MAX_LINE: usize = 1 << 20;
/// A line may be this many times `record_length` before it is cut as too long.
const MAX_LINE_FACTOR: usize = 16;
/// Implied decimals beyond this cannot be held by any Arrow decimal.
const MAX_DECIMALS: i64 = 38;

const LAYOUT_KEYS: &[&str] = &["name", "description", "encoding", "framing", "record_length", "discriminator", "pad_short_lines"];
const RECORD_TYPE_KEYS: &[&str] = &["code", "name", "fields"];

impl Layout {
    /// Reads and validates a layout. Every mistake is returned, each with its 1-based line.
    pub fn from_toml(text: &str) -> Result<LayoutFile, Vec<LayoutError>> {
        let mut cx = Cx { starts: line_starts(text), errors: Vec::new() };
        let doc = match DeTable::parse(text) {
            Ok(doc) => doc,
            Err(e) => {
                let line = e.span().map_or(1, |s| cx.line(s.start));
                return Err(vec![LayoutError { line, message: format!("invalid TOML: {}", one_line(e.message())) }]);
            }
        };
        let file = cx.document(doc.get_ref());
        if cx.errors.is_empty() {
            Ok(file.expect("a layout when nothing went wrong"))
        } else {
            cx.errors.sort_by_key(|e| e.line);
            Err(cx.errors)
        }
    }
}

struct Cx {
    starts: Vec<usize>,
    errors: Vec<LayoutError>,
}

/// A field as read: its name even when the rest is wrong, so duplicates are still found.
struct RawField {
    name: Option<String>,
    line: usize,
    field: Option<Field>,
}

/// The `[layout]` table's settings.
struct Header {
    name: String,
    encoding: Encoding,
    framing: FramingKind,
    record_length: Option<usize>,
    pad_short_lines: bool,
    discriminator: Option<(Range<usize>, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FramingKind {
    Lines,
    Fixed,
}

type Entries<'a, 'i> = Vec<(&'a str, usize, &'a Spanned<DeValue<'i>>)>;

impl Cx {
    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    fn err(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(LayoutError { line, message: message.into() });
    }

    fn value_line(&self, v: &Spanned<DeValue<'_>>) -> usize {
        self.line(v.span().start)
    }

    /// A table's entries as (key, key's line, value); a non-table is recorded as an error.
    fn table<'a, 'i>(&mut self, v: &'a Spanned<DeValue<'i>>, what: &str) -> Option<Entries<'a, 'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t.iter().map(|(k, v)| (k.get_ref().as_ref(), self.line(k.span().start), v)).collect()),
            other => {
                let line = self.value_line(v);
                self.err(line, format!("{what}: expected a table, found {}", other.type_str()));
                None
            }
        }
    }

    /// The tables of an array of tables (`[[fields]]`).
    fn tables<'a, 'i>(&mut self, v: &'a Spanned<DeValue<'i>>, what: &str) -> Vec<&'a Spanned<DeValue<'i>>> {
        match v.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            other => {
                let line = self.value_line(v);
                self.err(line, format!("`{what}`: expected an array of tables ([[{what}]]), found {}", other.type_str()));
                Vec::new()
            }
        }
    }

    fn string(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                let line = self.value_line(v);
                self.err(line, format!("{what}: expected a string, found {}", other.type_str()));
                None
            }
        }
    }

    fn boolean(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                let line = self.value_line(v);
                self.err(line, format!("{what}: expected true or false, found {}", other.type_str()));
                None
            }
        }
    }

    /// An integer in `min..=max`.
    fn integer(&mut self, v: &Spanned<DeValue<'_>>, what: &str, min: i64, max: i64) -> Option<i64> {
        let line = self.value_line(v);
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                self.err(line, format!("{what}: expected an integer, found {}", other.type_str()));
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ if max >= i64::from(u32::MAX) => {
                self.err(line, format!("{what}: must be at least {min}"));
                None
            }
            _ => {
                self.err(line, format!("{what}: must be from {min} to {max}"));
                None
            }
        }
    }

    /// One of `choices` (TOML name, value).
    fn choice<T: Copy>(&mut self, v: &Spanned<DeValue<'_>>, what: &str, choices: &[(&str, T)]) -> Option<T> {
        let s = self.string(v, what)?;
        if let Some((_, t)) = choices.iter().find(|(n, _)| *n == s) {
            return Some(*t);
        }
        let line = self.value_line(v);
        let names: Vec<_> = choices.iter().map(|(n, _)| *n).collect();
        self.err(line, format!("{what}: unknown value {s:?}; expected one of: {}", names.join(", ")));
        None
    }

    fn plain_value(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Spanned<Value>> {
        match Value::deserialize(ValueDeserializer::from(v.clone())) {
            Ok(value) => Some(Spanned::new(v.span(), value)),
            Err(e) => {
                let line = self.value_line(v);
                self.err(line, one_line(e.message()));
                None
            }
        }
    }

    fn document(&mut self, root: &DeTable<'_>) -> Option<LayoutFile> {
        let mut header_v = None;
        let mut fields_v = None;
        let mut types_v = None;
        let mut other = Extras::new();
        for (k, v) in root.iter() {
            match k.get_ref().as_ref() {
                "layout" => header_v = Some(v),
                "fields" => fields_v = Some(v),
                "record_types" => types_v = Some(v),
                key => {
                    if let Some(value) = self.plain_value(v) {
                        other.insert(key.to_string(), value);
                    }
                }
            }
        }
        let Some(header_v) = header_v else {
            self.err(1, "missing the [layout] table (name, encoding, framing...)");
            return None;
        };
        let header_line = self.value_line(header_v);
        let header = self.header(header_v);
        let (encoding, record_length) = (header.encoding, header.record_length);
        let mut common = Vec::new();
        if let Some(v) = fields_v {
            for t in self.tables(v, "fields") {
                common.push(self.field(t, "[[fields]]", record_length));
            }
        }
        self.unique(&common, &[], "[[fields]]");

        let mut types = Vec::new();
        let mut codes_seen: HashSet<Vec<u8>> = HashSet::new();
        let mut names_seen: HashSet<String> = HashSet::new();
        if let Some(v) = types_v {
            for t in self.tables(v, "record_types") {
                if let Some(rt) = self.record_type(t, &common, encoding, &header) {
                    if !codes_seen.insert(rt.code_bytes.clone()) {
                        self.err(rt.line, format!("record type `{}`: code {:?} is used twice", rt.name, rt.code.as_deref().unwrap_or("")));
                    }
                    if !names_seen.insert(rt.name.clone()) {
                        self.err(rt.line, format!("record type `{}`: the name is used twice", rt.name));
                    }
                    types.push(rt);
                }
            }
        }
        match (&header.discriminator, types_v.is_some()) {
            (Some((_, line)), false) => self.err(*line, "`discriminator` without [[record_types]]: add the record types it selects"),
            (None, true) => {
                let line = types_v.map_or(header_line, |v| self.value_line(v));
                self.err(line, "[[record_types]] without a `discriminator` in [layout] to choose between them");
            }
            _ => {}
        }
        if types_v.is_none() {
            if common.is_empty() {
                self.err(header_line, "the layout has no fields: add [[fields]]");
            }
            let fields: Vec<Field> = common.into_iter().filter_map(|f| f.field).collect();
            let max_end = fields.iter().map(|f| f.range.end).max().unwrap_or(0);
            types.push(RecordType {
                code: None,
                code_bytes: Vec::new(),
                name: header.name.clone(),
                fields,
                line: header_line,
                extra: Extras::new(),
                max_end,
            });
        }
        let max_end = types.iter().map(|t| t.max_end).max().unwrap_or(0);
        let framing = match (header.framing, header.record_length) {
            (FramingKind::Fixed, Some(record_length)) => Framing::Fixed { record_length },
            // Reported by `header`; the layout is not returned.
            (FramingKind::Fixed, None) => Framing::Fixed { record_length: 1 },
            (FramingKind::Lines, Some(len)) => Framing::Lines { max_line: len.saturating_mul(MAX_LINE_FACTOR) },
            (FramingKind::Lines, None) => Framing::Lines { max_line: DEFAULT_MAX_LINE.max(max_end.saturating_mul(MAX_LINE_FACTOR)) },
        };
        Some(LayoutFile {
            layout: Layout {
                name: header.name,
                encoding: header.encoding,
                framing,
                record_length: header.record_length,
                pad_short_lines: header.pad_short_lines,
                discriminator: header.discriminator.map(|(r, _)| r),
                record_types: types,
            },
            other,
        })
    }

    /// The `[layout]` settings; a wrong one is recorded and replaced by its default, so
    /// the fields can still be checked against the rest.
    fn header(&mut self, v: &Spanned<DeValue<'_>>) -> Header {
        let line = self.value_line(v);
        let entries = self.table(v, "[layout]").unwrap_or_default();
        let (mut name, mut encoding, mut framing, mut record_length) = (None, Some(Encoding::Ascii), Some(FramingKind::Lines), None);
        let (mut pad_short_lines, mut discriminator) = (false, None);
        let (mut encoding_line, mut framing_line, mut pad_line) = (line, line, line);
        for (key, key_line, v) in entries {
            let what = format!("[layout] `{key}`");
            match key {
                "name" => name = self.string(v, &what),
                "description" => {
                    self.string(v, &what);
                }
                "encoding" => {
                    encoding_line = key_line;
                    encoding = self.choice(
                        v,
                        &what,
                        &[
                            ("ascii", Encoding::Ascii),
                            ("latin1", Encoding::Latin1),
                            ("windows-1252", Encoding::Windows1252),
                            ("cp037", Encoding::Cp037),
                        ],
                    );
                }
                "framing" => {
                    framing_line = key_line;
                    framing = self.choice(v, &what, &[("lines", FramingKind::Lines), ("fixed", FramingKind::Fixed)]);
                }
                "record_length" => record_length = self.integer(v, &what, 1, i64::from(u32::MAX)).map(|n| n as usize),
                "pad_short_lines" => {
                    pad_line = key_line;
                    pad_short_lines = self.boolean(v, &what).unwrap_or(false);
                }
                "discriminator" => discriminator = self.discriminator(v),
                _ => {
                    self.err(key_line, format!("[layout]: unknown key `{key}`; expected one of: {}", LAYOUT_KEYS.join(", ")));
                }
            }
        }
        if name.is_none() {
            self.err(line, "[layout]: missing `name` (free text naming the layout)");
        }
        let (encoding, framing) = (encoding.unwrap_or(Encoding::Ascii), framing.unwrap_or(FramingKind::Lines));
        if framing == FramingKind::Fixed && record_length.is_none() {
            self.err(framing_line, "[layout]: framing = \"fixed\" needs `record_length` (the bytes of every record)");
        }
        if framing == FramingKind::Lines && encoding == Encoding::Cp037 {
            self.err(encoding_line, "[layout]: EBCDIC (cp037) files have no ASCII line ends: use framing = \"fixed\" with record_length");
        }
        if framing == FramingKind::Fixed && pad_short_lines {
            self.err(pad_line, "[layout]: pad_short_lines applies to framing = \"lines\" only");
        }
        if let (Some((range, dline)), Some(len)) = (&discriminator, record_length)
            && range.end > len
        {
            self.err(*dline, format!("[layout] `discriminator`: ends at byte {}, past record_length {len}", range.end));
        }
        Header { name: name.unwrap_or_default(), encoding, framing, record_length, pad_short_lines, discriminator }
    }

    fn discriminator(&mut self, v: &Spanned<DeValue<'_>>) -> Option<(Range<usize>, usize)> {
        let line = self.value_line(v);
        let entries = self.table(v, "[layout] `discriminator`")?;
        let mut keys: BTreeMap<&str, &Spanned<DeValue<'_>>> = BTreeMap::new();
        for (key, key_line, v) in entries {
            if matches!(key, "start" | "length" | "end") {
                keys.insert(key, v);
            } else {
                self.err(key_line, format!("[layout] `discriminator`: unknown key `{key}`; expected start and length (or end)"));
            }
        }
        self.range(&keys, line, "[layout] `discriminator`", None).map(|r| (r, line))
    }

    /// `start` with `length` or `end`, as a 0-based byte range.
    fn range(
        &mut self,
        keys: &BTreeMap<&str, &Spanned<DeValue<'_>>>,
        line: usize,
        what: &str,
        record_length: Option<usize>,
    ) -> Option<Range<usize>> {
        let max = i64::from(u32::MAX);
        let start = match keys.get("start") {
            Some(v) => self.integer(v, &format!("{what}: `start` (1-based byte)"), 1, max),
            None => {
                self.err(line, format!("{what}: missing `start` (the 1-based position of its first byte)"));
                None
            }
        };
        let len = match (keys.get("length"), keys.get("end")) {
            (Some(_), Some(e)) => {
                let l = self.value_line(e);
                self.err(l, format!("{what}: give `length` or `end`, not both"));
                None
            }
            (Some(v), None) => self.integer(v, &format!("{what}: `length`"), 1, max),
            (None, Some(v)) => {
                let end = self.integer(v, &format!("{what}: `end` (1-based, inclusive)"), 1, max)?;
                let start = start?;
                if end < start {
                    let l = self.value_line(v);
                    self.err(l, format!("{what}: `end` {end} is before `start` {start}"));
                    return None;
                }
                Some(end - start + 1)
            }
            (None, None) => {
                self.err(line, format!("{what}: missing `length` (or `end`)"));
                None
            }
        };
        let (start, len) = (start? as usize - 1, len? as usize);
        let range = start..start + len;
        if let Some(rl) = record_length
            && range.end > rl
        {
            self.err(line, format!("{what}: bytes {}-{} end past record_length {rl}", range.start + 1, range.end));
            return None;
        }
        Some(range)
    }

    fn field(&mut self, v: &Spanned<DeValue<'_>>, table: &str, record_length: Option<usize>) -> RawField {
        let line = self.value_line(v);
        let (name, field) = self.field_inner(v, table, record_length);
        RawField { name, line, field }
    }

    fn field_inner(&mut self, v: &Spanned<DeValue<'_>>, table: &str, record_length: Option<usize>) -> (Option<String>, Option<Field>) {
        let line = self.value_line(v);
        let Some(entries) = self.table(v, table) else {
            return (None, None);
        };
        let name = match entries.iter().find(|(k, _, _)| *k == "name") {
            Some((_, _, nv)) => self.string(nv, &format!("{table} `name`")),
            None => {
                self.err(line, format!("{table}: a field without `name`"));
                None
            }
        };
        let what = match &name {
            Some(n) => format!("field `{n}`"),
            None => format!("{table} field"),
        };
        if name.as_deref() == Some("") {
            self.err(line, format!("{table}: a field `name` must not be empty"));
        }
        let mut ranges = BTreeMap::new();
        let mut extra = Extras::new();
        let (mut kind, mut decimals, mut align, mut pad, mut trim, mut signed) = (Some(FieldType::Text), None, None, None, None, None);
        let mut ok = true;
        for (key, key_line, v) in entries {
            let kw = format!("{what}: `{key}`");
            match key {
                "name" => {}
                "start" | "length" | "end" => {
                    ranges.insert(key, v);
                }
                "type" => {
                    let choices = [
                        ("text", FieldType::Text),
                        ("integer", FieldType::Integer),
                        ("decimal", FieldType::Decimal),
                        ("zoned", FieldType::Zoned),
                        ("packed", FieldType::Packed),
                        ("binary", FieldType::Binary),
                    ];
                    kind = self.choice(v, &kw, &choices);
                }
                "decimals" => decimals = Some((self.integer(v, &kw, 0, MAX_DECIMALS), key_line)),
                "align" => align = Some((self.choice(v, &kw, &[("left", Align::Left), ("right", Align::Right)]), key_line)),
                "pad" => {
                    let p = self.string(v, &kw).and_then(|s| match s.as_bytes() {
                        [b] if b.is_ascii() => Some(*b),
                        _ => {
                            self.err(key_line, format!("{kw}: must be one ASCII character, like \" \" or \"0\""));
                            None
                        }
                    });
                    pad = Some((p, key_line));
                }
                "trim" => trim = Some((self.boolean(v, &kw), key_line)),
                "signed" => signed = Some((self.boolean(v, &kw), key_line)),
                _ => match self.plain_value(v) {
                    Some(value) => {
                        extra.insert(key.to_string(), value);
                    }
                    None => ok = false,
                },
            }
        }
        let range = self.range(&ranges, line, &what, record_length);
        let (Some(kind), Some(range), Some(name)) = (kind, range, name.clone()) else {
            return (name, None);
        };
        let n = range.len();
        let decimals = match decimals {
            Some((Some(d), dline)) => {
                let d = d as usize;
                let limit = match kind {
                    FieldType::Text | FieldType::Decimal => Some((0, "text and decimal fields have no implied decimals")),
                    FieldType::Packed => Some((2 * n - 1, "a packed field of n bytes holds 2n-1 digits")),
                    FieldType::Zoned => Some((n, "a zoned field holds one digit a byte")),
                    FieldType::Binary => Some((binary_digits(n), "the most digits its bytes hold")),
                    FieldType::Integer => None,
                };
                if let Some((max, why)) = limit
                    && d > max
                {
                    self.err(dline, format!("{what}: `decimals` = {d} is more than {max} ({why})"));
                    ok = false;
                }
                d as u8
            }
            Some((None, _)) => {
                ok = false;
                0
            }
            None => 0,
        };
        let textual = matches!(kind, FieldType::Text | FieldType::Integer | FieldType::Decimal);
        for (key, set) in [("align", align.map(|a| a.1)), ("pad", pad.map(|p| p.1))] {
            if let (Some(l), false) = (set, textual) {
                self.err(l, format!("{what}: `{key}` does not apply to a {} field", kind.name()));
                ok = false;
            }
        }
        if let (Some((_, l)), false) = (trim, kind == FieldType::Text) {
            self.err(l, format!("{what}: `trim` applies to text fields only"));
            ok = false;
        }
        if let (Some((_, l)), false) = (signed, kind == FieldType::Binary) {
            self.err(l, format!("{what}: `signed` applies to binary fields only"));
            ok = false;
        }
        if kind == FieldType::Binary && !matches!(n, 2 | 4 | 8) {
            self.err(line, format!("{what}: a binary field is 2, 4 or 8 bytes, not {n}"));
            ok = false;
        }
        let default_align = if kind == FieldType::Text { Align::Left } else { Align::Right };
        let (Some(align), Some(pad), Some(trim), Some(signed)) = (
            align.map_or(Some(default_align), |a| a.0),
            pad.map_or(Some(b' '), |p| p.0),
            trim.map_or(Some(true), |t| t.0),
            signed.map_or(Some(true), |s| s.0),
        ) else {
            return (Some(name), None);
        };
        if !ok || name.is_empty() {
            return (Some(name), None);
        }
        (Some(name.clone()), Some(Field { name, range, kind, decimals, align, pad, trim, signed, line, extra }))
    }

    /// Records duplicate names among `fields` and between them and `taken`.
    fn unique(&mut self, fields: &[RawField], taken: &[RawField], table: &str) {
        let mut seen: HashSet<&str> = taken.iter().filter_map(|f| f.name.as_deref()).collect();
        for f in fields {
            let Some(name) = f.name.as_deref() else { continue };
            if !seen.insert(name) {
                let also = if taken.iter().any(|t| t.name.as_deref() == Some(name)) { " (also a common [[fields]] name)" } else { "" };
                self.err(f.line, format!("{table}: field `{name}` is defined twice{also}"));
            }
        }
    }

    fn record_type(&mut self, v: &Spanned<DeValue<'_>>, common: &[RawField], encoding: Encoding, header: &Header) -> Option<RecordType> {
        let line = self.value_line(v);
        let entries = self.table(v, "[[record_types]]")?;
        let (mut code, mut name, mut own, mut extra) = (None, None, Vec::new(), Extras::new());
        let mut code_line = line;
        let mut fields_v = None;
        for (key, key_line, v) in entries {
            match key {
                "code" => {
                    code_line = key_line;
                    code = self.string(v, "[[record_types]] `code`");
                }
                "name" => name = self.string(v, "[[record_types]] `name`"),
                "fields" => fields_v = Some(v),
                _ => {
                    if let Some(value) = self.plain_value(v) {
                        extra.insert(key.to_string(), value);
                    }
                }
            }
        }
        let table = format!("record type `{}`", name.as_deref().unwrap_or("?"));
        if let Some(v) = fields_v {
            for t in self.tables(v, "fields") {
                own.push(self.field(t, &format!("{table} [[record_types.fields]]"), header.record_length));
            }
        }
        self.unique(&own, common, &table);
        if name.is_none() {
            self.err(line, format!("[[record_types]]: missing `name`; expected {}", RECORD_TYPE_KEYS.join(", ")));
        }
        if code.is_none() {
            self.err(line, format!("{table}: missing `code` (the discriminator value that selects it)"));
        }
        let (name, code) = (name?, code?.trim().to_string());
        let code_bytes = match encode_code(&code, encoding) {
            Some(b) => b,
            None => {
                self.err(code_line, format!("{table}: `code` {code:?} has characters {} cannot write", encoding.name()));
                return None;
            }
        };
        if let Some((range, _)) = &header.discriminator
            && code_bytes.len() > range.len()
        {
            self.err(code_line, format!("{table}: `code` {code:?} is longer than the discriminator ({} bytes)", range.len()));
        }
        let fields: Vec<Field> = common.iter().filter_map(|f| f.field.clone()).chain(own.into_iter().filter_map(|f| f.field)).collect();
        let max_end = fields.iter().map(|f| f.range.end).max().unwrap_or(0);
        Some(RecordType { code: Some(code), code_bytes, name, fields, line, extra, max_end })
    }
}

/// The most decimal digits an unsigned integer of `n` bytes can have.
fn binary_digits(n: usize) -> usize {
    match n {
        2 => 5,
        4 => 10,
        _ => 20,
    }
}

/// A record type code as the bytes it has in the file.
fn encode_code(code: &str, encoding: Encoding) -> Option<Vec<u8>> {
    code.chars()
        .map(|c| match encoding {
            Encoding::Ascii => c.is_ascii().then_some(c as u8),
            Encoding::Latin1 => u8::try_from(u32::from(c)).ok(),
            Encoding::Windows1252 => {
                let mut buf = [0u8; 4];
                match encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut buf)) {
                    (bytes, _, false) if bytes.len() == 1 => Some(bytes[0]),
                    _ => None,
                }
            }
            Encoding::Cp037 => u8::try_from(u32::from(c)).ok().map(|b| crate::cp037::FROM_LATIN1[b as usize]),
        })
        .collect()
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

/// toml's messages can span lines; keep them on one.
fn one_line(msg: &str) -> String {
    msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}
