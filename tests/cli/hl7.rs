//! HL7 v2 message files as a source: the shipped ADT and ORU plans over the shared
//! corpus (../shared/data/hl7v2), quarantine of bad messages, no value in any log, and
//! kill -9 then rerun giving identical output.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};

use crate::harness::*;

/// Every row of a table as column name → displayed value ("" for null).
fn table_rows(dest: &Path, table: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for (k, _) in objects(dest).iter().filter(|(k, _)| k.starts_with(&format!("{table}/")) && k.ends_with(".parquet")) {
        for b in read_parquet(&dest.join(k)) {
            out.extend(batch_rows(&b));
        }
    }
    out
}

fn batch_rows(b: &RecordBatch) -> Vec<BTreeMap<String, String>> {
    let opts = FormatOptions::default();
    let fmts: Vec<ArrayFormatter<'_>> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
    (0..b.num_rows())
        .map(|i| {
            b.schema()
                .fields()
                .iter()
                .zip(&fmts)
                .zip(b.columns())
                .map(|((f, fmt), c)| (f.name().clone(), if c.is_null(i) { String::new() } else { fmt.value(i).to_string() }))
                .collect()
        })
        .collect()
}

/// (file, record, byte_offset, column, reason) of every quarantined item of a table.
fn quarantine(dest: &Path, table: &str) -> Vec<(String, u64, u64, String, String)> {
    let mut out = Vec::new();
    for (k, _) in objects(dest).iter().filter(|(k, _)| k.starts_with(&format!("_quarantine/{table}/"))) {
        for b in read_parquet(&dest.join(k)) {
            for r in batch_rows(&b) {
                out.push((
                    r["file"].clone(),
                    r["record"].parse().unwrap(),
                    r["byte_offset"].parse().unwrap(),
                    r["column"].clone(),
                    r["reason"].clone(),
                ));
            }
        }
    }
    out
}

fn shipped(plan: &str, dest: &Path, keyring: &Path) -> Command {
    let mut c = ehrlift();
    c.args(["run", "--json"]).arg(repo().join(format!("mappings/{plan}/ehrlift.toml")));
    c.env("EHRLIFT_DEST", dest).env("EHRLIFT_KEYRING", keyring).env_remove("HL7_DIR");
    c
}

fn find<'a>(rows: &'a [BTreeMap<String, String>], want: &[(&str, &str)]) -> &'a BTreeMap<String, String> {
    let hits: Vec<_> = rows.iter().filter(|r| want.iter().all(|(k, v)| r[*k] == *v)).collect();
    assert_eq!(hits.len(), 1, "expected one row with {want:?}, found {}", hits.len());
    hits[0]
}

#[test]
fn issue_7_shipped_adt_plan_loads_the_corpus_and_quarantines_the_malformed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (dest, keyring) = (tmp.path().join("adt"), tmp.path().join("keyring"));
    let r = run(&mut shipped("hl7-adt", &dest, &keyring)).expect(0);
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
    let tables = r.json()["tables"].clone();
    // Every item is accounted for: rows, quarantined or passed over as another type.
    let m = manifest(&dest);
    for (t, mt) in tables.as_array().unwrap().iter().zip(m["tables"].as_array().unwrap()) {
        assert_eq!(t["rows_passed_over"], mt["rows_passed_over"]);
        assert!(t["rows_passed_over"].as_u64().unwrap() > 50, "ORU, SIU, MDM … messages: {t}");
    }
    let report = run(ehrlift()
        .args(["validate", "--full", "--json"])
        .arg(repo().join("mappings/hl7-adt/ehrlift.toml"))
        .env("EHRLIFT_DEST", tmp.path().join("report-dest"))
        .env("EHRLIFT_KEYRING", &keyring)
        .env_remove("HL7_DIR"));
    for (t, rt) in tables.as_array().unwrap().iter().zip(report.json()["tables"].as_array().unwrap()) {
        for k in ["rows_read", "rows_written", "rows_quarantined", "rows_passed_over"] {
            assert_eq!(t[k], rt[k], "validate --full and the run agree on {k}");
        }
    }
    // Both tables pass over the same non-ADT messages (an ADT message without a PV1 is
    // read by `visits` and simply gives no row).
    assert_eq!(tables[0]["rows_passed_over"], tables[1]["rows_passed_over"]);
    let patients = table_rows(&dest, "patients");
    let visits = table_rows(&dest, "visits");
    assert_eq!(tables[0]["rows_written"].as_u64().unwrap() as usize, patients.len());
    assert!(patients.len() >= 90, "ADT messages of valid/, edge/ and batch/: {}", patients.len());

    // Spot checks against valid/rethinkhealth-hl7v2/adt-a01-full.hl7 (PID|1||98765^^^MRN…).
    let p = find(&patients, &[("race", "2106-3"), ("state", "IL"), ("sending_facility", "HOSP_A"), ("event_type", "A01")]);
    assert_eq!((p["sex"].as_str(), p["zip3"].as_str(), p["birth_year"].as_str()), ("F", "629", "1975"));
    assert_eq!((p["ethnicity"].as_str(), p["message_year"].as_str()), ("H", "2026"));
    assert!(!p["patient_id"].is_empty() && p["patient_id"] != "98765", "the MRN becomes a surrogate");
    for dropped in ["family_name", "given_name", "street", "city", "ssn", "home_phone", "account_number"] {
        assert!(!p.contains_key(dropped), "{dropped} is dropped");
    }
    let v = find(&visits, &[("patient_id", &p["patient_id"]), ("point_of_care", "ICU"), ("room", "201")]);
    assert_eq!((v["patient_class"].as_str(), v["attending_id"].as_str(), v["hospital_service"].as_str()), ("I", "1234567890", "MED"));
    assert_eq!((v["admit_year"].as_str(), v["event_year"].as_str()), ("2026", "2026"));
    // An escaped field (edge/): `\T\` and `\S\` decoded, not left as escapes.
    assert!(patients.iter().flat_map(|r| r.values()).all(|v| !v.contains("\\T\\") && !v.contains("\\F\\")));

    // Every file of malformed/ is quarantined with a reason, except the RSP message that
    // only a strict structure validator rejects: it is not an ADT message, so passed over.
    let q = quarantine(&dest, "patients");
    let files: BTreeSet<&str> = q.iter().map(|(f, ..)| f.as_str()).collect();
    let malformed = shared_data().join("hl7v2/malformed");
    let mut expected = 0;
    for dir in std::fs::read_dir(&malformed).unwrap().flatten() {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let rel = format!("malformed/{}/{}", dir.file_name().to_string_lossy(), f.file_name().to_string_lossy());
            if rel.ends_with("invalid_rsp_k21.hl7") {
                assert!(!files.contains(rel.as_str()));
                continue;
            }
            expected += 1;
            assert!(files.contains(rel.as_str()), "{rel} is not in the quarantine");
        }
    }
    assert_eq!(expected, 18);
    let reasons: BTreeSet<&str> = q.iter().map(|(.., r)| r.as_str()).collect();
    for want in [
        "hl7_segment_before_msh",
        "hl7_bad_encoding_characters",
        "hl7_duplicate_batch_header",
        "hl7_missing_message_type",
        "hl7_missing_segment",
    ] {
        assert!(reasons.contains(want), "no {want} in {reasons:?}");
    }
    // Reasons point at the message: a file's second item has its index and byte offset.
    let dup = q.iter().find(|(f, ..)| f == "malformed/python-hl7/sample_bad_batch1.hl7").unwrap();
    let bytes = std::fs::read(malformed.join("python-hl7/sample_bad_batch1.hl7")).unwrap();
    let second_bhs = bytes.windows(4).position(|w| w == b"\rBHS" || w == b"\nBHS").unwrap() + 1;
    assert_eq!((dup.1, dup.2, dup.3.as_str(), dup.4.as_str()), (1, second_bhs as u64, "BHS", "hl7_duplicate_batch_header"));
    assert_eq!(tables[0]["quarantine_reasons"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), q.len() as u64);

    // A second run does nothing.
    let before = snapshot(&dest);
    run(&mut shipped("hl7-adt", &dest, &keyring)).expect(0);
    assert_eq!(snapshot(&dest), before, "a second run must not touch the destination");
}

#[test]
fn issue_7_shipped_oru_plan_gives_one_row_per_obx_with_its_patient_and_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("oru");
    run(&mut shipped("hl7-oru", &dest, &tmp.path().join("keyring"))).expect(0);
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
    let rows = table_rows(&dest, "results");
    // valid/rethinkhealth-hl7v2/oru-r01-lab.hl7: OBR LAB001 (a CBC) with OBX WBC, RBC,
    // HGB, HCT, PLT; mllp-sample-oru-r01.hl7 sends the same results coded `L`, without OBR-3.
    let wbc =
        find(&rows, &[("observation_code", "WBC"), ("coding_system", "LN"), ("sending_facility", "FACILITY_B"), ("test_code", "CBC")]);
    assert_eq!((wbc["value"].as_str(), wbc["units"].as_str(), wbc["reference_range"].as_str()), ("7.5", "10*3/uL", "4.5-11.0"));
    assert_eq!((wbc["set_id"].as_str(), wbc["value_type"].as_str(), wbc["result_status"].as_str()), ("1", "NM", "F"));
    assert_eq!((wbc["observed_year"].as_str(), wbc["abnormal_flags"].as_str()), ("2026", "N"));
    let panel: Vec<_> = rows.iter().filter(|r| r["message_id"] == wbc["message_id"] && r["coding_system"] == "LN").collect();
    let codes: Vec<&str> = panel.iter().map(|r| r["observation_code"].as_str()).collect();
    assert_eq!(codes, ["WBC", "RBC", "HGB", "HCT", "PLT"], "one row per OBX, in order");
    for r in &panel {
        assert_eq!((&r["patient_id"], &r["order_id"]), (&wbc["patient_id"], &wbc["order_id"]), "PID and OBR carried down to every OBX");
    }
    assert!(!wbc["order_id"].is_empty() && wbc["order_id"] != "LAB001", "the order number becomes a surrogate");
    let plain = find(&rows, &[("observation_code", "WBC"), ("coding_system", "L"), ("sending_facility", "FACILITY_B")]);
    assert_eq!((plain["order_id"].as_str(), plain["patient_id"].as_str()), ("", wbc["patient_id"].as_str()), "same MRN, same surrogate");
    assert!(!wbc["patient_id"].is_empty() && wbc["patient_id"] != "67890");
}

/// A message archive with PHI-shaped sentinels in every identifying field, plus bad items.
fn sentinel_archive(dir: &Path, messages: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("archive.hl7");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    // Not a message: segments before any MSH.
    write!(f, "PID|1||SENTINELORPHAN||SENTINELFAMILY^SENTINELGIVEN\r").unwrap();
    for i in 0..messages {
        if i % 997 == 5 {
            // A header with 3 encoding characters: the message is quarantined whole.
            write!(f, "MSH|^~&|SENTINELAPP|X|||2024||ADT^A01|SENTINELCTRL{i}|P|2.5\rPID|1||SENTINELMRN{i}\r").unwrap();
        }
        write!(
            f,
            "MSH|^~\\&|ADT|HOSP|||20240102030405||ADT^A08|C{i}|P|2.5\rEVN|A08|20240102\r\
PID|1||SENTINELMRN{i}^^^MRN||SENTINELFAMILY{i}^SENTINELGIVEN||19700101|F|||SENTINELSTREET^^SENTINELCITY^IL^62960||555-SENTINEL|||||SENTINELACCT|999-SENTINEL\r\
PV1|1|I|W{}^1^1|||||||MED||||||||||V{i}|||||||||||||||||||||||||20240102\r",
            i % 7
        )
        .unwrap();
    }
    drop(f);
    path
}

#[test]
fn issue_7_no_value_of_any_message_reaches_a_log_an_error_or_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    sentinel_archive(&tmp.path().join("hl7"), 3000);
    let (dest, keyring) = (tmp.path().join("out"), tmp.path().join("keyring"));
    let mut c = shipped("hl7-adt", &dest, &keyring);
    c.env("HL7_DIR", tmp.path().join("hl7")).arg("-vv");
    let r = run(&mut c).expect(0);
    let t = &r.json()["tables"][0];
    assert_eq!(t["rows_written"].as_u64(), Some(3000));
    let bad_headers = (0..3000).filter(|i| i % 997 == 5).count() as u64;
    assert_eq!(t["rows_quarantined"].as_u64(), Some(1 + bad_headers), "the leading PID and the bad headers");
    let v = run(ehrlift()
        .args(["validate", "--full", "--json"])
        .arg(repo().join("mappings/hl7-adt/ehrlift.toml"))
        .env("HL7_DIR", tmp.path().join("hl7"))
        .env("EHRLIFT_DEST", &dest)
        .env("EHRLIFT_KEYRING", &keyring));
    assert!(v.json()["tables"][0].get("rows_passed_over").is_none(), "every message is ADT: nothing passed over");
    let logs = format!("{}{}{}{}", r.stderr(), r.stdout(), v.stderr(), v.stdout());
    assert!(!logs.contains("SENTINEL"), "a value in a log or report");
    for (k, bytes) in objects(&dest) {
        assert!(!String::from_utf8_lossy(&bytes).contains("SENTINEL"), "{k} holds a value that must be dropped or replaced");
    }
}

#[test]
fn issue_7_sigkill_mid_archive_then_rerun_gives_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let hl7 = tmp.path().join("hl7");
    sentinel_archive(&hl7.join("a"), 40_000);
    sentinel_archive(&hl7.join("b"), 20_000);
    // Small parts so a run commits often; one OBX-level table would do the same.
    let plan_dir = tmp.path().join("plan");
    std::fs::create_dir_all(plan_dir.join("tables")).unwrap();
    std::fs::write(
        plan_dir.join("ehrlift.toml"),
        format!(
            "project = \"k\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"custom\"\n[run]\nbatch_rows = 500\npart_rows = 4000\nmax_quarantine_ratio = 0.01\n[sources.h]\nkind = \"hl7\"\ndir = \"{}\"\n",
            hl7.display()
        ),
    )
    .unwrap();
    std::fs::write(
        plan_dir.join("tables/t.toml"),
        "table = \"t\"\nsource = \"h\"\nfiles = \"**/*.hl7\"\n[hl7]\nmessage_types = [\"ADT^A08\"]\n\
[[columns]]\nname = \"control\"\nfrom = \"MSH-10\"\ntype = \"utf8\"\nrule = \"keep\"\n\
[[columns]]\nname = \"at\"\nfrom = \"MSH-7\"\ntype = \"timestamp\"\nformat = \"hl7\"\nrule = \"keep\"\n\
[[columns]]\nname = \"ward\"\nfrom = \"PV1-3.1\"\ntype = \"utf8\"\nrule = \"keep\"\n",
    )
    .unwrap();
    let plan = plan_dir.join("ehrlift.toml");
    let reference = tmp.path().join("reference");
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&reference))).expect(0);
    let dest = tmp.path().join("killed");
    let kills = kill_at(&plan, &dest, "t", &[1, 4, 8, 12]);
    assert!(kills >= 2, "the run must actually have been killed mid-way ({kills} kills)");
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
    assert_same_objects(&objects(&dest), &objects(&reference), "resumed output differs from an uninterrupted run");
    let mut controls: Vec<String> = Vec::new();
    for (k, _) in objects(&dest).iter().filter(|(k, _)| k.starts_with("t/")) {
        for b in read_parquet(&dest.join(k)) {
            let c = b.column_by_name("control").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
            controls.extend((0..c.len()).map(|i| c.value(i).to_owned()));
        }
    }
    let n = controls.len();
    controls.sort();
    controls.dedup();
    assert_eq!((n, controls.len()), (60_000, 40_000), "each message once: C0..C39999 from a, C0..C19999 again from b");
}

/// With a message profile's constraints stated in the mapping (PID required, PID-3's
/// assigning authority required), every file of `hl7v2/malformed` is quarantined with a
/// reason, including the RSP^K22 that hl7apy rejects under IHE PDQ for a missing PID-3.4.
#[test]
fn issue_7_every_malformed_file_is_quarantined_under_a_plan_that_states_its_profile() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("tables")).unwrap();
    std::fs::write(
        tmp.path().join("ehrlift.toml"),
        format!(
            "project = \"m\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"custom\"\n[run]\nmax_quarantine_ratio = 1.0\n\
[sources.h]\nkind = \"hl7\"\ndir = \"{}\"\n",
            shared_data().join("hl7v2/malformed").display()
        ),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("tables/t.toml"),
        "table = \"t\"\nsource = \"h\"\nfiles = \"**/*.hl7\"\n[hl7]\nrequired_segments = [\"PID\"]\n\
[[columns]]\nname = \"control\"\nfrom = \"MSH-10\"\ntype = \"utf8\"\nrule = \"keep\"\n\
[[columns]]\nname = \"authority\"\nfrom = \"PID-3[1].4\"\ntype = \"utf8\"\nnullable = false\nrule = \"keep\"\n",
    )
    .unwrap();
    let dest = tmp.path().join("out");
    run(ehrlift().args(["run", "--json"]).arg(tmp.path().join("ehrlift.toml")).arg("--dest").arg(url(&dest))).expect(0);
    let q = quarantine(&dest, "t");
    let quarantined: BTreeSet<&str> = q.iter().map(|(f, ..)| f.as_str()).collect();
    let mut files = Vec::new();
    for dir in std::fs::read_dir(shared_data().join("hl7v2/malformed")).unwrap().flatten() {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            files.push(format!("{}/{}", dir.file_name().to_string_lossy(), f.file_name().to_string_lossy()));
        }
    }
    assert_eq!(files.len(), 19);
    for f in &files {
        assert!(quarantined.contains(f.as_str()), "{f} is not in the quarantine");
    }
    let rsp = q.iter().find(|(f, ..)| f == "hl7apy/invalid_rsp_k21.hl7").unwrap();
    assert_eq!((rsp.3.as_str(), rsp.4.as_str()), ("authority", "null_not_allowed"));
}
