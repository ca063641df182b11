//! The shipped Synthea mapping set against the real Synthea export.

use crate::harness::*;

#[test]
fn issue_2_synthea_loads_every_row_with_the_right_types() {
    let data = shared_data().join("synthea-csv");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let outcome = run(ehrlift()
        .args(["run", "--json"])
        .arg(repo().join("mappings/synthea/ehrlift.toml"))
        .arg("--dest")
        .arg(url(&dest))
        .env("SYNTHEA_DIR", &data))
    .expect(0)
    .json();
    let tables = outcome["tables"].as_array().unwrap();
    for required in [
        "patients",
        "encounters",
        "conditions",
        "observations",
        "medications",
        "procedures",
        "immunizations",
        "organizations",
        "providers",
        "payers",
    ] {
        assert!(tables.iter().any(|t| t["table"] == required), "{required} is mapped");
    }
    for t in tables {
        let name = t["table"].as_str().unwrap();
        // Count source records independently of ehrlift (quoted fields may hold newlines).
        let mut rdr = csv::Reader::from_path(data.join(format!("{name}.csv"))).unwrap();
        let expected = rdr.records().count() as u64;
        assert_eq!(t["rows_read"].as_u64(), Some(expected), "{name}");
        assert_eq!(t["rows_written"].as_u64(), Some(expected), "{name}");
        assert_eq!(t["rows_quarantined"], 0, "{name}");
    }
    let p = read_parquet(&dest.join("patients/part-000001.parquet"));
    let s = p[0].schema();
    let ty = |c: &str| s.field_with_name(c).unwrap().data_type().to_string();
    assert_eq!(ty("birth_date"), "Date32");
    assert_eq!(ty("lat"), "Float64");
    assert_eq!(ty("zip"), "Utf8");
    let e = read_parquet(&dest.join("encounters/part-000001.parquet"));
    let s = e[0].schema();
    assert!(s.field_with_name("start").unwrap().data_type().to_string().starts_with("Timestamp"));
    assert!(s.field_with_name("total_claim_cost").unwrap().data_type().to_string().starts_with("Decimal128"));
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
}
