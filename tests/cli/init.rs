//! `ehrlift init`: a scaffold from a real database's catalog that loads, fails closed,
//! never writes a sampled value or the URL, and runs.

use crate::db::Legacy;
use crate::harness::*;

/// Every file under `dir`, as text (lossy), for leak checks.
fn all_text(dir: &std::path::Path) -> String {
    snapshot(dir).values().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>().join("\n")
}

fn scaffold_and_run(db: &Legacy) {
    db.exec(
        "CREATE TABLE patients (id bigint PRIMARY KEY, mrn varchar(20) NOT NULL, first_name varchar(40), ssn char(11), \
         birth_date date, zip varchar(10), notes text, mystery varchar(40));
         CREATE TABLE visits (visit_id bigint PRIMARY KEY, patient_id bigint REFERENCES patients(id), admitted_at timestamp, ward_code int);
         CREATE TABLE audit_log (msg text)",
    );
    db.exec(
        "INSERT INTO patients VALUES (1, 'MRN-ZZSENTINEL1', 'ZZSENTINELNAME', '123-45-6789', '1950-02-03', '02134', 'seen ZZSENTINELNAME today', 'x7'),
                                     (2, 'MRN-2', 'Ann', '987-65-4321', '1990-12-31', '10001', NULL, 'y8');
         INSERT INTO visits VALUES (10, 1, '2024-01-02 03:04:05', 3), (11, 2, '2024-02-03 04:05:06', 4);
         INSERT INTO audit_log VALUES ('login ok')",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("legacy");
    let r = run(ehrlift().args(["init", "--source-env", "LEGACY_URL", "--out"]).arg(&out).env("LEGACY_URL", db.url())).expect(0);
    assert!(r.stderr().contains("REVIEW patients.mystery"), "{}", r.stderr());
    let plan = out.join("ehrlift.toml");
    let patients = std::fs::read_to_string(out.join("tables/patients.toml")).unwrap();
    let audit = std::fs::read_to_string(out.join("tables/audit_log.toml")).unwrap();
    // Fails closed: the unsure column is dropped for review; identifiers are dropped or surrogates.
    let block = |name: &str| patients.split("[[columns]]").find(|b| b.contains(&format!("from = \"{name}\""))).unwrap().to_owned();
    assert!(block("mystery").contains("rule = \"drop\"") && block("mystery").contains("REVIEW"), "{patients}");
    assert!(block("ssn").contains("rule = \"drop\""), "{patients}");
    assert!(block("mrn").contains("rule = \"surrogate\""), "{patients}");
    assert!(patients.contains("key = [\"id\"]"), "{patients}");
    assert!(audit.contains("resume = \"restart_table\""), "{audit}");
    // No sampled value and no URL in what init wrote.
    let written = all_text(&out);
    assert!(!written.contains("ZZSENTINEL") && !written.contains("123-45-6789"), "a sampled value leaked into the scaffold");
    // Only a redacted URL in a comment: the plan reads the URL from EHRLIFT_SOURCE_URL.
    let db_url_lines =
        written.lines().filter(|l| !l.trim_start().starts_with('#') && (l.contains("postgres://") || l.contains("mysql://")));
    assert_eq!(db_url_lines.count(), 0, "the URL was written");
    assert!(written.contains("url_env = \"EHRLIFT_SOURCE_URL\""), "{written}");

    // The scaffold runs as written, under safe_harbor.
    let dest = dir.path().join("out");
    let r = run(ehrlift().args(["run"]).arg(&plan).args(["--dest", &url(&dest)]).env("EHRLIFT_SOURCE_URL", db.url())).expect(0);
    let m = manifest(&dest);
    let written: u64 = m["tables"].as_array().unwrap().iter().map(|t| t["rows_written"].as_u64().unwrap()).sum();
    assert_eq!(written, 5);
    for leak in ["ZZSENTINEL", "123-45-6789"] {
        assert!(!r.stderr().contains(leak), "{leak} in stderr");
        assert!(!all_text(&dest).contains(leak), "{leak} reached the destination");
    }
}

#[test]
fn issue_4_init_scaffolds_postgres_into_a_plan_that_fails_closed_and_runs() {
    if let Some(db) = Legacy::postgres("init") {
        scaffold_and_run(&db);
    }
}

#[test]
fn issue_4_init_scaffolds_mariadb_into_a_plan_that_fails_closed_and_runs() {
    if let Some(db) = Legacy::mariadb("init") {
        scaffold_and_run(&db);
    }
}

#[test]
fn issue_4_init_refuses_to_overwrite_and_never_prints_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("ehrlift.toml"), "# mine").unwrap();
    let r = run(ehrlift().args(["init", "--source", "postgres://u:hunter2@127.0.0.1:1/db", "--out"]).arg(&out)).expect(2);
    assert!(r.stderr().contains("--force"), "{}", r.stderr());
    let r = run(ehrlift().args(["init", "--force", "--source", "postgres://u:hunter2@127.0.0.1:1/db", "--out"]).arg(&out));
    assert_ne!(r.code(), 0);
    assert!(!r.stderr().contains("hunter2") && r.stderr().contains("***"), "{}", r.stderr());
    assert_eq!(std::fs::read_to_string(out.join("ehrlift.toml")).unwrap(), "# mine");
}

/// `url_file`, `url_env` and `password_file` work end to end, and no form prints the
/// password. (The servers here trust local connections, so the password itself is not
/// checked by them.)
#[test]
fn issue_4_url_env_url_file_and_password_file_connect_without_printing_the_password() {
    use crate::db::{db_plan, mapping, run_db};
    let Some(db) = Legacy::postgres("urls") else { return };
    db.exec("CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    let role = db.role("reader");
    db.exec(&format!("ALTER ROLE {role} PASSWORD 'pw-ZZSECRET/@:x'; GRANT SELECT ON t TO {role}"));
    let tmp = tempfile::tempdir().unwrap();
    let base = format!("postgres://{role}@127.0.0.1:5432/{}?sslmode=disable", db.name);
    std::fs::write(tmp.path().join("pw.txt"), "pw-ZZSECRET/@:x\n").unwrap();
    std::fs::write(tmp.path().join("url.txt"), format!("{base}\n")).unwrap();
    let cols = [("id", "int64", ""), ("v", "utf8", "")];
    let body = mapping("t", "legacy", "source_table = \"t\"\nkey = [\"id\"]", &cols);
    for (how, source) in [
        ("url_file", "[sources.legacy]\nkind = \"postgres\"\nurl_file = \"url.txt\"\npassword_file = \"pw.txt\"\n"),
        ("url_env", "[sources.legacy]\nkind = \"postgres\"\nurl_env = \"LEGACY_URL\"\npassword_file = \"pw.txt\"\n"),
    ] {
        let plan = db_plan(tmp.path(), "", source, &[("t", body.clone())]);
        let dest = tmp.path().join(format!("out-{how}"));
        let r = run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest)).arg("-v").env("LEGACY_URL", &base));
        assert_eq!(r.code(), 0, "{how}: {}", r.stderr());
        assert!(!r.stderr().contains("ZZSECRET"), "{how}: the password was printed");
        let m = manifest(&dest);
        assert_eq!(m["tables"][0]["rows_written"], 2, "{how}");
        assert!(!serde_json::to_string(&m).unwrap().contains("ZZSECRET"), "{how}: the password is in the manifest");
    }
    // A password inside `url`, and an error: the message shows the URL redacted.
    let with_pw = format!("postgres://{role}:not-it@127.0.0.1:5432/{}?sslmode=disable", db.name);
    let missing = mapping("t", "legacy", "source_table = \"missing\"\nkey = [\"id\"]", &cols);
    let plan = db_plan(tmp.path(), "", &format!("[sources.legacy]\nkind = \"postgres\"\nurl = \"{with_pw}\"\n"), &[("t", missing)]);
    let r = run_db(&plan, &tmp.path().join("out-missing"), &[]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(!r.stderr().contains("not-it") && r.stderr().contains(":***@"), "{}", r.stderr());
}
