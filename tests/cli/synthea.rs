//! The shipped Synthea mapping set, under Safe Harbor, against the real Synthea export.

use std::collections::{BTreeMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use crate::harness::*;

/// Every cell of every output Parquet object (data and quarantine) as text, by table/column.
fn cells(dest: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, _) in snapshot(dest).into_iter().filter(|(p, _)| p.ends_with(".parquet")) {
        let table = path.split('/').rev().nth(1).unwrap().to_owned();
        for b in read_parquet(&dest.join(&path)) {
            push_cells(&mut out, &table, &b);
        }
    }
    out
}

fn push_cells(out: &mut BTreeMap<String, Vec<String>>, table: &str, b: &RecordBatch) {
    for (f, col) in b.schema().fields().iter().zip(b.columns()) {
        let text = arrow_cast::cast(col, &DataType::Utf8).unwrap();
        let text = text.as_string::<i32>();
        let v = out.entry(format!("{table}.{}", f.name())).or_default();
        v.extend((0..text.len()).filter(|&i| text.is_valid(i)).map(|i| text.value(i).to_owned()));
    }
}

#[test]
fn issue_3_synthea_under_safe_harbor_leaks_no_identifier_and_still_joins() {
    let data = shared_data().join("synthea-csv");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let outcome = run(ehrlift()
        .args(["run", "--json"])
        .arg(repo().join("mappings/synthea/ehrlift.toml"))
        .arg("--dest")
        .arg(url(&dest))
        .env("SYNTHEA_DIR", &data)
        .env("EHRLIFT_KEYRING", tmp.path().join("keys")))
    .expect(0)
    .json();
    let tables = outcome["tables"].as_array().unwrap();
    for required in ["patients", "encounters", "conditions", "observations", "medications", "procedures", "immunizations", "claims"] {
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

    // The identifiers of every patient, straight from the source file.
    let mut rdr = csv::Reader::from_path(data.join("patients.csv")).unwrap();
    let h = rdr.headers().unwrap().clone();
    let at = |n: &str| h.iter().position(|x| x == n).unwrap();
    let mut exact = HashSet::new(); // values that must not appear as a cell
    let mut inner = HashSet::new(); // values that must not appear inside any cell
    let mut ids = HashSet::new();
    for r in rdr.records() {
        let r = r.unwrap();
        ids.insert(r[at("Id")].to_owned());
        for c in ["SSN", "DRIVERS", "PASSPORT", "FIRST", "LAST", "MAIDEN", "ADDRESS"] {
            if r[at(c)].len() >= 4 {
                inner.insert(r[at(c)].to_owned());
            }
        }
        exact.insert(r[at("BIRTHDATE")].to_owned());
        exact.insert(r[at("ZIP")].to_owned());
        inner.insert(r[at("Id")].to_owned());
    }
    exact.retain(|v| !v.is_empty());
    let all = cells(&dest);
    let mut leaks = Vec::new();
    for (col, values) in &all {
        for v in values {
            if exact.contains(v) || inner.iter().any(|s| v.contains(s.as_str())) {
                leaks.push(col.clone());
                break;
            }
        }
    }
    assert!(leaks.is_empty(), "source identifiers survive in {leaks:?}");

    // Patient keys are surrogates (UUID v4, none equal to a source id) that still join.
    let patients: HashSet<&str> = all["patients.id"].iter().map(String::as_str).collect();
    assert_eq!(patients.len(), ids.len());
    assert!(patients.iter().all(|s| s.len() == 36 && s.as_bytes()[14] == b'4' && !ids.contains(*s)));
    for t in ["encounters", "conditions", "observations", "medications", "procedures", "immunizations", "claims", "payer_transitions"] {
        let col = all
            .keys()
            .find(|k| k.starts_with(&format!("{t}.")) && k.ends_with("patient_id"))
            .unwrap_or_else(|| panic!("{t} has a patient_id"));
        let orphans = all[col].iter().filter(|p| !patients.contains(p.as_str())).count();
        assert_eq!(orphans, 0, "{col} joins patients.id");
    }
    let encounters: HashSet<&str> = all["encounters.id"].iter().map(String::as_str).collect();
    assert!(all["conditions.encounter_id"].iter().all(|e| encounters.contains(e.as_str())), "conditions join encounters");

    // Types: years where dates were, ZIP3, and the manifest names the profile and key.
    let p = read_parquet(&dest.join("patients/part-000001.parquet"));
    let s = p[0].schema();
    assert_eq!(s.field_with_name("birth_date").unwrap().data_type(), &DataType::Int32);
    assert!(s.field_with_name("lat").is_err() && s.field_with_name("ssn").is_err());
    assert!(all["patients.zip"].iter().all(|z| z.len() == 3));
    let m = manifest(&dest);
    assert_eq!(m["profile"], "safe_harbor");
    assert!(m["key_ids"][0].as_str().unwrap().starts_with("local:"));
    assert_eq!(m["zip3_list"], "census-2000+2010");
    run(ehrlift().arg("verify").arg(&dest)).expect(0);

    // A second run into the same destination (fresh tables, same vault) gives every
    // patient the same surrogate.
    run(ehrlift()
        .args(["run", "--fresh"])
        .arg(repo().join("mappings/synthea/ehrlift.toml"))
        .arg("--dest")
        .arg(url(&dest))
        .env("SYNTHEA_DIR", &data)
        .env("EHRLIFT_KEYRING", tmp.path().join("keys")))
    .expect(0);
    let again = cells(&dest);
    assert_eq!(again["patients.id"], all["patients.id"]);
    assert_eq!(again["claims.patient_id"], all["claims.patient_id"]);
}
