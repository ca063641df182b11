//! Fixed-width record files as a source: the shipped NAACCR plan over the shared NAACCR
//! v14 files, csvkit's fixed-width files against csvkit's own expected CSV, EBCDIC and
//! COMP-3 mainframe records made here, quarantine by record number and field, and kill -9
//! then rerun giving identical output.

use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};

use crate::harness::*;

/// Every row of a table's data objects, values displayed ("" for null), in part order.
fn table_rows(dest: &Path, table: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut names = Vec::new();
    let mut out = Vec::new();
    for (k, _) in objects(dest).iter().filter(|(k, _)| k.starts_with(&format!("{table}/")) && k.ends_with(".parquet")) {
        for b in read_parquet(&dest.join(k)) {
            names = b.schema().fields().iter().map(|f| f.name().clone()).collect();
            out.extend(rows_of(&b));
        }
    }
    (names, out)
}

fn rows_of(b: &RecordBatch) -> Vec<Vec<String>> {
    let opts = FormatOptions::default();
    let fmts: Vec<ArrayFormatter<'_>> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
    (0..b.num_rows())
        .map(|i| fmts.iter().zip(b.columns()).map(|(f, c)| if c.is_null(i) { String::new() } else { f.value(i).to_string() }).collect())
        .collect()
}

fn naaccr(file: &str) -> PathBuf {
    shared_data().join("fixed-width/naaccr").join(file)
}

/// The records of a NAACCR file (gzipped or not), without line terminators.
fn naaccr_lines(file: &str) -> Vec<String> {
    let bytes = std::fs::read(naaccr(file)).unwrap();
    let mut text = String::new();
    if file.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    } else {
        text = String::from_utf8(bytes).unwrap();
    }
    text.lines().map(|l| l.trim_end_matches('\r').to_owned()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn issue_7_shipped_naaccr_plan_loads_every_record_with_fields_where_the_layout_says() {
    for file in ["fake-naaccr14inc-1-rec.txt", "fake-naaccr14inc-2-rec.txt", "fake-naaccr14inc-10000-rec.txt.gz"] {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out");
        let r = run(ehrlift()
            .args(["run", "--json"])
            .arg(repo().join("mappings/naaccr/ehrlift.toml"))
            .env("NAACCR_FILE", naaccr(file))
            .env("EHRLIFT_DEST", &dest)
            .env("EHRLIFT_KEYRING", tmp.path().join("keyring")))
        .expect(0);
        run(ehrlift().arg("verify").arg(&dest)).expect(0);
        let lines = naaccr_lines(file);
        let t = &r.json()["tables"][0];
        assert_eq!(t["rows_read"].as_u64(), Some(lines.len() as u64), "{file}");
        assert_eq!(t["rows_written"].as_u64(), Some(lines.len() as u64), "{file}: every record loads");
        let (names, rows) = table_rows(&dest, "tumors");
        assert_eq!(rows.len(), lines.len());
        let col = |n: &str| names.iter().position(|x| x == n).unwrap_or_else(|| panic!("no column {n}"));
        // 1-based inclusive positions from naaccr-14-layout.xml; values are trimmed text.
        let checks = [
            ("record_type", 1, 1),
            ("naaccr_record_version", 17, 19),
            ("sex", 192, 192),
            ("primary_site", 540, 543),
            ("histology_icdo3", 550, 553),
        ];
        for (row, line) in rows.iter().zip(&lines) {
            for (name, start, end) in checks {
                assert_eq!(row[col(name)], line[start - 1..end].trim(), "{file}: {name}");
            }
            let zip = line[147 - 1..155].trim();
            if zip.len() >= 3 && zip.bytes().take(3).all(|b| b.is_ascii_digit()) {
                assert_eq!(row[col("zip3_at_dx")].len(), 3, "{file}: ZIP codes keep three digits");
            }
            assert_ne!(row[col("patient_id")], line[42 - 1..49].trim(), "{file}: the patient id becomes a surrogate");
        }
        for dropped in ["date_of_birth", "city_at_dx", "county_at_dx", "patient_system_id_hosp", "age_at_diagnosis"] {
            assert!(!names.iter().any(|n| n == dropped), "{dropped} is dropped (rule from the layout)");
        }
    }
}

#[test]
fn issue_7_csvkit_fixed_width_files_give_csvkits_expected_values() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let csvkit = shared_data().join("fixed-width/csvkit");
    // The layout comes from csvkit's own schema, through `ehrlift layout import`.
    run(ehrlift()
        .args(["layout", "import", "--format", "csvkit"])
        .arg(csvkit.join("testfixed_schema.csv"))
        .arg("-o")
        .arg(tmp.path().join("testfixed.layout.toml")))
    .expect(0);
    let expected: Vec<csv::StringRecord> =
        csv::Reader::from_path(csvkit.join("testfixed_converted.csv")).unwrap().records().map(Result::unwrap).collect();
    let header = csv::Reader::from_path(csvkit.join("testfixed_converted.csv")).unwrap().headers().unwrap().clone();
    let columns: String =
        header.iter().map(|h| format!("[[columns]]\nname = \"{h}\"\ntype = \"utf8\"\nrule = \"keep\"\nphi = \"none\"\n")).collect();
    std::fs::create_dir_all(tmp.path().join("tables")).unwrap();
    std::fs::write(
        tmp.path().join("ehrlift.toml"),
        format!(
            "project = \"c\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"safe_harbor\"\n[sources.c]\nkind = \"fixed_width\"\ndir = \"{}\"\nlayout = \"testfixed.layout.toml\"\n",
            csvkit.display()
        ),
    )
    .unwrap();
    std::fs::write(tmp.path().join("tables/t.toml"), format!("table = \"t\"\nsource = \"c\"\nfiles = \"testfixed\"\n{columns}")).unwrap();
    let dest = tmp.path().join("out");
    run(ehrlift().arg("run").arg(tmp.path().join("ehrlift.toml")).arg("--dest").arg(url(&dest))).expect(0);
    let (names, rows) = table_rows(&dest, "t");
    assert_eq!(names, header.iter().collect::<Vec<_>>());
    let want: Vec<Vec<String>> = expected.iter().map(|r| r.iter().map(str::to_owned).collect()).collect();
    assert_eq!(rows, want, "csvkit's in2csv output, value by value");
}

/// A mainframe extract made here: EBCDIC (cp037) text, zoned and packed decimals and a
/// binary field, fixed-length records with no terminators, two record types.
#[test]
fn issue_7_ebcdic_and_comp3_records_round_trip_through_a_run() {
    use ehrlift_fixed::{Encoding, cp037, packed, zoned};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::create_dir_all(tmp.path().join("tables")).unwrap();
    let layout = r#"
[layout]
name = "claims"
encoding = "cp037"
framing = "fixed"
record_length = 40
discriminator = { start = 1, length = 1 }

[[record_types]]
code = "C"
name = "claim"
  [[record_types.fields]]
  name = "member"
  start = 2
  length = 12
  [[record_types.fields]]
  name = "paid"
  start = 14
  length = 5
  type = "packed"
  decimals = 2
  [[record_types.fields]]
  name = "adjust"
  start = 19
  length = 7
  type = "zoned"
  decimals = 2
  [[record_types.fields]]
  name = "units"
  start = 26
  length = 4
  type = "binary"
  [[record_types.fields]]
  name = "note"
  start = 30
  length = 11

[[record_types]]
code = "T"
name = "trailer"
  [[record_types.fields]]
  name = "count"
  start = 2
  length = 9
  type = "zoned"
"#;
    std::fs::write(tmp.path().join("claims.layout.toml"), layout).unwrap();
    let members = ["ÉLODIE-0001", "MÜLLER-0002", "O'NEIL-0003", "SMITH-0004"];
    let paid: [i128; 4] = [12_345_678, -5, 0, 99_999_999];
    let adjust: [i128; 4] = [-1_234_567, 1, -99, 0];
    let units: [i32; 4] = [7, -2, 0, 2_000_000_000];
    let mut bytes = Vec::new();
    for i in 0..4 {
        let start = bytes.len();
        bytes.extend(cp037::encode("C"));
        bytes.extend(cp037::encode(&format!("{:<12}", members[i])));
        bytes.extend(packed::encode(paid[i], 5));
        bytes.extend(zoned::encode(adjust[i], 7, Encoding::Cp037));
        bytes.extend(units[i].to_be_bytes());
        bytes.extend(cp037::encode(&format!("{:<11}", format!("n{i} ¢±"))));
        assert_eq!(bytes.len() - start, 40);
    }
    bytes.extend(cp037::encode("T"));
    bytes.extend(zoned::encode(4, 9, Encoding::Cp037));
    bytes.extend(cp037::encode(&" ".repeat(30)));
    std::fs::write(tmp.path().join("data/claims.ebc"), &bytes).unwrap();
    std::fs::write(
        tmp.path().join("ehrlift.toml"),
        "project = \"m\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"custom\"\n[sources.m]\nkind = \"fixed_width\"\ndir = \"data\"\nlayout = \"claims.layout.toml\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("tables/t.toml"),
        "table = \"t\"\nsource = \"m\"\nfiles = \"*.ebc\"\n[fixed]\nrecord_type = \"claim\"\n\
[[columns]]\nname = \"member\"\ntype = \"utf8\"\nrule = \"keep\"\n\
[[columns]]\nname = \"paid\"\ntype = \"decimal(12,2)\"\nrule = \"keep\"\n\
[[columns]]\nname = \"adjust\"\ntype = \"decimal(12,2)\"\nrule = \"keep\"\n\
[[columns]]\nname = \"units\"\ntype = \"int32\"\nrule = \"keep\"\n\
[[columns]]\nname = \"note\"\ntype = \"utf8\"\nrule = \"keep\"\n",
    )
    .unwrap();
    let dest = tmp.path().join("out");
    let r = run(ehrlift().args(["run", "--json"]).arg(tmp.path().join("ehrlift.toml")).arg("--dest").arg(url(&dest))).expect(0);
    assert_eq!(r.json()["tables"][0]["rows_quarantined"].as_u64(), Some(0));
    let (_, rows) = table_rows(&dest, "t");
    let want: Vec<Vec<String>> = (0..4)
        .map(|i| {
            let dec = |v: i128| format!("{}{}.{:02}", if v < 0 { "-" } else { "" }, v.abs() / 100, v.abs() % 100);
            vec![members[i].to_owned(), dec(paid[i]), dec(adjust[i]), units[i].to_string(), format!("n{i} ¢±")]
        })
        .collect();
    assert_eq!(rows, want, "what went in comes out: EBCDIC text, COMP-3, zoned and binary");

    // A damaged packed field and a short last record are quarantined by record number and
    // field, never by value.
    bytes[40 + 13] = 0xFA; // record 2's packed field: a nibble that is no digit
    bytes.truncate(bytes.len() - 7); // the trailer is cut short
    std::fs::write(tmp.path().join("data/claims.ebc"), &bytes).unwrap();
    let plan_text = std::fs::read_to_string(tmp.path().join("ehrlift.toml")).unwrap();
    std::fs::write(tmp.path().join("ehrlift.toml"), format!("{plan_text}[run]\nmax_quarantine_ratio = 1.0\n")).unwrap();
    let r = run(ehrlift().args(["run", "--json", "--fresh"]).arg(tmp.path().join("ehrlift.toml")).arg("--dest").arg(url(&dest)).arg("-vv"))
        .expect(0);
    let q = read_parquet(&dest.join("_quarantine/t/part-000001.parquet"));
    let got: Vec<Vec<String>> = q.iter().flat_map(rows_of).map(|r| vec![r[1].clone(), r[3].clone(), r[4].clone(), r[5].clone()]).collect();
    assert_eq!(got[0], ["2", "40", "paid", "invalid_packed"]);
    assert_eq!(got[1], ["5", "160", "", "wrong_length"]);
    for m in members {
        assert!(!r.stderr().contains(m) && !r.stdout().contains(m));
    }
}

#[test]
fn issue_7_sigkill_mid_fixed_width_file_then_rerun_gives_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::create_dir_all(tmp.path().join("tables")).unwrap();
    std::fs::write(
        tmp.path().join("l.layout.toml"),
        "[layout]\nname = \"l\"\nencoding = \"latin1\"\nframing = \"lines\"\nrecord_length = 24\n\
[[fields]]\nname = \"id\"\nstart = 1\nlength = 8\ntype = \"integer\"\n\
[[fields]]\nname = \"amount\"\nstart = 9\nlength = 8\ntype = \"integer\"\ndecimals = 2\n\
[[fields]]\nname = \"code\"\nstart = 17\nlength = 8\n",
    )
    .unwrap();
    let mut text = String::new();
    for i in 0..150_000u32 {
        if i % 9973 == 7 {
            text.push_str("too short\n");
        }
        text.push_str(&format!("{i:08}{:>8}{:<8}\n", i % 99_999, format!("Ç{}", i % 97)));
    }
    // Latin-1 bytes (`Ç` is one byte), as the layout says.
    std::fs::write(tmp.path().join("data/a.txt"), text.chars().map(|c| c as u8).collect::<Vec<u8>>()).unwrap();
    std::fs::write(
        tmp.path().join("ehrlift.toml"),
        "project = \"k\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"custom\"\n[run]\nbatch_rows = 1000\npart_rows = 8000\nmax_quarantine_ratio = 0.01\n\
[sources.f]\nkind = \"fixed_width\"\ndir = \"data\"\nlayout = \"l.layout.toml\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("tables/t.toml"),
        "table = \"t\"\nsource = \"f\"\nfiles = \"a.txt\"\n\
[[columns]]\nname = \"id\"\ntype = \"int64\"\nrule = \"keep\"\n\
[[columns]]\nname = \"amount\"\ntype = \"decimal(10,2)\"\nrule = \"keep\"\n\
[[columns]]\nname = \"code\"\ntype = \"utf8\"\nrule = \"keep\"\n",
    )
    .unwrap();
    let plan = tmp.path().join("ehrlift.toml");
    let reference = tmp.path().join("reference");
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&reference))).expect(0);
    let dest = tmp.path().join("killed");
    let kills = kill_at(&plan, &dest, "t", &[1, 5, 10, 15]);
    assert!(kills >= 2, "the run must actually have been killed mid-way ({kills} kills)");
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
    assert_same_objects(&objects(&dest), &objects(&reference), "resumed output differs from an uninterrupted run");
    let mut ids = Vec::new();
    for (k, _) in objects(&dest).iter().filter(|(k, _)| k.starts_with("t/")) {
        for b in read_parquet(&dest.join(k)) {
            let c = b.column_by_name("id").unwrap().as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
            ids.extend(c.values().iter().copied());
        }
    }
    assert_eq!(ids, (0..150_000).collect::<Vec<i64>>(), "each record once, in order");
}
