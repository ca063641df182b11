#![no_main]
//! Any bytes, through every framing, encoding and field type, a discriminator, layout
//! TOML and the importers: never a panic, bounded buffers, and no error text longer than
//! its fixed shape (so it cannot be carrying the record).

use std::io::BufReader;
use std::sync::{Arc, OnceLock};

use ehrlift_fixed::{Framing, Layout, RecordDecoder, RecordReader, Row, import};
use libfuzzer_sys::fuzz_target;

/// The longest error text, less its field name: numbers, fixed words, a reason.
const MAX_ERROR: usize = 160;

const FIELDS: &str = r#"
[[fields]]
name = "kind"
start = 1
length = 1

[[record_types]]
code = "A"
name = "a"
  [[record_types.fields]]
  name = "text"
  start = 2
  length = 5
  [[record_types.fields]]
  name = "raw"
  start = 7
  length = 3
  trim = false
  [[record_types.fields]]
  name = "id"
  start = 10
  length = 4
  align = "right"
  pad = "0"
  [[record_types.fields]]
  name = "int"
  start = 14
  length = 5
  type = "integer"
  decimals = 2
  [[record_types.fields]]
  name = "dec"
  start = 19
  length = 6
  type = "decimal"
  pad = "*"

[[record_types]]
code = "B"
name = "b"
  [[record_types.fields]]
  name = "zoned"
  start = 2
  length = 4
  type = "zoned"
  decimals = 1
  [[record_types.fields]]
  name = "packed"
  start = 6
  length = 3
  type = "packed"
  decimals = 2
  [[record_types.fields]]
  name = "b2"
  start = 9
  length = 2
  type = "binary"
  [[record_types.fields]]
  name = "b4"
  start = 11
  length = 4
  type = "binary"
  signed = false
  [[record_types.fields]]
  name = "b8"
  start = 15
  length = 8
  type = "binary"
  decimals = 3
"#;

fn layouts() -> &'static [Arc<Layout>; 4] {
    static LAYOUTS: OnceLock<[Arc<Layout>; 4]> = OnceLock::new();
    LAYOUTS.get_or_init(|| {
        let make = |header: &str| Arc::new(Layout::from_toml(&format!("{header}{FIELDS}")).expect("the fuzz layouts load").layout);
        [
            make("[layout]\nname = \"l\"\nrecord_length = 24\ndiscriminator = { start = 1, length = 1 }\n"),
            make("[layout]\nname = \"p\"\nencoding = \"latin1\"\npad_short_lines = true\ndiscriminator = { start = 1, length = 1 }\n"),
            make("[layout]\nname = \"f\"\nencoding = \"cp037\"\nframing = \"fixed\"\nrecord_length = 24\ndiscriminator = { start = 1, length = 1 }\n"),
            make("[layout]\nname = \"w\"\nencoding = \"windows-1252\"\nrecord_length = 24\ndiscriminator = { start = 1, length = 1 }\n"),
        ]
    })
}

fn decode(layout: &Arc<Layout>, framing: Framing, data: &[u8], capacity: usize) {
    let mut reader = RecordReader::new(BufReader::with_capacity(capacity, data), framing, 0, 0);
    let mut decoder = RecordDecoder::new(layout.clone());
    let (mut buf, mut row) = (Vec::new(), Row::new());
    let mut last_end = 0;
    let longest_name = layout.record_types().iter().flat_map(|t| t.fields()).map(|f| f.name().len()).max().unwrap_or(0);
    let bound = MAX_ERROR + longest_name;
    while let Some(info) = reader.next_record(&mut buf).expect("reading a slice") {
        assert!(info.byte_offset >= last_end && info.end_offset > info.byte_offset && info.end_offset as usize <= data.len());
        last_end = info.end_offset;
        match framing {
            Framing::Lines { max_line } => assert!(buf.len() <= max_line),
            Framing::Fixed { record_length } => assert!(buf.len() <= record_length),
        }
        assert_eq!(info.too_long, buf.is_empty() && info.length > 0);
        match decoder.decode(&info, &buf, &mut row) {
            Ok(t) => assert_eq!(row.len(), decoder.projection(t).len()),
            Err(e) => {
                assert_eq!(e.record, info.number);
                let (shown, debug) = (e.to_string(), format!("{e:?}"));
                assert!(shown.len() <= bound && debug.len() <= 2 * bound, "{shown}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let capacity = 1 + (mode as usize >> 3);
    match mode & 7 {
        0 | 1 => {
            let l = &layouts()[0];
            decode(l, l.framing(), rest, capacity);
            decode(l, Framing::Lines { max_line: 8 }, rest, capacity);
        }
        2 => {
            decode(&layouts()[1], layouts()[1].framing(), rest, capacity);
            decode(&layouts()[3], layouts()[3].framing(), rest, capacity);
        }
        3 | 4 => decode(&layouts()[2], layouts()[2].framing(), rest, capacity),
        5 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                match Layout::from_toml(text) {
                    Ok(file) => {
                        let layout = Arc::new(file.layout);
                        decode(&layout, layout.framing(), text.as_bytes(), capacity);
                    }
                    Err(errors) => {
                        assert!(!errors.is_empty());
                        for e in errors {
                            let _ = e.to_string();
                        }
                    }
                }
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                for imported in [import::naaccr_xml(text, Some(64)), import::csvkit_schema(text)] {
                    if let Ok(toml) = imported {
                        Layout::from_toml(&toml).expect("an import always loads");
                    }
                }
            }
        }
    }
});
