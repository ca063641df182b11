//! Bad records: each error names the record, the field and the reason, the sink sees
//! nothing of a bad record, and no error text ever holds a byte of the record (PHI).

use std::sync::Arc;

use ehrlift_fixed::{Encoding, Framing, Layout, Reason, RecordDecoder, RecordError, RecordReader, cp037, packed, zoned};

const SENTINEL: &str = "SENTINEL-PHI-42";

fn layout(toml: &str) -> Arc<Layout> {
    Arc::new(Layout::from_toml(toml).unwrap_or_else(|e| panic!("{e:?}")).layout)
}

/// Decodes every record; returns the errors and how many values reached the sink.
fn errors(layout: &Arc<Layout>, data: &[u8]) -> (Vec<RecordError>, usize) {
    let mut reader = RecordReader::new(data, layout.framing(), 0, 0);
    let mut decoder = RecordDecoder::new(layout.clone());
    let (mut buf, mut errs, mut values) = (Vec::new(), Vec::new(), 0);
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        let mut sink = |_: usize, _: &str| values += 1;
        if let Err(e) = decoder.decode(&info, &buf, &mut sink) {
            errs.push(e);
        }
    }
    (errs, values)
}

/// Asserts no rendering of the error holds the sentinel, in text or as EBCDIC bytes.
fn assert_no_phi(e: &RecordError) {
    for shown in [e.to_string(), format!("{e:?}"), format!("{e:#?}"), format!("{:?}", e.problem)] {
        assert!(!shown.contains(SENTINEL) && !shown.contains("SENTINEL") && !shown.contains("PHI-42"), "PHI in {shown:?}");
    }
    let ebcdic = cp037::decode(SENTINEL.as_bytes());
    assert!(!e.to_string().contains(&ebcdic[..4]));
}

/// One error with this record number, field and reason.
fn check(e: &RecordError, record: u64, field: Option<&str>, reason: Reason) {
    assert_eq!((e.record, e.field(), e.reason()), (record, field, reason), "{e}");
    assert!(e.to_string().starts_with(&format!("record {record} at byte ")), "{e}");
    assert!(e.to_string().contains(reason.code()), "{e}");
    if let Some(f) = field {
        assert!(e.to_string().contains(&format!("`{f}`")), "{e}");
    }
    assert_no_phi(e);
}

#[test]
fn wrong_length_and_too_long() {
    let layout = layout("[layout]\nname = \"x\"\nrecord_length = 20\n[[fields]]\nname = \"name\"\nstart = 1\nlength = 20\n");
    let ok = format!("{:<20}", "fine");
    let long = format!("{SENTINEL}{}", "x".repeat(400));
    let data = format!("{ok}\n{SENTINEL}\n{ok}\n{long}\n");
    let (errs, values) = errors(&layout, data.as_bytes());
    assert_eq!(values, 2);
    assert_eq!(errs.len(), 2);
    check(&errs[0], 2, None, Reason::WrongLength);
    assert_eq!(errs[0].to_string(), "record 2 at byte 21: wrong_length: 15 bytes, expected 20");
    assert_eq!(errs[0].byte_offset, 21);
    check(&errs[1], 4, None, Reason::RecordTooLong);
    assert_eq!(errs[1].to_string(), "record 4 at byte 58: record_too_long: 415 bytes, over the limit of 320");
}

#[test]
fn a_record_shorter_than_a_field_it_needs() {
    let layout = layout(
        "[layout]\nname = \"x\"\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 15\n[[fields]]\nname = \"b\"\nstart = 16\nlength = 5\n",
    );
    let (errs, _) = errors(&layout, format!("{SENTINEL}12").as_bytes());
    check(&errs[0], 1, Some("b"), Reason::WrongLength);
    assert_eq!(errs[0].to_string(), "record 1 at byte 0: wrong_length: 17 bytes, `b` needs at least 20");
}

#[test]
fn pad_short_lines_blanks_missing_text_but_not_a_cut_packed_field() {
    let layout = layout(
        "[layout]\nname = \"x\"\npad_short_lines = true\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 15\n\
         [[fields]]\nname = \"p\"\nstart = 16\nlength = 3\ntype = \"packed\"\n[[fields]]\nname = \"t\"\nstart = 19\nlength = 5\n",
    );
    let mut cut = SENTINEL.as_bytes().to_vec();
    cut.extend([0x12, b'\n']);
    let (errs, _) = errors(&layout, &cut);
    check(&errs[0], 1, Some("p"), Reason::WrongLength);
    let mut short = SENTINEL.as_bytes().to_vec();
    short.push(b'\n');
    let (errs, values) = errors(&layout, &short);
    assert!(errs.is_empty(), "{errs:?}");
    assert_eq!(values, 3, "a, and p and t blank");
}

#[test]
fn unknown_record_type_does_not_say_the_code() {
    let layout = layout(
        "[layout]\nname = \"x\"\ndiscriminator = { start = 1, length = 15 }\n[[fields]]\nname = \"k\"\nstart = 1\nlength = 15\n\
         [[record_types]]\ncode = \"H\"\nname = \"header\"\n",
    );
    let (errs, values) = errors(&layout, format!("{:<15}\n{SENTINEL}\n", "H").as_bytes());
    assert_eq!(values, 1);
    check(&errs[0], 2, None, Reason::UnknownRecordType);
    assert_eq!(errs[0].to_string(), "record 2 at byte 16: unknown_record_type: the discriminator names no record type");
}

#[test]
fn bad_numbers_name_their_field_and_send_nothing() {
    let layout = layout(
        "[layout]\nname = \"x\"\nrecord_length = 60\n\
         [[fields]]\nname = \"ok\"\nstart = 1\nlength = 15\n\
         [[fields]]\nname = \"amount\"\nstart = 16\nlength = 15\ntype = \"integer\"\n\
         [[fields]]\nname = \"balance\"\nstart = 31\nlength = 15\ntype = \"zoned\"\n\
         [[fields]]\nname = \"ratio\"\nstart = 46\nlength = 15\ntype = \"decimal\"\n",
    );
    let good = format!("{:<15}{:>15}{}{:>15}", "a", "-5", String::from_utf8(zoned::encode(-5, 15, Encoding::Ascii)).unwrap(), "1.5");
    let row = |i: usize| {
        let mut parts: Vec<String> = vec![good[..15].into(), good[15..30].into(), good[30..45].into(), good[45..].into()];
        parts[i] = SENTINEL.into();
        parts.concat()
    };
    let data = format!("{good}\n{}\n{}\n{}\n", row(1), row(2), row(3));
    let (errs, values) = errors(&layout, data.as_bytes());
    assert_eq!(values, 4, "only the good record reached the sink, though each bad one had good fields first");
    check(&errs[0], 2, Some("amount"), Reason::InvalidNumber);
    check(&errs[1], 3, Some("balance"), Reason::InvalidZoned);
    check(&errs[2], 4, Some("ratio"), Reason::InvalidNumber);
    assert_eq!(errs[0].to_string(), "record 2 at byte 61: field `amount`: invalid_number");
}

#[test]
fn bad_zoned_and_packed_nibbles_in_ebcdic() {
    let layout = layout(
        "[layout]\nname = \"x\"\nencoding = \"cp037\"\nframing = \"fixed\"\nrecord_length = 33\n\
         [[fields]]\nname = \"who\"\nstart = 1\nlength = 15\n\
         [[fields]]\nname = \"z\"\nstart = 16\nlength = 3\ntype = \"zoned\"\n\
         [[fields]]\nname = \"p\"\nstart = 19\nlength = 15\ntype = \"packed\"\n",
    );
    let who = cp037::encode(SENTINEL);
    let good_p = packed::encode(-42, 15);
    let mut data = Vec::new();
    // A zone nibble B on the last zoned byte; then a packed field holding the sentinel's bytes.
    data.extend([who.clone(), vec![0xF1, 0xF2, 0xB3], good_p.clone()].concat());
    data.extend([who.clone(), zoned::encode(7, 3, Encoding::Cp037), cp037::encode(SENTINEL)].concat());
    // A digit nibble A in the middle of the packed field, and a bad sign nibble 3.
    let mut bad_digit = good_p.clone();
    bad_digit[3] = 0xA0;
    data.extend([who.clone(), zoned::encode(7, 3, Encoding::Cp037), bad_digit].concat());
    let mut bad_sign = good_p;
    bad_sign[14] = 0x23;
    data.extend([who.clone(), zoned::encode(7, 3, Encoding::Cp037), bad_sign].concat());
    let (errs, values) = errors(&layout, &data);
    assert_eq!(values, 0);
    check(&errs[0], 1, Some("z"), Reason::InvalidZoned);
    check(&errs[1], 2, Some("p"), Reason::InvalidPacked);
    check(&errs[2], 3, Some("p"), Reason::InvalidPacked);
    check(&errs[3], 4, Some("p"), Reason::InvalidPacked);
    assert_eq!(errs[3].byte_offset, 99);
}

#[test]
fn non_ascii_under_ascii() {
    let layout = layout("[layout]\nname = \"x\"\n[[fields]]\nname = \"name\"\nstart = 1\nlength = 19\n");
    let mut data = format!("{SENTINEL} ").into_bytes();
    data.extend(b"\xE9t\xE9\n");
    let (errs, _) = errors(&layout, &data);
    check(&errs[0], 1, Some("name"), Reason::InvalidEncoding);
    assert_eq!(errs[0].to_string(), "record 1 at byte 0: field `name`: invalid_encoding");
}

#[test]
fn the_reason_codes_are_stable() {
    let codes: Vec<_> = [
        Reason::WrongLength,
        Reason::UnknownRecordType,
        Reason::InvalidEncoding,
        Reason::InvalidNumber,
        Reason::InvalidZoned,
        Reason::InvalidPacked,
        Reason::InvalidBinary,
        Reason::RecordTooLong,
    ]
    .iter()
    .map(|r| r.code())
    .collect();
    assert_eq!(
        codes,
        [
            "wrong_length",
            "unknown_record_type",
            "invalid_encoding",
            "invalid_number",
            "invalid_zoned",
            "invalid_packed",
            "invalid_binary",
            "record_too_long"
        ]
    );
}

#[test]
fn fixed_framing_quarantines_a_partial_last_record() {
    let layout =
        layout("[layout]\nname = \"x\"\nframing = \"fixed\"\nrecord_length = 16\n[[fields]]\nname = \"a\"\nstart = 1\nlength = 16\n");
    assert_eq!(layout.framing(), Framing::Fixed { record_length: 16 });
    let data = format!("{:<16}{SENTINEL}", "whole");
    let (errs, values) = errors(&layout, data.as_bytes());
    assert_eq!(values, 1);
    check(&errs[0], 2, None, Reason::WrongLength);
    assert_eq!(errs[0].to_string(), "record 2 at byte 16: wrong_length: 15 bytes, expected 16");
}
