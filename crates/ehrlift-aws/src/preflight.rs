//! The checks an S3 destination passes before a run writes anything. S3-compatible
//! servers (and misconfigured buckets) accept writes real S3 would refuse, so every
//! check here is ehrlift's own.

use bytes::Bytes;
use ehrlift_core::KeyWrapper as _;
use ehrlift_load::StoreError;
use sha2::{Digest, Sha256};

use crate::config;
use crate::kms::KmsFailure;
use crate::s3::{Cond, Inner, kms_store_error};

/// Runs every check; returns one line per check passed.
pub(crate) fn run(inner: &Inner) -> Result<Vec<String>, StoreError> {
    let bucket = &inner.bucket;
    let mut lines = Vec::new();
    // A store opened without a KMS key (to read or verify) may not be written: say so first.
    inner.key_arn()?;

    if let Err(e) = config::block_on(inner.s3.head_bucket().bucket(bucket).send()) {
        let f = crate::error::Failure::of(&e);
        return Err(if f.is_not_found() || f.is_no_such_bucket() {
            StoreError::Refused(format!("bucket {bucket} does not exist (or is in another account or region): {}", f.message))
        } else if f.is_access_denied() {
            StoreError::Refused(format!("access to bucket {bucket} is denied for this identity: {}", f.message))
        } else {
            f.store("head bucket", format!("s3://{bucket}"))
        });
    }
    lines.push(format!("bucket {bucket} reachable"));

    let (algorithm, default_key) = inner.bucket_default().map_err(|f| {
        if f.is_access_denied() {
            StoreError::Refused(format!(
                "this identity may not read the default encryption of bucket {bucket} (s3:GetEncryptionConfiguration): {}",
                f.message
            ))
        } else {
            f.store("get bucket encryption", format!("s3://{bucket}"))
        }
    })?;
    let is_kms = algorithm == "aws:kms" || algorithm == "aws:kms:dsse";
    if is_kms {
        lines.push(format!("bucket default encryption {algorithm} (key {})", default_key.as_deref().unwrap_or("aws/s3")));
    } else if inner.settings.allow_non_kms_bucket {
        lines.push(format!(
            "bucket default encryption is {algorithm}, not aws:kms; allowed by allow_non_kms_bucket (every object ehrlift writes is still SSE-KMS)"
        ));
    } else {
        return Err(StoreError::Refused(format!(
            "bucket {bucket}'s default encryption is {algorithm}, not aws:kms; ehrlift refuses to write to it. Set SSE-KMS default \
             encryption on the bucket, or set allow_non_kms_bucket = true in [destination] (recorded in the manifest)"
        )));
    }

    // S3 accepts any key id on a write without checking it exists (and test servers
    // never do), so the key is checked with KMS itself.
    let kms = &inner.kms;
    let arn = kms.round_trip(&inner.settings.project).map_err(|(op, f)| match (op, f) {
        ("DescribeKey", f) => kms_store_error(f, &inner.settings.kms_key),
        (op, KmsFailure::Other(f)) if f.is_access_denied() => {
            StoreError::Refused(format!("this identity may not call kms:{op} on KMS key {}: {}", kms.key_ref(), f.message))
        }
        (_, f) => kms_store_error(f, &kms.key_ref()),
    })?;
    lines.push(format!("KMS key {arn} enabled; GenerateDataKey and Decrypt allowed"));

    let mut id = [0u8; 8];
    getrandom::fill(&mut id).expect("the OS random source is available");
    let probe_key = format!("_ehrlift/preflight/{}", hex::encode(id));
    let full = inner.full_key(&probe_key)?;
    let url = inner.url_of(&full);
    let sse = inner.sse(&probe_key)?;
    let body: &[u8] = b"ehrlift preflight probe\n";
    let written = inner.put_raw(&full, &sse, Bytes::from_static(body), &Sha256::digest(body), Cond::None).map_err(|f| {
        if f.is_access_denied() {
            StoreError::Refused(format!("this identity may not write {url} with SSE-KMS key {arn}: {}", f.message))
        } else {
            f.store("write probe", url.clone())
        }
    });
    written?;
    let head = inner.head_raw(&full);
    let deleted = config::block_on(inner.s3.delete_object().bucket(bucket).key(&full).send());
    let head = head.map_err(|f| f.store("head probe", url.clone()))?;
    let Some(head) = head else {
        return Err(StoreError::Refused(format!("the probe object {url} was written but cannot be found")));
    };
    let sse_alg = head.server_side_encryption().map(|s| s.as_str().to_owned()).unwrap_or_else(|| "none".into());
    let key_id = head.ssekms_key_id().unwrap_or("none");
    if sse_alg != "aws:kms" || key_id != arn {
        return Err(StoreError::Refused(format!(
            "the probe object {url} was stored with encryption {sse_alg} and key {key_id}, not aws:kms with {arn}; \
             the bucket or an S3 proxy overrides ehrlift's encryption settings"
        )));
    }
    if let Err(e) = deleted {
        return Err(crate::error::Failure::of(&e).store("delete probe", url));
    }
    lines.push("probe object written with SSE-KMS and deleted".into());
    Ok(lines)
}
