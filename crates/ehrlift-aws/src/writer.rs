//! Streaming writes to S3: one PutObject for an object that fits one part, else a
//! multipart upload whose parts are uploaded by tasks while the caller keeps writing.

use std::io::{self, Write};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use ehrlift_load::{ObjectWriter, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config;
use crate::error::Failure;
use crate::s3::{Cond, Inner, MAX_PART_SIZE, Sse};

/// Tries of one part upload in our own loop (each of which the SDK may retry as well).
const PART_TRIES: u32 = 3;
/// Largest object CopyObject accepts; bigger multipart objects keep no SHA-256 metadata.
const MAX_COPY_SIZE: u64 = MAX_PART_SIZE as u64;

/// A writer of one S3 object. Memory: the part being filled plus at most
/// `upload_concurrency` parts in flight.
pub(crate) struct S3Writer {
    inner: Arc<Inner>,
    full_key: String,
    sse: Sse,
    buf: Vec<u8>,
    hasher: Sha256,
    size: u64,
    upload: Option<Upload>,
    /// The first failure of a part upload; the writer then refuses more data.
    failed: Option<Failure>,
    /// Committed or aborted: nothing left to clean up on drop.
    done: bool,
}

/// An open multipart upload.
struct Upload {
    id: String,
    next_part: i32,
    /// Parts uploaded, as found when reaping finished tasks.
    uploaded: Vec<CompletedPart>,
    /// Part uploads not yet reaped.
    tasks: Vec<JoinHandle<Result<CompletedPart, Failure>>>,
    slots: Arc<Semaphore>,
}

impl S3Writer {
    pub(crate) fn new(inner: Arc<Inner>, full_key: String, sse: Sse) -> Self {
        let part_size = inner.settings.part_size;
        S3Writer {
            inner,
            full_key,
            sse,
            buf: Vec::with_capacity(part_size.min(64 << 10)),
            hasher: Sha256::new(),
            size: 0,
            upload: None,
            failed: None,
            done: false,
        }
    }

    fn url(&self) -> String {
        self.inner.url_of(&self.full_key)
    }

    /// Hands the full buffer to an upload task, starting the multipart upload on the
    /// first part and waiting for a free slot when `upload_concurrency` are in flight.
    fn send_part(&mut self) -> Result<(), Failure> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        if self.upload.is_none() {
            let req = self
                .inner
                .s3
                .create_multipart_upload()
                .bucket(&self.inner.bucket)
                .key(&self.full_key)
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(&self.sse.arn)
                .bucket_key_enabled(true)
                .ssekms_encryption_context(&self.sse.context)
                .checksum_algorithm(ChecksumAlgorithm::Sha256);
            let out = config::block_on(req.send()).map_err(|e| Failure::of(&e))?;
            let id = out.upload_id().filter(|id| !id.is_empty());
            let id = id.ok_or_else(|| Failure::other("CreateMultipartUpload answered without an upload id", false))?.to_owned();
            self.upload = Some(Upload {
                id,
                next_part: 1,
                uploaded: Vec::new(),
                tasks: Vec::new(),
                slots: Arc::new(Semaphore::new(self.inner.settings.upload_concurrency)),
            });
        }
        let upload = self.upload.as_mut().expect("started above");
        // A part that already failed stops the writer now, not at commit.
        let (finished, running): (Vec<_>, Vec<_>) = upload.tasks.drain(..).partition(|t| t.is_finished());
        upload.tasks = running;
        let mut failure = None;
        for t in finished {
            match config::block_on(t) {
                Ok(Ok(part)) => upload.uploaded.push(part),
                Ok(Err(f)) => failure = failure.or(Some(f)),
                Err(join) => failure = failure.or(Some(Failure::other(format!("part upload task failed: {join}"), false))),
            }
        }
        if let Some(f) = failure {
            return Err(self.fail(f));
        }
        let upload = self.upload.as_mut().expect("started above");
        let permit = config::block_on(upload.slots.clone().acquire_owned()).expect("the semaphore is never closed");
        let part_size = self.inner.settings.part_size;
        // The buffer moves into the task: a part is never held twice.
        let body = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(part_size)));
        let number = upload.next_part;
        upload.next_part += 1;
        let (s3, bucket, key, id) = (self.inner.s3.clone(), self.inner.bucket.clone(), self.full_key.clone(), upload.id.clone());
        upload.tasks.push(config::handle().spawn(async move {
            let _permit = permit;
            upload_part(s3, bucket, key, id, number, body).await
        }));
        Ok(())
    }

    fn fail(&mut self, f: Failure) -> Failure {
        self.failed = Some(f.clone());
        f
    }

    /// Completes the multipart upload with the tail part; returns the ETag.
    fn complete(&mut self) -> Result<String, Failure> {
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let upload = self.upload.as_mut().expect("complete is only called with an upload");
        let mut parts = std::mem::take(&mut upload.uploaded);
        let mut first_err = None;
        for t in upload.tasks.drain(..) {
            match config::block_on(t) {
                Ok(Ok(p)) => parts.push(p),
                Ok(Err(f)) => first_err = first_err.or(Some(f)),
                Err(join) => first_err = first_err.or(Some(Failure::other(format!("part upload task failed: {join}"), false))),
            }
        }
        if let Some(f) = first_err {
            return Err(f);
        }
        parts.sort_by_key(|p| p.part_number());
        let req = self
            .inner
            .s3
            .complete_multipart_upload()
            .bucket(&self.inner.bucket)
            .key(&self.full_key)
            .upload_id(&upload.id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        let out = config::block_on(req.send()).map_err(|e| Failure::of(&e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// Cancels part uploads in flight and aborts the multipart upload, if any.
    fn abort_upload(&mut self) {
        self.done = true;
        let Some(mut upload) = self.upload.take() else { return };
        for t in &upload.tasks {
            t.abort();
        }
        let tasks: Vec<_> = upload.tasks.drain(..).collect();
        let req = self.inner.s3.abort_multipart_upload().bucket(&self.inner.bucket).key(&self.full_key).upload_id(&upload.id);
        let result = config::block_on(async move {
            for t in tasks {
                let _ = t.await;
            }
            req.send().await
        });
        if let Err(e) = result {
            let f = Failure::of(&e);
            if !f.is_not_found() {
                // sweep_incomplete at the next run removes it.
                tracing::warn!(object = %self.url(), error = %f.message, "could not abort a multipart upload");
            }
        }
    }

    fn commit_inner(&mut self) -> Result<(), StoreError> {
        self.inner.check_lease()?;
        if let Some(f) = self.failed.clone() {
            return Err(f.store("upload", self.url()));
        }
        let digest = std::mem::take(&mut self.hasher).finalize();
        if self.upload.is_none() {
            let body = Bytes::from(std::mem::take(&mut self.buf));
            self.inner.put_raw(&self.full_key, &self.sse, body, &digest, Cond::None).map_err(|f| f.store("put", self.url()))?;
            return Ok(());
        }
        let etag = self.complete().map_err(|f| f.store("upload", self.url()))?;
        self.upload = None;
        if self.size <= MAX_COPY_SIZE
            && let Err(f) = self.inner.set_sha256_metadata(&self.full_key, &self.sse, &etag, &digest)
        {
            // A failed commit leaves nothing visible (unless another writer replaced it).
            if !f.is_precondition_failed() {
                self.inner.delete_if_match(&self.full_key, &etag);
            }
            return Err(f.store("copy in place", self.url()));
        }
        Ok(())
    }
}

/// Uploads one part with its SHA-256 (S3 verifies it), retrying transient failures.
async fn upload_part(
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    id: String,
    number: i32,
    body: Bytes,
) -> Result<CompletedPart, Failure> {
    let checksum = B64.encode(Sha256::digest(&body));
    let mut attempt = 1;
    loop {
        let sent = s3
            .upload_part()
            .bucket(&bucket)
            .key(&key)
            .upload_id(&id)
            .part_number(number)
            .checksum_sha256(&checksum)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body.clone()))
            .send()
            .await;
        match sent {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default();
                return Ok(CompletedPart::builder().part_number(number).e_tag(etag).checksum_sha256(&checksum).build());
            }
            Err(e) => {
                let f = Failure::of(&e);
                if !f.transient || attempt >= PART_TRIES {
                    return Err(Failure { message: format!("part {number}: {}", f.message), ..f });
                }
                tracing::debug!(part = number, attempt, "part upload failed transiently; retrying");
                config::backoff(attempt, 200).await;
                attempt += 1;
            }
        }
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let part_size = self.inner.settings.part_size;
        // A full part is sent only once more data comes: an object of exactly one part
        // is one PutObject.
        if self.buf.len() >= part_size
            && let Err(f) = self.send_part()
        {
            // Whatever the caller does next, this writer never commits a partial object.
            let message = format!("upload {}: {}", self.url(), f.message);
            self.failed.get_or_insert(f);
            return Err(io::Error::other(message));
        }
        let n = data.len().min(part_size - self.buf.len());
        // Grow by doubling but never past one part, so a part's buffer is moved, not copied.
        let need = self.buf.len() + n;
        if need > self.buf.capacity() {
            let target = need.max(self.buf.capacity() * 2).min(part_size);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let result = self.commit_inner();
        if result.is_err() {
            self.abort_upload();
        }
        self.done = true;
        result
    }

    fn abort(mut self: Box<Self>) {
        self.abort_upload();
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if !self.done {
            self.abort_upload();
        }
    }
}
