//! `ehrlift validate --sample N | --full`: the data report, against the demo export, the
//! Synthea export and a PostgreSQL database with planted problems. Nothing is written to
//! the destination; no value reaches the summary, the JSON or the HTML.

use serde_json::Value;

use crate::db::{Legacy, db_plan, mapping};
use crate::harness::*;

fn table<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["tables"].as_array().unwrap().iter().find(|t| t["table"] == name).unwrap_or_else(|| panic!("no table {name}"))
}

fn column<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["columns"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no column {name}"))
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()))
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn problem_codes(r: &Value) -> Vec<String> {
    r["problems"].as_array().unwrap().iter().map(|p| p["code"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn issue_6_the_demo_report_counts_what_a_run_quarantines_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let reports = tmp.path().join("report");
    let out = run(ehrlift()
        .arg("validate")
        .arg(repo().join("mappings/demo/ehrlift.toml"))
        .arg("--dest")
        .arg(url(&dest))
        .args(["--full", "--json", "--report-dir"])
        .arg(&reports));
    // The demo's planted rows break its max_quarantine_ratio = 0 gate: exit 1, like a run.
    let r = out.json();
    assert_eq!(r["format"], 1);
    assert_eq!(r["sampling"], "full");
    let p = table(&r, "patients");
    assert_eq!((p["rows_read"].as_u64(), p["rows_written"].as_u64()), (Some(500), Some(498)));
    assert_eq!(p["quarantine_reasons"]["invalid_date"], 1);
    assert_eq!(p["quarantine_reasons"]["unmapped_code"], 1);
    assert_eq!(p["complete"], true);
    assert_eq!(table(&r, "visits")["quarantine_reasons"]["invalid_decimal"], 1);
    assert_eq!(table(&r, "labs")["rows_written"], 1200);
    let birth = column(p, "birth_date");
    assert_eq!(birth["failures"], 1);
    let first = &birth["first_failures"][0];
    assert!(first["file"].as_str().unwrap().ends_with("patients.csv") && first["line"].as_u64().unwrap() > 1, "{first}");
    // The same counts as a real run of the plan.
    let run_dest = tmp.path().join("run");
    run(ehrlift().arg("run").arg(repo().join("mappings/demo/ehrlift.toml")).arg("--dest").arg(url(&run_dest)));
    let m = manifest(&run_dest);
    for t in m["tables"].as_array().unwrap() {
        let rt = table(&r, t["table"].as_str().unwrap());
        for k in ["rows_read", "rows_written", "rows_quarantined", "quarantine_reasons"] {
            assert_eq!(rt[k], t[k], "{} {k}", t["table"]);
        }
    }
    assert!(!dest.exists(), "validate wrote to the destination");
    // The demo allows 1% quarantined rows ([run] max_quarantine_ratio = 0.01): the gates pass.
    assert_eq!(out.code(), 0, "{}", out.stderr());
    assert!(out.stderr().contains("PASS") && out.stderr().contains("max_quarantine_ratio"), "{}", out.stderr());
    // With a stricter [validate] gate the same data fails validation: exit 1.
    let strict = tmp.path().join("strict");
    copy_dir(&repo().join("mappings/demo"), &strict);
    let text = std::fs::read_to_string(strict.join("ehrlift.toml")).unwrap() + "\n[validate]\nmax_quarantine_ratio = 0.001\n";
    std::fs::write(strict.join("ehrlift.toml"), text).unwrap();
    let out = run(ehrlift().arg("validate").arg(strict.join("ehrlift.toml")).arg("--dest").arg(url(&dest)).arg("--full")).expect(1);
    assert!(out.stderr().contains("FAIL") && out.stderr().contains("patients"), "{}", out.stderr());
    let html = std::fs::read_to_string(reports.join("report.html")).unwrap();
    assert!(html.contains("patients") && html.contains("invalid_date"));
    let saved: Value = serde_json::from_slice(&std::fs::read(reports.join("report.json")).unwrap()).unwrap();
    assert_eq!(saved["tables"], r["tables"]);

    // A sample stops early and says so.
    let s = run(ehrlift().arg("validate").arg(repo().join("mappings/demo/ehrlift.toml")).args(["--sample", "100", "--json"])).json();
    assert_eq!(s["sampling"]["sample"], 100);
    assert_eq!(table(&s, "patients")["rows_read"], 100);
    assert_eq!(table(&s, "patients")["complete"], false);
}

#[test]
fn issue_6_synthea_validates_clean_in_full() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let out = run(ehrlift()
        .arg("validate")
        .arg(repo().join("mappings/synthea/ehrlift.toml"))
        .arg("--dest")
        .arg(url(&dest))
        .args(["--full", "--json"]))
    .expect(0);
    let r = out.json();
    assert_eq!(r["ok"], true);
    assert_eq!(r["tables"].as_array().unwrap().len(), 17);
    for t in r["tables"].as_array().unwrap() {
        assert_eq!(t["rows_quarantined"], 0, "{}", t["table"]);
        assert!(t["problem"].is_null());
        assert_eq!(t["safe_harbor"].as_array().unwrap().len(), 18, "{}", t["table"]);
    }
    assert!(out.stderr().lines().count() <= 60, "one screen:\n{}", out.stderr());
    assert!(!dest.exists());
}

#[test]
fn issue_6_planted_problems_in_postgres_appear_in_every_output_with_counts_and_positions_and_no_value() {
    let Some(db) = Legacy::postgres("report") else { return };
    db.exec(
        "CREATE TABLE patients (id bigint, mrn text, birth text, note text);
         INSERT INTO patients SELECT i, 'SENTINELMRN' || i, '1980-01-' || lpad((1 + i % 28)::text, 2, '0'), 'routine visit' FROM generate_series(1, 40) i;
         UPDATE patients SET birth = '1980-02-30' WHERE id = 3;
         UPDATE patients SET note = 'call SENTINEL at 212-555-0187 or ssn 078-05-1120' WHERE id = 5;
         INSERT INTO patients VALUES (7, 'SENTINELMRN7b', '1980-01-08', 'routine visit');
         CREATE TABLE labs (id bigint PRIMARY KEY, value text, added_later text);
         INSERT INTO labs VALUES (1, 'SENTINELLAB', 'SENTINELNEW');
         CREATE TABLE visits (id bigint PRIMARY KEY, patient_id bigint);
         INSERT INTO visits SELECT i, 1 + i % 40 FROM generate_series(1, 30) i;
         INSERT INTO visits VALUES (31, 99);",
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let plan = db_plan(
        tmp.path(),
        "",
        &db.source("emr", ""),
        &[
            (
                "patients",
                mapping(
                    "patients",
                    "emr",
                    "source_table = \"patients\"\nkey = [\"id\"]\ndrop = [\"mrn\"]",
                    &[("id", "int64", ""), ("birth", "date32", ""), ("note", "utf8", "")],
                ),
            ),
            (
                "visits",
                mapping(
                    "visits",
                    "emr",
                    "source_table = \"visits\"\nkey = [\"id\"]",
                    &[("id", "int64", ""), ("patient_id", "int64", "references = \"patients.id\"")],
                ),
            ),
            ("labs", mapping("labs", "emr", "source_table = \"labs\"\nkey = [\"id\"]", &[("id", "int64", ""), ("value", "utf8", "")])),
        ],
    );
    let reports = tmp.path().join("report");
    let out =
        run(ehrlift().arg("validate").arg(&plan).arg("--dest").arg(url(&dest)).args(["--full", "--json", "--report-dir"]).arg(&reports));
    let r = out.json();
    let p = table(&r, "patients");
    assert!(p["problem"].is_null(), "{}", serde_json::to_string_pretty(p).unwrap());
    assert_eq!(p["rows_read"], 41);
    assert_eq!(p["quarantine_reasons"]["invalid_date"], 1);
    assert_eq!(column(p, "birth")["failures"], 1);
    assert_eq!(p["key"]["duplicates"], 1);
    // Positions: records of `emr:patients` in key order (the second id 7 is the 8th row).
    let rec = |v: &Value| (v["file"].as_str().unwrap().to_owned(), v["record"].as_u64().unwrap());
    assert_eq!(rec(&p["key"]["first"][0]), ("emr:patients".to_owned(), 8));
    assert_eq!(rec(&column(p, "birth")["first_failures"][0]), ("emr:patients".to_owned(), 3));
    // A column that appeared in the database: a run would refuse the table; the report
    // names it (an error that fails validation) and measures the rest.
    let labs = table(&r, "labs");
    assert!(labs["problem"].is_null(), "{labs}");
    assert_eq!(labs["source_columns"]["new"], serde_json::json!(["added_later"]));
    assert_eq!(labs["rows_read"], 1);
    assert_eq!(out.code(), 1, "{}", out.stderr());
    assert_eq!(r["ok"], false);
    let residual: Vec<&Value> = p["residual_phi"].as_array().unwrap().iter().filter(|x| x["column"] == "note").collect();
    assert!(residual.iter().any(|x| x["detector"] == "ssn" && x["count"] == 1), "{residual:?}");
    assert!(residual.iter().all(|x| rec(&x["first"][0]) == ("emr:patients".to_owned(), 5)), "{residual:?}");
    assert!(residual.iter().any(|x| x["detector"] == "phone" && x["count"] == 1), "{residual:?}");
    // Visit 31 names patient 99, who does not exist; visit 2 names patient 3, whose row
    // a run would quarantine (its bad date): both would be orphans in what is written.
    let v = table(&r, "visits");
    assert_eq!(v["foreign_keys"][0]["orphans"], 2);
    let firsts: Vec<u64> = v["foreign_keys"][0]["first"].as_array().unwrap().iter().map(|x| x["record"].as_u64().unwrap()).collect();
    assert_eq!(firsts, [2, 31], "positions are the visits' records");
    assert_eq!(v["foreign_keys"][0]["references"], "patients.id");
    let codes = problem_codes(&r);
    for code in ["duplicate_key", "fk_orphans", "residual_phi", "unmapped_column", "new_column", "quarantine"] {
        assert!(codes.iter().any(|c| c == code), "{code} missing from {codes:?}");
    }
    // Every output names the problems and none holds a value.
    let html = std::fs::read_to_string(reports.join("report.html")).unwrap();
    let summary = out.stderr();
    for (what, text) in [("json", out.stdout()), ("summary", summary.clone()), ("html", html.clone())] {
        for planted in ["SENTINEL", "078-05-1120", "212-555-0187", "1980-02-30"] {
            assert!(!text.contains(planted), "{what} holds the planted value {planted}");
        }
    }
    for code in ["duplicate_key", "fk_orphans", "residual_phi", "unmapped_column"] {
        assert!(summary.contains(code) && html.contains(code), "{code}:\n{summary}");
    }
    assert!(summary.contains("added_later") && html.contains("added_later"));
    assert!(!dest.exists(), "validate wrote to the destination");
    assert!(!tmp.path().join("keyring").exists() || std::fs::read_dir(tmp.path().join("keyring")).unwrap().count() == 0);
}
