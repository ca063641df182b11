//! The privacy engine: every rule end to end, keys, the vault, profiles, and sentinels.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use crate::harness::*;

const PEOPLE: usize = 300;

/// Every value that holds an identifier starts with `SNTL`, so any leak is one search away.
fn write_data(dir: &Path) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut p = String::from("pid,mrn,ssn,name,dob,zip,age,weight,phone,note\n");
    for i in 0..PEOPLE {
        let dob = if i == 7 { "SNTLbaddate".to_owned() } else { format!("{:04}-{:02}-{:02}", 1930 + i % 90, 1 + i % 12, 1 + i % 28) };
        p.push_str(&format!(
            "SNTLpid{i},SNTLmrn{i},SNTL-{i:03}-45-6789,SNTLname{i} Okafor{i},{dob},{:05},{},{}.5,SNTLphone{i},\"Seen with SNTLname{i} on 03/04/2019, callback (617) 555-{:04}; SSN 078-05-{:04}\"\n",
            (i * 7919) % 100000,
            i % 110,
            40 + i % 90,
            i % 10000,
            i % 10000
        ));
    }
    std::fs::write(dir.join("data/people.csv"), p).unwrap();
    let mut v = String::from("vid,pid,admit,discharge\n");
    for j in 0..PEOPLE * 3 {
        let pid = if j == 11 { String::new() } else { format!("SNTLpid{}", j % PEOPLE) };
        v.push_str(&format!("SNTLvid{j},{pid},2020-01-{:02} 08:00:00,2020-02-{:02} 17:30:00\n", 1 + j % 28, 1 + j % 28));
    }
    std::fs::write(dir.join("data/visits.csv"), v).unwrap();
}

const PEOPLE_MAPPING: &str = r#"table = "people"
source = "src"
files = "people.csv"
key = ["pid"]
[[columns]]
name = "pid"
type = "utf8"
rule = "surrogate"
namespace = "patient"
phi = "other_id"
[[columns]]
name = "mrn_pseudonym"
from = "mrn"
type = "utf8"
rule = "pseudonym"
phi = "mrn"
[[columns]]
name = "mrn_token"
from = "mrn"
type = "utf8"
rule = "tokenize"
namespace = "mrn_token"
phi = "mrn"
[[columns]]
name = "ssn"
type = "utf8"
rule = "mask"
keep_last = 4
phi = "ssn"
[[columns]]
name = "name"
type = "utf8"
rule = "drop"
phi = "name"
[[columns]]
name = "dob"
type = "date32"
rule = "shift_date"
shift_by = "pid"
phi = "date"
[[columns]]
name = "birth_year"
from = "dob"
type = "date32"
rule = "generalize"
to = "birth_year"
phi = "date"
[[columns]]
name = "zip3"
from = "zip"
type = "utf8"
rule = "generalize"
to = "zip3"
phi = "geo"
[[columns]]
name = "age"
type = "int64"
rule = "generalize"
to = "age"
phi = "date"
[[columns]]
name = "weight"
type = "float64"
rule = "generalize"
to = "bucket"
bounds = [50, 80, 110]
phi = "none"
[[columns]]
name = "phone"
type = "utf8"
rule = "null"
phi = "phone"
[[columns]]
name = "note"
type = "utf8"
rule = "scrub_text"
phi = "free_text"
"#;

const VISITS_MAPPING: &str = r#"table = "visits"
source = "src"
files = "visits.csv"
key = ["vid"]
[[columns]]
name = "vid"
type = "utf8"
rule = "surrogate"
namespace = "visit"
phi = "other_id"
[[columns]]
name = "pid"
type = "utf8"
rule = "surrogate"
namespace = "patient"
phi = "other_id"
[[columns]]
name = "admit"
type = "timestamp"
rule = "shift_date"
shift_by = "pid"
phi = "date"
[[columns]]
name = "discharge"
type = "timestamp"
rule = "shift_date"
shift_by = "pid"
phi = "date"
"#;

/// A custom-profile plan over the two tables, keys in `dir/keys` unless `keyring` says otherwise.
fn setup(dir: &Path) -> PathBuf {
    write_data(dir);
    let plan = write_plan(dir, "max_quarantine_ratio = 0.05", "", PEOPLE_MAPPING);
    std::fs::write(dir.join("tables/visits.toml"), VISITS_MAPPING).unwrap();
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "[privacy]\nprofile = \"custom\"",
        "[privacy]\nprofile = \"custom\"\nreference_date = \"2026-01-01\"\nshift_days = [-30, 30]\n[keys]\nprovider = \"local\"\npath = \"${KEYS}\"",
    );
    std::fs::write(&plan, text).unwrap();
    plan
}

fn run_plan(plan: &Path, dest: &Path, keys: &Path, extra: &[&str]) -> Run {
    run(ehrlift().args(["-vv", "run", "--json"]).args(extra).arg(plan).arg("--dest").arg(url(dest)).env("KEYS", keys))
}

/// table.column → its cells as text (null as None), in part order.
fn table_cells(dest: &Path, table: &str) -> BTreeMap<String, Vec<Option<String>>> {
    let mut parts: Vec<String> = snapshot(&dest.join(table)).into_keys().filter(|k| k.ends_with(".parquet")).collect();
    parts.sort();
    let mut out: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for p in parts {
        for b in read_parquet(&dest.join(table).join(p)) {
            add_cells(&mut out, &b);
        }
    }
    out
}

fn add_cells(out: &mut BTreeMap<String, Vec<Option<String>>>, b: &RecordBatch) {
    for (f, col) in b.schema().fields().iter().zip(b.columns()) {
        let text = arrow_cast::cast(col, &DataType::Utf8).unwrap();
        let text = text.as_string::<i32>();
        out.entry(f.name().clone()).or_default().extend((0..text.len()).map(|i| text.is_valid(i).then(|| text.value(i).to_owned())));
    }
}

/// Whether `s` holds a sentinel value. The prefixes are longer than `SNTL` alone, which a
/// random base64url token matches by chance about once in 400 runs.
fn has_sentinel(s: &str) -> bool {
    ["SNTLpid", "SNTLmrn", "SNTL-", "SNTLname", "SNTLbad", "SNTLphone", "SNTLvid"].iter().any(|p| s.contains(p))
}

/// Fails if a sentinel appears in any file of `dest` (decoded Parquet cells included) or in `texts`.
fn assert_no_sentinel(dest: &Path, texts: &[String]) {
    for (key, bytes) in snapshot(dest) {
        assert!(!has_sentinel(&String::from_utf8_lossy(&bytes)), "sentinel in the bytes of {key}");
        if key.ends_with(".parquet") {
            let mut cells = BTreeMap::new();
            for b in read_parquet(&dest.join(&key)) {
                add_cells(&mut cells, &b);
            }
            for (col, values) in cells {
                assert!(!values.iter().flatten().any(|v| has_sentinel(v)), "sentinel in {key} column {col}");
            }
        }
    }
    for t in texts {
        assert!(!has_sentinel(t), "sentinel in output:\n{t}");
    }
}

#[test]
fn issue_3_every_rule_end_to_end_without_leaking_a_value() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = setup(tmp.path());
    let keys = tmp.path().join("keys");
    let dest = tmp.path().join("out");
    let mut texts = Vec::new();
    for format in ["plain", "json"] {
        let r = run(ehrlift()
            .args(["--log-format", format, "-vv", "run", "--fresh", "--json"])
            .arg(&plan)
            .arg("--dest")
            .arg(url(&dest))
            .env("KEYS", &keys))
        .expect(0);
        texts.extend([r.stdout(), r.stderr()]);
    }
    let outcome: serde_json::Value = serde_json::from_str(&texts[2]).unwrap();
    let by = |t: &str| outcome["tables"].as_array().unwrap().iter().find(|x| x["table"] == t).unwrap().clone();
    // The bad date is read by two columns: two entries, one quarantined row.
    assert_eq!(by("people")["quarantine_reasons"]["invalid_date"], 2);
    assert_eq!(by("people")["rows_quarantined"], 1);
    assert_eq!(by("visits")["quarantine_reasons"]["missing_shift_key"], 2, "both dates of the keyless visit");
    assert_eq!(by("visits")["rows_quarantined"], 1);
    for cmd in [vec!["validate"], vec!["status", "--json"]] {
        let r = run(ehrlift().args(&cmd).arg(&plan).arg("--dest").arg(url(&dest)).env("KEYS", &keys));
        texts.extend([r.stdout(), r.stderr()]);
    }
    let r = run(ehrlift().args(["verify", "--json"]).arg(&dest)).expect(0);
    texts.extend([r.stdout(), r.stderr()]);
    assert_no_sentinel(&dest, &texts);

    // The key file is private; the manifest names its id; the destination records it.
    let key_file = keys.join("t.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let m = manifest(&dest);
    let key_id = m["key_ids"][0].as_str().unwrap().to_owned();
    assert!(key_id.starts_with("local:"));
    assert_eq!(m["reference_date"], "2026-01-01");
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(dest.join("_ehrlift/keys.json")).unwrap()).unwrap();
    assert_eq!(record["key_id"], key_id.as_str());

    let people = table_cells(&dest, "people");
    let visits = table_cells(&dest, "visits");
    let n = PEOPLE - 1; // one bad date
    // Surrogates: UUIDs, one per patient, joining both tables.
    let pids: HashSet<&str> = people["pid"].iter().flatten().map(String::as_str).collect();
    assert_eq!(pids.len(), n);
    assert!(pids.iter().all(|p| p.len() == 36 && p.as_bytes()[14] == b'4'));
    assert!(visits["pid"].iter().flatten().all(|p| pids.contains(p.as_str()) || p.len() == 36));
    // Pseudonyms: 32 hex digits, distinct per value.
    let ps: HashSet<&str> = people["mrn_pseudonym"].iter().flatten().map(String::as_str).collect();
    assert_eq!(ps.len(), n);
    assert!(ps.iter().all(|p| p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit())));
    // Masks keep the last four; nulls; zip3; ages; buckets; birth years over 89 suppressed.
    assert!(people["ssn"].iter().flatten().all(|s| s.starts_with("********") && s.ends_with("6789")));
    assert!(people["phone"].iter().all(Option::is_none));
    assert!(people["zip3"].iter().flatten().all(|z| z.len() == 3));
    assert!(people["age"].iter().flatten().any(|a| a == "90+") && !people["age"].iter().flatten().any(|a| a == "95"));
    assert!(people["weight"].iter().flatten().all(|w| ["<50", "[50,80)", "[80,110)", ">=110"].contains(&w.as_str())));
    let years: Vec<i64> = people["birth_year"].iter().flatten().map(|y| y.parse().unwrap()).collect();
    assert!(years.iter().all(|&y| y >= 1937) && people["birth_year"].iter().any(Option::is_none));
    // Notes: the row's own name, dates, phones and SSNs are tags.
    for note in people["note"].iter().flatten() {
        assert!(
            note.starts_with("Seen with [NAME]") && note.contains("[DATE]") && note.contains("[PHONE]") && note.contains("[SSN]"),
            "{note}"
        );
    }
    // Shifts: within ±30 days, never 0, one offset per patient across both tables.
    let ts = |t: &str| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").unwrap();
    let date = |t: &str| chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").unwrap();
    let mut offsets: HashMap<&str, i64> = HashMap::new();
    let visit_rows = (0..PEOPLE * 3).filter(|&j| j != 11);
    for (j, ((pid, admit), discharge)) in visit_rows.zip(visits["pid"].iter().zip(&visits["admit"]).zip(&visits["discharge"])) {
        let (pid, admit, discharge) = (pid.as_deref().unwrap(), ts(admit.as_deref().unwrap()), ts(discharge.as_deref().unwrap()));
        assert_eq!((discharge - admit).num_minutes(), (31 * 24 + 9) * 60 + 30, "intervals within a row are kept");
        let source = date(&format!("2020-01-{:02}", 1 + j % 28)).and_hms_opt(8, 0, 0).unwrap();
        let offset = (admit - source).num_days();
        assert!((-30..=30).contains(&offset) && offset != 0, "{offset}");
        assert_eq!(*offsets.entry(pid).or_insert(offset), offset, "one offset per patient");
    }
    let people_rows = (0..PEOPLE).filter(|&i| i != 7);
    for (i, (pid, dob)) in people_rows.zip(people["pid"].iter().zip(&people["dob"])) {
        let source = date(&format!("{:04}-{:02}-{:02}", 1930 + i % 90, 1 + i % 12, 1 + i % 28));
        let offset = (date(dob.as_deref().unwrap()) - source).num_days();
        assert_eq!(offsets[pid.as_deref().unwrap()], offset, "the same patient's offset in another table");
    }
    assert_eq!(offsets.len(), PEOPLE, "every patient has visits (the one with a bad birth date too)");

    // reidentify recovers every token, in order; a damaged one is reported by position.
    let tokens: Vec<String> = people["mrn_token"].iter().flatten().cloned().collect();
    let mut child = ehrlift()
        .args(["reidentify", "--column", "people.mrn_token"])
        .arg(&plan)
        .env("KEYS", &keys)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(tokens.join("\n").as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let values: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    let expected: Vec<String> = (0..PEOPLE).filter(|&i| i != 7).map(|i| format!("SNTLmrn{i}")).collect();
    assert_eq!(values, expected);
    let bad = run(ehrlift().args(["reidentify", "--column", "people.mrn_token"]).arg(&plan).arg("tok_AAAA").env("KEYS", &keys)).expect(1);
    assert!(bad.stderr().contains("token #1: not a token"), "{}", bad.stderr());
    let wrong = run(ehrlift().args(["reidentify", "--column", "people.ssn"]).arg(&plan).arg(&tokens[0]).env("KEYS", &keys)).expect(2);
    assert!(wrong.stderr().contains("not tokenize"), "{}", wrong.stderr());
}

#[test]
fn issue_3_same_key_same_output_other_key_other_output_and_keys_are_guarded() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = setup(tmp.path());
    let keys = tmp.path().join("keys");
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    run_plan(&plan, &a, &keys, &[]).expect(0);
    run_plan(&plan, &b, &keys, &[]).expect(0);
    run_plan(&plan, &c, &tmp.path().join("other-keys"), &[]).expect(0);
    let (pa, pb, pc) = (table_cells(&a, "people"), table_cells(&b, "people"), table_cells(&c, "people"));
    for col in ["mrn_pseudonym", "mrn_token", "dob", "note", "zip3", "birth_year"] {
        assert_eq!(pa[col], pb[col], "{col}: same input and key, same output");
    }
    for col in ["mrn_pseudonym", "mrn_token", "dob"] {
        assert_ne!(pa[col], pc[col], "{col}: another key, another output");
    }
    // Surrogates are random: another destination (another vault) gives other ones...
    assert_ne!(pa["pid"], pb["pid"]);
    // ...and a new run into the same destination keeps them.
    run_plan(&plan, &a, &keys, &["--fresh"]).expect(0);
    assert_eq!(table_cells(&a, "people")["pid"], pa["pid"]);
    assert_eq!(table_cells(&a, "visits")["pid"], table_cells(&a, "visits")["pid"]);

    // A lost vault segment is refused, not papered over with new surrogates.
    let vault = a.join("_ehrlift/vault");
    let mut segments: Vec<_> = std::fs::read_dir(&vault).unwrap().flatten().map(|e| e.path()).collect();
    segments.sort();
    let m = manifest(&a);
    assert_eq!(m["vault_entries"].as_u64(), Some((PEOPLE + PEOPLE * 3) as u64), "patients and visits");
    let kept = std::fs::read(&segments[0]).unwrap();
    std::fs::remove_file(&segments[0]).unwrap();
    let r = run(ehrlift().arg("verify").arg(&a)).expect(1);
    assert!(r.stderr().contains("_ehrlift/vault/: 1 segment(s) hold 900 entries, 1200 recorded"), "{}", r.stderr());
    let before = snapshot(&a);
    let r = run_plan(&plan, &a, &keys, &["--fresh"]).expect(2);
    assert!(r.stderr().contains("a segment was deleted or replaced"), "{}", r.stderr());
    assert!(snapshot(&a) == before, "a refused run leaves the destination as it was");
    std::fs::write(&segments[0], kept).unwrap();
    run(ehrlift().arg("verify").arg(&a)).expect(0);
    let before = snapshot(&a);

    // Another key for a destination written with this one is refused, naming both ids.
    let r = run_plan(&plan, &a, &tmp.path().join("other-keys"), &["--fresh"]).expect(2);
    assert!(r.stderr().contains("was written with key local:"), "{}", r.stderr());
    assert!(snapshot(&a) == before, "a refused run leaves the destination as it was");
    // A lost key file is an error, not a new key.
    let key_file = keys.join("t.key");
    let saved = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let r = run_plan(&plan, &a, &keys, &["--fresh"]).expect(2);
    assert!(r.stderr().contains("restore the key file"), "{}", r.stderr());
    assert!(snapshot(&a) == before, "a refused run leaves the destination as it was");
    assert!(!key_file.exists(), "no new key was made");
    // A key file others may read is refused.
    std::fs::write(&key_file, &saved).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = run_plan(&plan, &a, &keys, &["--fresh"]).expect(2);
    assert!(r.stderr().contains("chmod 600"), "{}", r.stderr());
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    run_plan(&plan, &a, &keys, &["--fresh"]).expect(0);
    assert!(!String::from_utf8_lossy(&saved).is_empty());
    for out in [r.stderr(), r.stdout()] {
        let secret =
            String::from_utf8_lossy(&saved).lines().find(|l| l.starts_with("secret")).unwrap().split('"').nth(1).unwrap().to_owned();
        assert!(!out.contains(&secret));
    }
}

#[test]
fn issue_3_safe_harbor_refuses_a_kept_birth_date_naming_file_line_column_and_rule() {
    let tmp = tempfile::tempdir().unwrap();
    write_data(tmp.path());
    let mapping = "table = \"t\"\nsource = \"src\"\nfiles = \"visits.csv\"\ndrop = [\"vid\", \"pid\", \"discharge\"]\n[[columns]]\nname = \"admit\"\ntype = \"timestamp\"\nrule = \"keep\"\nphi = \"date\"\n";
    let plan = write_plan(tmp.path(), "", "", mapping);
    std::fs::write(&plan, std::fs::read_to_string(&plan).unwrap().replace("profile = \"custom\"", "profile = \"safe_harbor\"")).unwrap();
    let dest = tmp.path().join("out");
    for cmd in ["validate", "run"] {
        let r = if cmd == "validate" {
            run(ehrlift().arg(cmd).arg(&plan))
        } else {
            run(ehrlift().arg(cmd).arg(&plan).arg("--dest").arg(url(&dest)))
        };
        assert_eq!(r.code(), 2, "{}", r.stderr());
        let want = format!(
            "{}:5: column `admit` (phi = \"date\"): rule keep is not allowed under safe_harbor",
            tmp.path().join("tables/t.toml").display()
        );
        assert!(r.stderr().contains(&want), "{cmd}: {}", r.stderr());
    }
    assert!(!dest.exists(), "nothing was written");

    // Unclassified columns, and a pseudonym on a join key, are refused too; the fix passes.
    let mapping = "table = \"t\"\nsource = \"src\"\nfiles = \"visits.csv\"\nkey = [\"vid\"]\ndrop = [\"discharge\"]\n[[columns]]\nname = \"vid\"\ntype = \"utf8\"\nrule = \"pseudonym\"\nphi = \"other_id\"\n[[columns]]\nname = \"pid\"\ntype = \"utf8\"\nrule = \"drop\"\n[[columns]]\nname = \"admit\"\ntype = \"timestamp\"\nrule = \"generalize\"\nto = \"year\"\nphi = \"date\"\n";
    std::fs::write(tmp.path().join("tables/t.toml"), mapping).unwrap();
    let r = run(ehrlift().arg("validate").arg(&plan)).expect(2);
    assert!(
        r.stderr().contains("column `vid` (phi = \"other_id\"): rule pseudonym(other_id) is not allowed")
            && r.stderr().contains("surrogate"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("column `pid` has no `phi` tag"), "{}", r.stderr());
    let fixed = mapping
        .replace("rule = \"pseudonym\"", "rule = \"surrogate\"")
        .replace("rule = \"drop\"\n", "rule = \"drop\"\nphi = \"other_id\"\n");
    std::fs::write(tmp.path().join("tables/t.toml"), fixed).unwrap();
    let r = run(ehrlift().arg("validate").arg(&plan)).expect(0);
    assert!(r.stderr().contains("date         admit: generalize(year)"), "{}", r.stderr());
    assert!(r.stderr().contains("other_id     vid: surrogate(other_id), pid: drop"), "{}", r.stderr());
}
