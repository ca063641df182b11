//! The S3 store and KMS wrapper against a real (local) S3 and KMS: moto, started by
//! `source scripts/moto.sh && moto_start`, which exports EHRLIFT_TEST_AWS_ENDPOINT.
//! Without it these tests print a notice and pass, except under CI=true.

use std::io::{Read, Write};
use std::sync::Once;

use aws_sdk_kms::config::Credentials;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule};
use ehrlift_aws::{AwsSettings, KmsWrapper, LOCK_KEY, S3Lease, S3Settings, S3Store, SHA256_METADATA, open_s3};
use ehrlift_core::{KeyContext, KeyError, KeyWrapper};
use ehrlift_load::{ObjectStore, StoreError};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// The moto endpoint, or `None` (with a notice) when the tests should skip.
fn endpoint() -> Option<String> {
    static ENV: Once = Once::new();
    match std::env::var("EHRLIFT_TEST_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => {
            // Every test passes here before it touches AWS, and Once makes the others
            // wait, so no thread reads the environment while it changes.
            ENV.call_once(|| unsafe {
                std::env::set_var("AWS_ACCESS_KEY_ID", "test");
                std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
                std::env::remove_var("AWS_SESSION_TOKEN");
                std::env::remove_var("AWS_PROFILE");
                std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            });
            Some(e)
        }
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("EHRLIFT_TEST_AWS_ENDPOINT is not set under CI: start moto with `source scripts/moto.sh && moto_start`")
        }
        _ => {
            // Straight to stderr (libtest captures eprintln! of passing tests), once.
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "notice: EHRLIFT_TEST_AWS_ENDPOINT is not set; the S3/KMS tests skip (source scripts/moto.sh && moto_start)"
                );
            });
            None
        }
    }
}

macro_rules! moto {
    () => {
        match endpoint() {
            Some(e) => Moto::new(e),
            None => return,
        }
    };
}

/// Direct SDK access to moto, to set up buckets and keys and to look behind the store.
struct Moto {
    endpoint: String,
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
}

fn unique(name: &str) -> String {
    let mut r = [0u8; 4];
    getrandom::fill(&mut r).unwrap();
    format!("ehrlift-{name}-{}", hex::encode(r))
}

impl Moto {
    fn new(endpoint: String) -> Moto {
        let creds = Credentials::new("test", "test", None, None, "test");
        let s3 = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .credentials_provider(creds.clone())
            .build();
        let kms = aws_sdk_kms::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(creds)
            .build();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Moto { endpoint, rt, s3: aws_sdk_s3::Client::from_conf(s3), kms: aws_sdk_kms::Client::from_conf(kms) }
    }

    fn aws(&self) -> AwsSettings {
        AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            path_style: true,
            allow_insecure_endpoint: true,
        }
    }

    /// A new KMS key and an alias of it: (ARN, alias).
    fn key(&self) -> (String, String) {
        let alias = format!("alias/{}", unique("key"));
        self.rt.block_on(async {
            let k = self.kms.create_key().description("ehrlift test").send().await.unwrap();
            let meta = k.key_metadata().unwrap();
            self.kms.create_alias().alias_name(&alias).target_key_id(meta.key_id()).send().await.unwrap();
            (meta.arn().unwrap().to_owned(), alias)
        })
    }

    /// A new bucket, with SSE-KMS default encryption under `kms_default` if given.
    fn bucket(&self, kms_default: Option<&str>) -> String {
        let bucket = unique("b");
        self.rt.block_on(async {
            self.s3.create_bucket().bucket(&bucket).send().await.unwrap();
            if let Some(key) = kms_default {
                let by_default = ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .kms_master_key_id(key)
                    .build()
                    .unwrap();
                let rule = ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(by_default)
                    .bucket_key_enabled(true)
                    .build();
                let conf = ServerSideEncryptionConfiguration::builder().rules(rule).build().unwrap();
                self.s3.put_bucket_encryption().bucket(&bucket).server_side_encryption_configuration(conf).send().await.unwrap();
            }
        });
        bucket
    }

    /// A KMS-default bucket, its key and a store on `s3://bucket/prefix`.
    fn store(&self, prefix: &str, part_size: usize) -> (S3Store, String, String) {
        let (arn, alias) = self.key();
        let bucket = self.bucket(Some(&arn));
        let settings = S3Settings { part_size, ..S3Settings::new(alias, "proj") };
        let store = open_s3(&format!("s3://{bucket}/{prefix}"), settings, &self.aws()).unwrap();
        (store, bucket, arn)
    }

    fn head(&self, bucket: &str, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.rt.block_on(self.s3.head_object().bucket(bucket).key(key).send()).unwrap()
    }

    fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let out = self.rt.block_on(self.s3.list_multipart_uploads().bucket(bucket).send()).unwrap();
        out.uploads().iter().filter_map(|u| u.key().map(str::to_owned)).collect()
    }

    fn put_plain(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.rt.block_on(self.s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send()).unwrap();
    }
}

/// Deterministic bytes that do not compress or repeat at part boundaries.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every object the store wrote is SSE-KMS under `arn` with a bucket key and carries
/// its SHA-256 as metadata.
fn assert_encrypted(moto: &Moto, store: &S3Store, bucket: &str, full_key: &str, key: &str, arn: &str, content: &[u8]) {
    let enc = store.object_encryption(key).unwrap().unwrap();
    assert_eq!((enc.algorithm.as_str(), enc.kms_key_id.as_deref(), enc.bucket_key), ("aws:kms", Some(arn), true), "{key}");
    let head = moto.head(bucket, full_key);
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(head.ssekms_key_id(), Some(arn));
    assert_eq!(head.bucket_key_enabled(), Some(true));
    let meta = head.metadata().and_then(|m| m.get(SHA256_METADATA)).cloned();
    assert_eq!(meta, Some(hex::encode(Sha256::digest(content))), "{key}: x-amz-meta-{SHA256_METADATA}");
}

#[test]
fn put_get_list_delete_under_a_prefix_all_sse_kms() {
    let moto = moto!();
    let (store, bucket, arn) = moto.store("runs/r1", 5 * MIB);
    assert_eq!(store.url(), format!("s3://{bucket}/runs/r1"));

    store.put("patients/part-000001.parquet", b"one").unwrap();
    store.put_new("_ehrlift/commits/000001.json", b"{}").unwrap();
    let mut w = store.writer("_quarantine/visits/part-000001.parquet").unwrap();
    w.write_all(b"quarantined").unwrap();
    w.commit().unwrap();
    moto.put_plain(&bucket, "runs/r1-other/x", b"outside the prefix".to_vec());

    let keys: Vec<_> = store.list("").unwrap().into_iter().map(|m| (m.key, m.size)).collect();
    assert_eq!(
        keys,
        vec![
            ("_ehrlift/commits/000001.json".to_owned(), 2),
            ("_quarantine/visits/part-000001.parquet".to_owned(), 11),
            ("patients/part-000001.parquet".to_owned(), 3)
        ]
    );
    assert_eq!(store.list("patients/").unwrap().len(), 1);
    assert_eq!(store.list("patients").unwrap().len(), 1, "a prefix is a directory");
    assert!(store.list("pat").unwrap().is_empty());

    for (key, content) in [
        ("patients/part-000001.parquet", &b"one"[..]),
        ("_ehrlift/commits/000001.json", b"{}"),
        ("_quarantine/visits/part-000001.parquet", b"quarantined"),
    ] {
        assert_eq!(store.get(key).unwrap().unwrap(), content);
        let mut read = Vec::new();
        store.reader(key).unwrap().unwrap().read_to_end(&mut read).unwrap();
        assert_eq!(read, content);
        assert_encrypted(&moto, &store, &bucket, &format!("runs/r1/{key}"), key, &arn, content);
    }

    // Called from async code (a pipeline's runtime), the store still works.
    let got = moto.rt.block_on(async { store.get("patients/part-000001.parquet") });
    assert_eq!(got.unwrap().unwrap(), b"one");

    store.delete("patients/part-000001.parquet").unwrap();
    store.delete("patients/part-000001.parquet").unwrap();
    assert!(store.get("patients/part-000001.parquet").unwrap().is_none());
    assert!(store.reader("patients/part-000001.parquet").unwrap().is_none());
    assert!(store.object_encryption("patients/part-000001.parquet").unwrap().is_none());
    assert!(matches!(store.put("a/../b", b"x"), Err(StoreError::InvalidKey(_))));
    assert!(matches!(store.writer("a//b"), Err(StoreError::InvalidKey(_))));
}

#[test]
fn a_large_writer_uploads_parts_and_reads_back_identical() {
    let moto = moto!();
    let (store, bucket, arn) = moto.store("p", 5 * MIB);
    let data = noise(12 * MIB + 12345, 7);
    let mut w = store.writer("big/part-000001.parquet").unwrap();
    for chunk in data.chunks(MIB - 1) {
        w.write_all(chunk).unwrap();
    }
    assert_eq!(moto.open_uploads(&bucket), vec!["p/big/part-000001.parquet".to_owned()], "parts are uploaded while writing");
    w.commit().unwrap();
    assert!(moto.open_uploads(&bucket).is_empty());

    let mut back = Vec::new();
    store.reader("big/part-000001.parquet").unwrap().unwrap().read_to_end(&mut back).unwrap();
    assert!(back == data, "object differs from what was written ({} vs {} bytes)", back.len(), data.len());
    assert_eq!(store.list("big/").unwrap()[0].size, data.len() as u64);
    assert_encrypted(&moto, &store, &bucket, "p/big/part-000001.parquet", "big/part-000001.parquet", &arn, &data);

    // Exactly one part's worth is one PutObject.
    let one = noise(5 * MIB, 3);
    let mut w = store.writer("big/one").unwrap();
    w.write_all(&one).unwrap();
    assert!(moto.open_uploads(&bucket).is_empty());
    w.commit().unwrap();
    assert_eq!(store.get("big/one").unwrap().unwrap().len(), one.len());
    assert_encrypted(&moto, &store, &bucket, "p/big/one", "big/one", &arn, &one);
}

#[test]
fn abort_and_drop_leave_no_upload_and_sweep_finds_killed_ones() {
    let moto = moto!();
    let (store, bucket, _) = moto.store("p", 5 * MIB);
    let data = noise(6 * MIB, 1);

    let mut w = store.writer("t/aborted").unwrap();
    w.write_all(&data).unwrap();
    assert_eq!(moto.open_uploads(&bucket).len(), 1);
    w.abort();
    assert!(moto.open_uploads(&bucket).is_empty(), "abort aborts the multipart upload");

    let mut w = store.writer("t/dropped").unwrap();
    w.write_all(&data).unwrap();
    drop(w);
    assert!(moto.open_uploads(&bucket).is_empty(), "drop without commit aborts");

    let mut w = store.writer("t/killed").unwrap();
    w.write_all(&data).unwrap();
    std::mem::forget(w); // as if the process died
    assert_eq!(moto.open_uploads(&bucket), vec!["p/t/killed".to_owned()]);
    assert_eq!(store.sweep_incomplete("other/").unwrap(), 0);
    assert_eq!(store.sweep_incomplete("t/").unwrap(), 1);
    assert!(moto.open_uploads(&bucket).is_empty());
    assert!(store.list("").unwrap().is_empty(), "nothing became visible");

    // Two shards' slices of one table side by side: a sweep by name prefix takes only its own.
    for key in ["t/slice-0001-part-000001.parquet", "t/slice-0002-part-000001.parquet"] {
        let mut w = store.writer(key).unwrap();
        w.write_all(&data).unwrap();
        std::mem::forget(w);
    }
    assert_eq!(store.sweep_incomplete("t/slice-0001-").unwrap(), 1);
    assert_eq!(moto.open_uploads(&bucket), vec!["p/t/slice-0002-part-000001.parquet".to_owned()]);
    assert_eq!(store.sweep_incomplete("t/").unwrap(), 1);
}

#[test]
fn a_store_without_a_kms_key_reads_and_refuses_every_write() {
    let moto = moto!();
    let (store, bucket, _) = moto.store("ro", 5 * MIB);
    store.put("t/a", b"one").unwrap();
    let reader = open_s3(&format!("s3://{bucket}/ro"), S3Settings::new("", "p"), &moto.aws()).unwrap();
    assert_eq!(reader.get("t/a").unwrap().unwrap(), b"one");
    assert_eq!(reader.list("t/").unwrap().len(), 1);
    for e in [
        reader.put("t/b", b"x").unwrap_err(),
        reader.put_new("t/c", b"x").unwrap_err(),
        reader.writer("t/d").and_then(|mut w| w.write_all(b"x").map_err(|_| unreachable!()).and_then(|()| w.commit())).unwrap_err(),
        reader.lock_run().map(|_| ()).unwrap_err(),
        reader.preflight().map(|_| ()).unwrap_err(),
    ] {
        assert!(matches!(&e, StoreError::Refused(m) if m.contains("no KMS key")), "{e}");
    }
    assert_eq!(store.list("t/").unwrap().len(), 1, "nothing was written");
}

#[test]
fn put_new_never_replaces_an_object() {
    let moto = moto!();
    let (store, bucket, _) = moto.store("", 5 * MIB);
    assert_eq!(store.url(), format!("s3://{bucket}"));
    store.put_new("_ehrlift/c/1.json", b"first").unwrap();
    let e = store.put_new("_ehrlift/c/1.json", b"second").unwrap_err();
    assert!(matches!(&e, StoreError::Conflict { key } if key == "_ehrlift/c/1.json"), "{e}");
    assert_eq!(store.get("_ehrlift/c/1.json").unwrap().unwrap(), b"first");
}

#[test]
fn preflight_checks_bucket_encryption_key_and_probe() {
    let moto = moto!();
    let (arn, alias) = moto.key();

    let kms_bucket = moto.bucket(Some(&arn));
    let store = open_s3(&format!("s3://{kms_bucket}/x"), S3Settings::new(&alias, "proj"), &moto.aws()).unwrap();
    let lines = store.preflight().unwrap();
    assert_eq!(lines[0], format!("bucket {kms_bucket} reachable"));
    assert_eq!(lines[1], format!("bucket default encryption aws:kms (key {arn})"));
    assert_eq!(lines[2], format!("KMS key {arn} enabled; GenerateDataKey and Decrypt allowed"));
    assert_eq!(lines[3], "probe object written with SSE-KMS and deleted");
    assert!(store.list("").unwrap().is_empty(), "the probe is deleted");
    let enc = store.encryption().unwrap();
    assert_eq!((enc.algorithm.as_str(), enc.kms_key_arn.as_str(), enc.bucket_key), ("aws:kms", arn.as_str(), true));
    assert_eq!((enc.bucket_default.as_str(), enc.non_kms_bucket_allowed), ("aws:kms", false));

    let plain = moto.bucket(None);
    let store = open_s3(&format!("s3://{plain}"), S3Settings::new(&alias, "proj"), &moto.aws()).unwrap();
    let e = store.preflight().unwrap_err();
    assert!(
        matches!(&e, StoreError::Refused(m) if m.contains(&plain) && m.contains("not aws:kms") && m.contains("allow_non_kms_bucket")),
        "{e}"
    );
    assert!(store.list("").unwrap().is_empty(), "a refused preflight writes nothing");
    let allowed = S3Settings { allow_non_kms_bucket: true, ..S3Settings::new(&alias, "proj") };
    let store = open_s3(&format!("s3://{plain}"), allowed, &moto.aws()).unwrap();
    let lines = store.preflight().unwrap();
    assert!(lines[1].contains("is none, not aws:kms; allowed by allow_non_kms_bucket"), "{lines:?}");
    let enc = store.encryption().unwrap();
    assert_eq!((enc.bucket_default.as_str(), enc.non_kms_bucket_allowed), ("none", true));

    // moto, like S3 itself on PutObject, does not check the key exists: ehrlift does.
    let store = open_s3(&format!("s3://{kms_bucket}"), S3Settings::new("alias/no-such-key", "proj"), &moto.aws()).unwrap();
    let e = store.preflight().unwrap_err();
    assert!(matches!(&e, StoreError::Refused(m) if m.contains("KMS key alias/no-such-key does not exist")), "{e}");
    assert!(matches!(store.put("t/x", b"x"), Err(StoreError::Refused(_))), "no write without a resolvable key");

    let store = open_s3(&format!("s3://{}", unique("missing")), S3Settings::new(&alias, "proj"), &moto.aws()).unwrap();
    assert!(matches!(store.preflight(), Err(StoreError::Refused(m)) if m.contains("does not exist")));
    let e = store.get("t/x").unwrap_err();
    assert!(matches!(&e, StoreError::Remote { transient: false, .. }), "a missing bucket is not an absent object: {e}");
}

#[test]
fn plain_http_endpoints_are_refused_unless_allowed() {
    let moto = moto!();
    let strict = AwsSettings { allow_insecure_endpoint: false, ..moto.aws() };
    let e = open_s3("s3://b", S3Settings::new("alias/k", "p"), &strict).unwrap_err();
    assert!(matches!(&e, StoreError::Refused(m) if m.contains(&moto.endpoint) && m.contains("http://")), "{e}");
    let e = KmsWrapper::new("alias/k", &strict).unwrap_err();
    assert!(matches!(&e, KeyError::Service { message, transient: false, .. } if message.contains(&moto.endpoint)), "{e}");
}

#[test]
fn the_run_lock_is_exclusive_and_released_on_drop() {
    let moto = moto!();
    let (store, bucket, arn) = moto.store("dest", 5 * MIB);
    let guard = store.lock_run().unwrap();
    assert!(guard.downcast_ref::<S3Lease>().is_some());
    let e = store.lock_run().unwrap_err();
    assert!(matches!(&e, StoreError::Locked(m) if m.contains(&format!("pid {}", std::process::id()))), "{e}");
    let second = open_s3(&format!("s3://{bucket}/dest"), S3Settings::new(&arn, "proj"), &moto.aws()).unwrap();
    assert!(matches!(second.lock_run(), Err(StoreError::Locked(_))), "another store on the same destination");
    // Shards' leases are locks of their own keys: each exclusive, independent of the others.
    let shard0 = second.lock("_ehrlift/leases/r/shard-0000.lock").expect("a shard's lease is its own lock");
    assert!(matches!(store.lock("_ehrlift/leases/r/shard-0000.lock"), Err(StoreError::Locked(_))), "one holder per shard");
    let shard1 = store.lock("_ehrlift/leases/r/shard-0001.lock").unwrap();
    drop((shard0, shard1));
    assert!(store.list("_ehrlift/leases/").unwrap().is_empty(), "released leases are deleted");
    let lock: serde_json::Value = serde_json::from_slice(&store.get(LOCK_KEY).unwrap().unwrap()).unwrap();
    for field in ["owner", "host", "pid", "acquired_at", "expires_at"] {
        assert!(lock.get(field).is_some(), "{field} in {lock}");
    }
    assert_encrypted(&moto, &store, &bucket, &format!("dest/{LOCK_KEY}"), LOCK_KEY, &arn, &store.get(LOCK_KEY).unwrap().unwrap());
    guard.downcast_ref::<S3Lease>().unwrap().renew_now().unwrap();
    drop(guard);
    assert!(store.get(LOCK_KEY).unwrap().is_none(), "the lock object is deleted");
    let again = second.lock_run().unwrap();
    drop(again);
}

fn lease_json(host: &str, pid: u32, expires_at: &str) -> Vec<u8> {
    serde_json::json!({"owner": "0123", "host": host, "pid": pid, "acquired_at": "2020-01-01T00:00:00Z", "expires_at": expires_at})
        .to_string()
        .into_bytes()
}

#[test]
fn stale_leases_are_taken_over_and_live_ones_are_not() {
    let moto = moto!();
    let (store, bucket, _) = moto.store("d", 5 * MIB);
    let lock = format!("d/{LOCK_KEY}");
    let far = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();

    moto.put_plain(&bucket, &lock, lease_json("elsewhere", 1, &far));
    let e = store.lock_run().unwrap_err();
    assert!(matches!(&e, StoreError::Locked(m) if m.contains("pid 1 on host elsewhere") && m.contains(&far)), "{e}");

    moto.put_plain(&bucket, &lock, lease_json("elsewhere", 1, "2020-01-01T00:01:00Z"));
    let guard = store.lock_run().expect("an expired lease is taken over");
    drop(guard);

    let here = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned();
    moto.put_plain(&bucket, &lock, lease_json(&here, 999_999_999, &far));
    let guard = store.lock_run().expect("a lease of a dead process of this host is taken over");
    drop(guard);
}

#[test]
fn a_lost_lease_stops_every_commit() {
    let moto = moto!();
    let (store, bucket, _) = moto.store("d", 5 * MIB);
    let guard = store.lock_run().unwrap();
    let mut w = store.writer("t/part").unwrap();
    w.write_all(&noise(6 * MIB, 9)).unwrap();

    let far = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let theirs = lease_json("other-runner", 42, &far);
    moto.put_plain(&bucket, &format!("d/{LOCK_KEY}"), theirs.clone());
    let e = guard.downcast_ref::<S3Lease>().unwrap().renew_now().unwrap_err();
    assert!(matches!(&e, StoreError::Locked(m) if m.contains("lease lost")), "{e}");

    assert!(matches!(store.put_new("_ehrlift/c/1.json", b"{}"), Err(StoreError::Locked(m)) if m.contains("lease lost")));
    assert!(matches!(store.put("t/x", b"x"), Err(StoreError::Locked(_))));
    assert!(matches!(w.commit(), Err(StoreError::Locked(_))));
    assert!(moto.open_uploads(&bucket).is_empty(), "the refused commit aborted its upload");
    assert_eq!(store.list("t/").unwrap(), vec![]);
    drop(guard);
    assert_eq!(store.get(LOCK_KEY).unwrap().unwrap(), theirs, "the other run's lease is left alone");
}

#[test]
fn kms_wraps_and_unwraps_data_keys_bound_to_their_context() {
    let moto = moto!();
    let (arn, alias) = moto.key();
    let kms = KmsWrapper::new(&alias, &moto.aws()).unwrap();
    assert_eq!(kms.key_ref(), arn);
    assert_eq!(kms.provider(), "aws-kms");
    assert_eq!(kms.check().unwrap(), arn);
    let ctx = KeyContext::from([("ehrlift:project".to_owned(), "p".to_owned()), ("ehrlift:column".to_owned(), "patients.ssn".to_owned())]);
    let dk = kms.generate(&ctx).unwrap();
    assert!(!dk.wrapped.is_empty() && !format!("{dk:?}").contains("plaintext:"));
    let shared = kms.clone();
    let unwrapped = std::thread::spawn(move || shared.unwrap(&dk.wrapped, &ctx).map(|k| (k, dk))).join().unwrap().unwrap();
    assert_eq!(*unwrapped.0, *unwrapped.1.plaintext);

    let other = KeyContext::from([("ehrlift:project".to_owned(), "q".to_owned())]);
    let e = kms.unwrap(&unwrapped.1.wrapped, &other).unwrap_err();
    assert!(matches!(e, KeyError::Unwrap { .. }), "{e}");

    let e = KmsWrapper::new("alias/no-such-key", &moto.aws()).unwrap_err();
    assert!(matches!(&e, KeyError::Service { message, transient: false, .. } if message.contains("does not exist")), "{e}");
}
