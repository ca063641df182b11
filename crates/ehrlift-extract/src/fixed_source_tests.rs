use std::collections::HashMap;

use arrow_array::{Array, StringArray};
use ehrlift_mapping::{Plan, load_plan};

use super::*;
use crate::list_files;

const LAYOUT: &str = r#"
[layout]
name = "claims"
encoding = "ascii"
framing = "lines"
record_length = 20
discriminator = { start = 1, length = 1 }

[[fields]]
name = "kind"
start = 1
length = 1

[[record_types]]
code = "P"
name = "patient"
  [[record_types.fields]]
  name = "mrn"
  start = 2
  length = 6
  phi = "mrn"
  rule = "drop"
  [[record_types.fields]]
  name = "amount"
  start = 8
  length = 7
  type = "integer"
  decimals = 2

[[record_types]]
code = "H"
name = "header"
  [[record_types.fields]]
  name = "batch"
  start = 2
  length = 8
"#;

/// A one-table plan reading `patient` records' `fields`.
fn plan(dir: &std::path::Path, fields: &[&str]) -> Plan {
    let cols: String =
        fields.iter().map(|f| format!("[[columns]]\nname = \"{f}\"\ntype = \"utf8\"\nrule = \"keep\"\nphi = \"none\"\n\n")).collect();
    std::fs::write(dir.join("claims.layout.toml"), LAYOUT).unwrap();
    std::fs::write(
        dir.join("ehrlift.toml"),
        "project = \"t\"\ninclude = [\"t.toml\"]\n[privacy]\nprofile = \"custom\"\n[sources.s]\nkind = \"fixed_width\"\ndir = \".\"\nlayout = \"claims.layout.toml\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("t.toml"),
        format!("table = \"t\"\nsource = \"s\"\nfiles = \"*.dat\"\n[fixed]\nrecord_type = \"patient\"\n{cols}"),
    )
    .unwrap();
    load_plan(&dir.join("ehrlift.toml"), &HashMap::<String, String>::new()).unwrap_or_else(|d| panic!("{d}"))
}

fn open(plan: &Plan, at: Position) -> FixedTableSource {
    let m = &plan.tables[0];
    let files = list_files(&m.table, plan.path.parent().unwrap(), &m.files, &m.exclude).unwrap();
    FixedTableSource::open(m, files, at)
}

fn read_all(src: &mut FixedTableSource, limit: usize) -> (Vec<String>, Vec<Rejection>, Vec<Position>) {
    let (mut rows, mut rej, mut ends) = (vec![], vec![], vec![]);
    while let Some(b) = src.next_batch(limit).unwrap() {
        let cols: Vec<&StringArray> = b.batch.columns().iter().map(|c| c.as_any().downcast_ref::<StringArray>().unwrap()).collect();
        for i in 0..b.batch.num_rows() {
            rows.push(cols.iter().map(|c| if c.is_null(i) { "-" } else { c.value(i) }).collect::<Vec<_>>().join("|"));
        }
        rej.extend(b.rejected.clone());
        ends.push(b.end);
    }
    (rows, rej, ends)
}

fn data() -> String {
    let mut s = String::from("H20240101           \r\n");
    for i in 0..30 {
        s.push_str(&format!("P{:06}{:>7}      \r\n", i, -(i as i64) * 101));
        match i % 10 {
            3 => s.push_str("PSENTINEL-PHI-1\r\n"),    // too short
            6 => s.push_str("XSENTINEL-PHI-2     \n"), // unknown record type
            8 => s.push_str("P123456SENTI-L      \n"), // not a number
            _ => {}
        }
    }
    s
}

#[test]
fn records_of_the_type_become_rows_and_bad_ones_are_quarantined_by_number_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.dat"), data()).unwrap();
    let p = plan(dir.path(), &["mrn", "amount"]);
    let mut src = open(&p, Position::default());
    let (rows, rej, _) = read_all(&mut src, 1000);
    assert_eq!(rows.len(), 30);
    assert_eq!(rows[0], "000000|0.00");
    assert_eq!(rows[5], "000005|-5.05");
    let got: Vec<(u64, Option<&str>, &str)> = rej.iter().map(|r| (r.origin.record, r.column.as_deref(), r.reason.code())).collect();
    assert_eq!(got[..3], [(6, None, "wrong_length"), (10, None, "unknown_record_type"), (13, Some("amount"), "invalid_number")]);
    assert_eq!(rej.len(), 9);
    assert!(!format!("{rej:?}").contains("SENTINEL"));
    assert_eq!(src.skipped(), 1, "the header record is another type");
}

#[test]
fn the_layout_gives_its_phi_tag_and_rule_to_columns_that_name_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.dat"), data()).unwrap();
    let mut p = plan(dir.path(), &["amount"]);
    std::fs::write(dir.path().join("t.toml"), "table = \"t\"\nsource = \"s\"\nfiles = \"*.dat\"\n[fixed]\nrecord_type = \"P\"\n[[columns]]\nname = \"mrn\"\ntype = \"utf8\"\n[[columns]]\nname = \"amount\"\ntype = \"decimal(9,2)\"\nrule = \"keep\"\n").unwrap();
    p = load_plan(&p.path, &HashMap::<String, String>::new()).unwrap_or_else(|d| panic!("{d}"));
    let c = &p.tables[0].columns[0];
    assert_eq!((c.phi, c.rule.name()), (Some(ehrlift_mapping::Phi::Mrn), "drop"));
}

#[test]
fn resuming_at_any_batch_end_reads_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.dat"), data()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, data().as_bytes()).unwrap();
    std::fs::write(dir.path().join("b.dat.gz"), gz.finish().unwrap()).unwrap();
    let mut p = plan(dir.path(), &["mrn", "amount"]);
    std::fs::write(
        dir.path().join("t.toml"),
        std::fs::read_to_string(dir.path().join("t.toml")).unwrap().replace("\"*.dat\"", "[\"*.dat\", \"*.dat.gz\"]"),
    )
    .unwrap();
    p = load_plan(&p.path, &HashMap::<String, String>::new()).unwrap_or_else(|d| panic!("{d}"));
    let (all, all_rej, _) = read_all(&mut open(&p, Position::default()), 1000);
    assert_eq!((all.len(), all_rej.len()), (60, 18));
    for limit in [1, 4, 7] {
        let (_, _, ends) = read_all(&mut open(&p, Position::default()), limit);
        let mut done = 0;
        let mut src = open(&p, Position::default());
        for end in &ends {
            let b = src.next_batch(limit).unwrap().unwrap();
            done += b.batch.num_rows();
            assert_eq!(&b.end, end);
            let (rest, _, _) = read_all(&mut open(&p, end.clone()), limit);
            assert_eq!(all[done..], rest[..], "limit {limit}, resume at {end:?}");
        }
    }
}
