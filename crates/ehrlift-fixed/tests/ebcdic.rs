//! Mainframe files made here: EBCDIC text, zoned, packed and binary numbers in RECFM=F
//! records, one record type and several; decoded back to exactly the values put in.

use std::sync::Arc;

use ehrlift_fixed::{Encoding, Layout, RecordDecoder, RecordReader, Row, cp037, packed, zoned};

fn layout(toml: &str) -> Arc<Layout> {
    Arc::new(Layout::from_toml(toml).unwrap_or_else(|e| panic!("{e:?}")).layout)
}

/// Every record's (record type name, values).
fn decode_all(layout: &Arc<Layout>, data: &[u8]) -> Vec<(String, Vec<String>)> {
    let mut reader = RecordReader::new(data, layout.framing(), 0, 0);
    let mut decoder = RecordDecoder::new(layout.clone());
    let (mut buf, mut row, mut out) = (Vec::new(), Row::new(), Vec::new());
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        let t = decoder.decode(&info, &buf, &mut row).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t, row.record_type());
        out.push((layout.record_types()[t].name().to_string(), row.to_vec()));
    }
    out
}

/// Text padded with spaces to `n` characters.
fn text(s: &str, n: usize) -> String {
    format!("{s:<n$}")
}

const ACCOUNTS: &str = r#"
[layout]
name = "accounts"
encoding = "cp037"
framing = "fixed"
record_length = 42

[[fields]]
name = "name"
start = 1
length = 10
[[fields]]
name = "city"
start = 11
length = 8
[[fields]]
name = "balance"
start = 19
length = 7
type = "zoned"
decimals = 2
[[fields]]
name = "amount"
start = 26
length = 5
type = "packed"
decimals = 2
[[fields]]
name = "count"
start = 31
length = 4
type = "binary"
[[fields]]
name = "rate"
start = 35
length = 2
type = "binary"
decimals = 1
[[fields]]
name = "adjust"
start = 37
length = 4
type = "integer"
[[fields]]
name = "id"
start = 41
length = 2
align = "right"
pad = "0"
"#;

/// name, city, balance (unscaled), amount (unscaled), count, rate (unscaled), adjust, id.
type Account = (&'static str, &'static str, i128, i128, i32, i16, &'static str, &'static str);

#[test]
fn cp037_text_zoned_packed_and_binary_round_trip() {
    let layout = layout(ACCOUNTS);
    let rows: [Account; 4] = [
        ("JOHN DOE", "Montréal", 1_234_567, 123_456_789, 42, 125, " -42", "07"),
        ("ÅSA ØBERG", "Zürich", -500, -1, -2_000_000_000, -7, "+5  ", "00"),
        ("", "", 0, 0, 0, 0, "    ", "  "),
        ("{[a|b]}!¢", "¬\\$", -9_999_999, 999_999_999, i32::MAX, i16::MIN, "0000", "10"),
    ];
    let mut file = Vec::new();
    for (name, city, balance, amount, count, rate, adjust, id) in rows {
        file.extend(cp037::encode(&text(name, 10)));
        file.extend(cp037::encode(&text(city, 8)));
        file.extend(zoned::encode(balance, 7, Encoding::Cp037));
        file.extend(packed::encode(amount, 5));
        file.extend(count.to_be_bytes());
        file.extend(rate.to_be_bytes());
        file.extend(cp037::encode(adjust));
        file.extend(cp037::encode(id));
    }
    assert_eq!(file.len(), 4 * 42);
    let got: Vec<Vec<String>> = decode_all(&layout, &file).into_iter().map(|(_, v)| v).collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["JOHN DOE", "Montréal", "12345.67", "1234567.89", "42", "12.5", "-42", "7"],
        vec!["ÅSA ØBERG", "Zürich", "-5.00", "-0.01", "-2000000000", "-0.7", "5", ""],
        vec!["", "", "0.00", "0.00", "0", "0.0", "", ""],
        vec!["{[a|b]}!¢", "¬\\$", "-99999.99", "9999999.99", "2147483647", "-3276.8", "0", "10"],
    ];
    assert_eq!(got, want);
}

#[test]
fn blank_zoned_and_packed_fields_are_empty() {
    let layout = layout(ACCOUNTS);
    let mut rec = cp037::encode(&text("X", 18));
    rec.extend(cp037::encode(&" ".repeat(12)));
    rec.extend([0, 0, 0, 1, 0, 1]);
    rec.extend(cp037::encode("  12"));
    rec.extend(cp037::encode("AB"));
    let got = decode_all(&layout, &rec);
    assert_eq!(got[0].1, ["X", "", "", "", "1", "0.1", "12", "AB"]);
}

const BATCH: &str = r#"
[layout]
name = "batch"
encoding = "cp037"
framing = "fixed"
record_length = 20
discriminator = { start = 1, length = 2 }

[[fields]]
name = "kind"
start = 1
length = 2

[[record_types]]
code = "H"
name = "header"
  [[record_types.fields]]
  name = "batchDate"
  start = 3
  length = 8
  [[record_types.fields]]
  name = "expected"
  start = 11
  length = 2
  type = "binary"

[[record_types]]
code = "D1"
name = "detail"
  [[record_types.fields]]
  name = "mrn"
  start = 3
  length = 8
  align = "right"
  pad = "0"
  [[record_types.fields]]
  name = "charge"
  start = 11
  length = 4
  type = "packed"
  decimals = 2

[[record_types]]
code = "T"
name = "trailer"
  [[record_types.fields]]
  name = "total"
  start = 3
  length = 9
  type = "zoned"
  decimals = 2
"#;

#[test]
fn record_types_by_discriminator() {
    let layout = layout(BATCH);
    let pad = |mut r: Vec<u8>| {
        r.resize(20, 0x40);
        r
    };
    let mut file = Vec::new();
    file.extend(pad([cp037::encode("H 20240131"), 2u16.to_be_bytes().to_vec()].concat()));
    file.extend(pad([cp037::encode("D100012345"), packed::encode(-12_050, 4)].concat()));
    file.extend(pad([cp037::encode("D100000077"), packed::encode(99, 4)].concat()));
    file.extend(pad([cp037::encode("T "), zoned::encode(-11_951, 9, Encoding::Cp037)].concat()));
    let got = decode_all(&layout, &file);
    let want = [
        ("header", vec!["H", "20240131", "2"]),
        ("detail", vec!["D1", "12345", "-120.50"]),
        ("detail", vec!["D1", "77", "0.99"]),
        ("trailer", vec!["T", "-119.51"]),
    ];
    assert_eq!(got, want.map(|(t, v)| (t.to_string(), v.into_iter().map(String::from).collect::<Vec<_>>())));
}

#[test]
fn a_projection_decodes_only_its_fields_in_its_order() {
    let layout = layout(BATCH);
    let mut decoder = RecordDecoder::new(layout.clone());
    let (di, detail) = layout.record_type("detail").unwrap();
    decoder.set_projection(di, vec![detail.field_index("charge").unwrap(), detail.field_index("mrn").unwrap()]);
    decoder.set_projection(0, vec![]);
    let mut rec = [cp037::encode("D100012345"), packed::encode(5, 4)].concat();
    rec.resize(20, 0x40);
    let info = ehrlift_fixed::RecordInfo { number: 1, byte_offset: 0, end_offset: 20, length: 20, too_long: false };
    let mut seen = Vec::new();
    let mut sink = |i: usize, v: &str| seen.push((i, v.to_string()));
    assert_eq!(decoder.decode(&info, &rec, &mut sink).unwrap(), di);
    assert_eq!(seen, [(0, "0.05".to_string()), (1, "12345".to_string())]);
    assert_eq!(decoder.projection(di), [2, 1]);
}

#[test]
fn ascii_overpunch_and_latin1_text_in_lines() {
    let layout = layout(
        r#"
[layout]
name = "ascii zoned"
encoding = "latin1"
record_length = 12
[[fields]]
name = "who"
start = 1
length = 6
[[fields]]
name = "amount"
start = 7
length = 5
type = "zoned"
decimals = 2
[[fields]]
name = "flag"
start = 12
length = 1
"#,
    );
    let mut file = Vec::new();
    for (who, amount) in [("Zoë", 12_345i128), ("Renée", -1), ("", 0)] {
        let mut who: Vec<u8> = who.chars().map(|c| c as u8).collect();
        who.resize(6, b' ');
        file.extend(who);
        file.extend(zoned::encode(amount, 5, Encoding::Latin1));
        file.extend(b"Y\r\n");
    }
    let got: Vec<_> = decode_all(&layout, &file).into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, [["Zoë", "123.45", "Y"], ["Renée", "-0.01", "Y"], ["", "0.00", "Y"]]);
}

#[test]
fn windows_1252_text_and_record_types() {
    let layout = layout(
        r#"
[layout]
name = "cp1252"
encoding = "windows-1252"
record_length = 10
discriminator = { start = 1, length = 1 }
[[record_types]]
code = "€"
name = "euro"
  [[record_types.fields]]
  name = "note"
  start = 2
  length = 9
"#,
    );
    let mut file = Vec::new();
    for note in ["“quoted”", "Žižek …", "naïve", "\u{81}x"] {
        let text = format!("€{note:<9}");
        let (bytes, _, bad) = encoding_rs::WINDOWS_1252.encode(&text);
        assert!(!bad, "{note}");
        file.extend_from_slice(&bytes);
        file.extend(b"\n");
    }
    let got: Vec<_> = decode_all(&layout, &file).into_iter().map(|(_, v)| v[0].clone()).collect();
    // 0x81 is undefined in Windows-1252: decoded as U+0081, as browsers (WHATWG) do.
    assert_eq!(got, ["“quoted”", "Žižek …", "naïve", "\u{81}x"]);
}

#[test]
fn text_padding_rules() {
    let layout = layout(
        r#"
[layout]
name = "pads"
[[fields]]
name = "left"
start = 1
length = 6
[[fields]]
name = "zero_id"
start = 7
length = 6
align = "right"
pad = "0"
[[fields]]
name = "stars"
start = 13
length = 6
pad = "*"
[[fields]]
name = "raw"
start = 19
length = 6
trim = false
[[fields]]
name = "dec"
start = 25
length = 8
type = "decimal"
"#,
    );
    let got = decode_all(&layout, b" ab c 000120ab****  x y -0012.50\n      000000******      00000000\n");
    assert_eq!(got[0].1, ["ab c", "120", "ab", "  x y ", "-12.50"]);
    assert_eq!(got[1].1, ["", "", "", "", "0"], "all padding is blank; a zero-padded decimal is 0");
}
