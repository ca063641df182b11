use std::collections::BTreeMap;

use ehrlift_deid::policy::{Coverage, CoveredBy};
use ehrlift_pipeline::report::{
    Estimate, ForeignKeyCheck, GateResult, KAnonymity, KeyCheck, Problem, REPORT_FORMAT, ResidualPhi, SourceColumns,
};

use super::*;

fn at(file: &str, line: u64, record: u64) -> RowRef {
    RowRef { file: file.into(), line, record, byte_offset: line * 80 }
}

fn table(name: &str) -> TableReport {
    TableReport {
        table: name.into(),
        inputs: vec![format!("{name}.csv")],
        problem: None,
        complete: false,
        rows_read: 1000,
        rows_written: 990,
        rows_quarantined: 10,
        quarantine_reasons: BTreeMap::from([("bad_date".to_string(), 7), ("overflow".to_string(), 3)]),
        rows_passed_over: 0,
        columns: vec![
            ColumnReport {
                name: "birth_year".into(),
                from: "DOB".into(),
                r#type: "int32".into(),
                rule: "generalize(year)".into(),
                phi: Some("date".into()),
                failures: 7,
                failure_reasons: BTreeMap::from([("bad_date".to_string(), 7)]),
                first_failures: vec![at(&format!("{name}.csv"), 12, 11)],
                nulls: 99,
                null_rate: 0.1,
                distinct_approx: 80,
                min: None,
                max: None,
                lossiness: vec![],
            },
            ColumnReport {
                name: "weight_kg".into(),
                from: "WT".into(),
                r#type: "decimal(5,1)".into(),
                rule: "keep".into(),
                phi: Some("none".into()),
                failures: 3,
                failure_reasons: BTreeMap::from([("overflow".to_string(), 3)]),
                first_failures: vec![],
                nulls: 0,
                null_rate: 0.0,
                distinct_approx: 400,
                min: Some("2.5".into()),
                max: Some("180.0".into()),
                lossiness: vec!["rounds to 1 decimal".into()],
            },
        ],
        key: Some(KeyCheck { columns: vec!["id".into()], duplicates: 2, first: vec![at("db:public.t", 0, 5)], nulls: 0 }),
        foreign_keys: vec![ForeignKeyCheck {
            column: "patient_id".into(),
            references: "patients.id".into(),
            orphans: 4,
            first: vec![at(&format!("{name}.csv"), 40, 39)],
            exact: false,
        }],
        source_columns: SourceColumns { unmapped: vec!["EXTRA".into()], unclassified: vec![], new: vec!["NEWCOL".into()] },
        residual_phi: vec![ResidualPhi { column: "note".into(), detector: "phone".into(), count: 2, first: vec![at("n.csv", 3, 2)] }],
        safe_harbor: vec![
            Coverage { category: "name", columns: vec![] },
            Coverage { category: "date", columns: vec![CoveredBy { column: "birth_year".into(), rule: "generalize(year)".into() }] },
        ],
        k_anonymity: Some(KAnonymity {
            columns: vec!["birth_year".into(), "zip3".into()],
            classes: 120,
            k: 3,
            records_below_5: 9,
            records_below_11: 40,
            prosecutor_risk_max: 1.0 / 3.0,
            prosecutor_risk_avg: 0.12,
        }),
        estimate: Estimate { source_bytes: Some(5_000_000), source_rows: Some(48_000), output_bytes: 1_200_000, seconds: 75.0 },
    }
}

fn report(tables: usize, problems: usize) -> Report {
    let mut names: Vec<String> = (0..tables).map(|i| format!("table_{i:02}")).collect();
    names[0] = "<script>alert('x')</script>".into();
    let codes = ["duplicate_key", "conversion_failures", "fk_orphans", "residual_phi", "low_k", "lossy_type"];
    let problems = (0..problems)
        .map(|i| Problem {
            severity: [Severity::Error, Severity::Warning, Severity::Info][(i * 3 / problems.max(1)).min(2)],
            code: codes[i % codes.len()].into(),
            table: names[i % tables].clone(),
            column: (i % 2 == 0).then(|| "birth_year".into()),
            count: (i as u64 + 1) * 7,
            message: "rows whose value did not convert to the declared type".into(),
        })
        .collect();
    Report {
        format: REPORT_FORMAT,
        tool_version: "0.1.0".into(),
        generated_at: "2025-01-02T03:04:05Z".into(),
        plan: "mappings/demo/ehrlift.toml".into(),
        project: "demo & co".into(),
        profile: "safe_harbor".into(),
        sampling: Sampling::Sample(1000),
        destination: Some(Preflight { target: "file:///tmp/out".into(), checks: vec!["writable".into()], problem: None }),
        keys: None,
        tables: names.iter().map(|n| table(n)).collect(),
        problems,
        gates: vec![
            GateResult { gate: "max_quarantine_ratio".into(), passed: true, detail: "1.0% ≤ 2.0%".into() },
            GateResult { gate: "min_k".into(), passed: false, detail: "k 3 < 5".into() },
            GateResult { gate: "fail_on:residual_phi".into(), passed: false, detail: "17 tables".into() },
        ],
        ok: false,
    }
}

#[test]
fn html_is_self_contained() {
    let h = html(&report(3, 8));
    for external in ["http://", "https://", "src=", "href=\"//", "url(", "@import", "<link", "<script"] {
        assert!(!h.contains(external), "found {external:?}");
    }
    assert!(h.starts_with("<!DOCTYPE html>") && h.trim_end().ends_with("</html>"));
    assert!(h.contains("<svg"), "charts are inline SVG");
}

#[test]
fn html_escapes_every_string() {
    let h = html(&report(3, 8));
    assert!(h.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(h.contains("demo &amp; co"));
    assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
}

#[test]
fn html_names_every_table_and_problem() {
    let r = report(5, 12);
    let h = html(&r);
    for t in &r.tables {
        assert!(h.contains(&esc(&t.table)), "{}", t.table);
    }
    for p in &r.problems {
        assert!(h.contains(&format!("<code>{}</code>", p.code)), "{}", p.code);
    }
    assert!(h.contains("table_01.csv:12 (record 11)"), "positions are file:line (record N)");
    assert!(h.contains("db:public.t (record 5)"), "database rows have no line");
    assert!(h.contains("FAIL") && h.contains("PASS"));
}

#[test]
fn terminal_summary_fits_one_screen() {
    let r = report(17, 40);
    let s = terminal_summary(&r);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines.len() <= 40, "{} lines:\n{s}", lines.len());
    assert!(lines[0].contains("FAILED") && lines[0].contains("demo & co") && lines[0].contains("safe_harbor"));
    for t in r.tables.iter().skip(1) {
        assert!(s.contains(&t.table), "{}", t.table);
    }
    assert!(s.contains("  PASS  max_quarantine_ratio: 1.0% ≤ 2.0%"));
    assert!(s.contains("  FAIL  min_k: k 3 < 5"));
    assert!(s.contains("ERROR") && s.contains("duplicate_key"));
    assert!(s.contains("more (see report.json / report.html)"));
    assert!(s.contains("10 (1.0%)"));
}

#[test]
fn terminal_summary_without_problems_or_gates() {
    let mut r = report(2, 0);
    r.gates.clear();
    r.ok = true;
    let s = terminal_summary(&r);
    assert!(s.starts_with("ehrlift validate: ok"));
    assert!(s.contains("Problems: none") && s.contains("Gates: none declared"));
    assert!(!s.contains("more (see"));
}

#[test]
fn numbers() {
    assert_eq!(num(0), "0");
    assert_eq!(num(999), "999");
    assert_eq!(num(1000), "1,000");
    assert_eq!(num(1_234_567), "1,234,567");
    assert_eq!(pct(1, 10_000), "<0.1%");
    assert_eq!(pct(0, 0), "0%");
    assert_eq!(bytes(1536), "1.5 KiB");
    assert_eq!(duration(75.0), "1 min 15 s");
    assert_eq!(clip("abcdef", 4), "abc…");
}
