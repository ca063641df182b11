//! NAACCR 14 (shared data, read in place): the layout XML imported at the incidence
//! record's 3339 bytes, and every field of every record of the fake incidence files.

use std::io::Read;
use std::sync::Arc;

use ehrlift_fixed::{Layout, RecordDecoder, RecordReader, Row, import};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/fixed-width/naaccr/");
const INCIDENCE_LENGTH: usize = 3339;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn xml() -> String {
    String::from_utf8(read("naaccr-14-layout.xml")).unwrap()
}

fn incidence_layout() -> Arc<Layout> {
    let toml = import::naaccr_xml(&xml(), Some(INCIDENCE_LENGTH)).unwrap();
    Arc::new(Layout::from_toml(&toml).unwrap().layout)
}

/// Decodes every field of every record; panics on the first error.
fn decode_all(layout: &Arc<Layout>, data: &[u8], mut each: impl FnMut(u64, &Row)) -> u64 {
    let mut reader = RecordReader::new(data, layout.framing(), 0, 0);
    let mut decoder = RecordDecoder::new(layout.clone());
    let (mut buf, mut row, mut n) = (Vec::new(), Row::new(), 0);
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        decoder.decode(&info, &buf, &mut row).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(row.len(), layout.record_types()[0].fields().len());
        each(info.number, &row);
        n += 1;
    }
    n
}

#[test]
fn the_import_keeps_what_fits_in_3339_bytes_and_says_what_it_left_out() {
    let toml = import::naaccr_xml(&xml(), Some(INCIDENCE_LENGTH)).unwrap();
    let layout = Layout::from_toml(&toml).unwrap().layout;
    assert_eq!(layout.record_length(), Some(INCIDENCE_LENGTH));
    let fields = layout.record_types()[0].fields();
    // 641 <field> elements (group fields and their parts), 555 ending by byte 3339.
    assert_eq!(fields.len(), 555);
    assert!(toml.contains("# Skipped: textDxProcPe (bytes"), "a skipped field is named in a comment");
    assert!(toml.contains("# 86 of 641 fields skipped: they end past byte 3339."));
    assert!(toml.contains("# Record Type (item 10, section Record ID, default \"A\")"), "labels, item numbers and sections");
    let dob = layout.record_types()[0].field("dateOfBirth").unwrap();
    assert_eq!((dob.range(), dob.trims()), (195..203, false), "a group is kept as written");
    let year = layout.record_types()[0].field("dateOfBirthYear").unwrap();
    assert_eq!(year.range(), 195..199);
    assert_eq!(year.pad(), ' ', "pad-char 0 is only a comment: zeros are data in NAACCR codes");
    assert!(!layout.record_types()[0].field("npcrSpecificField").unwrap().trims(), "trim=\"false\"");

    let whole = Layout::from_toml(&import::naaccr_xml(&xml(), None).unwrap()).unwrap().layout;
    assert_eq!(whole.record_length(), Some(22824));
    assert_eq!(whole.record_types()[0].fields().len(), 641);
}

#[test]
fn one_and_two_record_files() {
    let layout = incidence_layout();
    let rt = &layout.record_types()[0];
    let col = |name: &str| rt.field_index(name).unwrap();
    let mut rows = Vec::new();
    let n = decode_all(&layout, &read("fake-naaccr14inc-1-rec.txt"), |_, row| rows.push(row.to_vec()));
    assert_eq!(n, 1);
    let r = &rows[0];
    for (name, value) in [
        ("recordType", "I"),
        ("registryType", "1"),
        ("naaccrRecordVersion", "140"),
        ("npiRegistryId", "7232368635"),
        ("registryId", "ABCDEFGHI1"),
        ("patientIdNumber", "00000000"),
        ("addrAtDxState", "AZ"),
        ("addrAtDxPostalCode", "684264350"),
        ("dateOfDiagnosis", "20100615"),
        ("npcrSpecificField", ""),
        ("stateRequestorItems", ""),
    ] {
        assert_eq!(r[col(name)], value, "{name}");
    }
    assert_eq!(r[col("dateOfBirthYear")].len() + r[col("dateOfBirthMonth")].len() + r[col("dateOfBirthDay")].len(), 8);
    assert_eq!(
        r[col("dateOfBirth")],
        format!("{}{}{}", r[col("dateOfBirthYear")], r[col("dateOfBirthMonth")], r[col("dateOfBirthDay")]),
        "a group field is its parts"
    );
    // Two records: LF after the first, none after the last.
    let n = decode_all(&layout, &read("fake-naaccr14inc-2-rec.txt"), |number, row| {
        assert_eq!(row.get(col("naaccrRecordVersion")), Some("140"), "record {number}");
    });
    assert_eq!(n, 2);
}

#[test]
fn ten_thousand_records_all_fields_no_errors() {
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(&read("fake-naaccr14inc-10000-rec.txt.gz")[..]).read_to_end(&mut data).unwrap();
    let layout = incidence_layout();
    let rt = &layout.record_types()[0];
    let (kind, version, state) =
        (rt.field_index("recordType").unwrap(), rt.field_index("naaccrRecordVersion").unwrap(), rt.field_index("addrAtDxState").unwrap());
    let mut states = std::collections::BTreeSet::new();
    let mut last = 0;
    let n = decode_all(&layout, &data, |number, row| {
        assert_eq!(row.get(kind), Some("I"), "record {number}");
        assert_eq!(row.get(version), Some("140"), "record {number}");
        states.insert(row.get(state).unwrap_or_default().to_string());
        last = number;
    });
    assert_eq!((n, last), (10_000, 10_000));
    assert!(states.len() > 10, "the fake records vary: {states:?}");
}
