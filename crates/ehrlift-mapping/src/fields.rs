//! Reading TOML tables field by field so that every error is collected, each with its line.
//!
//! serde stops at the first error; a migration engineer wants them all at once. So
//! documents are parsed into maps of spanned values, and each field is taken and
//! deserialized on its own, strictly, recording a [`Diagnostic`](crate::Diagnostic)
//! instead of stopping.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::{Spanned, Value};

use crate::diag::{Diagnostics, Lines};
use crate::interpolate::{Env, interpolate};

/// A parsed TOML table whose keys are consumed one by one.
pub(crate) type SpannedMap = BTreeMap<String, Spanned<Value>>;

/// Per-file context: where errors go and how variables expand.
pub(crate) struct FileCx<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    pub lines: Lines,
    pub env: &'a dyn Env,
    pub diags: &'a mut Diagnostics,
}

impl FileCx<'_> {
    pub(crate) fn error(&mut self, line: Option<usize>, message: impl Into<String>) {
        self.diags.push(self.file, line, message);
    }

    pub(crate) fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.lines.line_of(span.start)
    }

    /// Expands `${VAR}` in every string of `value`.
    pub(crate) fn expand(&self, value: &mut Value) -> Result<(), String> {
        match value {
            Value::String(s) => *s = interpolate(s, self.env)?,
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.expand(v))?,
            Value::Table(t) => t.iter_mut().try_for_each(|(_, v)| self.expand(v))?,
            _ => {}
        }
        Ok(())
    }
}

/// The fields of one table (the document, a `[section]` or a `[[columns]]` entry).
pub(crate) struct Fields {
    map: SpannedMap,
    /// Line of the table itself, for missing fields.
    pub line: usize,
    /// What the table is, for messages: "plan", "column `mrn`".
    pub what: String,
}

impl Fields {
    pub(crate) fn new(map: SpannedMap, line: usize, what: impl Into<String>) -> Self {
        Fields { map, line, what: what.into() }
    }

    /// Line of `key`'s value, or of the table when absent.
    pub(crate) fn line_of(&self, cx: &FileCx<'_>, key: &str) -> usize {
        self.map.get(key).map_or(self.line, |v| cx.line(v.span()))
    }

    /// The string value of `key`, if present and a string (not consumed, not interpolated).
    pub(crate) fn peek_str(&self, key: &str) -> Option<String> {
        self.map.get(key).and_then(|v| v.get_ref().as_str()).map(str::to_owned)
    }

    /// Whether `key` is present.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Adds `key` unless present, spanned at the table itself (so messages about it
    /// point at this table's line).
    pub(crate) fn insert_missing(&mut self, key: &str, value: Value, span: std::ops::Range<usize>) {
        self.map.entry(key.to_owned()).or_insert_with(|| Spanned::new(span, value));
    }

    /// Removes `key` and returns its raw spanned value (no interpolation).
    pub(crate) fn take_raw(&mut self, key: &str) -> Option<Spanned<Value>> {
        self.map.remove(key)
    }

    /// Takes an optional field; a present but invalid one records an error and gives `None`.
    pub(crate) fn opt<T: DeserializeOwned>(&mut self, cx: &mut FileCx<'_>, key: &str) -> Option<T> {
        let spanned = self.map.remove(key)?;
        let line = cx.line(spanned.span());
        let mut value = spanned.into_inner();
        if let Err(e) = cx.expand(&mut value) {
            cx.error(Some(line), format!("{}: `{key}`: {e}", self.what));
            return None;
        }
        match value.try_into::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                cx.error(Some(line), format!("{}: `{key}`: {}", self.what, clean(&e.to_string())));
                None
            }
        }
    }

    /// Takes a required field; absence records "missing `key`" with what is expected.
    pub(crate) fn req<T: DeserializeOwned>(&mut self, cx: &mut FileCx<'_>, key: &str, expected: &str) -> Option<T> {
        if !self.map.contains_key(key) {
            cx.error(Some(self.line), format!("{}: missing `{key}` ({expected})", self.what));
            return None;
        }
        self.opt(cx, key)
    }

    /// Records every key not taken as unknown, listing what is allowed.
    pub(crate) fn finish(self, cx: &mut FileCx<'_>, allowed: &[&str]) {
        for (key, v) in self.map {
            let line = cx.line(v.span());
            cx.error(Some(line), format!("{}: unknown key `{key}`; expected one of: {}", self.what, allowed.join(", ")));
        }
    }
}

/// toml's messages for value deserialization are multi-line; keep the first sentence.
fn clean(msg: &str) -> String {
    msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Parses a whole document into spanned top-level fields, or records the syntax error.
pub(crate) fn parse_document(cx: &mut FileCx<'_>, text: &str, what: &str) -> Option<Fields> {
    match toml::from_str::<SpannedMap>(text) {
        Ok(map) => Some(Fields::new(map, 1, what)),
        Err(e) => {
            let line = e.span().map(|s| cx.lines.line_of(s.start));
            cx.error(line, format!("invalid TOML: {}", clean(e.message())));
            None
        }
    }
}

/// Turns a spanned value that must be a table into [`Fields`].
pub(crate) fn sub_table(cx: &mut FileCx<'_>, value: Spanned<Value>, what: String) -> Option<Fields> {
    let line = cx.line(value.span());
    match value.into_inner() {
        Value::Table(t) => {
            // Nested values lose their spans; they are reported at the table's line.
            let map = t
                .into_iter()
                .map(|(k, v)| {
                    let at = key_line(cx, line, &k).unwrap_or(line);
                    (k, Spanned::new(line_span(cx, at), v))
                })
                .collect();
            Some(Fields::new(map, line, what))
        }
        other => {
            cx.error(Some(line), format!("{what}: expected a table, found a {}", other.type_str()));
            None
        }
    }
}

/// Line of `key = ...` in the table that starts at `table_line`, if written there
/// (not inside an inline table or a dotted key elsewhere).
fn key_line(cx: &FileCx<'_>, table_line: usize, key: &str) -> Option<usize> {
    for (i, l) in cx.text.lines().enumerate().skip(table_line.saturating_sub(1)) {
        let t = l.trim_start();
        if i + 1 > table_line && t.starts_with('[') {
            return None;
        }
        let t = t.strip_prefix(key).or_else(|| t.strip_prefix(&format!("\"{key}\"")));
        if t.is_some_and(|r| r.trim_start().starts_with('=')) {
            return Some(i + 1);
        }
    }
    None
}

/// A span that maps back to `line` (its first byte).
fn line_span(cx: &FileCx<'_>, line: usize) -> std::ops::Range<usize> {
    let start = cx.lines.start_of(line);
    start..start
}
