use std::collections::HashMap;
use std::io::Write;

use arrow_array::{Array, StringArray};
use ehrlift_mapping::{Plan, load_plan};

use super::*;
use crate::list_files;

/// Writes a one-table HL7 plan with `[hl7]` settings and utf8 columns reading `paths`.
fn plan(dir: &std::path::Path, hl7: &str, paths: &[&str], files: &str) -> Plan {
    let cols: String = paths
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[[columns]]\nname = \"c{i}\"\nfrom = \"{p}\"\ntype = \"utf8\"\nrule = \"keep\"\n\n"))
        .collect();
    std::fs::write(
        dir.join("ehrlift.toml"),
        "project = \"t\"\ninclude = [\"t.toml\"]\n[privacy]\nprofile = \"custom\"\n[sources.s]\nkind = \"hl7\"\ndir = \".\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("t.toml"), format!("table = \"t\"\nsource = \"s\"\nfiles = \"{files}\"\n[hl7]\n{hl7}\n{cols}")).unwrap();
    load_plan(&dir.join("ehrlift.toml"), &HashMap::<String, String>::new()).unwrap_or_else(|d| panic!("{d}"))
}

fn open(plan: &Plan, at: Position) -> Hl7TableSource {
    let m = &plan.tables[0];
    let files = list_files(&m.table, plan.path.parent().unwrap(), &m.files, &m.exclude).unwrap();
    Hl7TableSource::open(m, files, at)
}

/// Every row as its columns' values (`-` for null), the rejections and the batch ends.
fn read_all(src: &mut Hl7TableSource, limit: usize) -> (Vec<String>, Vec<Rejection>, Vec<Position>) {
    let (mut rows, mut rej, mut ends) = (vec![], vec![], vec![]);
    while let Some(b) = src.next_batch(limit).unwrap() {
        let cols: Vec<&StringArray> = b.batch.columns().iter().map(|c| c.as_any().downcast_ref::<StringArray>().unwrap()).collect();
        for i in 0..b.batch.num_rows() {
            let v: Vec<&str> = cols.iter().map(|c| if c.is_null(i) { "-" } else { c.value(i) }).collect();
            rows.push(v.join("|"));
        }
        rej.extend(b.rejected.clone());
        ends.push(b.end);
    }
    (rows, rej, ends)
}

const ORU: &str = "MSH|^~\\&|LAB|H|||20240102||ORU^R01|M1|P|2.5\rPID|1||111^^^MRN~222^^^SSN||DOE^JANE\rOBR|1||ORD1|GLU\r\
OBX|1|NM|GLU^Glucose||5.4|mmol/L\rOBX|2|NM|NA^Sodium||\"\"|mmol/L\rOBR|2||ORD2|K\rOBX|1|ST|NOTE||a \\F\\ b\r";
const ADT: &str = "MSH|^~\\&|ADT|H|||20240103||ADT^A01|M2|P|2.5\rPID|1||333^^^MRN||ROE^RICH\rPV1|1|I|W1\r";

#[test]
fn one_row_per_segment_carries_the_enclosing_segments_down() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.hl7"), format!("{ORU}{ADT}{ORU}")).unwrap();
    let p = plan(
        dir.path(),
        "message_types = [\"ORU^R01\"]\nsegment = \"OBX\"",
        &["MSH-10", "PID-3[1].1", "OBR-3", "OBX-3.1", "OBX-5"],
        "*.hl7",
    );
    let mut src = open(&p, Position::default());
    let (rows, rej, _) = read_all(&mut src, 1000);
    let one = ["M1|111|ORD1|GLU|5.4", "M1|111|ORD1|NA|-", "M1|111|ORD2|NOTE|a | b"];
    assert_eq!(rows, [one, one].concat());
    assert!(rej.is_empty());
    assert_eq!(src.skipped(), 1, "the ADT message is passed over");
}

#[test]
fn message_level_rows_and_repetitions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.hl7"), format!("{ORU}{ADT}")).unwrap();
    let p = plan(dir.path(), "", &["MSH-9.1", "PID-3[2].1", "PID-5.2", "PV1-3"], "*.hl7");
    let (rows, rej, _) = read_all(&mut open(&p, Position::default()), 1000);
    assert_eq!(rows, ["ORU|222|JANE|-", "ADT|-|RICH|W1"]);
    assert!(rej.is_empty());
}

#[test]
fn a_bad_message_is_quarantined_whole_and_the_file_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "MSH|^~|SENTINEL-PHI-77\rPID|1||SENTINEL-PHI-77\r";
    let text = format!("PID|1||SENTINEL-PHI-77\r{ADT}{bad}{ADT}");
    std::fs::write(dir.path().join("a.hl7"), &text).unwrap();
    let p = plan(dir.path(), "", &["MSH-10"], "*.hl7");
    let (rows, rej, _) = read_all(&mut open(&p, Position::default()), 1000);
    assert_eq!(rows, ["M2", "M2"]);
    let got: Vec<(u64, u64, Option<&str>, &str)> =
        rej.iter().map(|r| (r.origin.record, r.origin.byte, r.column.as_deref(), r.reason.code())).collect();
    let bad_at = text.find("MSH|^~|").unwrap() as u64;
    assert_eq!(got, [(1, 0, Some("PID"), "hl7_segment_before_msh"), (3, bad_at, Some("MSH"), "hl7_bad_encoding_characters")]);
    assert!(!format!("{rej:?}").contains("SENTINEL"));
}

#[test]
fn messages_without_a_type_or_a_required_segment_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let no_type = "MSH|^~\\&|A|B|||2024|||M9|P|2.5\rPID|1||SENTINEL-PHI-78\r";
    let no_pid = "MSH|^~\\&|A|B|||2024||ADT^A01|M10|P|2.5\rEVN|A01\r";
    let text = format!("{no_type}{ADT}{no_pid}{ORU}");
    std::fs::write(dir.path().join("a.hl7"), &text).unwrap();
    let p = plan(dir.path(), "message_types = [\"ADT\"]\nrequired_segments = [\"pid\"]", &["MSH-10"], "*.hl7");
    let mut src = open(&p, Position::default());
    let (rows, rej, _) = read_all(&mut src, 1000);
    assert_eq!(rows, ["M2"]);
    let got: Vec<(u64, Option<&str>, &str)> = rej.iter().map(|r| (r.origin.record, r.column.as_deref(), r.reason.code())).collect();
    assert_eq!(got, [(1, Some("MSH-9"), "hl7_missing_message_type"), (3, Some("PID"), "hl7_missing_segment")]);
    assert_eq!(src.skipped(), 1, "the ORU message is another type, not an error");
}

#[test]
fn resuming_at_any_batch_end_reads_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("a.hl7")).unwrap();
    for i in 0..40 {
        write!(f, "MSH|^~\\&|A|B|||2024||ORU^R01|{i}|P|2.5\rPID|1||{i}\r").unwrap();
        for k in 0..(i % 4) {
            write!(f, "OBX|{k}|NM|X||{i}.{k}\r").unwrap();
        }
        if i % 9 == 4 {
            write!(f, "XYZ|not after an MSH? it is: inside the message\r").unwrap();
        }
    }
    drop(f);
    std::fs::write(dir.path().join("b.hl7"), format!("\u{feff}{ORU}")).unwrap();
    let p = plan(dir.path(), "segment = \"OBX\"", &["MSH-10", "OBX-5"], "*.hl7");
    let (all, _, _) = read_all(&mut open(&p, Position::default()), 1000);
    assert_eq!(all.len(), 60 + 3);
    for limit in [1, 2, 5] {
        let (_, _, ends) = read_all(&mut open(&p, Position::default()), limit);
        for end in &ends {
            let (rest, _, _) = read_all(&mut open(&p, end.clone()), limit);
            let done = {
                let mut src = open(&p, Position::default());
                let mut n = 0;
                while let Some(b) = src.next_batch(limit).unwrap() {
                    n += b.batch.num_rows();
                    if &b.end == end {
                        break;
                    }
                }
                n
            };
            assert_eq!(all[done..], rest[..], "limit {limit}, resume at {end:?}");
        }
    }
}

#[test]
fn a_changed_file_is_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.hl7"), format!("{ADT}{ADT}")).unwrap();
    let p = plan(dir.path(), "", &["MSH-10"], "*.hl7");
    let at = Position { file: 0, byte: 5, record: 1, line: 0, cursor: None };
    let e = open(&p, at).next_batch(10).expect_err("no message starts at byte 5");
    assert!(e.to_string().contains("the file changed"), "{e}");
}
