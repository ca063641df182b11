//! A temp-dir harness around the binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// The repository root (tests/ and mappings/ are there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `../shared/data` beside the repository.
pub fn shared_data() -> PathBuf {
    repo().join("../shared/data")
}

/// The binary under test. Shipped plans keep their keys under `EHRLIFT_KEYRING`:
/// one keyring per test process, outside the repository, unless a test sets its own.
pub fn ehrlift() -> Command {
    static KEYRING: std::sync::LazyLock<tempfile::TempDir> = std::sync::LazyLock::new(|| tempfile::tempdir().unwrap());
    let mut c = Command::new(env!("CARGO_BIN_EXE_ehrlift"));
    c.env_remove("EHRLIFT_DEST").env_remove("EHRLIFT_LOG").env("EHRLIFT_KEYRING", KEYRING.path()).arg("--progress").arg("log");
    // A test runner inside a batch job must not make every run a shard.
    for var in ["EHRLIFT_SHARD", "EHRLIFT_SHARDS", "AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE", "JOB_COMPLETION_INDEX"] {
        c.env_remove(var);
    }
    c
}

/// Output of a finished command, with helpers.
pub struct Run {
    pub out: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout(), self.stderr()))
    }
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code(), code, "exit status\nstdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self
    }
}

pub fn run(cmd: &mut Command) -> Run {
    Run { out: cmd.output().expect("run ehrlift") }
}

/// Data and quarantine objects under `dest` (not run metadata, whose run ids and times
/// differ between runs).
pub fn objects(dest: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(dest).into_iter().filter(|(k, _)| !k.starts_with("_ehrlift/")).collect()
}

/// Asserts two sets of objects are the same keys with the same bytes; `what` says which
/// runs were compared.
#[track_caller]
pub fn assert_same_objects(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let differing: Vec<&String> = want.keys().chain(got.keys()).filter(|k| got.get(*k) != want.get(*k)).collect();
    assert!(differing.is_empty(), "{what}: {differing:?}");
}

/// Every file under `dir`, relative path → bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The current run's manifest at a local destination.
pub fn manifest(dest: &Path) -> Value {
    let state: Value = serde_json::from_slice(&std::fs::read(dest.join("_ehrlift/state.json")).unwrap()).unwrap();
    let id = state["run_id"].as_str().unwrap();
    serde_json::from_slice(&std::fs::read(dest.join(format!("_ehrlift/runs/{id}/manifest.json"))).unwrap()).unwrap()
}

/// Reads a Parquet file whole.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap().map(Result::unwrap).collect()
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Writes a one-table plan over `dir/data/<files>` with the given mapping body.
pub fn write_plan(dir: &Path, run: &str, csv: &str, mapping: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("tables")).unwrap();
    let plan = format!(
        "project = \"t\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"custom\"\n[run]\n{run}\n[sources.src]\nkind = \"csv\"\ndir = \"data\"\n[sources.src.csv]\n{csv}\n"
    );
    std::fs::write(dir.join("ehrlift.toml"), plan).unwrap();
    std::fs::write(dir.join("tables/t.toml"), mapping).unwrap();
    dir.join("ehrlift.toml")
}

/// `file://` URL of a path.
pub fn url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Commit records of `table` at a local destination, over every run.
pub fn commits(dest: &Path, table: &str) -> usize {
    let Ok(runs) = std::fs::read_dir(dest.join("_ehrlift/runs")) else { return 0 };
    runs.flatten().map(|r| std::fs::read_dir(r.path().join("commits").join(table)).map(|d| d.count()).unwrap_or(0)).sum()
}

/// Runs `plan` into `dest` once per target and SIGKILLs it once `table` has that many
/// commit records (unless it finishes first); returns how many runs were killed.
pub fn kill_at(plan: &Path, dest: &Path, table: &str, targets: &[usize]) -> usize {
    let mut kills = 0;
    for &target in targets {
        let mut child = ehrlift().arg("run").arg(plan).arg("--dest").arg(url(dest)).stderr(std::process::Stdio::null()).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if commits(dest, table) >= target {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
                break;
            }
            assert!(std::time::Instant::now() < deadline, "run did not progress");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.wait().unwrap();
    }
    kills
}
