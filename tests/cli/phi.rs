//! Sentinel values planted in bad cells must never appear in logs, errors, reports,
//! run metadata or quarantine objects, whatever the log format and verbosity.

use crate::harness::*;

const SENTINEL: &str = "PHI-SENTINEL-7f3a";

#[test]
fn issue_2_no_cell_value_reaches_logs_reports_or_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    let s = SENTINEL;
    // Every kind of failure carries the sentinel: bad int, date, decimal, bool, code,
    // ragged rows (short and long), invalid UTF-8 next to it, a null in a required column.
    let mut text = format!("id,born,amount,flag,code,name\n1,2001-01-01,1.00,Y,A,ok\n{s}1,2001-01-01,1.00,Y,A,x\n2,{s}2,1.00,Y,A,x\n3,2001-01-01,{s}3,Y,A,x\n4,2001-01-01,1.00,{s}4,A,x\n5,2001-01-01,1.00,Y,{s}5,x\n6,{s}6\n7,2001-01-01,1.00,Y,A,x,{s}7\n,2001-01-01,1.00,Y,A,{s}8\n").into_bytes();
    text.extend_from_slice(format!("9,2001-01-01,1.00,Y,{s}9").as_bytes());
    text.extend_from_slice(b"\xff,x\n");
    std::fs::write(tmp.path().join("data/a.csv"), &text).unwrap();
    let plan = write_plan(
        tmp.path(),
        "max_quarantine_ratio = 0.5",
        "",
        r#"table = "t"
source = "src"
files = "a.csv"
[[columns]]
name = "id"
type = "int64"
nullable = false
rule = "keep"
[[columns]]
name = "born"
type = "date32"
rule = "keep"
[[columns]]
name = "amount"
type = "decimal(5,2)"
rule = "keep"
[[columns]]
name = "flag"
type = "bool"
true_values = ["Y"]
false_values = ["N"]
rule = "keep"
[[columns]]
name = "code"
type = "utf8"
recode = { A = "alpha" }
rule = "keep"
[[columns]]
name = "name"
type = "utf8"
rule = "drop"
"#,
    );
    let dest = tmp.path().join("out");
    for format in ["plain", "json"] {
        let r = run(ehrlift().args(["--log-format", format, "-vv", "run", "--fresh", "--json"]).arg(&plan).arg("--dest").arg(url(&dest)));
        assert_eq!(r.code(), 1, "over the threshold: {}", r.stderr());
        assert!(!r.stderr().contains("PHI-SENTINEL") && !r.stdout().contains("PHI-SENTINEL"), "{format}: sentinel in output");
    }
    // Now under the threshold, so the run completes and writes quarantine.
    std::fs::write(
        tmp.path().join("ehrlift.toml"),
        std::fs::read_to_string(&plan).unwrap().replace("max_quarantine_ratio = 0.5", "max_quarantine_ratio = 0.95"),
    )
    .unwrap();
    let r = run(ehrlift().args(["-vv", "run", "--fresh", "--json"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    let t = &r.json()["tables"][0];
    assert_eq!(t["rows_written"], 1);
    assert_eq!(t["rows_quarantined"], 9);
    for reason in [
        "invalid_integer",
        "invalid_date",
        "invalid_decimal",
        "invalid_boolean",
        "unmapped_code",
        "missing_fields",
        "extra_fields",
        "null_not_allowed",
        "invalid_encoding",
    ] {
        assert_eq!(t["quarantine_reasons"][reason], 1, "{reason}");
    }
    for (key, bytes) in snapshot(&dest) {
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains("PHI-SENTINEL"), "sentinel found in {key}");
    }
    for out in [r.stderr(), r.stdout()] {
        assert!(!out.contains("PHI-SENTINEL"));
    }
    let st = run(ehrlift().args(["status", "--json"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    assert!(!st.stdout().contains("PHI-SENTINEL"));
}
