//! Parquet modular encryption on the local store: `rule = "encrypt"` columns and
//! `encrypt = "all"` tables, read back with `ehrlift read`, and refused without the key.

use crate::harness::*;

const MAPPING: &str = r#"table = "people"
source = "src"
files = "people.csv"
key = ["id"]
encrypt = "ENCRYPT"

[[columns]]
name = "id"
type = "int64"
rule = "keep"

[[columns]]
name = "ssn"
type = "utf8"
rule = "encrypt"
phi = "ssn"

[[columns]]
name = "name"
type = "utf8"
rule = "keep"
phi = "name"
"#;

/// A plan whose keys live in `dir/keyring`, over sentinel values that must never be
/// readable in the objects' bytes.
fn setup(dir: &std::path::Path, encrypt: &str) -> (std::path::PathBuf, String) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut csv = String::from("id,ssn,name\n");
    for i in 0..300 {
        csv.push_str(&format!("{i},SENTINELSSN{i:04},SENTINELNAME{i:04}\n"));
    }
    std::fs::write(dir.join("data/people.csv"), &csv).unwrap();
    let plan = write_plan(dir, "", "delimiter = \",\"", &MAPPING.replace("ENCRYPT", encrypt));
    let text =
        std::fs::read_to_string(&plan).unwrap() + &format!("[keys]\nprovider = \"local\"\npath = \"{}\"\n", dir.join("keyring").display());
    std::fs::write(&plan, text).unwrap();
    (plan, csv)
}

#[test]
fn issue_5_encrypted_columns_round_trip_with_the_key_and_fail_clearly_without_it() {
    for encrypt in ["columns", "all"] {
        let tmp = tempfile::tempdir().unwrap();
        let (plan, csv) = setup(tmp.path(), encrypt);
        let dest = tmp.path().join("out");
        run(ehrlift().arg("run").arg(&plan).arg("--dest").arg(url(&dest))).expect(0);

        // Every column is keyed (the others with the footer key): no value is in the clear.
        let objects = objects(&dest);
        assert_eq!(objects.len(), 1, "{:?}", objects.keys());
        for (key, bytes) in &objects {
            assert!(!bytes.windows(8).any(|w| w == b"SENTINEL"), "{encrypt}: {key} holds plaintext values");
            assert_eq!(&bytes[bytes.len() - 4..], b"PARE", "{encrypt}: {key} has an encrypted footer");
            let f = std::fs::File::open(dest.join(key)).unwrap();
            assert!(parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).is_err(), "readable without keys");
        }
        let m = manifest(&dest);
        let enc = &m["objects"][0]["encryption"];
        assert_eq!(enc["provider"], "local");
        let names: Vec<&str> = enc["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["footer", "column:ssn"], "{encrypt}");
        assert_eq!(enc["wrapping_key"], m["key_ids"][0]);
        run(ehrlift().arg("verify").arg(url(&dest))).expect(0);

        // With the plan's keyring: the rows as they were.
        let out = run(ehrlift().arg("read").arg(dest.join("people")).arg("--plan").arg(&plan)).expect(0);
        assert_eq!(out.stdout(), csv, "{encrypt}");
        let out = run(ehrlift().arg("read").arg(url(&dest.join("people/part-000001.parquet"))).args(["--plan"]).arg(&plan).args([
            "--columns",
            "name,id",
            "--format",
            "json",
            "--limit",
            "2",
        ]))
        .expect(0);
        assert_eq!(out.stdout(), "{\"id\":0,\"name\":\"SENTINELNAME0000\"}\n{\"id\":1,\"name\":\"SENTINELNAME0001\"}\n");

        // Without a key, or with another project's key: a clear refusal, no value, no panic.
        let out = run(ehrlift().arg("read").arg(dest.join("people"))).expect(2);
        let e = out.stderr();
        assert!(e.contains("--plan") && e.contains(m["key_ids"][0].as_str().unwrap()), "{e}");
        assert!(!e.contains("SENTINEL") && out.stdout().is_empty(), "{e}");
        let other = tempfile::tempdir().unwrap();
        let (other_plan, _) = setup(other.path(), encrypt);
        run(ehrlift().arg("run").arg(&other_plan).arg("--dest").arg(url(&other.path().join("o")))).expect(0);
        let out = run(ehrlift().arg("read").arg(dest.join("people")).arg("--plan").arg(&other_plan)).expect(2);
        assert!(out.stderr().contains("the plan's keyring holds"), "{}", out.stderr());
        let out = run(ehrlift().arg("read").arg(dest.join("people")).arg("--plan").arg(&plan).args(["--columns", "nope"])).expect(2);
        assert!(out.stderr().contains("nope"), "{}", out.stderr());
        // A keyring that cannot be used says why, not "pass --plan".
        let key_file = std::fs::read_dir(tmp.path().join("keyring")).unwrap().flatten().next().unwrap().path();
        std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let out = run(ehrlift().arg("read").arg(dest.join("people")).arg("--plan").arg(&plan)).expect(2);
        assert!(out.stderr().contains("the plan's keyring") && !out.stderr().contains("pass --plan"), "{}", out.stderr());
        assert!(out.stdout().is_empty());
    }
}

#[test]
fn issue_5_encrypt_follows_keep_under_the_privacy_profiles() {
    let tmp = tempfile::tempdir().unwrap();
    let (plan, _) = setup(tmp.path(), "columns");
    let text = std::fs::read_to_string(&plan).unwrap().replace("profile = \"custom\"", "profile = \"safe_harbor\"");
    std::fs::write(&plan, text).unwrap();
    let out = run(ehrlift().arg("validate").arg(&plan)).expect(2);
    // An SSN is PHI whoever holds the key: encryption is not de-identification.
    assert!(out.stderr().contains("ssn") && out.stderr().contains("encrypt"), "{}", out.stderr());
}
