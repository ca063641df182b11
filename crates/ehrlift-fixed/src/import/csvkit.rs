//! csvkit's fixed-width schema: a CSV with (at least) `column`, `start` and `length`
//! columns, in any order; other columns are ignored. As in csvkit's `SchemaDecoder`,
//! starts are 0-based unless the first row's start is 1, when all are 1-based.

use std::fmt::Write as _;

use super::{check, comment, toml_str};
use crate::error::ImportError;

/// Turns a csvkit schema CSV into layout TOML: lines framing, no record length, text
/// fields, and `pad_short_lines = true` because csvkit slices each line as a string, so a
/// field past the end of a short line is empty rather than an error.
pub fn csvkit_schema(csv: &str) -> Result<String, ImportError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(csv.as_bytes());
    let headers = reader.headers().map_err(|e| ImportError::new(Some(1), format!("unreadable schema header: {e}")))?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| ImportError::new(Some(1), format!("the schema has no `{name}` column (it needs column, start and length)")))
    };
    let (name_i, start_i, length_i) = (col("column")?, col("start")?, col("length")?);
    let mut fields = Vec::new();
    let mut one_based = None;
    for record in reader.records() {
        let record = record.map_err(|e| ImportError::new(e.position().map(|p| p.line() as usize), format!("unreadable row: {e}")))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let get = |i: usize, what: &str| {
            record.get(i).map(str::trim).ok_or_else(|| ImportError::new(Some(line), format!("the row has no `{what}`")))
        };
        let number = |i: usize, what: &str| -> Result<usize, ImportError> {
            let text = get(i, what)?;
            text.parse().map_err(|_| ImportError::new(Some(line), format!("`{what}` {text:?} is not a whole number")))
        };
        let (name, start, length) = (get(name_i, "column")?.to_string(), number(start_i, "start")?, number(length_i, "length")?);
        let one_based = *one_based.get_or_insert(start == 1);
        let start = if one_based {
            start.checked_sub(1).ok_or_else(|| ImportError::new(Some(line), "`start` 0 in a 1-based schema (its first start is 1)"))?
        } else {
            start
        };
        if name.is_empty() {
            return Err(ImportError::new(Some(line), "a row without a column name"));
        }
        if length == 0 {
            return Err(ImportError::new(
                Some(line),
                format!("column {}: length 0 (a column of no bytes) is not supported", toml_str(&name)),
            ));
        }
        // Layout positions are 1-based, so `start + length + 1` must fit (a fuzzed schema of
        // usize::MAX once overflowed here).
        if start.checked_add(length).and_then(|end| end.checked_add(1)).is_none() {
            return Err(ImportError::new(Some(line), format!("column {}: `start` and `length` are past any record", toml_str(&name))));
        }
        fields.push((name, start, length));
    }
    if fields.is_empty() {
        return Err(ImportError::new(None, "the schema has no columns"));
    }
    let mut out = String::new();
    let base = if one_based == Some(true) { "1-based (its first start is 1)" } else { "0-based" };
    let _ = writeln!(out, "# Imported from a csvkit fixed-width schema; its starts were {base}.");
    let _ = writeln!(out, "# csvkit reads every column as text with surrounding whitespace stripped, and a");
    let _ = writeln!(out, "# line shorter than the schema gives empty values: hence pad_short_lines.");
    let _ = writeln!(out, "[layout]\nname = \"csvkit schema\"\nencoding = \"ascii\"\nframing = \"lines\"\npad_short_lines = true");
    for (name, start, length) in fields {
        let _ = writeln!(out, "\n# {} (csvkit start {start}, length {length})", comment(&name));
        let _ = writeln!(out, "[[fields]]\nname = {}\nstart = {}\nlength = {length}", toml_str(&name), start + 1);
    }
    check(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    #[test]
    fn zero_and_one_based_starts() {
        let zero = Layout::from_toml(&csvkit_schema("column,start,length\na,0,6\nb,6,4\n").unwrap()).unwrap().layout;
        assert_eq!(zero.record_types()[0].fields()[1].range(), 6..10);
        let one = Layout::from_toml(&csvkit_schema("length,comment,start,column\n6,x,1,a\n4,y,7,b\n").unwrap()).unwrap().layout;
        assert_eq!(one.record_types()[0].fields()[1].range(), 6..10);
        assert!(one.pads_short_lines());
    }

    #[test]
    fn mistakes_name_their_line() {
        let e = csvkit_schema("column,start,length\na,1,6\nb,x,4\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(csvkit_schema("name,start,length\na,0,1\n").unwrap_err().message.contains("`column`"));
        assert!(csvkit_schema("column,start,length\na,0,1\na,1,1\n").unwrap_err().message.contains("defined twice"));
        let huge = format!("column,start,length\na,0,1\nb,{},1\n", usize::MAX);
        assert_eq!(csvkit_schema(&huge).unwrap_err().line, Some(3));
    }
}
