//! Sharded runs (issue 8): `ehrlift run --shard I/N` (or the batch engines' index
//! variables) in separate processes, `ehrlift finalize`, and `verify` over the merge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::db::{Legacy, text_rows};
use crate::harness::*;
use crate::s3::Moto;

/// Six note files (20,000 rows each, ids 0..120,000), a patients file whose MRNs take
/// surrogates, and a small codes file.
fn files(dir: &Path) {
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    for f in 0..6 {
        let mut s = String::from("id,mrn,text\n");
        for i in f * 20_000..(f + 1) * 20_000 {
            s.push_str(&format!("{i},ZZSENTINEL{},note {i} {}\n", i % 5000, "x".repeat(i % 40)));
        }
        std::fs::write(dir.join(format!("notes/notes_{f}.csv")), s).unwrap();
    }
    let mut p = String::from("mrn,zip\n");
    for i in 0..5000 {
        p.push_str(&format!("ZZSENTINEL{i},{:05}\n", 10_000 + i));
    }
    std::fs::write(dir.join("patients.csv"), p).unwrap();
    std::fs::write(dir.join("codes.csv"), "code,label\nA,alpha\nB,beta\n").unwrap();
}

const NOTES: &str = r#"table = "notes"
source = "files"
files = ["notes/*.csv"]
[[columns]]
name = "id"
type = "int64"
rule = "keep"
[[columns]]
name = "mrn"
type = "utf8"
rule = "pseudonym"
namespace = "mrn"
[[columns]]
name = "text"
type = "utf8"
rule = "drop"
"#;

const PATIENTS: &str = r#"table = "patients"
source = "files"
files = ["patients.csv"]
[[columns]]
name = "mrn"
type = "utf8"
rule = "surrogate"
namespace = "patient"
[[columns]]
name = "zip"
type = "utf8"
rule = "keep"
"#;

const CODES: &str = r#"table = "codes"
source = "files"
files = ["codes.csv"]
[[columns]]
name = "code"
type = "utf8"
rule = "keep"
[[columns]]
name = "label"
type = "utf8"
rule = "keep"
"#;

/// A plan (custom profile, its own keyring) over `data` with `extra` top-level lines,
/// `sources` and `tables`.
fn plan(dir: &Path, extra: &str, sources: &str, tables: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("tables")).unwrap();
    let text = format!(
        "project = \"sharded\"\ninclude = [\"tables/*.toml\"]\n{extra}\n[privacy]\nprofile = \"custom\"\n[keys]\nprovider = \"local\"\npath = \"keyring\"\n[run]\nshard_unit_mib = 1\npart_rows = 2000\nbatch_rows = 500\n{sources}"
    );
    std::fs::write(dir.join("ehrlift.toml"), text).unwrap();
    for (name, body) in tables {
        std::fs::write(dir.join(format!("tables/{name}.toml")), body).unwrap();
    }
    dir.join("ehrlift.toml")
}

fn files_source(data: &Path) -> String {
    format!("[sources.files]\nkind = \"csv\"\ndir = \"{}\"\n", data.display())
}

/// Rows of every data object of `table` among `objects` (key → bytes), as text.
fn table_rows(objects: &BTreeMap<String, Vec<u8>>, table: &str) -> Vec<Vec<Option<String>>> {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for (k, bytes) in objects.iter().filter(|(k, _)| k.starts_with(&format!("{table}/")) && k.ends_with(".parquet")) {
        let path = tmp.path().join(k.replace('/', "_"));
        std::fs::write(&path, bytes).unwrap();
        rows.extend(text_rows(&read_parquet(&path)));
    }
    rows
}

fn sorted(mut rows: Vec<Vec<Option<String>>>) -> Vec<Vec<Option<String>>> {
    rows.sort();
    rows
}

#[test]
fn issue_8_local_shards_from_flag_and_batch_variables_cover_every_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    files(&data);
    let plan = plan(tmp.path(), "", &files_source(&data), &[("notes", NOTES), ("patients", PATIENTS), ("codes", CODES)]);
    let (dest, reference) = (tmp.path().join("out"), tmp.path().join("ref"));
    let shard = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = ehrlift();
        c.arg("run").arg(&plan).arg("--dest").arg(url(&dest)).arg("--json").args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    };
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&reference))).expect(0);

    // Refusals: configuration errors (exit 2) before anything is written.
    let e = shard(&["--shard", "3/3"], &[]).expect(2);
    assert!(e.stderr().contains("out of range"), "{}", e.stderr());
    shard(&["--shard", "0/3", "--fresh"], &[]).expect(2);
    let e = shard(&[], &[("JOB_COMPLETION_INDEX", "1")]).expect(2);
    assert!(e.stderr().contains("EHRLIFT_SHARDS"), "{}", e.stderr());
    assert!(!dest.exists(), "a refused shard writes nothing");

    // Shard 2 by flag: its own units only; the run is not finalized yet.
    let two_run = shard(&["-vv", "--shard", "2/3"], &[]).expect(0);
    let two = two_run.json();
    assert_eq!((two["status"].as_str(), two["shard"].as_str()), (Some("running"), Some("2/3")));
    assert_eq!(two["pending_shards"], serde_json::json!([0, 1]));
    let status = run(ehrlift().arg("status").arg(&plan).arg("--dest").arg(url(&dest)).arg("--json")).expect(0).json();
    let finished: Vec<bool> = status["shards"].as_array().unwrap().iter().map(|s| s["finished"].as_bool().unwrap()).collect();
    assert_eq!(finished, [false, false, true], "{status}");
    let ours = status["tables"].as_array().unwrap().iter().filter(|t| t["shard"] == 2);
    assert!(ours.clone().count() >= 1 && ours.clone().all(|t| t["finished"] == "complete"), "{status}");
    let e = shard(&["--shard", "0/4"], &[]).expect(2);
    assert!(e.stderr().contains("has 3 shards, not 4"), "{}", e.stderr());
    // A file added after the split would be read by no shard: refused.
    std::fs::write(data.join("notes/notes_9.csv"), "id,mrn,text\n999999,ZZSENTINEL1,late\n").unwrap();
    let e = shard(&["--shard", "0/3"], &[]).expect(2);
    assert!(e.stderr().contains("table `notes`: its files changed since run") && e.stderr().contains("(6 then, 7 now)"), "{}", e.stderr());
    std::fs::remove_file(data.join("notes/notes_9.csv")).unwrap();
    // Shard 0 from AWS Batch's variables; finalize is early (exit 3, retry can help).
    shard(&[], &[("AWS_BATCH_JOB_ARRAY_INDEX", "0"), ("AWS_BATCH_JOB_ARRAY_SIZE", "3")]).expect(0);
    let early = run(ehrlift().arg("finalize").arg(&plan).arg("--dest").arg(url(&dest))).expect(3);
    assert!(early.stderr().contains("shard(s) 1 of 3 have not finished"), "{}", early.stderr());
    // Shard 1 from a Kubernetes Indexed Job's: the last to finish finalizes the run.
    let last_run = shard(&["-vv"], &[("JOB_COMPLETION_INDEX", "1"), ("EHRLIFT_SHARDS", "3")]).expect(0);
    let last = last_run.json();
    assert_eq!(last["status"], "complete");
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);
    let done = run(ehrlift().arg("finalize").arg(&plan).arg("--dest").arg(url(&dest)).arg("--json")).expect(0);
    assert_eq!(done.json()["already_finished"], true);

    // The same rows as one unsharded run (pseudonyms come from the same key); every note once.
    let (got, want) = (objects(&dest), objects(&reference));
    for table in ["notes", "codes"] {
        assert_eq!(sorted(table_rows(&got, table)), sorted(table_rows(&want, table)), "{table}");
    }
    let ids: Vec<i64> = table_rows(&got, "notes").iter().map(|r| r[0].as_ref().unwrap().parse().unwrap()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 120_000);
    assert_eq!(ids.len(), 120_000);
    let zips = |o| sorted(table_rows(o, "patients").into_iter().map(|r| vec![r[1].clone()]).collect());
    assert_eq!(zips(&got), zips(&want));

    let m = manifest(&dest);
    assert_eq!(m["shards"]["count"], 3);
    let tables = m["tables"].as_array().unwrap();
    let notes = tables.iter().find(|t| t["table"] == "notes").unwrap();
    let slices = notes["slices"].as_array().unwrap();
    assert!(slices.len() >= 3, "notes is split by its files: {slices:?}");
    let shards: BTreeSet<u64> = slices.iter().map(|s| s["shard"].as_u64().unwrap()).collect();
    assert!(shards.len() >= 2, "slices spread over shards: {slices:?}");
    assert_eq!(notes["rows_written"], 120_000);
    let patients = tables.iter().find(|t| t["table"] == "patients").unwrap();
    assert!(patients.get("slices").is_none(), "a table with surrogates stays whole");

    // No source value in any log line or run record (MRNs carry a sentinel).
    for (out, what) in [(&two_run, "shard 2"), (&last_run, "shard 1")] {
        assert!(!out.stderr().contains("ZZSENTINEL") && !out.stdout().contains("ZZSENTINEL"), "{what}");
    }
    for (k, bytes) in snapshot(&dest).iter().filter(|(k, _)| k.starts_with("_ehrlift/")) {
        assert!(!String::from_utf8_lossy(bytes).contains("ZZSENTINEL"), "{k}");
    }

    // A finished shard run again does nothing.
    let before = snapshot(&dest);
    let again = shard(&["--shard", "2/3"], &[]).expect(0).json();
    assert_eq!(again["already_finished"], true);
    assert_same_objects(&snapshot(&dest), &before, "a rerun of a finished shard");

    // The vault the shard with the surrogates wrote is whole and recorded: a later run
    // over the destination opens it and gives every MRN the surrogate it had.
    assert_eq!(m["vault_entries"], 5000);
    let record: Value = serde_json::from_slice(&std::fs::read(dest.join("_ehrlift/vault.json")).unwrap()).unwrap();
    assert_eq!(record["entries"], 5000);
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest)).arg("--fresh")).expect(0);
    assert_eq!(sorted(table_rows(&objects(&dest), "patients")), sorted(table_rows(&got, "patients")), "same surrogates");
}

// ---------------------------------------------------------------------------------------
// Four processes against moto S3 and PostgreSQL
// ---------------------------------------------------------------------------------------

fn spawn_shard(moto: &Moto, plan: &Path, shard: &str, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    moto.ehrlift().args(["--log-format", "json", "run", "--shard", shard]).arg(plan).stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

#[track_caller]
fn wait_ok(child: &mut Child, log: &Path) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", std::fs::read_to_string(log).unwrap());
}

#[test]
fn issue_8_four_shards_on_moto_in_any_order_one_killed_cover_every_source_row_once() {
    let Some(moto) = Moto::get() else { return };
    let Some(db) = Legacy::postgres("shard4") else { return };
    db.exec(
        "CREATE TABLE encounters (id bigint PRIMARY KEY, mrn text NOT NULL, code text NOT NULL);
         INSERT INTO encounters SELECT g * 7, 'ZZSENTINEL' || (g % 3000), 'C' || (g % 97) FROM generate_series(1, 40000) g;
         ANALYZE encounters;",
    );
    let key = moto.key();
    let bucket = moto.bucket("shard4", Some(&key));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    files(&data);
    let encounters = r#"table = "encounters"
source = "emr"
source_table = "encounters"
key = ["id"]
chunk_rows = 1000
[[columns]]
name = "id"
type = "int64"
rule = "keep"
[[columns]]
name = "mrn"
type = "utf8"
rule = "pseudonym"
namespace = "mrn"
[[columns]]
name = "code"
type = "utf8"
rule = "keep"
"#;
    let dest = format!("s3://{bucket}/ehr");
    let extra = format!("[destination]\nurl = \"{dest}\"\nkms_key = \"{}\"\nallow_insecure_endpoint = true\n", key.id);
    let sources = format!("{}{}", files_source(&data), db.source("emr", ""));
    let plan =
        plan(tmp.path(), &extra, &sources, &[("notes", NOTES), ("patients", PATIENTS), ("codes", CODES), ("encounters", encounters)]);
    let log = |i: u32| tmp.path().join(format!("shard{i}.log"));

    // Shards 3, 1 and 0 start together; shard 1 is killed once it has committed a part.
    let mut three = spawn_shard(&moto, &plan, "3/4", &log(3));
    let mut one = spawn_shard(&moto, &plan, "1/4", &log(1));
    let mut zero = spawn_shard(&moto, &plan, "0/4", &log(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let keys = moto.keys(&bucket, "ehr/_ehrlift/runs");
        let committed = keys.iter().find(|k| k.ends_with("/units.json")).is_some_and(|units| {
            let units: Value = serde_json::from_slice(&moto.object(&bucket, units)).unwrap();
            let prefixes: Vec<String> = units["units"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|u| u["shard"] == 1)
                .flat_map(|u| u["pieces"].as_array().unwrap().clone())
                .map(|p| match p["slice"].as_u64() {
                    Some(s) => format!("/commits/{}/slice-{s:04}/0", p["table"].as_str().unwrap()),
                    None => format!("/commits/{}/0", p["table"].as_str().unwrap()),
                })
                .collect();
            keys.iter().any(|k| prefixes.iter().any(|p| k.contains(p.as_str())))
        });
        if committed {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let alive = one.try_wait().unwrap().is_none();
    one.kill().unwrap();
    let killed = one.wait().unwrap();
    assert!(alive, "shard 1 finished (or never committed a part) before it could be killed\n{}", std::fs::read_to_string(log(1)).unwrap());
    assert!(!killed.success(), "shard 1 was killed mid-work");
    wait_ok(&mut three, &log(3));
    wait_ok(&mut zero, &log(0));
    let keys = moto.keys(&bucket, "ehr/_ehrlift/runs");
    assert!(!keys.iter().any(|k| k.ends_with("/shards/0001/manifest.json")), "the killed shard did not finish");
    assert!(!keys.iter().any(|k| k.ends_with("/manifest.json") && !k.contains("/shards/")), "no run manifest yet");
    let early = run(moto.ehrlift().arg("finalize").arg(&plan)).expect(3);
    assert!(early.stderr().contains("shard(s) 1, 2 of 4 have not finished"), "{}", early.stderr());

    // Shard 2 starts last; then shard 1's retry resumes and, last to finish, finalizes.
    let mut two = spawn_shard(&moto, &plan, "2/4", &log(2));
    wait_ok(&mut two, &log(2));
    let retry = run(moto.ehrlift().args(["--log-format", "json", "run", "--json", "--shard", "1/4"]).arg(&plan)).expect(0);
    assert_eq!(retry.json()["status"], "complete", "{}", retry.stderr());
    let json_lines: Vec<Value> = retry.stderr().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        json_lines.iter().any(|l| l["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["shard"] == "1/4" && s["run_id"].is_string()))
            && l["spans"].as_array().unwrap().iter().any(|s| s["table"].is_string())),
        "JSON lines carry run id, shard and table:\n{}",
        retry.stderr()
    );
    run(moto.ehrlift().arg("verify").arg(&dest).arg("--plan").arg(&plan)).expect(0);

    // Every source row exactly once, checked by key against the source.
    let all = moto.objects(&bucket, "ehr");
    let ids: Vec<i64> = table_rows(&all, "encounters").iter().map(|r| r[0].as_ref().unwrap().parse().unwrap()).collect();
    let want: Vec<i64> = (1..=40_000).map(|g| g * 7).collect();
    let mut got = ids.clone();
    got.sort_unstable();
    assert_eq!(got, want, "each encounter once");
    let mut notes: Vec<i64> = table_rows(&all, "notes").iter().map(|r| r[0].as_ref().unwrap().parse().unwrap()).collect();
    notes.sort_unstable();
    assert_eq!(notes, (0..120_000).collect::<Vec<i64>>(), "each note of the files once");
    assert_eq!(moto.open_uploads(&bucket, "ehr"), 0, "no upload of the killed shard is left open");
    assert_eq!(table_rows(&all, "patients").len(), 5000);
    assert_eq!(table_rows(&all, "codes").len(), 2);

    let state: Value = serde_json::from_slice(&all["_ehrlift/state.json"]).unwrap();
    let run_id = state["run_id"].as_str().unwrap();
    let m: Value = serde_json::from_slice(&all[&format!("_ehrlift/runs/{run_id}/manifest.json")]).unwrap();
    assert_eq!((m["status"].as_str(), m["shards"]["count"].as_u64()), (Some("complete"), Some(4)));
    assert_eq!(m["shards"]["attempts"][1], 2, "shard 1 took two attempts");
    let enc = m["tables"].as_array().unwrap().iter().find(|t| t["table"] == "encounters").unwrap();
    assert!(enc["slices"].as_array().unwrap().len() >= 4, "encounters is split by key ranges: {enc}");
    let units: Value = serde_json::from_slice(&all[&format!("_ehrlift/runs/{run_id}/units.json")]).unwrap();
    let by: BTreeSet<&str> = units["units"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["pieces"].as_array().unwrap())
        .filter(|p| p["table"] == "encounters")
        .map(|p| p["split_by"].as_str().unwrap())
        .collect();
    assert_eq!(by, BTreeSet::from(["pg_stats histogram"]), "cut where PostgreSQL's statistics say");
    let shards: BTreeSet<u64> = units["units"].as_array().unwrap().iter().map(|u| u["shard"].as_u64().unwrap()).collect();
    assert_eq!(shards, BTreeSet::from([0, 1, 2, 3]), "every shard had work");
    // Sealed bounds: no key value in clear in the unit plan or the manifest.
    for p in units["units"].as_array().unwrap().iter().flat_map(|u| u["pieces"].as_array().unwrap()) {
        for bound in [&p["key_range"]["after"], &p["key_range"]["upto"]].into_iter().filter_map(Value::as_str) {
            assert!(bound.parse::<i64>().is_err() && bound.len() > 20, "a sealed bound, not a key: {bound}");
        }
    }
    for (k, bytes) in all.iter().filter(|(k, _)| k.starts_with("_ehrlift/")) {
        assert!(!String::from_utf8_lossy(bytes).contains("ZZSENTINEL"), "no source value in {k}");
    }
    for i in 0..4 {
        assert!(!std::fs::read_to_string(log(i)).unwrap().contains("ZZSENTINEL"), "no source value in shard {i}'s log");
    }
    for k in all.keys() {
        let (alg, kms, _) = moto.head(&bucket, &format!("ehr/{k}"));
        assert_eq!((alg.as_str(), kms.as_str()), ("aws:kms", key.arn.as_str()), "{k}");
    }

    // A fifth run of a finished shard does nothing.
    let again = run(moto.ehrlift().args(["run", "--json", "--shard", "2/4"]).arg(&plan)).expect(0);
    assert_eq!(again.json()["already_finished"], true);
    assert_eq!(moto.objects(&bucket, "ehr"), all, "nothing written, nothing deleted");
}

#[test]
fn issue_8_mariadb_table_split_by_sampled_keys_reads_each_row_once() {
    let Some(db) = Legacy::mariadb("shardmy") else { return };
    db.exec(
        "CREATE TABLE visits (site VARCHAR(8) NOT NULL, n INT NOT NULL, note VARCHAR(40), PRIMARY KEY (site, n));
         INSERT INTO visits SELECT CONCAT('S', seq % 5), seq, CONCAT('ZZSENTINEL', seq) FROM seq_1_to_30000;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let visits = r#"table = "visits"
source = "emr"
source_table = "visits"
key = ["site", "n"]
chunk_rows = 700
[[columns]]
name = "site"
type = "utf8"
rule = "keep"
[[columns]]
name = "n"
type = "int64"
rule = "keep"
[[columns]]
name = "note"
type = "utf8"
rule = "drop"
"#;
    let plan = plan(tmp.path(), "", &db.source("emr", ""), &[("visits", visits)]);
    let dest = tmp.path().join("out");
    // 30,000 rows weigh 7.3 MiB at 256 bytes each: 8 slices of a composite key for 2 shards.
    for i in [1, 0] {
        let out =
            run(ehrlift().arg("-vv").arg("run").arg(&plan).arg("--dest").arg(url(&dest)).args(["--shard", &format!("{i}/2")])).expect(0);
        assert!(!out.stderr().contains("ZZSENTINEL"), "shard {i} logs no value");
    }
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);
    let rows = table_rows(&objects(&dest), "visits");
    let keys: BTreeSet<(String, i64)> = rows.iter().map(|r| (r[0].clone().unwrap(), r[1].as_ref().unwrap().parse().unwrap())).collect();
    assert_eq!((rows.len(), keys.len()), (30_000, 30_000), "every row once");
    let m = manifest(&dest);
    let slices = m["tables"][0]["slices"].as_array().unwrap();
    assert_eq!(slices.len(), 8, "{slices:?}");
    for s in slices {
        let n = s["rows_read"].as_u64().unwrap();
        assert!((2_000..=6_000).contains(&n), "about 30,000 / 8 rows per slice: {slices:?}");
    }
    let units =
        std::fs::read_to_string(std::fs::read_dir(dest.join("_ehrlift/runs")).unwrap().next().unwrap().unwrap().path().join("units.json"))
            .unwrap();
    assert!(units.contains("\"split_by\": \"sampled keys\"") && !units.contains("ZZSENTINEL") && !units.contains("\"S1\""), "{units}");
}
