//! The README's first command, verify, and what verify catches.

use crate::harness::*;

fn run_demo(dest: &std::path::Path) -> Run {
    run(ehrlift().args(["run", "--json"]).arg(repo().join("mappings/demo/ehrlift.toml")).arg("--dest").arg(url(dest)))
}

#[test]
fn issue_2_demo_writes_parquet_and_a_manifest_that_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let outcome = run_demo(&dest).expect(0).json();
    assert_eq!(outcome["status"], "complete");
    let m = manifest(&dest);
    assert_eq!(m["tool"], "ehrlift");
    assert_eq!(m["plan"]["sha256"].as_str().unwrap().len(), 64);

    // Every data object reads back, and row totals match the manifest, per object and per table.
    for obj in m["objects"].as_array().unwrap() {
        let batches = read_parquet(&dest.join(obj["key"].as_str().unwrap()));
        assert_eq!(rows(&batches) as u64, obj["rows"].as_u64().unwrap(), "{}", obj["key"]);
        assert_eq!(obj["sha256"].as_str().unwrap().len(), 64);
        assert!(obj["source"]["first"]["byte"].is_u64() && obj["schema_fingerprint"].is_string());
    }
    let by_table = |t: &str| m["tables"].as_array().unwrap().iter().find(|x| x["table"] == t).unwrap().clone();
    let patients = by_table("patients");
    assert_eq!(patients["rows_read"], 500);
    assert_eq!(patients["rows_written"], 498);
    assert_eq!(patients["quarantine_reasons"]["invalid_date"], 1);
    assert_eq!(patients["quarantine_reasons"]["unmapped_code"], 1);
    assert_eq!(by_table("visits")["quarantine_reasons"]["invalid_decimal"], 1);
    assert_eq!(by_table("labs")["rows_written"], 1200);

    // Types are what the mapping says.
    let p = read_parquet(&dest.join("patients/part-000001.parquet"));
    let schema = p[0].schema();
    let ty = |c: &str| schema.field_with_name(c).unwrap().data_type().to_string();
    assert_eq!(ty("birth_date"), "Int32", "Safe Harbor: birth years");
    assert_eq!(ty("active"), "Boolean");
    assert_eq!(ty("created_at"), "Int32");
    assert_eq!(ty("patient_id"), "Utf8", "surrogates are UUID text");
    assert!(schema.field_with_name("ssn").is_err(), "rule = drop columns are not written");
    assert_eq!(m["profile"], "safe_harbor");

    // Quarantine names file, record, line, column and reason.
    let q = read_parquet(&dest.join("_quarantine/patients/part-000001.parquet"));
    let cols: Vec<String> = q[0].schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(cols, ["file", "record", "line", "byte_offset", "column", "reason"]);

    run(ehrlift().arg("verify").arg(&dest)).expect(0);
}

#[test]
fn issue_2_a_finished_run_is_a_no_op_and_fresh_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    run_demo(&dest).expect(0);
    let before = snapshot(&dest);
    let again = run_demo(&dest).expect(0).json();
    assert_eq!(again["already_finished"], true);
    assert_eq!(snapshot(&dest), before, "a second run must not touch the destination");

    let fresh =
        run(ehrlift().args(["run", "--fresh", "--json"]).arg(repo().join("mappings/demo/ehrlift.toml")).arg("--dest").arg(url(&dest)))
            .expect(0)
            .json();
    assert_ne!(fresh["run_id"], again["run_id"]);
    let after = snapshot(&dest);
    for key in ["patients/part-000001.parquet", "visits/part-000002.parquet"] {
        assert_eq!(after[key], before[key], "parts are deterministic: {key}");
    }
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
}

#[test]
fn issue_2_verify_names_altered_missing_and_extra_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    run_demo(&dest).expect(0);

    let part = dest.join("visits/part-000002.parquet");
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&part, &bytes).unwrap();
    let r = run(ehrlift().args(["verify", "--json"]).arg(&dest)).expect(1);
    assert!(r.stderr().contains("visits/part-000002.parquet: altered"), "{}", r.stderr());
    assert_eq!(r.json()["findings"].as_array().unwrap().len(), 1);

    std::fs::remove_file(dest.join("labs/part-000001.parquet")).unwrap();
    std::fs::write(dest.join("labs/part-000099.parquet"), b"stray").unwrap();
    let r = run(ehrlift().arg("verify").arg(url(&dest))).expect(1);
    assert!(r.stderr().contains("labs/part-000001.parquet: missing"), "{}", r.stderr());
    assert!(r.stderr().contains("labs/part-000099.parquet: extra"), "{}", r.stderr());
}

#[test]
fn issue_2_validate_reports_config_errors_with_exit_2() {
    let r = run(ehrlift().arg("validate").arg(repo().join("mappings/demo/ehrlift.toml"))).expect(0);
    assert!(r.stderr().contains("is valid: 3 table(s)"), "{}", r.stderr());

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::write(tmp.path().join("data/a.csv"), "id,extra\n1,2\n").unwrap();
    let plan = write_plan(
        tmp.path(),
        "",
        "",
        "table = \"t\"\nsource = \"src\"\nfiles = \"a.csv\"\n[[columns]]\nname = \"id\"\ntype = \"int64\"\nrule = \"keep\"\n",
    );
    let r = run(ehrlift().arg("validate").arg(&plan)).expect(2);
    assert!(r.stderr().contains("`extra`") && r.stderr().contains("neither mapped nor listed in `drop`"), "{}", r.stderr());
    // run refuses too, before writing anything.
    let dest = tmp.path().join("out");
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest))).expect(2);
    assert!(!dest.exists());

    std::fs::write(tmp.path().join("tables/t.toml"), "table = \"t\"\nsource = \"src\"\nfile = \"a.csv\"\n").unwrap();
    let r = run(ehrlift().arg("validate").arg(&plan)).expect(2);
    assert!(r.stderr().contains("t.toml:3: mapping: unknown key `file`"), "{}", r.stderr());
    assert!(r.stderr().contains("missing `files`"), "{}", r.stderr());
}

#[test]
fn issue_2_status_shows_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let plan = repo().join("mappings/demo/ehrlift.toml");
    let r = run(ehrlift().arg("status").arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    assert!(r.stderr().contains("no run"), "{}", r.stderr());
    run_demo(&dest).expect(0);
    let s = run(ehrlift().args(["status", "--json"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(0).json();
    assert_eq!(s["state"]["status"], "complete");
    assert_eq!(s["tables"].as_array().unwrap().len(), 3);
}

#[test]
fn issue_2_json_logs_are_one_json_object_per_line_with_table_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let r =
        run(ehrlift().args(["--log-format", "json", "run"]).arg(repo().join("mappings/demo/ehrlift.toml")).arg("--dest").arg(url(&dest)))
            .expect(0);
    let lines: Vec<serde_json::Value> = r
        .stderr()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "run started" && l["run_id"].is_string()), "{}", r.stderr());
    let finished: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "table finished").collect();
    assert_eq!(finished.len(), 3, "{}", r.stderr());
    assert!(finished.iter().all(|l| l["table"].is_string() && l["rows_read"].is_u64() && l["level"] == "INFO"));
    assert!(lines.iter().any(|l| l["message"] == "run complete" && l["manifest"].as_str().is_some_and(|m| m.ends_with("manifest.json"))));
    // Lines inside the run list its span with the run id, and inside a table's work the
    // table's span: a log stack can group every line by run and table.
    let run_id = lines.iter().find(|l| l["message"] == "run started").unwrap()["run_id"].clone();
    for l in &finished {
        let spans = l["spans"].as_array().unwrap_or_else(|| panic!("no spans: {l}"));
        assert_eq!(spans[0]["name"], "run");
        assert_eq!(spans[0]["run_id"], run_id);
        assert_eq!((&spans[1]["name"], &spans[1]["table"]), (&serde_json::json!("table"), &l["table"]), "{l}");
    }
    // Plain logs keep to the events' own fields.
    let plain = run(ehrlift().arg("run").arg(repo().join("mappings/demo/ehrlift.toml")).arg("--dest").arg(url(&tmp.path().join("plain"))))
        .expect(0);
    let line = plain.stderr().lines().find(|l| l.contains("table finished")).unwrap().to_owned();
    assert!(!line.contains("run_id") && line.matches("table=").count() == 1, "{line}");
}
