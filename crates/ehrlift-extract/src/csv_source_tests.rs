use std::collections::HashMap;
use std::io::Write;

use arrow_array::{Array, StringArray};
use ehrlift_mapping::{Plan, load_plan};

use super::*;

/// Writes a one-table plan reading `files` with `csv` dialect settings.
fn plan(dir: &Path, csv: &str, columns: &[&str], drop: &[&str], files: &str) -> Plan {
    let cols: String =
        columns.iter().map(|c| format!("[[columns]]\nname = \"{c}\"\ntype = \"utf8\"\nrule = \"keep\"\nnull = []\n\n")).collect();
    let drops: Vec<String> = drop.iter().map(|d| format!("\"{d}\"")).collect();
    std::fs::write(
        dir.join("ehrlift.toml"),
        "project = \"t\"\ninclude = [\"t.toml\"]\n[privacy]\nprofile = \"custom\"\n[sources.s]\nkind = \"csv\"\ndir = \".\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("t.toml"),
        format!("table = \"t\"\nsource = \"s\"\nfiles = \"{files}\"\ndrop = [{}]\n[csv]\n{csv}\n{cols}", drops.join(",")),
    )
    .unwrap();
    load_plan(&dir.join("ehrlift.toml"), &HashMap::<String, String>::new()).unwrap_or_else(|d| panic!("{d}"))
}

fn open(plan: &Plan, at: Position) -> CsvTableSource {
    let m = &plan.tables[0];
    let files = list_files(&m.table, plan.path.parent().unwrap(), &m.files, &m.exclude).unwrap();
    CsvTableSource::open(m, files, at)
}

fn values(b: &SourceBatch, col: usize) -> Vec<String> {
    let a = b.batch.column(col).as_any().downcast_ref::<StringArray>().unwrap();
    (0..a.len()).map(|i| a.value(i).to_owned()).collect()
}

/// Reads everything with `limit`-record batches, returning (first column values, rejections, batch ends).
fn read_all(src: &mut CsvTableSource, limit: usize) -> (Vec<String>, Vec<Rejection>, Vec<Position>) {
    let (mut vals, mut rej, mut ends) = (vec![], vec![], vec![]);
    while let Some(b) = src.next_batch(limit).unwrap() {
        vals.extend(values(&b, 0));
        rej.extend(b.rejected.clone());
        ends.push(b.end);
    }
    (vals, rej, ends)
}

#[test]
fn resuming_at_any_batch_end_reads_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("\u{feff}id,note\r\n");
    for i in 0..50 {
        text.push_str(&format!("{i},\"multi\nline {i}, with comma\"\r\n"));
        if i % 7 == 0 {
            text.push_str("# a comment line\r\n");
        }
    }
    std::fs::write(dir.path().join("a.csv"), &text).unwrap();
    // A second, gzipped file continues the table.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"id,note\n50,x\n51,y\n").unwrap();
    std::fs::write(dir.path().join("b.csv.gz"), gz.finish().unwrap()).unwrap();
    let p = plan(dir.path(), "comment = \"#\"", &["id", "note"], &[], "*.csv*");
    let (all, _, ends) = read_all(&mut open(&p, Position::default()), 6);
    let expected: Vec<String> = (0..52).map(|i| i.to_string()).collect();
    assert_eq!(all, expected);
    let mut consumed = 0;
    for end in &ends {
        let mut src = open(&p, end.clone());
        let (rest, _, _) = read_all(&mut src, 4);
        consumed = expected.len() - rest.len();
        assert_eq!(rest, expected[consumed..], "resume at {end:?}");
    }
    assert_eq!(consumed, expected.len());
}

#[test]
fn origins_name_file_record_line_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "id\n1\n\"2\n\"\n3\n").unwrap();
    let p = plan(dir.path(), "", &["id"], &[], "a.csv");
    let b = open(&p, Position::default()).next_batch(10).unwrap().unwrap();
    let rows: Vec<(u64, u64, u64)> = b.rows.iter().map(|o| (o.record, o.line, o.byte)).collect();
    assert_eq!(rows, vec![(1, 2, 3), (2, 3, 5), (3, 5, 10)]);
    assert_eq!(b.end, Position { file: 0, byte: 12, record: 3, line: 6, cursor: None });
}

#[test]
fn ragged_and_badly_encoded_rows_are_rejected_with_reasons_not_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), b"a,b\n1,2\n3\n4,5,6\n7,\xff\xfe\n8,9\n".as_slice()).unwrap();
    let p = plan(dir.path(), "", &["a", "b"], &[], "a.csv");
    let b = open(&p, Position::default()).next_batch(100).unwrap().unwrap();
    assert_eq!(values(&b, 0), ["1", "8"]);
    let got: Vec<(u64, Option<&str>, Reason)> = b.rejected.iter().map(|r| (r.origin.record, r.column.as_deref(), r.reason)).collect();
    assert_eq!(got, vec![(2, None, Reason::MissingFields), (3, None, Reason::ExtraFields), (4, Some("b"), Reason::InvalidEncoding)]);
}

#[test]
fn a_delimiter_inside_a_multibyte_character_quarantines_the_row() {
    let dir = tempfile::tempdir().unwrap();
    // "é" is C3 A9; a corrupt export put the comma between its two bytes. The record as a
    // whole is valid UTF-8, its fields are not.
    std::fs::write(dir.path().join("a.csv"), b"a,b\nRen\xc3,\xa9e\nok,fine\n".as_slice()).unwrap();
    let p = plan(dir.path(), "", &["a", "b"], &[], "a.csv");
    let b = open(&p, Position::default()).next_batch(10).unwrap().unwrap();
    assert_eq!(values(&b, 0), ["ok"]);
    assert_eq!(b.rejected.len(), 1);
    assert_eq!((b.rejected[0].origin.record, b.rejected[0].reason), (1, Reason::InvalidEncoding));
}

#[test]
fn single_byte_encodings_decode_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // 0xE9 is é in both; 0x80 is € in windows-1252 and U+0080 in latin1.
    std::fs::write(dir.path().join("a.csv"), b"n\nRen\xe9e \x80\n".as_slice()).unwrap();
    let p = plan(dir.path(), "encoding = \"windows-1252\"", &["n"], &[], "a.csv");
    assert_eq!(values(&open(&p, Position::default()).next_batch(9).unwrap().unwrap(), 0), ["Renée €"]);
    let p = plan(dir.path(), "encoding = \"latin1\"", &["n"], &[], "a.csv");
    assert_eq!(values(&open(&p, Position::default()).next_batch(9).unwrap().unwrap(), 0), ["Renée \u{80}"]);
}

#[test]
fn headers_must_classify_every_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "id,secret\n1,x\n").unwrap();
    let p = plan(dir.path(), "", &["id"], &[], "a.csv");
    let err = open(&p, Position::default()).check_headers().unwrap_err().to_string();
    assert!(err.contains("`secret`") && err.contains("drop"), "{err}");
    let p = plan(dir.path(), "", &["id"], &["secret"], "a.csv");
    open(&p, Position::default()).check_headers().unwrap();
    let p = plan(dir.path(), "", &["id", "missing"], &["secret"], "a.csv");
    let err = open(&p, Position::default()).check_headers().unwrap_err().to_string();
    assert!(err.contains("`missing` is not in the header"), "{err}");
}

#[test]
fn headerless_files_use_declared_names_and_utf16_is_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "1;x\n2;y\n").unwrap();
    let p = plan(dir.path(), "header = false\ndelimiter = \";\"\ncolumns = [\"id\", \"v\"]", &["v"], &["id"], "a.csv");
    assert_eq!(values(&open(&p, Position::default()).next_batch(9).unwrap().unwrap(), 0), ["x", "y"]);
    std::fs::write(dir.path().join("u.csv"), b"\xff\xfei\x00d\x00\n\x00".as_slice()).unwrap();
    let p = plan(dir.path(), "", &["id"], &[], "u.csv");
    let mut src = open(&p, Position::default());
    let b = src.next_batch(9).unwrap().unwrap();
    assert_eq!(b.batch.num_rows(), 0);
    assert_eq!(b.rejected[0].reason, Reason::UnsupportedFileEncoding);
    assert!(src.next_batch(9).unwrap().is_none());
}
