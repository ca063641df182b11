//! csvkit's fixed-width examples (shared data, read in place): schemas imported with
//! `import::csvkit_schema`, files read with `RecordReader`, values compared with csvkit's.

use std::sync::Arc;

use ehrlift_fixed::{Layout, RecordDecoder, RecordReader, Row, import};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/fixed-width/csvkit/");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn layout_from_schema(name: &str) -> Arc<Layout> {
    let schema = String::from_utf8(read(name)).unwrap();
    let toml = import::csvkit_schema(&schema).unwrap();
    Arc::new(Layout::from_toml(&toml).unwrap().layout)
}

/// Every record of `data` as (record number, values); panics on any record error.
fn decode_all(layout: &Arc<Layout>, data: &[u8]) -> Vec<(u64, Vec<String>)> {
    let mut reader = RecordReader::new(data, layout.framing(), 0, 0);
    let mut decoder = RecordDecoder::new(layout.clone());
    let (mut buf, mut row, mut out) = (Vec::new(), Row::new(), Vec::new());
    while let Some(info) = reader.next_record(&mut buf).unwrap() {
        decoder.decode(&info, &buf, &mut row).unwrap_or_else(|e| panic!("{e}"));
        out.push((info.number, row.to_vec()));
    }
    out
}

fn csv_rows(data: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(data);
    let header = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
    (header, rows)
}

/// csvkit's own test (tests/test_convert/test_fixed.py, `test_fixed`) compares
/// `fixed2csv(testfixed, testfixed_schema.csv)` with `testfixed_converted.csv` byte for
/// byte. `fixed2csv` does no type inference: it slices each line and `str.strip()`s the
/// slice, so the file holds exactly those texts (`1.0`, `4:14:00`, `True` are as written,
/// not reformatted). So every value must match exactly, with no inference to undo:
/// - the `float` column of the third row is `41800000.01` (the `,` after it is in the gap
///   between the float and time columns, not in either);
/// - `Row with blanks` is a line of 15 bytes: csvkit's slices past its end are empty,
///   which the imported layout reproduces with `pad_short_lines = true`.
#[test]
fn testfixed_matches_csvkit_converted_value_by_value() {
    let layout = layout_from_schema("testfixed_schema.csv");
    let (header, expected) = csv_rows(&read("testfixed_converted.csv"));
    let names: Vec<_> = layout.record_types()[0].fields().iter().map(|f| f.name().to_string()).collect();
    assert_eq!(names, header);
    let got = decode_all(&layout, &read("testfixed"));
    assert_eq!(got.len(), expected.len());
    for ((number, values), want) in got.iter().zip(&expected) {
        assert_eq!(values, want, "record {number}");
    }
    assert_eq!(got[2].1[4], "41800000.01");
    assert_eq!(got[3].1, ["Row with blanks", "", "", "", "", "", "", ""]);
}

/// csvkit's `test_fixed_skip_lines` skips the first 3 lines with `skip_lines=3`; they
/// are empty, and the reader skips empty lines itself, keeping line numbers.
#[test]
fn testfixed_skip_lines_gives_the_same_rows_with_line_numbers() {
    let layout = layout_from_schema("testfixed_schema.csv");
    let (_, expected) = csv_rows(&read("testfixed_converted.csv"));
    let got = decode_all(&layout, &read("testfixed_skip_lines"));
    assert_eq!(got.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [4, 5, 6, 7]);
    assert_eq!(got.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), expected);
}

/// csvkit's `test_fixed_no_inference`: `     1   2 3` with the a/b/c schema is 1,2,3.
#[test]
fn the_no_inference_schema() {
    let layout = layout_from_schema("testfixed_schema_no_inference.csv");
    assert_eq!(decode_all(&layout, b"     1   2 3"), [(1, vec!["1".to_string(), "2".into(), "3".into()])]);
}

/// `census2000_geo_schema.csv` (1-based: its first start is 1) describes the Census 2000
/// geographic header file (`usgeo_excerpt.upl` in csvkit, which is not in the shared
/// data), 400 bytes wide; `VROUTFSJ.TXt` beside it is the voting rights determination
/// file, 302 bytes a line, CRLF. The README pairs it with a `determination_schema.csv`
/// that neither csvkit nor the shared data has. So: the geo schema read over this file
/// the way csvkit would (every record decodes; fields past byte 302 are empty), and then
/// a determination schema written here, checked against values of csvkit's
/// `determination.csv`.
#[test]
fn census_2000_with_the_geo_schema_decodes_every_record() {
    let layout = layout_from_schema("census_2000_census2000_geo_schema.csv");
    let fields = layout.record_types()[0].fields();
    assert_eq!(fields[0].range(), 0..6, "FILEID,1,6 is 1-based");
    assert_eq!(fields.last().unwrap().range(), 393..400);
    let got = decode_all(&layout, &read("census_2000_VROUTFSJ.TXt"));
    assert_eq!(got.len(), 1555);
    let col = |name: &str| layout.record_types()[0].field_index(name).unwrap();
    let first = &got[0].1;
    assert_eq!((first[col("FILEID")].as_str(), first[col("STUSAB")].as_str()), ("000000", "00"));
    assert_eq!(first[col("LOGRECNO")], "1421905");
    assert_eq!(first[col("NAME")], "TOTAL PERSONS");
    assert_eq!(first[col("RESERVED")], "", "past the end of a 302-byte line");
    let last = &got[1554].1;
    assert_eq!((last[col("FILEID")].as_str(), last[col("FUNCSTAT")].as_str(), last[col("POP100")].as_str()), ("880002", "V", "GROUP"));
}

/// The determination file's layout (1-based). The documentation the README cites
/// (vr_doc_rev7.wpd) is not at hand: the names are the header of csvkit's
/// `examples/realdata/census_2000/determination.csv`, the positions found by lining its
/// first rows up with the file's bytes (`RACEGP` runs to byte 302, the line's end).
const DETERMINATION_SCHEMA: &str = "column,start,length
AIANHH,1,4
STATE,5,2
COUNTY,7,3
COUSUBCE,10,3
RT,13,1
CODE,14,3
POP,17,9
VAPOP,26,9
VACIT,35,9
VACLANG,44,9
VACLEP,53,9
ILLIT,62,9
CILLIT,71,9
LEPPCT,80,5
ILLRAT,85,5
FENG5I,90,1
FENG10I,91,1
NAME1,92,90
STABRV,182,2
NAME21,184,90
RACEGP,274,29
";

#[test]
fn census_2000_determination_file_matches_csvkit_values() {
    let toml = import::csvkit_schema(DETERMINATION_SCHEMA).unwrap();
    let layout = Arc::new(Layout::from_toml(&toml).unwrap().layout);
    let got = decode_all(&layout, &read("census_2000_VROUTFSJ.TXt"));
    assert_eq!(got.len(), 1555);
    let rows: Vec<String> = got.iter().map(|(_, v)| v.join(",")).collect();
    // The first rows of csvkit's determination.csv.
    assert_eq!(rows[0], "0000,00,000,000,1,,281421905,209279150,193376975,23406075,8079960,831225,2613480,418,135,,,U.S.,,,TOTAL PERSONS");
    assert_eq!(rows[1], "0000,02,050,000,1,,16005,9615,9510,6355,2570,540,705,2702,2101,,,Bethel Census Area,AK,,TOTAL PERSONS");
    assert_eq!(rows[2], "0000,02,050,000,4,040,10185,5770,5770,4850,1980,425,505,2082,2146,*,,Bethel Census Area,AK,,ESKIMO");
    let amador = rows.iter().find(|r| r.starts_with("0000,06,005,000,2,")).unwrap();
    assert_eq!(amador, "0000,06,005,000,2,,3105,2205,2045,925,265,15,85,097,566,+,,Amador County,CA,,SPANISH/HISPANIC/LATINO");
}
