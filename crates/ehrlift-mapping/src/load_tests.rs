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
    let SourceKind::Csv { dir: data, .. } = &plan.sources["s"].kind;
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
