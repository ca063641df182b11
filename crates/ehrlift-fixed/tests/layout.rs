//! Layout TOML: what loads, what the lead's mapping loader gets, and every mistake with its line.

use ehrlift_fixed::{Align, Encoding, FieldType, Framing, Layout, LayoutError};

fn errors(text: &str) -> Vec<LayoutError> {
    Layout::from_toml(text).expect_err("the layout should not load")
}

/// (line, a piece of the message) of each error.
fn lines(text: &str) -> Vec<(usize, String)> {
    errors(text).into_iter().map(|e| (e.line, e.message)).collect()
}

fn has(errs: &[(usize, String)], line: usize, piece: &str) -> bool {
    errs.iter().any(|(l, m)| *l == line && m.contains(piece))
}

#[test]
fn a_full_layout_loads_with_its_accessors() {
    let text = r#"
[layout]
name = "naaccr-14-incidence"
encoding = "ascii"
framing = "lines"
record_length = 40
discriminator = { start = 1, length = 1 }

[[fields]]
name = "recordType"
start = 1
length = 1
phi = false
description = "H or D"

[[record_types]]
code = "H"
name = "header"
to = "batches"
  [[record_types.fields]]
  name = "batchDate"
  start = 2
  end = 9
  rule = { shift_date = true }

[[record_types]]
code = "D "
name = "detail"
  [[record_types.fields]]
  name = "amount"
  start = 2
  length = 7
  type = "integer"
  decimals = 2
  [[record_types.fields]]
  name = "id"
  start = 9
  length = 6
  align = "right"
  pad = "0"
  [[record_types.fields]]
  name = "cents"
  start = 15
  length = 4
  type = "packed"
  decimals = 3
  [[record_types.fields]]
  name = "n"
  start = 19
  length = 4
  type = "binary"
  signed = false
"#;
    let file = Layout::from_toml(text).unwrap();
    assert!(file.other.is_empty());
    let layout = file.layout;
    assert_eq!(layout.name(), "naaccr-14-incidence");
    assert_eq!(layout.encoding(), Encoding::Ascii);
    assert_eq!(layout.framing(), Framing::Lines { max_line: 40 * 16 });
    assert_eq!(layout.record_length(), Some(40));
    assert_eq!(layout.discriminator(), Some(0..1));
    let types = layout.record_types();
    assert_eq!(types.len(), 2);
    let (hi, header) = layout.record_type("header").unwrap();
    assert_eq!(hi, 0);
    assert_eq!(header.code(), Some("H"));
    assert_eq!(header.line(), 16);
    assert_eq!(header.extra()["to"].get_ref().as_str(), Some("batches"));
    let names: Vec<_> = header.fields().iter().map(|f| f.name()).collect();
    assert_eq!(names, ["recordType", "batchDate"], "common fields first");
    let rt = &header.fields()[0];
    assert_eq!((rt.range(), rt.line(), rt.field_type()), (0..1, 9, FieldType::Text));
    assert_eq!(rt.extra()["phi"].get_ref().as_bool(), Some(false));
    assert_eq!(rt.extra()["description"].get_ref().as_str(), Some("H or D"));
    let date = header.field("batchDate").unwrap();
    assert_eq!((date.range(), date.line()), (1..9, 20), "the line of its [[record_types.fields]]");
    assert!(date.extra()["rule"].get_ref().is_table());
    // The span of an extra points at its value, for the mapping loader's own errors.
    let span = date.extra()["rule"].span();
    assert!(text[span].starts_with("{ shift_date"));

    let detail = &types[1];
    assert_eq!(detail.code(), Some("D"), "codes are compared trimmed");
    assert_eq!(detail.field_index("amount"), Some(1));
    let amount = &detail.fields()[1];
    assert_eq!((amount.field_type(), amount.decimals(), amount.align()), (FieldType::Integer, 2, Align::Right));
    let id = detail.field("id").unwrap();
    assert_eq!((id.align(), id.pad(), id.trims()), (Align::Right, '0', true));
    assert_eq!(detail.field("cents").unwrap().field_type(), FieldType::Packed);
    assert!(!detail.field("n").unwrap().signed());
    assert_eq!(detail.field_index("nope"), None);
}

#[test]
fn a_layout_without_record_types_has_one_default_type() {
    let layout =
        Layout::from_toml("[layout]\nname = \"x\"\n[[fields]]\nname = \"a\"\nstart = 3\nend = 5\n[extra]\nowner = \"me\"\n").unwrap();
    assert_eq!(layout.other["extra"].get_ref().as_table().unwrap()["owner"].as_str(), Some("me"));
    let layout = layout.layout;
    let t = &layout.record_types()[0];
    assert_eq!((t.code(), t.name(), t.line()), (None, "x", 1));
    assert_eq!(t.fields()[0].range(), 2..5);
    assert_eq!(layout.framing(), Framing::Lines { max_line: 1 << 20 });
}

#[test]
fn every_mistake_is_reported_with_its_line() {
    let text = r#"[layout]
name = "bad"
encoding = "utf16"
framing = "lines"
record_length = 10
colour = "blue"

[[fields]]
name = "a"
start = 0
length = 1

[[fields]]
name = "b"
start = 1
length = 1
end = 1

[[fields]]
name = "c"
start = 9
length = 5

[[fields]]
name = "a"
start = 1
length = 1

[[fields]]
name = "d"
start = 1
length = 1
type = "float"

[[fields]]
name = "e"
start = 1
length = 2
type = "packed"
decimals = 4

[[fields]]
name = "f"
start = 1
length = 1
pad = "00"

[[fields]]
name = "g"
start = 1
length = 3
type = "binary"

[[fields]]
name = "h"
start = 1
length = 2
align = "centre"

[[fields]]
name = "i"
start = 1
length = 2
decimals = 39
type = "integer"

[[fields]]
name = "j"
start = 1
length = 2
type = "decimal"
decimals = 1

[[fields]]
start = 1
length = 1
"#;
    let errs = lines(text);
    for (line, piece) in [
        (3, "unknown value \"utf16\""),
        (6, "unknown key `colour`"),
        (10, "`start` (1-based byte): must be at least 1"),
        (17, "give `length` or `end`, not both"),
        (19, "end past record_length 10"),
        (24, "field `a` is defined twice"),
        (33, "unknown value \"float\""),
        (40, "more than 3 (a packed field of n bytes holds 2n-1 digits)"),
        (46, "must be one ASCII character"),
        (48, "a binary field is 2, 4 or 8 bytes, not 3"),
        (58, "unknown value \"centre\""),
        (64, "must be from 0 to 38"),
        (72, "text and decimal fields have no implied decimals"),
        (74, "a field without `name`"),
    ] {
        assert!(has(&errs, line, piece), "no error on line {line} with {piece:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), 14, "{errs:#?}");
    let mut sorted = errs.clone();
    sorted.sort_by_key(|e| e.0);
    assert_eq!(errs, sorted, "errors come in line order");
}

#[test]
fn framing_encoding_and_record_type_rules() {
    let errs = lines("[layout]\nname = \"x\"\nframing = \"fixed\"\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 1\n");
    assert!(has(&errs, 3, "needs `record_length`"), "{errs:?}");
    let errs = lines("[layout]\nname = \"x\"\nencoding = \"cp037\"\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 1\n");
    assert!(has(&errs, 3, "EBCDIC (cp037) files have no ASCII line ends"), "{errs:?}");
    let errs =
        lines("[layout]\nname = \"x\"\ndiscriminator = { start = 1, length = 1 }\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 1\n");
    assert!(has(&errs, 3, "`discriminator` without [[record_types]]"), "{errs:?}");
    let errs = lines("[layout]\nname = \"x\"\n[[record_types]]\ncode = \"A\"\nname = \"a\"\n");
    assert!(has(&errs, 3, "without a `discriminator`"), "{errs:?}");
    let text = r#"[layout]
name = "x"
discriminator = { start = 1, length = 1 }
[[fields]]
name = "k"
start = 1
length = 1
[[record_types]]
code = "A"
name = "a"
[[record_types]]
code = "A"
name = "a"
  [[record_types.fields]]
  name = "k"
  start = 2
  length = 1
[[record_types]]
code = "BB"
name = "b"
[[record_types]]
code = "é"
name = "c"
[[record_types]]
name = "d"
"#;
    let errs = lines(text);
    for (line, piece) in [
        (11, "code \"A\" is used twice"),
        (11, "the name is used twice"),
        (14, "field `k` is defined twice (also a common [[fields]] name)"),
        (19, "longer than the discriminator (1 bytes)"),
        (22, "has characters ascii cannot write"),
        (24, "missing `code`"),
    ] {
        assert!(has(&errs, line, piece), "no error on line {line} with {piece:?} in {errs:#?}");
    }
    let errs = lines("[layout]\nname = \"x\"\n");
    assert!(has(&errs, 1, "no fields"), "{errs:?}");
    let errs = lines("name = \"x\"\n");
    assert!(has(&errs, 1, "missing the [layout] table"), "{errs:?}");
    let errs = lines(
        "[layout]\nname = \"x\"\nframing = \"fixed\"\nrecord_length = 4\npad_short_lines = true\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 1\n",
    );
    assert!(has(&errs, 5, "pad_short_lines applies to framing = \"lines\" only"), "{errs:?}");
    let errs =
        lines("[layout]\nname = \"x\"\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 2\ntype = \"zoned\"\npad = \"0\"\ntrim = false\n");
    assert!(has(&errs, 8, "`pad` does not apply to a zoned field"), "{errs:?}");
    assert!(has(&errs, 9, "`trim` applies to text fields only"), "{errs:?}");
}

#[test]
fn a_toml_syntax_error_has_its_line() {
    let errs = lines("[layout]\nname = \"x\"\n\n[[fields]]\nname = \n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, 5, "{errs:?}");
    assert!(errs[0].1.starts_with("invalid TOML"), "{errs:?}");
}

#[test]
fn overlapping_fields_are_allowed() {
    let layout = Layout::from_toml(
        "[layout]\nname = \"x\"\n[[fields]]\nname = \"dob\"\nstart = 1\nend = 8\n[[fields]]\nname = \"year\"\nstart = 1\nend = 4\n",
    )
    .unwrap()
    .layout;
    assert_eq!(layout.record_types()[0].fields().len(), 2);
}
