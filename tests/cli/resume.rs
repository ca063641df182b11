//! SIGKILL at any moment, run again: the same objects, no duplicates, verify passes.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::Int64Array;

use crate::harness::{self, *};

const ROWS: usize = 120_000;

fn setup(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    // Two files, the second gzipped, so resumes cross file and compression boundaries.
    for (name, range) in [("a.csv", 0..ROWS / 2), ("b.csv.gz", ROWS / 2..ROWS)] {
        let mut text = String::from("id,born,note,amount\n");
        for i in range {
            let bad = if i % 9973 == 0 { "13/45/1999" } else { "03/04/1999" };
            text.push_str(&format!("{i},{bad},\"line one\nline two of {i}\",{}.{:02}\n", i % 5000, i % 100));
        }
        let bytes = if name.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap()
        } else {
            text.into_bytes()
        };
        std::fs::write(dir.join("data").join(name), bytes).unwrap();
    }
    write_plan(
        dir,
        "batch_rows = 1000\npart_rows = 7000\nmax_quarantine_ratio = 0.01",
        "",
        r#"table = "t"
source = "src"
files = ["a.csv", "b.csv.gz"]
[[columns]]
name = "id"
type = "int64"
rule = "keep"
[[columns]]
name = "born"
type = "date32"
format = "%m/%d/%Y"
rule = "keep"
[[columns]]
name = "note"
type = "utf8"
rule = "keep"
[[columns]]
name = "amount"
type = "decimal(10,2)"
rule = "keep"
"#,
    )
}

fn commits(dest: &Path) -> usize {
    harness::commits(dest, "t")
}

fn kill_at(plan: &Path, dest: &Path, targets: &[usize]) -> usize {
    harness::kill_at(plan, dest, "t", targets)
}

#[test]
fn issue_2_sigkill_then_rerun_gives_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = setup(tmp.path());
    let reference = tmp.path().join("reference");
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&reference))).expect(0);

    let dest = tmp.path().join("killed");
    let kills = kill_at(&plan, &dest, &[1, 4, 9, 14]);
    assert!(kills >= 2, "the run must actually have been killed mid-way ({kills} kills)");
    let r = run(ehrlift().args(["run", "--json"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    assert!(r.json()["attempts"].as_u64().unwrap() >= 2);
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
    assert_same_objects(&objects(&dest), &objects(&reference), "resumed output differs from an uninterrupted run");

    // No id lost, none duplicated.
    let mut ids = Vec::new();
    for (k, _) in objects(&dest).iter().filter(|(k, _)| k.starts_with("t/")) {
        for b in read_parquet(&dest.join(k)) {
            ids.extend(b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
        }
    }
    let bad: Vec<i64> = (0..ROWS as i64).filter(|i| i % 9973 == 0).collect();
    let mut expected: Vec<i64> = (0..ROWS as i64).filter(|i| !bad.contains(i)).collect();
    ids.sort_unstable();
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

#[test]
fn issue_2_a_failing_sink_never_advances_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = setup(tmp.path());
    let dest = tmp.path().join("dest");
    std::fs::create_dir_all(dest.join("t")).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    // Start a run, then make the table's directory unwritable mid-way by replacing it with a file.
    let child =
        ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest)).arg("--fresh").stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while commits(&dest) < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::rename(dest.join("t"), dest.join("t-moved")).unwrap();
    std::fs::write(dest.join("t"), b"not a directory").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = commits(&dest);
    // Every commit record points at a data object that was durable before it.
    std::fs::remove_file(dest.join("t")).unwrap();
    std::fs::rename(dest.join("t-moved"), dest.join("t")).unwrap();
    let runs: Vec<_> = std::fs::read_dir(dest.join("_ehrlift/runs")).unwrap().flatten().collect();
    for e in std::fs::read_dir(runs[0].path().join("commits/t")).unwrap().flatten() {
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        for o in rec["objects"].as_array().unwrap() {
            assert!(dest.join(o["key"].as_str().unwrap()).exists(), "commit record without its object");
        }
    }
    // And the run resumes from there to the same result.
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    assert!(commits(&dest) > committed);
    run(ehrlift().arg("verify").arg(&dest)).expect(0);
}

#[test]
fn issue_3_sigkill_with_surrogates_keeps_one_surrogate_per_value_across_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = setup(tmp.path());
    // `amount` repeats (5000 distinct values, spread over every part): its surrogates are
    // assigned in early parts, flushed to the vault, and must be reused after every kill.
    std::fs::write(
        tmp.path().join("tables/t.toml"),
        r#"table = "t"
source = "src"
files = ["a.csv", "b.csv.gz"]
drop = ["born", "note"]
[[columns]]
name = "id"
type = "int64"
rule = "keep"
[[columns]]
name = "amount"
type = "utf8"
rule = "surrogate"
namespace = "amount"
"#,
    )
    .unwrap();
    let dest = tmp.path().join("killed");
    let kills = kill_at(&plan, &dest, &[2, 7, 12]);
    assert!(kills >= 2, "the run must actually have been killed mid-way ({kills} kills)");
    run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
    run(ehrlift().arg("verify").arg(&dest)).expect(0);

    let mut by_value: std::collections::HashMap<i64, std::collections::HashSet<String>> = Default::default();
    let mut ids = Vec::new();
    for (k, _) in objects(&dest).iter().filter(|(k, _)| k.starts_with("t/")) {
        for b in read_parquet(&dest.join(k)) {
            let id = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
            let sur = b.column_by_name("amount").unwrap().as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
            for i in 0..b.num_rows() {
                ids.push(id.value(i));
                by_value.entry(id.value(i) % 5000).or_default().insert(sur.value(i).to_owned());
            }
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..ROWS as i64).collect::<Vec<_>>(), "every row once (no date column to reject here)");
    assert_eq!(by_value.len(), 5000);
    let split: Vec<_> = by_value.iter().filter(|(_, s)| s.len() != 1).map(|(v, _)| v).collect();
    assert!(split.is_empty(), "values with several surrogates after kills: {}", split.len());
    let all: std::collections::HashSet<&String> = by_value.values().flatten().collect();
    assert_eq!(all.len(), 5000, "distinct values keep distinct surrogates");
}
