//! S3 as an [`ObjectStore`]: every object written SSE-KMS under one KMS key, with
//! S3-verified SHA-256 checksums, create-only writes by `If-None-Match`, and the run lease.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ehrlift_load::{DestinationEncryption, ObjectEncryption, ObjectMeta, ObjectStore, ObjectWriter, StoreError};
use sha2::{Digest, Sha256};

use crate::config::{self, AwsSettings};
use crate::error::Failure;
use crate::kms::{KmsFailure, KmsWrapper};
use crate::lease;
use crate::writer::S3Writer;

/// Smallest part S3 accepts in a multipart upload (all but the last part).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 << 30;
/// Default part size of multipart uploads.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Default number of parts uploaded at once by one writer.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
/// User metadata key (`x-amz-meta-ehrlift-sha256`) holding the object's hex SHA-256.
pub const SHA256_METADATA: &str = "ehrlift-sha256";

/// How ehrlift writes an S3 destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The KMS key every object is encrypted with: key id, `alias/…`, or ARN.
    pub kms_key: String,
    /// Project name, part of every object's KMS encryption context.
    pub project: String,
    /// Accept a bucket whose default encryption is not SSE-KMS (every object ehrlift
    /// writes is still SSE-KMS); recorded in the manifest.
    pub allow_non_kms_bucket: bool,
    /// Size of multipart upload parts (at least 5 MiB); objects up to this size are
    /// written by one PutObject.
    pub part_size: usize,
    /// Parts one writer uploads at once; the writer blocks when all are in flight.
    pub upload_concurrency: usize,
}

impl S3Settings {
    /// Settings with the default part size and concurrency.
    pub fn new(kms_key: impl Into<String>, project: impl Into<String>) -> Self {
        S3Settings {
            kms_key: kms_key.into(),
            project: project.into(),
            allow_non_kms_bucket: false,
            part_size: DEFAULT_PART_SIZE,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
        }
    }
}

/// An S3 bucket and key prefix as an [`ObjectStore`].
///
/// Every write carries `ServerSideEncryption=aws:kms` with the configured key's ARN, an
/// S3 bucket key, an encryption context naming the project and table (never a value),
/// S3's SHA-256 checksum (verified by S3) and the object's hex SHA-256 as user metadata
/// `x-amz-meta-ehrlift-sha256`.
#[derive(Clone)]
pub struct S3Store {
    pub(crate) inner: Arc<Inner>,
}

/// State shared by a store, its writers, upload tasks and its lease.
pub(crate) struct Inner {
    pub s3: aws_sdk_s3::Client,
    pub kms: KmsWrapper,
    pub bucket: String,
    /// Key prefix without a trailing `/`; empty for the bucket root.
    pub prefix: String,
    pub settings: S3Settings,
    /// The bucket's default encryption as last looked up (algorithm, KMS key).
    pub bucket_default: Mutex<Option<(String, Option<String>)>>,
    /// Set when this store's run lease was taken by another run: nothing may commit.
    pub lease_lost: AtomicBool,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("url", &self.url()).field("kms_key", &self.inner.settings.kms_key).finish_non_exhaustive()
    }
}

/// The SSE-KMS parameters of one write.
pub(crate) struct Sse {
    /// KMS key ARN.
    pub arn: String,
    /// Base64 of the JSON encryption context.
    pub context: String,
}

/// A write's condition.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    /// Unconditional.
    None,
    /// Only if no object has the key (`If-None-Match: *`).
    Absent,
    /// Only if the object's ETag is this one.
    Match(String),
}

/// Opens the S3 destination `url` (`s3://bucket` or `s3://bucket/prefix`).
///
/// Loads the AWS configuration (see [`AwsSettings`]), refuses a plain-http endpoint unless
/// allowed, and fails if no credentials can be found. Nothing is sent to S3 yet; call
/// [`ObjectStore::preflight`] before writing.
pub fn open_s3(url: &str, settings: S3Settings, aws: &AwsSettings) -> Result<S3Store, StoreError> {
    let (bucket, prefix) = parse_url(url)?;
    if settings.part_size < MIN_PART_SIZE || settings.part_size > MAX_PART_SIZE {
        return Err(StoreError::Refused(format!(
            "part size {} bytes is outside what S3 accepts ({MIN_PART_SIZE} to {MAX_PART_SIZE} bytes)",
            settings.part_size
        )));
    }
    if settings.upload_concurrency == 0 {
        return Err(StoreError::Refused("upload concurrency must be at least 1".into()));
    }
    let refused = |m: String| StoreError::Refused(format!("{url}: {m}"));
    let loaded = config::load(aws).map_err(refused)?;
    let s3 = loaded.s3().map_err(refused)?;
    let kms = KmsWrapper::with_client(loaded.kms().map_err(refused)?, &settings.kms_key, loaded.region());
    Ok(S3Store {
        inner: Arc::new(Inner { s3, kms, bucket, prefix, settings, bucket_default: Mutex::new(None), lease_lost: AtomicBool::new(false) }),
    })
}

/// Splits `s3://bucket/prefix` into the bucket and the prefix without slashes at its ends.
fn parse_url(url: &str) -> Result<(String, String), StoreError> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| StoreError::Unsupported(url.to_owned()))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(StoreError::Refused(format!("{url}: no bucket name; expected s3://BUCKET or s3://BUCKET/PREFIX")));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() && !valid_key(prefix) {
        return Err(StoreError::Refused(format!("{url}: the key prefix has an empty, `.` or `..` segment")));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// Keys are relative and `/`-separated, without empty, `.` or `..` segments.
fn valid_key(key: &str) -> bool {
    !key.is_empty() && !key.split('/').any(|s| s.is_empty() || s == "." || s == "..")
}

/// The table an object belongs to, for its encryption context: the key's first segment,
/// the second under `_quarantine/`.
pub(crate) fn table_of(key: &str) -> &str {
    let mut segs = key.split('/');
    let first = segs.next().unwrap_or_default();
    match (first, segs.next()) {
        ("_quarantine", Some(t)) if !t.is_empty() => t,
        _ => first,
    }
}

/// Percent-encodes a key for `x-amz-copy-source`.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Inner {
    /// The full S3 key of a store key.
    pub fn full_key(&self, key: &str) -> Result<String, StoreError> {
        if !valid_key(key) {
            return Err(StoreError::InvalidKey(key.to_owned()));
        }
        Ok(if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) })
    }

    /// `s3://bucket/full-key`, for messages.
    pub fn url_of(&self, full_key: &str) -> String {
        format!("s3://{}/{full_key}", self.bucket)
    }

    /// The store's root URL.
    pub fn root_url(&self) -> String {
        if self.prefix.is_empty() { format!("s3://{}", self.bucket) } else { format!("s3://{}/{}", self.bucket, self.prefix) }
    }

    /// Fails once this store's lease was lost: a runner that lost it must not commit.
    pub fn check_lease(&self) -> Result<(), StoreError> {
        if self.lease_lost.load(Ordering::SeqCst) {
            return Err(StoreError::Locked(format!(
                "{} (lease lost: another run took over the run lock, so this run writes nothing more)",
                self.root_url()
            )));
        }
        Ok(())
    }

    /// The key's ARN, as a store error when it cannot be resolved. A store opened without
    /// a KMS key (to read or verify) refuses every write here, before anything is sent.
    pub fn key_arn(&self) -> Result<String, StoreError> {
        if self.settings.kms_key.trim().is_empty() {
            return Err(StoreError::Refused(format!(
                "no KMS key configured for {}; ehrlift writes S3 only with SSE-KMS (set [destination] kms_key or pass --kms-key)",
                self.root_url()
            )));
        }
        self.kms.arn().map_err(|f| kms_store_error(f, &self.settings.kms_key))
    }

    /// The SSE-KMS parameters for writing store key `key`.
    pub fn sse(&self, key: &str) -> Result<Sse, StoreError> {
        let ctx = BTreeMap::from([("ehrlift:project", self.settings.project.as_str()), ("ehrlift:table", table_of(key))]);
        let json = serde_json::to_string(&ctx).expect("a map of strings serializes");
        Ok(Sse { arn: self.key_arn()?, context: B64.encode(json) })
    }

    /// PutObject of a whole body with SSE-KMS, checksum and metadata; returns the ETag.
    pub fn put_raw(&self, full_key: &str, sse: &Sse, body: Bytes, digest: &[u8], cond: Cond) -> Result<String, Failure> {
        let mut req = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(full_key)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&sse.arn)
            .bucket_key_enabled(true)
            .ssekms_encryption_context(&sse.context)
            .checksum_sha256(B64.encode(digest))
            .metadata(SHA256_METADATA, hex::encode(digest))
            .content_length(body.len() as i64)
            .body(ByteStream::from(body));
        req = match cond {
            Cond::None => req,
            Cond::Absent => req.if_none_match("*"),
            Cond::Match(etag) => req.if_match(etag),
        };
        let out = config::block_on(req.send()).map_err(|e| Failure::of(&e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// GetObject; `None` if absent.
    pub fn get_raw(&self, full_key: &str) -> Result<Option<GetObjectOutput>, Failure> {
        match config::block_on(self.s3.get_object().bucket(&self.bucket).key(full_key).send()) {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                let f = Failure::of(&e);
                if f.is_not_found() { Ok(None) } else { Err(f) }
            }
        }
    }

    /// GetObject read whole, with its ETag; `None` if absent.
    pub fn get_bytes(&self, full_key: &str) -> Result<Option<(Vec<u8>, String)>, Failure> {
        let Some(out) = self.get_raw(full_key)? else { return Ok(None) };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let body = config::block_on(out.body.collect()).map_err(|e| Failure::other(format!("reading the body failed: {e}"), true))?;
        Ok(Some((body.into_bytes().to_vec(), etag)))
    }

    /// HeadObject; `None` if absent.
    pub fn head_raw(&self, full_key: &str) -> Result<Option<HeadObjectOutput>, Failure> {
        match config::block_on(self.s3.head_object().bucket(&self.bucket).key(full_key).send()) {
            Ok(o) => Ok(Some(o)),
            Err(e) => {
                let f = Failure::of(&e);
                if f.is_not_found() { Ok(None) } else { Err(f) }
            }
        }
    }

    /// Replaces an object's user metadata by copying it onto itself (S3 fixes metadata
    /// when a multipart upload starts, before the whole object's hash is known). The copy
    /// is SSE-KMS like every write, only of the version with `etag`, and has S3 compute a
    /// whole-object SHA-256, which must equal `digest`.
    pub fn set_sha256_metadata(&self, full_key: &str, sse: &Sse, etag: &str, digest: &[u8]) -> Result<(), Failure> {
        use aws_sdk_s3::types::{ChecksumAlgorithm, MetadataDirective};
        let req = self
            .s3
            .copy_object()
            .bucket(&self.bucket)
            .key(full_key)
            .copy_source(format!("{}/{}", self.bucket, encode_key(full_key)))
            .copy_source_if_match(etag)
            .metadata_directive(MetadataDirective::Replace)
            .metadata(SHA256_METADATA, hex::encode(digest))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&sse.arn)
            .bucket_key_enabled(true)
            .ssekms_encryption_context(&sse.context)
            .checksum_algorithm(ChecksumAlgorithm::Sha256);
        let out = config::block_on(req.send()).map_err(|e| Failure::of(&e))?;
        let result = out.copy_object_result();
        let server = result.and_then(|r| r.checksum_sha256()).filter(|c| !c.contains('-'));
        if let Some(server) = server
            && server != B64.encode(digest)
        {
            // What S3 holds is not what was written: it must not stay visible.
            self.delete_if_match(full_key, result.and_then(|r| r.e_tag()).unwrap_or_default());
            return Err(Failure::other("the SHA-256 S3 computed of the stored object differs from the SHA-256 of what was written", true));
        }
        Ok(())
    }

    /// Deletes an object only if its ETag is `etag` (best effort, for cleaning up after a
    /// failed commit without touching what another writer put there since).
    pub fn delete_if_match(&self, full_key: &str, etag: &str) {
        let req = self.s3.delete_object().bucket(&self.bucket).key(full_key).if_match(etag);
        if let Err(e) = config::block_on(req.send()) {
            let f = Failure::of(&e);
            if !f.is_not_found() && !f.is_precondition_failed() {
                tracing::warn!(object = %self.url_of(full_key), error = %f.message, "could not remove an object after a failed commit");
            }
        }
    }

    /// The bucket's default encryption: (`aws:kms` / `AES256` / `none`, KMS key). Cached.
    pub fn bucket_default(&self) -> Result<(String, Option<String>), Failure> {
        match config::block_on(self.s3.get_bucket_encryption().bucket(&self.bucket).send()) {
            Ok(out) => {
                let rule = out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().iter().find_map(|r| r.apply_server_side_encryption_by_default()));
                let found = match rule {
                    Some(d) => (d.sse_algorithm().as_str().to_owned(), d.kms_master_key_id().map(str::to_owned)),
                    None => ("none".to_owned(), None),
                };
                *self.bucket_default.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
                Ok(found)
            }
            Err(e) => {
                let f = Failure::of(&e);
                if f.code.as_deref() == Some("ServerSideEncryptionConfigurationNotFoundError") {
                    let found = ("none".to_owned(), None);
                    *self.bucket_default.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
                    Ok(found)
                } else {
                    Err(f)
                }
            }
        }
    }
}

/// A KMS failure met while writing S3, as a store error.
pub(crate) fn kms_store_error(f: KmsFailure, key: &str) -> StoreError {
    match f {
        KmsFailure::NotFound(m) | KmsFailure::Unusable(m) => StoreError::Refused(m),
        KmsFailure::BadCiphertext(m) => StoreError::Refused(format!("KMS key {key}: {m}")),
        KmsFailure::Other(f) => f.store("use KMS key", key),
    }
}

impl S3Store {
    /// The KMS key wrapper on the same key and connection, e.g. for Parquet column keys.
    pub fn kms(&self) -> &KmsWrapper {
        &self.inner.kms
    }

    fn put_checked(&self, key: &str, bytes: &[u8], cond: Cond) -> Result<(), StoreError> {
        self.inner.check_lease()?;
        let full = self.inner.full_key(key)?;
        let sse = self.inner.sse(key)?;
        let digest = Sha256::digest(bytes);
        let absent = matches!(cond, Cond::Absent);
        match self.inner.put_raw(&full, &sse, Bytes::copy_from_slice(bytes), &digest, cond) {
            Ok(_) => Ok(()),
            Err(f) if absent && f.is_precondition_failed() => Err(StoreError::Conflict { key: key.to_owned() }),
            Err(f) => Err(f.store("put", self.inner.url_of(&full))),
        }
    }
}

impl ObjectStore for S3Store {
    fn url(&self) -> String {
        self.inner.root_url()
    }

    fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let full = self.inner.full_key(key)?;
        let sse = self.inner.sse(key)?;
        Ok(Box::new(S3Writer::new(self.inner.clone(), full, sse)))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_checked(key, bytes, Cond::None)
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_checked(key, bytes, Cond::Absent)
    }

    fn preflight(&self) -> Result<Vec<String>, StoreError> {
        crate::preflight::run(&self.inner)
    }

    fn encryption(&self) -> Option<DestinationEncryption> {
        let cached = self.inner.bucket_default.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let bucket_default = match cached {
            Some((alg, _)) => alg,
            None => self.inner.bucket_default().map(|(alg, _)| alg).unwrap_or_else(|_| "unknown".into()),
        };
        Some(DestinationEncryption {
            algorithm: "aws:kms".into(),
            kms_key_arn: self.inner.key_arn().unwrap_or_else(|_| self.inner.settings.kms_key.clone()),
            bucket_key: true,
            bucket_default,
            non_kms_bucket_allowed: self.inner.settings.allow_non_kms_bucket,
        })
    }

    fn object_encryption(&self, key: &str) -> Result<Option<ObjectEncryption>, StoreError> {
        let full = self.inner.full_key(key)?;
        let head = self.inner.head_raw(&full).map_err(|f| f.store("head", self.inner.url_of(&full)))?;
        Ok(head.map(|h| ObjectEncryption {
            algorithm: h.server_side_encryption().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            kms_key_id: h.ssekms_key_id().map(str::to_owned),
            bucket_key: h.bucket_key_enabled().unwrap_or(false),
        }))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.inner.full_key(key)?;
        Ok(self.inner.get_bytes(&full).map_err(|f| f.store("get", self.inner.url_of(&full)))?.map(|(b, _)| b))
    }

    fn reader(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>, StoreError> {
        let full = self.inner.full_key(key)?;
        let out = self.inner.get_raw(&full).map_err(|f| f.store("get", self.inner.url_of(&full)))?;
        Ok(out.map(|o| Box::new(BodyReader { body: o.body, chunk: Bytes::new(), url: self.inner.url_of(&full) }) as Box<dyn Read + Send>))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let rel = prefix.trim_end_matches('/');
        let list_prefix = match (self.inner.prefix.as_str(), rel) {
            ("", "") => String::new(),
            (root, "") => format!("{root}/"),
            (_, rel) => format!("{}/", self.inner.full_key(rel)?),
        };
        let strip = if self.inner.prefix.is_empty() { String::new() } else { format!("{}/", self.inner.prefix) };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let req = self.inner.s3.list_objects_v2().bucket(&self.inner.bucket).prefix(&list_prefix).set_continuation_token(token.take());
            let page = config::block_on(req.send())
                .map_err(|e| Failure::of(&e).store("list", format!("s3://{}/{list_prefix}", self.inner.bucket)))?;
            for o in page.contents() {
                let Some(key) = o.key().and_then(|k| k.strip_prefix(&strip)) else { continue };
                out.push(ObjectMeta { key: key.to_owned(), size: o.size().unwrap_or(0).max(0) as u64 });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.inner.full_key(key)?;
        match config::block_on(self.inner.s3.delete_object().bucket(&self.inner.bucket).key(&full).send()) {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = Failure::of(&e);
                if f.is_not_found() { Ok(()) } else { Err(f.store("delete", self.inner.url_of(&full))) }
            }
        }
    }

    fn sweep_incomplete(&self, prefix: &str) -> Result<usize, StoreError> {
        let rel = prefix.trim_end_matches('/');
        let list_prefix = match (self.inner.prefix.as_str(), rel) {
            ("", "") => String::new(),
            (root, "") => format!("{root}/"),
            // A folder, or the start of keys (one slice's parts beside another's).
            (_, rel) if prefix.ends_with('/') => format!("{}/", self.inner.full_key(rel)?),
            (_, rel) => self.inner.full_key(rel)?,
        };
        let what = format!("s3://{}/{list_prefix}", self.inner.bucket);
        let mut uploads = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let req = self
                .inner
                .s3
                .list_multipart_uploads()
                .bucket(&self.inner.bucket)
                .prefix(&list_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take());
            let page = config::block_on(req.send()).map_err(|e| Failure::of(&e).store("list multipart uploads", &what))?;
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id()) {
                    uploads.push((k.to_owned(), id.to_owned()));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        let mut aborted = 0;
        for (key, id) in uploads {
            let req = self.inner.s3.abort_multipart_upload().bucket(&self.inner.bucket).key(&key).upload_id(&id);
            match config::block_on(req.send()) {
                Ok(_) => aborted += 1,
                Err(e) => {
                    let f = Failure::of(&e);
                    if !f.is_not_found() {
                        return Err(f.store("abort multipart upload", self.inner.url_of(&key)));
                    }
                }
            }
        }
        if aborted > 0 {
            tracing::info!(prefix = %what, aborted, "aborted incomplete multipart uploads");
        }
        Ok(aborted)
    }

    fn lock(&self, key: &str) -> Result<Box<dyn std::any::Any + Send>, StoreError> {
        Ok(Box::new(lease::acquire(&self.inner, key)?))
    }
}

/// A GetObject body as a blocking reader, one network chunk at a time.
struct BodyReader {
    body: ByteStream,
    chunk: Bytes,
    url: String,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match config::block_on(self.body.next()) {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(std::io::Error::other(format!("reading {}: {e}", self.url))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/").unwrap(), ("b".into(), "".into()));
        assert_eq!(parse_url("s3://b/x/y/").unwrap(), ("b".into(), "x/y".into()));
        assert!(matches!(parse_url("file:///x"), Err(StoreError::Unsupported(_))));
        assert!(matches!(parse_url("s3:///x"), Err(StoreError::Refused(_))));
        assert!(matches!(parse_url("s3://b/a/../c"), Err(StoreError::Refused(_))));
    }

    #[test]
    fn the_encryption_context_names_the_table() {
        assert_eq!(table_of("patients/part-000001.parquet"), "patients");
        assert_eq!(table_of("_quarantine/visits/part-1.parquet"), "visits");
        assert_eq!(table_of("_ehrlift/run.lock"), "_ehrlift");
        assert_eq!(table_of("manifest.json"), "manifest.json");
    }

    #[test]
    fn copy_sources_are_percent_encoded() {
        assert_eq!(encode_key("a b/c+d%é.parquet"), "a%20b/c%2Bd%25%C3%A9.parquet");
    }

    #[test]
    fn keys_are_validated_like_the_local_store() {
        for k in ["", "/abs", "a/../b", "a//b", "./a", "a/"] {
            assert!(!valid_key(k), "{k}");
        }
        assert!(valid_key("a/b.c"));
    }
}
