//! The S3 destination against moto's server (S3 and KMS), started by scripts/test.sh on
//! 127.0.0.1 and named by `EHRLIFT_TEST_AWS_ENDPOINT`. Without it these tests skip with
//! a notice; under CI=true a missing server fails them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

use crate::harness::*;

/// moto's endpoint and SDK clients for checking what ehrlift wrote.
pub struct Moto {
    endpoint: String,
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
}

/// A KMS key made in moto: its id and ARN.
pub struct Key {
    pub id: String,
    pub arn: String,
}

impl Moto {
    pub fn get() -> Option<Moto> {
        let Ok(endpoint) = std::env::var("EHRLIFT_TEST_AWS_ENDPOINT") else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("EHRLIFT_TEST_AWS_ENDPOINT is not set (moto's server, started by scripts/test.sh); CI=true requires it");
            }
            eprintln!("notice: S3 test skipped: EHRLIFT_TEST_AWS_ENDPOINT is not set (run scripts/test.sh to start moto)");
            return None;
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(&endpoint)
                .credentials_provider(creds.clone())
                .force_path_style(true)
                .build(),
        );
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .region(aws_sdk_kms::config::Region::new("us-east-1"))
                .endpoint_url(&endpoint)
                .credentials_provider(creds)
                .build(),
        );
        Some(Moto { endpoint, rt, s3, kms })
    }

    /// The binary with moto as its AWS endpoint and test credentials.
    pub fn ehrlift(&self) -> Command {
        let mut c = ehrlift();
        c.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    pub fn key(&self) -> Key {
        let k = self.rt.block_on(self.kms.create_key().send()).unwrap().key_metadata.unwrap();
        Key { id: k.key_id, arn: k.arn.unwrap() }
    }

    /// A new bucket named after `test`; with `kms_default`, SSE-KMS default encryption under that key.
    pub fn bucket(&self, test: &str, kms_default: Option<&Key>) -> String {
        let name = format!("{}-{}", test.replace('_', "-"), std::process::id()).chars().take(63).collect::<String>();
        self.rt.block_on(self.s3.create_bucket().bucket(&name).send()).unwrap();
        if let Some(k) = kms_default {
            use aws_sdk_s3::types::*;
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::AwsKms)
                        .kms_master_key_id(&k.arn)
                        .build()
                        .unwrap(),
                )
                .bucket_key_enabled(true)
                .build();
            let conf = ServerSideEncryptionConfiguration::builder().rules(rule).build().unwrap();
            self.rt.block_on(self.s3.put_bucket_encryption().bucket(&name).server_side_encryption_configuration(conf).send()).unwrap();
        }
        name
    }

    /// Every object under `prefix/`, relative key → bytes.
    pub fn objects(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut pages = self.s3.list_objects_v2().bucket(bucket).prefix(format!("{prefix}/")).into_paginator().send();
        while let Some(page) = self.rt.block_on(pages.next()) {
            for o in page.unwrap().contents() {
                let key = o.key().unwrap().to_owned();
                let body =
                    self.rt.block_on(async { self.s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await });
                out.insert(key[prefix.len() + 1..].to_owned(), body.unwrap().into_bytes().to_vec());
            }
        }
        out
    }

    /// Keys under `prefix/` (full keys), without reading the objects.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(bucket).prefix(format!("{prefix}/")).into_paginator().send();
        while let Some(page) = self.rt.block_on(pages.next()) {
            out.extend(page.unwrap().contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        out
    }

    /// One object's bytes (full key).
    pub fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let body = self.rt.block_on(async { self.s3.get_object().bucket(bucket).key(key).send().await.unwrap().body.collect().await });
        body.unwrap().into_bytes().to_vec()
    }

    /// SSE algorithm, KMS key id and bucket-key flag of an object.
    pub fn head(&self, bucket: &str, key: &str) -> (String, String, bool) {
        let h = self.rt.block_on(self.s3.head_object().bucket(bucket).key(key).send()).unwrap();
        (
            h.server_side_encryption().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            h.ssekms_key_id().unwrap_or_default().to_owned(),
            h.bucket_key_enabled().unwrap_or(false),
        )
    }

    /// Multipart uploads open under `prefix/`.
    pub fn open_uploads(&self, bucket: &str, prefix: &str) -> usize {
        let r = self.rt.block_on(self.s3.list_multipart_uploads().bucket(bucket).prefix(format!("{prefix}/")).send()).unwrap();
        r.uploads().len()
    }

    /// Puts an object with SSE-S3 (`kms: None`) or SSE-KMS under `kms`, as something
    /// other than ehrlift might.
    pub fn put_sse(&self, bucket: &str, key: &str, body: &[u8], kms: Option<&str>) {
        use aws_sdk_s3::types::ServerSideEncryption;
        let req = self.s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body.to_vec()));
        let req = match kms {
            None => req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(k) => req.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k),
        };
        self.rt.block_on(req.send()).unwrap();
    }
}

/// The data and quarantine objects (not `_ehrlift/` metadata).
fn data_objects(all: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    all.iter().filter(|(k, _)| !k.starts_with("_ehrlift/")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn manifest_of(all: &BTreeMap<String, Vec<u8>>) -> Value {
    let state: Value = serde_json::from_slice(&all["_ehrlift/state.json"]).unwrap();
    serde_json::from_slice(&all[&format!("_ehrlift/runs/{}/manifest.json", state["run_id"].as_str().unwrap())]).unwrap()
}

/// The shipped Synthea plan, written to S3 through moto (`allow_insecure_endpoint`: moto
/// speaks http) under `kms_key`, with `extra` lines in its [destination].
fn synthea_plan(dir: &Path, dest: &str, kms_key: &str, extra: &str) -> PathBuf {
    let shipped = repo().join("mappings/synthea");
    let text = std::fs::read_to_string(shipped.join("ehrlift.toml")).unwrap();
    let start = text.find("[destination]").unwrap();
    let end = text[start..].find("\n[privacy]").unwrap() + start;
    let text = format!(
        "{}[destination]\nurl = \"{dest}\"\nkms_key = \"{kms_key}\"\nallow_insecure_endpoint = true\n{extra}\n{}",
        &text[..start],
        &text[end..]
    )
    .replace("include = [\"tables/*.toml\"]", &format!("include = [\"{}/tables/*.toml\"]", shipped.display()))
    .replace("${SYNTHEA_DIR:-../../../shared/data/synthea-csv}", &shared_data().join("synthea-csv").display().to_string());
    let plan = dir.join("synthea.toml");
    std::fs::write(&plan, text).unwrap();
    plan
}

#[test]
fn issue_5_synthea_into_s3_every_object_sse_kms_with_the_plans_key_and_verified() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.key();
    let bucket = moto.bucket("synthea", Some(&key));
    let tmp = tempfile::tempdir().unwrap();
    let plan = synthea_plan(tmp.path(), &format!("s3://{bucket}/ehr/synthea"), &key.id, "");
    let out = run(moto.ehrlift().args(["run", "--json"]).arg(&plan)).expect(0);
    assert_eq!(out.json()["status"], "complete");
    assert!(out.stderr().contains("preflight"), "{}", out.stderr());

    let all = moto.objects(&bucket, "ehr/synthea");
    let data = data_objects(&all);
    assert!(data.len() >= 17, "{:?}", data.keys());
    // Every object, data and metadata alike, is SSE-KMS under the plan's key, with a bucket key.
    for k in all.keys() {
        let (alg, kms, bucket_key) = moto.head(&bucket, &format!("ehr/synthea/{k}"));
        assert_eq!((alg.as_str(), kms.as_str(), bucket_key), ("aws:kms", key.arn.as_str(), true), "{k}");
    }
    assert_eq!(moto.open_uploads(&bucket, "ehr/synthea"), 0);
    let m = manifest_of(&all);
    assert_eq!(m["destination"], format!("s3://{bucket}/ehr/synthea"));
    assert_eq!(m["destination_encryption"]["kms_key_arn"], key.arn.as_str());
    assert_eq!(m["destination_encryption"]["bucket_default"], "aws:kms");
    for o in m["objects"].as_array().unwrap() {
        let bytes = &all[o["key"].as_str().unwrap()];
        assert_eq!(o["sha256"].as_str().unwrap(), ehrlift_sha256(bytes));
    }
    // The same rows as a local run of the plan.
    let local = tmp.path().join("local");
    run(ehrlift().arg("run").arg(repo().join("mappings/synthea/ehrlift.toml")).arg("--dest").arg(url(&local))).expect(0);
    let rows =
        |m: &Value| m["tables"].as_array().unwrap().iter().map(|t| (t["table"].clone(), t["rows_written"].clone())).collect::<Vec<_>>();
    assert_eq!(rows(&m), rows(&manifest(&local)));

    let v = run(moto.ehrlift().arg("verify").arg(format!("s3://{bucket}/ehr/synthea")).arg("--plan").arg(&plan).arg("--json")).expect(0);
    assert_eq!(v.json()["kms_key_arn"], key.arn.as_str());
    assert!(v.stderr().contains("all SSE-KMS under"), "{}", v.stderr());
    // A run again does nothing. Objects replaced by the same bytes under SSE-S3, or under
    // another KMS key, fail verify although their SHA-256 matches; so does another --kms-key.
    let again = run(moto.ehrlift().args(["run", "--json"]).arg(&plan)).expect(0);
    assert_eq!(again.json()["already_finished"], true);
    let other = moto.key();
    let (v1, v2) = (m["objects"][0]["key"].as_str().unwrap(), m["objects"][1]["key"].as_str().unwrap());
    moto.put_sse(&bucket, &format!("ehr/synthea/{v1}"), &all[v1], None);
    moto.put_sse(&bucket, &format!("ehr/synthea/{v2}"), &all[v2], Some(&other.arn));
    let v = run(moto.ehrlift().arg("verify").arg(format!("s3://{bucket}/ehr/synthea")).arg("--plan").arg(&plan)).expect(1);
    let e = v.stderr();
    assert!(e.contains(&format!("FAIL {v1}: not encrypted with SSE-KMS")), "{e}");
    assert!(e.contains(&format!("FAIL {v2}: encrypted with another KMS key")), "{e}");
    assert!(e.contains("2 problem(s)"), "{e}");
    let v = run(moto.ehrlift().arg("verify").arg(format!("s3://{bucket}/ehr/synthea")).args([
        "--allow-insecure-endpoint",
        "--kms-key",
        &other.id,
    ]))
    .expect(1);
    assert!(v.stderr().contains("FAIL _ehrlift/runs/"), "{}", v.stderr());
}

fn ehrlift_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn issue_5_preflight_refuses_a_bucket_without_kms_default_an_unknown_key_and_http() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.key();
    let plain = moto.bucket("plain-bucket", None);
    let tmp = tempfile::tempdir().unwrap();
    let dest = format!("s3://{plain}/p");

    // A bucket whose default encryption is not aws:kms: refused by name, nothing written.
    let plan = synthea_plan(tmp.path(), &dest, &key.arn, "");
    let out = run(moto.ehrlift().arg("run").arg(&plan)).expect(2);
    assert!(out.stderr().contains(&plain) && out.stderr().contains("aws:kms"), "{}", out.stderr());
    assert!(moto.objects(&plain, "p").is_empty());
    let out = run(moto.ehrlift().arg("validate").arg(&plan).arg("--json")).expect(2);
    assert!(out.json()["destination"]["problem"].as_str().unwrap().contains(&plain));

    // The plan's explicit override: written (still SSE-KMS), and recorded in the manifest.
    let plan = synthea_plan(tmp.path(), &dest, &key.arn, "allow_non_kms_bucket = true");
    run(moto.ehrlift().arg("run").arg(&plan)).expect(0);
    let all = moto.objects(&plain, "p");
    let m = manifest_of(&all);
    assert_eq!(m["destination_encryption"]["non_kms_bucket_allowed"], true);
    assert_eq!(m["destination_encryption"]["bucket_default"], "none");
    for k in all.keys() {
        assert_eq!(moto.head(&plain, &format!("p/{k}")).0, "aws:kms", "{k}");
    }

    // An unknown key (moto would accept it on PUT: the check is ours), and --kms-key over the plan.
    let kms_bucket = moto.bucket("unknown-key", Some(&key));
    let plan = synthea_plan(tmp.path(), &format!("s3://{kms_bucket}/p"), &key.arn, "");
    for bad in ["alias/does-not-exist", "1b0f2a34-0000-4000-8000-000000000000"] {
        let out = run(moto.ehrlift().arg("run").arg(&plan).args(["--kms-key", bad])).expect(2);
        assert!(out.stderr().contains(bad) && out.stderr().contains("does not exist"), "{}", out.stderr());
    }
    assert!(moto.objects(&kms_bucket, "p").is_empty());

    // Without a KMS key nothing is written, and the message says what to set; status
    // (which only reads) still works.
    let keyless = std::fs::read_to_string(&plan).unwrap().replace(&format!("kms_key = \"{}\"\n", key.arn), "");
    let keyless_plan = tmp.path().join("keyless.toml");
    std::fs::write(&keyless_plan, keyless).unwrap();
    let out = run(moto.ehrlift().arg("run").arg(&keyless_plan)).expect(2);
    assert!(out.stderr().contains("no KMS key configured") && out.stderr().contains("--kms-key"), "{}", out.stderr());
    assert!(moto.objects(&kms_bucket, "p").is_empty());
    let st = run(moto.ehrlift().args(["status", "--json"]).arg(&keyless_plan)).expect(0);
    assert!(st.json()["state"].is_null(), "{}", st.stdout());

    // http:// only when the plan allows an insecure endpoint.
    let text = std::fs::read_to_string(&plan).unwrap().replace("allow_insecure_endpoint = true\n", "");
    std::fs::write(&plan, text).unwrap();
    let out = run(moto.ehrlift().arg("run").arg(&plan)).expect(2);
    assert!(out.stderr().contains("http://") && out.stderr().contains("allow_insecure_endpoint"), "{}", out.stderr());
}

/// A CSV of random-looking text: its Parquet part is about `mib` MiB.
fn big_csv(path: &Path, rows: usize) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "id,blob").unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rows {
        let mut s = String::with_capacity(48);
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(&format!("{x:016x}"));
        }
        writeln!(w, "{i},{s}").unwrap();
    }
}

/// A plan of one table of `rows` random rows, written to `dest` with 5 MiB upload parts.
fn big_plan(dir: &Path, dest: &str, key: &str, rows: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    big_csv(&dir.join("data/big.csv"), rows);
    let plan = write_plan(
        dir,
        "part_rows = 10000000\nrow_group_rows = 65536",
        "delimiter = \",\"",
        "table = \"big\"\nsource = \"src\"\nfiles = \"big.csv\"\n\n[[columns]]\nname = \"id\"\ntype = \"int64\"\nrule = \"keep\"\n\n[[columns]]\nname = \"blob\"\ntype = \"utf8\"\nrule = \"keep\"\ndictionary = false\n",
    );
    let text = std::fs::read_to_string(&plan).unwrap().replacen(
        "[privacy]",
        &format!("[destination]\nurl = \"{dest}\"\nkms_key = \"{key}\"\nallow_insecure_endpoint = true\nmultipart_part_mib = 5\nupload_concurrency = 2\n\n[privacy]"),
        1,
    );
    std::fs::write(&plan, text).unwrap();
    plan
}

fn spawn(mut c: Command, log: &Path) -> Child {
    c.stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap()
}

#[test]
fn issue_5_a_run_killed_during_a_multipart_upload_resumes_to_the_same_output_and_leaves_no_upload_open() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.key();
    let bucket = moto.bucket("multipart-kill", Some(&key));
    let tmp = tempfile::tempdir().unwrap();
    let rows = 400_000;
    // An uninterrupted run: the reference.
    let plan = big_plan(&tmp.path().join("a"), &format!("s3://{bucket}/whole"), &key.arn, rows);
    run(moto.ehrlift().arg("run").arg(&plan)).expect(0);
    let want = data_objects(&moto.objects(&bucket, "whole"));
    let part = &want["big/part-000001.parquet"];
    assert!(part.len() > 10 << 20, "the part must span several 5 MiB upload parts: {} bytes", part.len());

    // Killed while a multipart upload is open, then run again.
    let plan = big_plan(&tmp.path().join("b"), &format!("s3://{bucket}/cut"), &key.arn, rows);
    let log = tmp.path().join("cut.log");
    let mut child = spawn(
        {
            let mut c = moto.ehrlift();
            c.arg("run").arg(&plan);
            c
        },
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while moto.open_uploads(&bucket, "cut") == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before an upload was open:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(Instant::now() < deadline, "no multipart upload was started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(moto.open_uploads(&bucket, "cut") >= 1, "the killed run left its upload open");
    let out = run(moto.ehrlift().arg("run").arg(&plan)).expect(0);
    assert!(out.stderr().contains("removed incomplete writes of an interrupted attempt table=big swept=1"), "{}", out.stderr());
    assert_eq!(moto.open_uploads(&bucket, "cut"), 0, "the rerun aborted what the killed run left");
    let got = data_objects(&moto.objects(&bucket, "cut"));
    assert_same_objects(&got, &want, "killed-and-resumed vs uninterrupted");
    run(moto.ehrlift().arg("verify").arg(format!("s3://{bucket}/cut")).arg("--plan").arg(&plan)).expect(0);
}

#[test]
fn issue_5_two_runners_of_one_plan_exactly_one_commits() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.key();
    let bucket = moto.bucket("two-runners", Some(&key));
    let tmp = tempfile::tempdir().unwrap();
    let plan = big_plan(tmp.path(), &format!("s3://{bucket}/race"), &key.arn, 100_000);
    let children: Vec<(Child, PathBuf)> = (0..2)
        .map(|i| {
            let log = tmp.path().join(format!("r{i}.log"));
            let mut c = moto.ehrlift();
            c.arg("run").arg(&plan);
            (spawn(c, &log), log)
        })
        .collect();
    let results: Vec<(i32, String)> =
        children.into_iter().map(|(mut c, log)| (c.wait().unwrap().code().unwrap(), std::fs::read_to_string(log).unwrap())).collect();
    let winners = results.iter().filter(|(code, _)| *code == 0).count();
    assert_eq!(winners, 1, "exactly one runner commits: {results:?}");
    let (code, log) = results.iter().find(|(code, _)| *code != 0).unwrap();
    assert_eq!(*code, 3, "the loser stops with a transient error (retry later): {log}");
    assert!(log.contains("another ehrlift run"), "{log}");
    let all = moto.objects(&bucket, "race");
    let commits = all.keys().filter(|k| k.contains("/commits/big/0")).count();
    assert_eq!(commits, 1, "{:?}", all.keys());
    assert!(!all.contains_key("_ehrlift/run.lock"), "the winner released its lease");
    run(moto.ehrlift().arg("verify").arg(format!("s3://{bucket}/race")).arg("--plan").arg(&plan)).expect(0);
}

#[test]
fn issue_5_a_kms_project_key_is_kept_wrapped_at_the_destination_and_encrypted_columns_read_back_through_kms() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.key();
    let bucket = moto.bucket("kms-keys", Some(&key));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    let mut csv = String::from("id,mrn,ssn\n");
    for i in 0..50 {
        csv.push_str(&format!("{i},SENTINELMRN{i:03},SENTINELSSN{i:03}\n"));
    }
    std::fs::write(tmp.path().join("data/p.csv"), &csv).unwrap();
    let plan = write_plan(
        tmp.path(),
        "",
        "delimiter = \",\"",
        "table = \"p\"\nsource = \"src\"\nfiles = \"p.csv\"\nencrypt = \"all\"\n\n[[columns]]\nname = \"id\"\ntype = \"int64\"\nrule = \"keep\"\n\n[[columns]]\nname = \"mrn\"\ntype = \"utf8\"\nrule = \"pseudonym\"\nphi = \"mrn\"\n\n[[columns]]\nname = \"ssn\"\ntype = \"utf8\"\nrule = \"encrypt\"\nphi = \"ssn\"\n",
    );
    let dest = format!("s3://{bucket}/k");
    let text = std::fs::read_to_string(&plan).unwrap().replacen(
        "[privacy]",
        &format!("[destination]\nurl = \"{dest}\"\nkms_key = \"{}\"\nallow_insecure_endpoint = true\n\n[keys]\nprovider = \"aws-kms\"\nkey_id = \"{}\"\n\n[privacy]", key.arn, key.arn),
        1,
    );
    std::fs::write(&plan, text).unwrap();
    // Traced to the last SDK request and response: no value, no key material.
    let out = run(moto.ehrlift().arg("-vv").arg("run").arg(&plan)).expect(0);
    let log = out.stderr();
    assert!(log.contains("GenerateDataKey") && !log.contains("SENTINEL"), "a value reached the trace log");
    assert!(log.contains("plaintext: \"*** Sensitive Data Redacted ***\"") && log.contains("secret_access_key: \"** redacted **\""));
    let all = moto.objects(&bucket, "k");
    let wrapped: Value = serde_json::from_slice(&all["_ehrlift/keys/project-key.json"]).unwrap();
    assert_eq!(wrapped["kms_key_arn"], key.arn.as_str());
    let m = manifest_of(&all);
    assert_eq!(m["project_key"]["provider"], "aws-kms");
    assert_eq!(m["project_key"]["wrapping_key"], key.arn.as_str());
    assert_eq!(m["project_key"]["key_id"], wrapped["key_id"]);
    assert_eq!(m["objects"][0]["encryption"]["wrapping_key"], key.arn.as_str());
    for (k, bytes) in &all {
        assert!(!bytes.windows(8).any(|w| w == b"SENTINEL"), "{k} holds a value in the clear");
    }
    // A fresh run unwraps the same project key: the same pseudonyms.
    let first =
        run(moto.ehrlift().arg("-vv").arg("read").arg(format!("{dest}/p")).args(["--columns", "mrn"]).arg("--allow-insecure-endpoint"))
            .expect(0);
    assert!(first.stderr().contains("KMS.Decrypt") && !first.stderr().contains("SENTINEL"), "read traced no value to stderr");
    let first = first.stdout();
    run(moto.ehrlift().arg("run").arg(&plan).arg("--fresh")).expect(0);
    let second = run(moto.ehrlift().arg("read").arg(format!("{dest}/p")).args(["--columns", "mrn"]).arg("--allow-insecure-endpoint"))
        .expect(0)
        .stdout();
    assert_eq!(first, second);
    let ssn = run(moto.ehrlift().arg("read").arg(format!("{dest}/p/part-000001.parquet")).args([
        "--columns",
        "id,ssn",
        "--allow-insecure-endpoint",
    ]))
    .expect(0);
    let want: String = std::iter::once("id,ssn\n".to_owned()).chain((0..50).map(|i| format!("{i},SENTINELSSN{i:03}\n"))).collect();
    assert_eq!(ssn.stdout(), want);

    // Without access to the KMS key, reading fails clearly.
    moto.rt.block_on(moto.kms.disable_key().key_id(&key.id).send()).unwrap();
    let out = run(moto.ehrlift().arg("read").arg(format!("{dest}/p")).arg("--allow-insecure-endpoint")).expect(2);
    assert!(out.stderr().contains(&key.arn) && !out.stderr().contains("SENTINEL") && out.stdout().is_empty(), "{}", out.stderr());
}

#[test]
fn issue_6_validate_with_an_s3_destination_leaves_the_bucket_as_it_was() {
    let Some(moto) = Moto::get() else { return };
    let key = moto.key();
    let bucket = moto.bucket("validate-untouched", Some(&key));
    moto.put_sse(&bucket, "ehr/keep-me.txt", b"an object that was there before", Some(&key.arn));
    let before = moto.objects(&bucket, "ehr");
    let tmp = tempfile::tempdir().unwrap();
    let plan = synthea_plan(tmp.path(), &format!("s3://{bucket}/ehr/synthea"), &key.arn, "");
    let out = run(moto.ehrlift().arg("validate").arg(&plan).args(["--full", "--json", "--report-dir"]).arg(tmp.path().join("r"))).expect(0);
    let r = out.json();
    assert!(r["destination"]["checks"].as_array().unwrap().len() >= 4, "the preflight ran: {}", r["destination"]);
    assert_eq!(r["tables"].as_array().unwrap().len(), 17);
    assert_eq!(moto.objects(&bucket, "ehr"), before, "validate changed the bucket");
    assert_eq!(moto.open_uploads(&bucket, "ehr"), 0);
}
