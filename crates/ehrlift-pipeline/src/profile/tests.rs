use std::collections::HashMap;
use std::path::Path;

use ehrlift_mapping::{Plan, load_plan};

use super::*;
use crate::report::RowRef;

const SENTINEL: &str = "ZQXSENTINEL";

const PATIENTS: &str = "id,name,zip,sex,birth,note
1,ZQXSENTINEL,02134,F,1980-01-02,fine
2,ZQXSENTINEL,02135,F,1981-01-02,SSN: 123-45-6789
3,ZQXSENTINEL,02136,M,notadate,fine
2,ZQXSENTINEL,10001,M,1982-01-02,
5,ZQXSENTINEL,10002,M,1983-01-02,fine
";

const VISITS: &str = "visit_id,patient_id
10,1
11,2
12,99
";

fn col(name: &str, from: &str, ty: &str, rest: &str) -> String {
    format!("[[columns]]\nname = \"{name}\"\nfrom = \"{from}\"\ntype = \"{ty}\"\n{rest}\n\n")
}

fn write_plan(dir: &Path, patients: &str, visits: &str, validate: &str) -> Plan {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/patients.csv"), patients).unwrap();
    std::fs::write(dir.join("data/visits.csv"), visits).unwrap();
    std::fs::write(
        dir.join("ehrlift.toml"),
        format!(
            "project = \"t\"\ninclude = [\"patients.toml\", \"visits.toml\"]\n[destination]\nurl = \"file://out\"\n[privacy]\nprofile = \"custom\"\n[keys]\nprovider = \"local\"\npath = \"keyring\"\n{validate}\n[sources.s]\nkind = \"csv\"\ndir = \"data\"\n"
        ),
    )
    .unwrap();
    let p = [
        col("id", "id", "int64", "rule = \"keep\"\nphi = \"none\""),
        col("name", "name", "utf8", "rule = \"pseudonym\"\nnamespace = \"name\"\nphi = \"name\""),
        col("zip3", "zip", "utf8", "rule = \"generalize\"\nto = \"zip3\"\nphi = \"geo\""),
        col("sex", "sex", "utf8", "rule = \"keep\"\nphi = \"quasi\""),
        col("birth", "birth", "date32", "format = \"%Y-%m-%d\"\nrule = \"keep\"\nphi = \"date\""),
        col("note", "note", "utf8", "null = [\"\"]\nrule = \"keep\"\nphi = \"none\""),
    ]
    .concat();
    std::fs::write(
        dir.join("patients.toml"),
        format!("table = \"patients\"\nsource = \"s\"\nfiles = \"patients.csv\"\nkey = [\"id\"]\n{p}"),
    )
    .unwrap();
    let v = [
        col("visit_id", "visit_id", "int64", "rule = \"keep\"\nphi = \"none\""),
        col("patient_id", "patient_id", "int64", "rule = \"keep\"\nphi = \"none\"\nreferences = \"patients.id\""),
    ]
    .concat();
    std::fs::write(
        dir.join("visits.toml"),
        format!("table = \"visits\"\nsource = \"s\"\nfiles = \"visits.csv\"\nkey = [\"visit_id\"]\n{v}"),
    )
    .unwrap();
    load_plan(&dir.join("ehrlift.toml"), &HashMap::<String, String>::new()).unwrap_or_else(|d| panic!("{d}"))
}

fn opts(sampling: Sampling) -> ProfileOptions {
    ProfileOptions { sampling, destination: None, keys: None }
}

fn table<'a>(r: &'a Report, name: &str) -> &'a TableReport {
    r.tables.iter().find(|t| t.table == name).unwrap()
}

fn column<'a>(t: &'a TableReport, name: &str) -> &'a ColumnReport {
    t.columns.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn full_profile_counts_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), PATIENTS, VISITS, "");
    let r = profile(&plan, &opts(Sampling::Full)).unwrap();
    let p = table(&r, "patients");
    assert!(p.complete && p.problem.is_none());
    assert_eq!((p.rows_read, p.rows_written, p.rows_quarantined), (5, 4, 1));
    assert_eq!(p.quarantine_reasons.get("invalid_date"), Some(&1));
    let birth = column(p, "birth");
    assert_eq!(birth.failures, 1);
    assert_eq!(
        birth.first_failures,
        vec![RowRef { file: "patients.csv".into(), line: 4, record: 3, byte_offset: birth.first_failures[0].byte_offset }]
    );
    // Duplicate key: id 2 again on line 5.
    let key = p.key.as_ref().unwrap();
    assert_eq!((key.duplicates, key.nulls), (1, 0));
    assert_eq!(key.first[0].line, 5);
    // Null rate of the note: one empty of four written.
    let note = column(p, "note");
    assert_eq!(note.nulls, 1);
    assert!((note.null_rate - 0.25).abs() < 1e-9);
    // Min/max only for phi = none.
    assert_eq!(column(p, "id").min.as_deref(), Some("1"));
    assert_eq!(column(p, "id").max.as_deref(), Some("5"));
    assert!(column(p, "name").min.is_none() && column(p, "sex").max.is_none());
    // Residual SSN in the kept note, at line 3.
    let ssn = p.residual_phi.iter().find(|x| x.detector == "ssn").expect("ssn found");
    assert_eq!((ssn.column.as_str(), ssn.count, ssn.first[0].line), ("note", 1, 3));
    // k-anonymity over zip3 and sex: {021,F} x2, {100,M} x2.
    let k = p.k_anonymity.as_ref().unwrap();
    assert_eq!((k.classes, k.k, k.records_below_5, k.records_below_11), (2, 2, 4, 4));
    assert!((k.prosecutor_risk_max - 0.5).abs() < 1e-9 && (k.prosecutor_risk_avg - 0.5).abs() < 1e-9);
    assert!(column(p, "birth").lossiness.is_empty());
    // The orphan visit on line 4.
    let v = table(&r, "visits");
    let fk = &v.foreign_keys[0];
    assert_eq!((fk.orphans, fk.exact, fk.first[0].line), (1, true, 4));
    assert_eq!(v.estimate.source_rows, Some(3));
    assert!(v.estimate.output_bytes > 0);
    // Problems ranked: errors first.
    assert_eq!(r.problems[0].severity, Severity::Error);
    assert!(r.problems.iter().any(|p| p.code == "duplicate_key"));
    assert!(r.problems.iter().any(|p| p.code == "ephemeral_key"));
    // The quarantine gate (default ratio 0) fails.
    assert!(!r.ok);
    assert!(r.gates.iter().any(|g| g.gate == "max_quarantine_ratio" && !g.passed));
    // No PHI-tagged value anywhere in the report.
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains(SENTINEL));
    assert!(!json.contains("02134") && !json.contains("1980"));
    // Nothing written: no destination, no keyring.
    assert!(!dir.path().join("out").exists());
    assert!(!dir.path().join("keyring").exists());
}

#[test]
fn sample_stops_at_n() {
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), PATIENTS, VISITS, "");
    let r = profile(&plan, &opts(Sampling::Sample(2))).unwrap();
    let p = table(&r, "patients");
    assert_eq!((p.rows_read, p.complete), (2, false));
    assert!(p.estimate.source_rows.is_some_and(|n| n >= 2));
    let r = profile(&plan, &opts(Sampling::Sample(3))).unwrap();
    assert!(table(&r, "visits").complete);
}

#[test]
fn distinct_approx_and_gates() {
    let dir = tempfile::tempdir().unwrap();
    let mut patients = String::from("id,name,zip,sex,birth,note\n");
    for i in 0..10_000 {
        patients.push_str(&format!("{i},{SENTINEL}{i},02134,F,1980-01-02,n{}\n", i % 7));
    }
    let plan = write_plan(
        dir.path(),
        &patients,
        "visit_id,patient_id\n1,5\n",
        "[validate]\nmin_k = 3\nfail_on = [\"duplicate_key\", \"fk_orphans\"]\n",
    );
    let r = profile(&plan, &opts(Sampling::Full)).unwrap();
    let p = table(&r, "patients");
    let d = column(p, "name").distinct_approx as f64;
    assert!((d - 10_000.0).abs() <= 200.0, "{d}");
    assert_eq!(column(p, "note").distinct_approx, 7);
    assert_eq!(p.k_anonymity.as_ref().unwrap().k, 10_000);
    assert!(r.ok, "{:?}", r.gates);
    assert!(r.gates.iter().any(|g| g.gate == "fail_on:duplicate_key" && g.passed));
    assert!(r.gates.iter().any(|g| g.gate == "min_k" && g.passed));
    assert!(!serde_json::to_string(&r).unwrap().contains(SENTINEL));
}

#[test]
fn unmapped_columns_and_unreadable_tables() {
    let dir = tempfile::tempdir().unwrap();
    let extra = PATIENTS.replacen("note\n", "note,secret\n", 1).replace("fine\n", "fine,x\n");
    let plan = write_plan(dir.path(), &extra, VISITS, "");
    std::fs::remove_file(dir.path().join("data/visits.csv")).unwrap();
    let r = profile(&plan, &opts(Sampling::Full)).unwrap();
    let p = table(&r, "patients");
    assert_eq!(p.source_columns.unmapped, vec!["secret".to_owned()]);
    assert!(p.rows_read > 0);
    let v = table(&r, "visits");
    assert!(v.problem.is_some() && v.rows_read == 0);
    assert!(r.problems.iter().any(|p| p.code == "unreadable" && p.severity == Severity::Error));
    assert!(r.problems.iter().any(|p| p.code == "unmapped_column"));
    assert!(!r.ok);
}
