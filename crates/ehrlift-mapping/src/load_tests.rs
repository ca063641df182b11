use std::collections::HashMap;

use super::*;
use crate::Diagnostics;

const PLAN: &str = r#"project = "p"
include = ["t/*.toml"]

[destination]
url = "file://${DEST:-out}"

[privacy]
profile = "custom"

[sources.s]
kind = "csv"
dir = "${DATA}"
"#;

fn write(dir: &Path, plan: &str, mapping: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("t")).unwrap();
    std::fs::write(dir.join("ehrlift.toml"), plan).unwrap();
    std::fs::write(dir.join("t/m.toml"), mapping).unwrap();
    dir.join("ehrlift.toml")
}

fn env() -> HashMap<String, String> {
    HashMap::from([("DATA".to_owned(), "data".to_owned())])
}

fn errors(plan: &str, mapping: &str) -> Diagnostics {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), plan, mapping);
    load_plan(&p, &env()).unwrap_err()
}

#[test]
fn loads_a_plan_with_interpolation_and_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sex.csv"), "code,value\n1,M\n2,F\n").unwrap();
    let p = write(
        dir.path(),
        PLAN,
        r#"table = "patients"
source = "s"
files = ["a*.csv", "b.csv.gz"]
drop = ["NOTE"]

[csv]
delimiter = "|"

[[columns]]
name = "zip"
from = "ZIP"
type = "utf8"
rule = "keep"
phi = "geo"

[[columns]]
name = "sex"
type = "utf8"
recode_file = "../sex.csv"
rule = "keep"

[[columns]]
name = "born"
type = "date32"
format = ["%m/%d/%Y", "%Y-%m-%d"]
rule = "drop"
"#,
    );
    let plan = load_plan(&p, &env()).unwrap_or_else(|d| panic!("{d}"));
    let root = std::path::absolute(dir.path()).unwrap();
    assert_eq!(plan.destination.as_deref(), Some(format!("file://{}", root.join("out").display()).as_str()));
    let SourceKind::Csv { dir: data, .. } = &plan.sources["s"].kind else { panic!("a csv source") };
    assert_eq!(data, &root.join("data"));
    let m = &plan.tables[0];
    assert_eq!(m.csv.delimiter, Byte(b'|'));
    assert_eq!(m.files, ["a*.csv", "b.csv.gz"]);
    assert_eq!(m.columns[1].from, "sex");
    assert_eq!(m.columns[1].recode.as_ref().unwrap().map["2"], "F");
    assert_eq!(m.columns[2].formats.len(), 2);
    assert_eq!(m.source_columns(), ["ZIP", "sex"]);
    assert_eq!(m.sha256.len(), 64);
}

#[test]
fn reports_every_error_at_once_with_file_and_line() {
    let d = errors(
        PLAN,
        r#"table = "t"
source = "nope"
files = "a.csv"
colour = "blue"

[[columns]]
name = "a"
type = "int65"
rule = "keep"

[[columns]]
name = "b"
type = "utf8"
trim = "yes"

[[columns]]
name = "c"
type = "date32"
format = "%Y-%Q"
rule = "pseudonymize"
frm = "C"
"#,
    );
    let text = d.to_string();
    let has =
        |line: usize, needle: &str| d.0.iter().any(|x| x.line == Some(line) && x.message.contains(needle) && x.file.ends_with("t/m.toml"));
    assert!(has(2, "source `nope` is not defined"), "{text}");
    assert!(has(4, "unknown key `colour`"), "{text}");
    assert!(has(8, "unknown type `int65`"), "{text}");
    assert!(has(14, "`trim`"), "{text}");
    assert!(d.0.iter().any(|x| x.message.contains("column `b`: missing `rule`")), "{text}");
    assert!(has(19, "`%Y-%Q` is not a valid chrono format"), "{text}");
    assert!(has(20, "`rule`") && text.contains("pseudonymize"), "{text}");
    assert!(has(21, "unknown key `frm`"), "{text}");
    assert!(d.len() >= 8, "{text}");
}

#[test]
fn plan_errors_name_lines_and_unset_variables() {
    let plan = PLAN
        .replace("dir = \"${DATA}\"", "dir = \"${NOT_SET}\"")
        .replace("[privacy]\nprofile = \"custom\"", "[privacy]\nprofile = \"nonee\"\nextra = 1");
    let d = errors(&plan, "table = \"t\"\n");
    let text = d.to_string();
    assert!(d.0.iter().any(|x| x.line == Some(13) && x.message.contains("`NOT_SET` is not set")), "{text}");
    assert!(d.0.iter().any(|x| x.line == Some(8) && x.message.contains("nonee")), "{text}");
    assert!(d.0.iter().any(|x| x.line == Some(9) && x.message.contains("unknown key `extra`")), "{text}");
}

#[test]
fn toml_syntax_errors_have_lines() {
    let d = errors(PLAN, "table = \"t\"\nsource = \n");
    assert_eq!(d.0[0].line, Some(2), "{d}");
    assert!(d.0[0].message.starts_with("invalid TOML"), "{d}");
}

#[test]
fn a_table_needs_columns_and_no_double_classification() {
    let d = errors(
        PLAN,
        "table = \"t\"\nsource = \"s\"\nfiles = \"a\"\ndrop = [\"A\"]\n[[columns]]\nname = \"a\"\nfrom = \"A\"\ntype = \"utf8\"\nrule = \"keep\"\n",
    );
    assert!(d.to_string().contains("both read by column `a` and listed in `drop`"), "{d}");
    let d = errors(PLAN, "table = \"_t\"\nsource = \"s\"\nfiles = \"a\"\n");
    assert!(d.to_string().contains("table name `_t` is not allowed"), "{d}");
    assert!(d.to_string().contains("no [[columns]]"), "{d}");
}

const DB_PLAN: &str = r#"project = "p"
include = ["t/*.toml"]

[privacy]
profile = "custom"

[sources.s]
kind = "postgres"
url_env = "LEGACY_URL"
password_file = "pw.txt"
"#;

const DB_MAPPING: &str = r#"table = "patients"
source = "s"
source_table = "emr.patients"
key = ["id"]

[[columns]]
name = "id"
from = "patient_id"
type = "int64"
rule = "keep"

[[columns]]
name = "photo"
type = "binary"
rule = "keep"

[[columns]]
name = "tags"
type = "list<utf8>"
rule = "keep"

[[columns]]
name = "amount"
type = "decimal(60,10)"
rule = "keep"
"#;

#[test]
fn database_sources_take_the_url_from_the_environment_and_the_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw.txt"), "s3cr:t/@\n").unwrap();
    let p = write(dir.path(), DB_PLAN, DB_MAPPING);
    let mut e = env();
    e.insert("LEGACY_URL".into(), "postgres://emr@db.internal:5432/legacy?sslmode=require".into());
    let plan = load_plan(&p, &e).unwrap_or_else(|d| panic!("{d}"));
    let SourceKind::Database(db) = &plan.sources["s"].kind else { panic!("a database source") };
    assert_eq!(db.engine, Engine::Postgres);
    assert_eq!(db.url.expose(), "postgres://emr:s3cr%3At%2F%40@db.internal:5432/legacy?sslmode=require");
    assert_eq!(db.url.redacted(), "postgres://emr:***@db.internal:5432/legacy?sslmode=require");
    assert!(!format!("{db:?}").contains("s3cr"));
    let t = plan.tables[0].db.as_ref().unwrap();
    assert_eq!(t.relation, Relation::Table("emr.patients".into()));
    assert_eq!((t.resume, t.key.as_slice()), (Resume::Keyset, ["patient_id".to_owned()].as_slice()));
    let types: Vec<_> = plan.tables[0].columns.iter().map(|c| c.ty.name()).collect();
    assert_eq!(types, ["int64", "binary", "list<utf8>", "decimal(60,10)"]);
}

#[test]
fn read_connections_default_to_2_for_postgres_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw.txt"), "x").unwrap();
    let conns = |plan: &str, url: &str| {
        let mut e = env();
        e.insert("LEGACY_URL".into(), url.into());
        let p = write(dir.path(), plan, DB_MAPPING);
        load_plan(&p, &e).map(|plan| match &plan.sources["s"].kind {
            SourceKind::Database(db) => db.read_connections,
            _ => panic!("a database source"),
        })
    };
    let pg = "postgres://u@h/d";
    assert_eq!(conns(DB_PLAN, pg).unwrap(), DatabaseSource::DEFAULT_READ_CONNECTIONS);
    let with = |n: &str| DB_PLAN.replace("kind = \"postgres\"\n", &format!("kind = \"postgres\"\nread_connections = {n}\n"));
    assert!(with("1").contains("read_connections = 1"), "the plan has a postgres source");
    assert_eq!(conns(&with("1"), pg).unwrap(), 1);
    assert_eq!(conns(&with("8"), pg).unwrap(), 8);
    for bad in ["0", "9", "-1"] {
        let d = conns(&with(bad), pg).unwrap_err().to_string();
        assert!(d.contains("`read_connections` must be 1 to 8") && d.contains(&format!("got {bad}")), "{d}");
    }
    let mysql = DB_PLAN.replace("kind = \"postgres\"\n", "kind = \"mysql\"\nread_connections = 2\n");
    let d = conns(&mysql, "mysql://u@h/d").unwrap_err().to_string();
    assert!(d.contains("`read_connections` applies only to postgres sources"), "{d}");
}

#[test]
fn a_database_table_without_a_key_must_say_restart_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw.txt"), "x").unwrap();
    let mut e = env();
    e.insert("LEGACY_URL".into(), "postgres://u@h/d".into());
    let no_key = DB_MAPPING.replace("key = [\"id\"]\n", "");
    let p = write(dir.path(), DB_PLAN, &no_key);
    let d = load_plan(&p, &e).unwrap_err().to_string();
    assert!(d.contains("resume = \"restart_table\""), "{d}");
    let restart = no_key.replace("source_table", "resume = \"restart_table\"\nsource_table");
    let p = write(dir.path(), DB_PLAN, &restart);
    let plan = load_plan(&p, &e).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(plan.tables[0].db.as_ref().unwrap().resume, Resume::RestartTable);
}

#[test]
fn database_only_types_and_keys_are_refused_for_files_and_urls_must_fit_the_kind() {
    let d =
        errors(PLAN, "table = \"t\"\nsource = \"s\"\nfiles = \"a.csv\"\n[[columns]]\nname = \"b\"\ntype = \"binary\"\nrule = \"keep\"\n")
            .to_string();
    assert!(d.contains("type binary needs a database source"), "{d}");
    let d = errors(PLAN, "table = \"t\"\nsource = \"s\"\nfiles = \"a.csv\"\nquery = \"select 1\"\n[[columns]]\nname = \"b\"\ntype = \"utf8\"\nrule = \"keep\"\n")
        .to_string();
    assert!(d.contains("`query` is for database sources"), "{d}");
    let plan = "project = \"p\"\ninclude = [\"t/*.toml\"]\n[privacy]\nprofile = \"custom\"\n[sources.s]\nkind = \"mysql\"\nurl = \"postgres://u:hunter2@h/d\"\n";
    let d = errors(plan, DB_MAPPING).to_string();
    assert!(d.contains("does not fit kind = \"mysql\"") && !d.contains("hunter2"), "{d}");
}

#[test]
fn urls_are_redacted() {
    assert_eq!(redact_url("mysql://root:pw@127.0.0.1:3306/db"), "mysql://root:***@127.0.0.1:3306/db");
    assert_eq!(redact_url("postgres://u@h/d?password=x&sslmode=verify-full"), "postgres://u@h/d?password=***&sslmode=verify-full");
    assert_eq!(redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    assert_eq!(redact_url("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
}

const ONE_COLUMN: &str = r#"table = "t"
source = "s"
files = "a.csv"

[[columns]]
name = "ssn"
type = "utf8"
rule = "encrypt"
"#;

#[test]
fn s3_destinations_take_their_settings_and_kms_keys_their_provider() {
    let dir = tempfile::tempdir().unwrap();
    let plan = PLAN.replace(
        "url = \"file://${DEST:-out}\"",
        "url = \"s3://ehr-bucket/migr/2026/\"\nkms_key = \"alias/ehr\"\nregion = \"eu-west-1\"\nendpoint_url = \"http://127.0.0.1:9\"\npath_style = true\nallow_insecure_endpoint = true\nmultipart_part_mib = 16\n\n[keys]\nprovider = \"aws-kms\"\nkey_id = \"alias/ehr-keys\"",
    );
    let p = write(dir.path(), &plan, &ONE_COLUMN.replace("files = \"a.csv\"", "files = \"a.csv\"\nencrypt = \"all\""));
    let plan = load_plan(&p, &env()).unwrap();
    assert_eq!(plan.destination.as_deref(), Some("s3://ehr-bucket/migr/2026"));
    let c = &plan.cloud;
    assert_eq!(
        (c.kms_key.as_deref(), c.region.as_deref(), c.endpoint_url.as_deref()),
        (Some("alias/ehr"), Some("eu-west-1"), Some("http://127.0.0.1:9"))
    );
    assert!(c.path_style && c.allow_insecure_endpoint && !c.allow_non_kms_bucket);
    assert_eq!((c.multipart_part_mib, c.upload_concurrency), (16, 4));
    assert_eq!(plan.keys, KeysConfig::AwsKms { key_id: "alias/ehr-keys".into() });
    assert_eq!(plan.tables[0].encrypt, TableEncrypt::All);
    assert_eq!(plan.tables[0].columns[0].rule, Rule::Encrypt);
    assert!(plan.tables[0].encrypted());
}

#[test]
fn bad_destinations_and_encrypt_values_are_refused_with_their_lines() {
    for (url, why) in [
        ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("s3://ok-bucket/a//b", "empty"),
        ("gs://bucket", "expected file://PATH or s3://BUCKET/PREFIX"),
    ] {
        let e = errors(&PLAN.replace("file://${DEST:-out}", url), ONE_COLUMN).to_string();
        assert!(e.contains(why) && e.contains("ehrlift.toml:4:"), "{url}: {e}");
    }
    let e = errors(&PLAN.replace("url = \"file://${DEST:-out}\"", "url = \"s3://b-1/p\"\nmultipart_part_mib = 4"), ONE_COLUMN).to_string();
    assert!(e.contains("`multipart_part_mib` must be 5 to 5120"), "{e}");
    let e = errors(PLAN, &ONE_COLUMN.replace("files = \"a.csv\"", "files = \"a.csv\"\nencrypt = \"some\"")).to_string();
    assert!(e.contains("`encrypt`: unknown `some`") && e.contains("m.toml:4"), "{e}");
    let e = errors(&format!("{PLAN}\n[keys]\nprovider = \"aws-kms\"\n"), ONE_COLUMN).to_string();
    assert!(e.contains("key_id"), "{e}");
}

#[test]
fn references_must_name_a_written_column_and_validate_gates_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let plan = format!("{PLAN}\n[validate]\nmin_k = 5\nmax_quarantine_ratio = 0.01\nfail_on = [\"residual_phi\", \"fk_orphans\"]\n");
    let p = write(dir.path(), &plan, &ONE_COLUMN.replace("rule = \"encrypt\"", "rule = \"keep\"\nreferences = \"t.ssn\""));
    let plan = load_plan(&p, &env()).unwrap();
    assert_eq!(plan.tables[0].columns[0].references.as_deref(), Some("t.ssn"));
    assert_eq!(plan.validate.min_k, Some(5));
    assert_eq!(plan.validate.max_quarantine_ratio, Some(0.01));
    assert_eq!(plan.validate.fail_on, vec![FailOn::ResidualPhi, FailOn::FkOrphans]);

    for (r, why) in
        [("nope.ssn", "the plan maps no table `nope`"), ("t.zip", "table `t` writes no column `zip`"), ("ssn", "expected TABLE.COLUMN")]
    {
        let e = errors(PLAN, &ONE_COLUMN.replace("rule = \"encrypt\"", &format!("rule = \"keep\"\nreferences = \"{r}\""))).to_string();
        assert!(e.contains(why) && e.contains("m.toml:"), "{r}: {e}");
    }
    let e = errors(&format!("{PLAN}\n[validate]\nmin_k = 0\nfail_on = [\"everything\"]\n"), ONE_COLUMN).to_string();
    assert!(e.contains("everything"), "{e}");
    let e = errors(&format!("{PLAN}\n[validate]\nmin_k = 0\n"), ONE_COLUMN).to_string();
    assert!(e.contains("`min_k` must be at least 1"), "{e}");
}
