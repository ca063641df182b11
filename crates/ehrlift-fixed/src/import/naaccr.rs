//! NAACCR-style fixed-column layout XML (the format of the NAACCR layout library):
//!
//! ```xml
//! <fixed-column-layout id="naaccr-14" name="NAACCR 14" version="140" length="22824">
//!   <field name="recordType" start="1" end="1" long-label="Record Type" naaccr-item-num="10" section="Record ID"/>
//!   <field name="dateOfBirth" start="196" end="203" ...>
//!     <field name="dateOfBirthYear" start="196" end="199" align="right" pad-char="0" .../>
//!   </field>
//! </fixed-column-layout>
//! ```
//!
//! Choices (each said in the generated TOML too):
//! - A group field (one with `<field>` children) and its parts are all imported: the
//!   group as written (`trim = false`), the parts after it, overlapping it.
//! - `trim="false"` is imported as `trim = false`.
//! - `pad-char` is not imported as `pad`: it tells writers how to fill a field, and the
//!   NAACCR layout library only trims spaces when reading. Stripping it would turn codes
//!   like `000` (county) or `01` into blanks or other codes. It stays in a comment.

use std::fmt::Write as _;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{check, comment, toml_str};
use crate::error::ImportError;

#[derive(Default)]
struct XmlField {
    name: String,
    start: usize,
    end: usize,
    align: Option<String>,
    pad: Option<String>,
    item: Option<String>,
    section: Option<String>,
    label: Option<String>,
    default: Option<String>,
    trim: Option<bool>,
    parent: Option<String>,
    group: bool,
}

#[derive(Default)]
struct XmlLayout {
    id: Option<String>,
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
    length: Option<usize>,
    fields: Vec<XmlField>,
}

/// Turns NAACCR layout XML into layout TOML: ascii, lines framing, `record_length` =
/// `max_length` or the XML's `length`, one `[[fields]]` per field (group fields and their
/// parts both), fields ending past the record length left out with a comment saying so.
pub fn naaccr_xml(xml: &str, max_length: Option<usize>) -> Result<String, ImportError> {
    let layout = parse(xml)?;
    let length = max_length
        .or(layout.length)
        .ok_or_else(|| ImportError::new(Some(1), "the layout has no `length`: give the record length to import (max_length)"))?;
    let mut out = String::new();
    let title = layout.name.as_deref().or(layout.id.as_deref()).unwrap_or("unnamed");
    let _ = write!(out, "# Imported from the NAACCR layout XML {}", toml_str(title));
    let id_version: Vec<String> =
        [("id", &layout.id), ("version", &layout.version)].iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}"))).collect();
    if !id_version.is_empty() {
        let _ = write!(out, " ({})", comment(&id_version.join(", ")));
    }
    let _ = writeln!(out, ".");
    if let Some(d) = &layout.description {
        let _ = writeln!(out, "# {}", comment(d));
    }
    if let Some(full) = layout.length.filter(|&l| l != length) {
        let _ = writeln!(out, "# The XML's records are {full} bytes; this layout keeps the first {length}.");
    }
    let _ = writeln!(out, "# Each field's comment: long label, NAACCR item number, section. `pad-char` is how");
    let _ = writeln!(out, "# writers fill a field: it is not `pad` here, as reading keeps zeros (codes like \"000\").");
    let name = layout.id.as_deref().or(layout.name.as_deref()).unwrap_or("naaccr");
    let _ = writeln!(out, "[layout]\nname = {}\nencoding = \"ascii\"\nframing = \"lines\"\nrecord_length = {length}", toml_str(name));
    let mut skipped = 0;
    for f in &layout.fields {
        if f.end > length {
            skipped += 1;
            let _ = writeln!(out, "\n# Skipped: {} (bytes {}-{}) ends past byte {length}.", comment(&f.name), f.start, f.end);
            continue;
        }
        let mut notes = Vec::new();
        if let Some(item) = &f.item {
            notes.push(format!("item {item}"));
        }
        if let Some(section) = &f.section {
            notes.push(format!("section {section}"));
        }
        if let Some(parent) = &f.parent {
            notes.push(format!("part of {parent}"));
        }
        if f.group {
            notes.push("a group of the fields that follow, kept as written".into());
        }
        if let Some(pad) = &f.pad {
            notes.push(format!("pad-char {pad:?}"));
        }
        if let Some(default) = &f.default {
            notes.push(format!("default {default:?}"));
        }
        let label = f.label.as_deref().unwrap_or(&f.name);
        let _ = writeln!(out, "\n# {} ({})", comment(label), comment(&notes.join(", ")));
        let _ = writeln!(out, "[[fields]]\nname = {}\nstart = {}\nend = {}", toml_str(&f.name), f.start, f.end);
        if let Some(align) = &f.align {
            let _ = writeln!(out, "align = {}", toml_str(align));
        }
        if f.trim == Some(false) || f.group {
            let _ = writeln!(out, "trim = false");
        }
    }
    if skipped > 0 {
        let _ = writeln!(out, "\n# {skipped} of {} fields skipped: they end past byte {length}.", layout.fields.len());
    }
    check(out)
}

fn parse(xml: &str) -> Result<XmlLayout, ImportError> {
    let line_at = |pos: u64| xml.as_bytes()[..(pos as usize).min(xml.len())].iter().filter(|&&b| b == b'\n').count() + 1;
    let mut reader = Reader::from_str(xml);
    let mut layout = XmlLayout::default();
    let mut seen_root = false;
    // Names of the open <field> elements, innermost last.
    let mut open: Vec<String> = Vec::new();
    loop {
        let event =
            reader.read_event().map_err(|e| ImportError::new(Some(line_at(reader.error_position())), format!("invalid XML: {e}")))?;
        let line = line_at(reader.buffer_position());
        match event {
            Event::Start(e) | Event::Empty(e) if !seen_root => {
                if e.name().as_ref() != "fixed-column-layout" {
                    return Err(ImportError::new(Some(line), "the root element is not <fixed-column-layout>"));
                }
                seen_root = true;
                for (key, value) in attributes(&e, line)? {
                    match key.as_str() {
                        "id" => layout.id = Some(value),
                        "name" => layout.name = Some(value),
                        "version" => layout.version = Some(value),
                        "description" => layout.description = Some(value),
                        "length" => layout.length = Some(number(&value, "length", line)?),
                        _ => {}
                    }
                }
            }
            ref ev @ (Event::Start(ref e) | Event::Empty(ref e)) => {
                if e.name().as_ref() != "field" {
                    return Err(ImportError::new(Some(line), format!("unexpected element <{}>", comment(e.name().as_ref()))));
                }
                let mut f = field(e, line)?;
                f.parent = open.last().cloned();
                if let Some(parent) = open.last()
                    && let Some(p) = layout.fields.iter_mut().rev().find(|p| &p.name == parent)
                {
                    p.group = true;
                }
                if matches!(ev, Event::Start(_)) {
                    open.push(f.name.clone());
                }
                layout.fields.push(f);
            }
            Event::End(e) if e.name().as_ref() == "field" => {
                open.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(ImportError::new(None, "no <fixed-column-layout> element"));
    }
    if layout.fields.is_empty() {
        return Err(ImportError::new(None, "the layout has no <field> elements"));
    }
    Ok(layout)
}

fn attributes(e: &BytesStart<'_>, line: usize) -> Result<Vec<(String, String)>, ImportError> {
    e.attributes()
        .map(|a| {
            let a = a.map_err(|err| ImportError::new(Some(line), format!("invalid attribute: {err}")))?;
            let value = a.normalized_value(XmlVersion::Implicit1_0).map_err(|err| ImportError::new(Some(line), format!("{err}")))?;
            Ok((a.key.as_ref().to_string(), value.into_owned()))
        })
        .collect()
}

fn number(value: &str, what: &str, line: usize) -> Result<usize, ImportError> {
    value.trim().parse().map_err(|_| ImportError::new(Some(line), format!("`{what}` {value:?} is not a whole number")))
}

fn field(e: &BytesStart<'_>, line: usize) -> Result<XmlField, ImportError> {
    let mut f = XmlField::default();
    let (mut start, mut end) = (None, None);
    for (key, value) in attributes(e, line)? {
        match key.as_str() {
            "name" => f.name = value,
            "start" => start = Some(number(&value, "start", line)?),
            "end" => end = Some(number(&value, "end", line)?),
            "align" => f.align = Some(value),
            "pad-char" => f.pad = Some(value),
            "naaccr-item-num" => f.item = Some(value),
            "section" => f.section = Some(value),
            "long-label" => f.label = Some(value),
            "default-value" => f.default = Some(value),
            "trim" => f.trim = Some(value != "false"),
            _ => {}
        }
    }
    if f.name.is_empty() {
        return Err(ImportError::new(Some(line), "a <field> without `name`"));
    }
    let (Some(start), Some(end)) = (start, end) else {
        return Err(ImportError::new(Some(line), format!("field {}: needs `start` and `end`", toml_str(&f.name))));
    };
    if start == 0 || end < start {
        return Err(ImportError::new(Some(line), format!("field {}: bytes {start}-{end} are not a range", toml_str(&f.name))));
    }
    if let Some(a) = &f.align
        && a != "left"
        && a != "right"
    {
        return Err(ImportError::new(Some(line), format!("field {}: align {a:?} is not left or right", toml_str(&f.name))));
    }
    (f.start, f.end) = (start, end);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    const XML: &str = r#"<?xml version="1.0"?>
<fixed-column-layout id="t" name="T &amp; U" length="12">
    <field name="a" start="1" end="2" long-label="A &amp; B" naaccr-item-num="1" section="S"/>
    <field name="g" start="3" end="8" trim="false">
        <field name="g1" start="3" end="4" align="right" pad-char="0"/>
        <field name="g2" start="5" end="8"/>
    </field>
    <field name="far" start="9" end="12"/>
</fixed-column-layout>"#;

    #[test]
    fn groups_parts_and_the_cut() {
        let toml = naaccr_xml(XML, Some(8)).unwrap();
        assert!(toml.contains("# A & B (item 1, section S)"), "{toml}");
        assert!(toml.contains("# Skipped: far (bytes 9-12) ends past byte 8."), "{toml}");
        let layout = Layout::from_toml(&toml).unwrap().layout;
        let names: Vec<_> = layout.record_types()[0].fields().iter().map(|f| f.name().to_string()).collect();
        assert_eq!(names, ["a", "g", "g1", "g2"]);
        let g = layout.record_types()[0].field("g").unwrap();
        assert!(!g.trims());
        assert_eq!(layout.record_length(), Some(8));
        let all = Layout::from_toml(&naaccr_xml(XML, None).unwrap()).unwrap().layout;
        assert_eq!(all.record_types()[0].fields().len(), 5);
    }

    #[test]
    fn mistakes_have_lines() {
        let e = naaccr_xml("<fixed-column-layout length=\"5\">\n<field name=\"x\" start=\"2\" end=\"1\"/>\n</fixed-column-layout>", None)
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(naaccr_xml("<other/>", None).is_err());
        assert!(naaccr_xml("<fixed-column-layout><field name=\"x\" start=\"1\" end=\"1\"/></fixed-column-layout>", None).is_err());
    }
}
