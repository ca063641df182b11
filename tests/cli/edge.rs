//! Every file of the shared CSV edge-case corpora loads or quarantines with reasons;
//! nothing panics, and nothing from the files reaches stderr.

use std::path::{Path, PathBuf};

use crate::harness::*;

fn corpus() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![shared_data().join("csv-edge")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Column names for a mapping: the header when it is usable, else positional names.
fn columns_of(file: &Path) -> (bool, Vec<String>) {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_path(file).unwrap();
    let mut rec = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut rec).unwrap_or(false) {
        return (false, vec!["c1".into()]);
    }
    let names: Option<Vec<String>> =
        rec.iter().map(|f| std::str::from_utf8(f).ok().map(|s| s.trim_start_matches('\u{feff}').to_owned())).collect();
    match names {
        Some(n)
            if n.iter().all(|x| !x.is_empty() && !x.contains(['"', '\\', '\n', '\r'])) && {
                let mut s = n.clone();
                s.sort();
                s.dedup();
                s.len() == n.len()
            } =>
        {
            (true, n)
        }
        _ => (false, (1..=rec.len()).map(|i| format!("c{i}")).collect()),
    }
}

#[test]
fn issue_2_every_csv_edge_file_loads_or_quarantines_with_reasons() {
    let files = corpus();
    assert!(files.len() >= 40, "expected the shared corpus, found {} files", files.len());
    let tmp = tempfile::tempdir().unwrap();
    let mut quarantined_files = 0;
    for (i, file) in files.iter().enumerate() {
        let dir = tmp.path().join(format!("case{i}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let name = "input.csv";
        std::fs::copy(file, dir.join("data").join(name)).unwrap();
        let (header, cols) = columns_of(file);
        let columns: String = cols
            .iter()
            .map(|c| {
                format!(
                    "[[columns]]\nname = \"col_{}\"\nfrom = \"{c}\"\ntype = \"utf8\"\nrule = \"keep\"\n",
                    cols.iter().position(|x| x == c).unwrap()
                )
            })
            .collect();
        let csv = if header {
            String::new()
        } else {
            format!("header = false\ncolumns = [{}]", cols.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", "))
        };
        let plan = write_plan(
            &dir,
            "max_quarantine_ratio = 1.0",
            &csv,
            &format!("table = \"t\"\nsource = \"src\"\nfiles = \"{name}\"\n{columns}"),
        );
        let dest = dir.join("out");
        let r = run(ehrlift().args(["run", "--json", "-vv"]).arg(&plan).arg("--dest").arg(url(&dest)));
        assert_eq!(r.code(), 0, "{}: {}", file.display(), r.stderr());
        let t = &r.json()["tables"][0];
        let (read, written, q) =
            (t["rows_read"].as_u64().unwrap(), t["rows_written"].as_u64().unwrap(), t["rows_quarantined"].as_u64().unwrap());
        assert_eq!(read, written + q, "{}: every row is written or quarantined", file.display());
        if q > 0 {
            quarantined_files += 1;
            let reasons = t["quarantine_reasons"].as_object().unwrap();
            assert!(!reasons.is_empty(), "{}", file.display());
            let qpart = read_parquet(&dest.join("_quarantine/t/part-000001.parquet"));
            assert_eq!(rows(&qpart) as u64, reasons.values().map(|v| v.as_u64().unwrap()).sum::<u64>());
        }
        // The validation report counts what the run did, and writes nothing.
        let report_dest = dir.join("report-dest");
        let v = run(ehrlift().args(["validate", "--full", "--json"]).arg(&plan).arg("--dest").arg(url(&report_dest)));
        assert_eq!(v.code(), 0, "{}: {}", file.display(), v.stderr());
        let vt = &v.json()["tables"][0];
        for k in ["rows_read", "rows_written", "rows_quarantined", "quarantine_reasons"] {
            assert_eq!(vt[k], t[k], "{}: validate's {k} differs from the run's", file.display());
        }
        assert!(!report_dest.exists(), "{}: validate wrote to its destination", file.display());
        // No cell value on stderr: check every distinct field of the file that is long
        // enough not to collide with words of our own messages. The report (summary and
        // JSON) is held to the same rule.
        let stderr = format!("{}\n{}\n{}", r.stderr(), v.stderr(), v.stdout());
        let bytes = std::fs::read(file).unwrap();
        let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes.as_slice());
        for rec in rdr.byte_records().flatten().skip(usize::from(header)) {
            for f in rec.iter() {
                if let Ok(s) = std::str::from_utf8(f) {
                    let s = s.trim();
                    // Column names (the first record of files read with a header) are
                    // names, and reports name columns.
                    if s.len() >= 6 && !s.chars().all(|c| c.is_ascii_digit()) && !(header && cols.iter().any(|c| c == s)) {
                        assert!(!stderr.contains(s), "{}: a cell value reached stderr or the report", file.display());
                    }
                }
            }
        }
        run(ehrlift().arg("verify").arg(&dest)).expect(0);
    }
    assert!(quarantined_files >= 3, "the malformed files quarantine rows ({quarantined_files})");
}

#[test]
fn issue_2_latin1_loads_whole_with_its_encoding_declared() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::copy(shared_data().join("csv-edge/rust-csv/uspop-latin1.csv"), tmp.path().join("data/u.csv")).unwrap();
    let plan = write_plan(
        tmp.path(),
        "",
        "encoding = \"latin1\"",
        "table = \"t\"\nsource = \"src\"\nfiles = \"u.csv\"\n[[columns]]\nname = \"city\"\nfrom = \"City\"\ntype = \"utf8\"\nrule = \"keep\"\n[[columns]]\nname = \"state\"\nfrom = \"State\"\ntype = \"utf8\"\nrule = \"keep\"\n[[columns]]\nname = \"population\"\nfrom = \"Population\"\ntype = \"int64\"\nrule = \"keep\"\n[[columns]]\nname = \"lat\"\nfrom = \"Latitude\"\ntype = \"float64\"\nrule = \"keep\"\n[[columns]]\nname = \"lon\"\nfrom = \"Longitude\"\ntype = \"float64\"\nrule = \"keep\"\n",
    );
    let dest = tmp.path().join("out");
    let t = run(ehrlift().args(["run", "--json"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(0).json()["tables"][0].clone();
    assert_eq!(t["rows_quarantined"], 0);
    assert_eq!(
        t["rows_written"].as_u64(),
        Some(csv::Reader::from_path(shared_data().join("csv-edge/rust-csv/uspop-latin1.csv")).unwrap().byte_records().count() as u64)
    );
}
