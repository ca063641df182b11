//! ehrlift on AWS: the S3 destination and AWS KMS key wrapping.
//!
//! - [`open_s3`] opens an `s3://bucket/prefix` destination as an
//!   [`ObjectStore`](ehrlift_load::ObjectStore): every object SSE-KMS under one key with
//!   an encryption context of names, S3-verified SHA-256 checksums, multipart uploads for
//!   large objects, create-only writes, a run lease, and a preflight that checks what S3
//!   itself would let pass.
//! - [`KmsWrapper`] makes and unwraps data keys with AWS KMS as a
//!   [`KeyWrapper`](ehrlift_core::KeyWrapper).
//!
//! Both reach AWS through the standard configuration chain ([`AwsSettings`]). The traits
//! are synchronous: SDK calls run on one process-wide tokio runtime (two worker threads)
//! and are waited for. Errors and logs name buckets, keys and KMS keys, never object
//! contents or key material.

#![warn(missing_docs)]

mod config;
mod error;
mod kms;
mod lease;
mod preflight;
mod s3;
mod writer;

pub use config::AwsSettings;
pub use kms::KmsWrapper;
pub use lease::{LOCK_KEY, S3Lease};
pub use s3::{DEFAULT_PART_SIZE, DEFAULT_UPLOAD_CONCURRENCY, MAX_PART_SIZE, MIN_PART_SIZE, S3Settings, S3Store, SHA256_METADATA, open_s3};
