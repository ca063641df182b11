//! AWS KMS as a [`KeyWrapper`]: data keys from `GenerateDataKey`, unwrapped by
//! `Decrypt`, both bound to an encryption context of names.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};
use ehrlift_core::{DataKey, KeyContext, KeyError, KeyWrapper};
use zeroize::{Zeroize, Zeroizing};

use crate::config::{self, AwsSettings};
use crate::error::Failure;

/// Provider name in manifests.
const PROVIDER: &str = "aws-kms";
/// Tries of one KMS call in our own loop (each of which the SDK may retry as well).
const KMS_TRIES: u32 = 5;

/// A KMS key that wraps data keys. Cheap to clone; usable from many threads.
#[derive(Clone)]
pub struct KmsWrapper {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_kms::Client,
    /// As configured: key id, `alias/…`, or ARN.
    key_id: String,
    region: String,
    /// The key's ARN, once DescribeKey has said it.
    arn: OnceLock<String>,
}

impl fmt::Debug for KmsWrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsWrapper").field("key_id", &self.inner.key_id).field("arn", &self.inner.arn.get()).finish_non_exhaustive()
    }
}

/// Why a KMS call failed, before it becomes a [`KeyError`] or a store refusal.
#[derive(Debug)]
pub(crate) enum KmsFailure {
    /// The key does not exist (or this identity cannot see it).
    NotFound(String),
    /// The key exists but cannot be used (disabled, pending deletion, not symmetric).
    Unusable(String),
    /// A wrapped key does not open under this key and context.
    BadCiphertext(String),
    /// Anything else, classified.
    Other(Failure),
}

impl KmsWrapper {
    /// Connects to KMS through the standard AWS chain (see [`AwsSettings`]) and resolves
    /// `key_id` (a key id, `alias/…` or ARN) to its ARN, which must be enabled.
    pub fn new(key_id: &str, aws: &AwsSettings) -> Result<Self, KeyError> {
        let service = |message: String| KeyError::Service { provider: PROVIDER, key: key_id.to_owned(), message, transient: false };
        let loaded = config::load(aws).map_err(service)?;
        let client = loaded.kms().map_err(service)?;
        let w = KmsWrapper::with_client(client, key_id, loaded.region());
        w.check()?;
        Ok(w)
    }

    /// A wrapper on an existing client that resolves its ARN on first use.
    pub(crate) fn with_client(client: aws_sdk_kms::Client, key_id: &str, region: String) -> Self {
        KmsWrapper { inner: Arc::new(Inner { client, key_id: key_id.to_owned(), region, arn: OnceLock::new() }) }
    }

    /// The key as configured (id, alias or ARN).
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// Checks with DescribeKey that the key exists and is enabled; returns its ARN.
    pub fn check(&self) -> Result<String, KeyError> {
        self.describe().map_err(|f| self.key_error(f))
    }

    /// DescribeKey: the ARN of an existing, enabled key. Caches the ARN.
    pub(crate) fn describe(&self) -> Result<String, KmsFailure> {
        let key_id = &self.inner.key_id;
        let meta = self
            .retrying(|| async move {
                self.inner.client.describe_key().key_id(key_id).send().await.map_err(|e| self.classify(Failure::of(&e)))
            })?
            .key_metadata
            .ok_or_else(|| KmsFailure::Other(Failure::other("DescribeKey answered without key metadata", true)))?;
        let arn = meta.arn().unwrap_or(key_id).to_owned();
        let state = meta.key_state().map(|s| s.as_str().to_owned()).unwrap_or_default();
        if !meta.enabled() || meta.key_state().is_some_and(|s| *s != KeyState::Enabled) {
            return Err(KmsFailure::Unusable(format!("KMS key {arn} is not enabled (state {state}); enable it or configure another key")));
        }
        let _ = self.inner.arn.set(arn.clone());
        Ok(arn)
    }

    /// DescribeKey, then GenerateDataKey and Decrypt under an ehrlift preflight context
    /// for `project`: the key exists, is enabled, and this identity may make and unwrap
    /// data keys with it. Returns the key's ARN; a failure names the call that failed.
    pub(crate) fn round_trip(&self, project: &str) -> Result<String, (&'static str, KmsFailure)> {
        let arn = self.describe().map_err(|f| ("DescribeKey", f))?;
        let context =
            KeyContext::from([("ehrlift:project".to_owned(), project.to_owned()), ("ehrlift:purpose".to_owned(), "preflight".to_owned())]);
        let data_key = self.generate_data_key(&context).map_err(|f| ("GenerateDataKey", f))?;
        let unwrapped = self.decrypt(&data_key.wrapped, &context).map_err(|f| ("Decrypt", f))?;
        if *unwrapped != *data_key.plaintext {
            let wrong = format!("KMS key {arn}: Decrypt returned another key than GenerateDataKey made");
            return Err(("Decrypt", KmsFailure::Unusable(wrong)));
        }
        Ok(arn)
    }

    /// [`Self::round_trip`] for preflights outside this crate (a KMS-wrapped project key):
    /// the key's ARN, or why this identity cannot use it.
    pub fn check_usable(&self, project: &str) -> Result<String, KeyError> {
        self.round_trip(project).map_err(|(_, f)| self.key_error(f))
    }

    /// The key's ARN, resolving it on first use.
    pub(crate) fn arn(&self) -> Result<String, KmsFailure> {
        match self.inner.arn.get() {
            Some(a) => Ok(a.clone()),
            None => self.describe(),
        }
    }

    /// A new data key under `context`.
    pub(crate) fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, KmsFailure> {
        let arn = self.arn()?;
        let ctx = encryption_context(context);
        let (arn, ctx) = (&arn, &ctx);
        let mut out = self.retrying(|| async move {
            self.inner
                .client
                .generate_data_key()
                .key_id(arn)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(Some(ctx.clone()))
                .send()
                .await
                .map_err(|e| self.classify(Failure::of(&e)))
        })?;
        let plaintext = take_key(out.plaintext.take(), "GenerateDataKey")?;
        let wrapped = out.ciphertext_blob.take().map(Blob::into_inner).filter(|w| !w.is_empty());
        let wrapped =
            wrapped.ok_or_else(|| KmsFailure::Other(Failure::other("GenerateDataKey answered without a ciphertext blob", false)))?;
        Ok(DataKey { plaintext, wrapped })
    }

    /// The data key `wrapped` holds, if it was made under this key and `context`.
    pub(crate) fn decrypt(&self, wrapped: &[u8], context: &KeyContext) -> Result<Zeroizing<[u8; 32]>, KmsFailure> {
        let arn = self.arn()?;
        let ctx = encryption_context(context);
        let (arn, ctx) = (&arn, &ctx);
        let mut out = self.retrying(|| async move {
            self.inner
                .client
                .decrypt()
                .key_id(arn)
                .ciphertext_blob(Blob::new(wrapped))
                .set_encryption_context(Some(ctx.clone()))
                .send()
                .await
                .map_err(|e| self.classify(Failure::of(&e)))
        })?;
        take_key(out.plaintext.take(), "Decrypt")
    }

    /// Runs one KMS call with backoff while it fails transiently.
    fn retrying<T, F, Fut>(&self, call: F) -> Result<T, KmsFailure>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<T, KmsFailure>> + Send,
        T: Send,
    {
        config::block_on(async {
            let mut attempt = 1;
            loop {
                match call().await {
                    Err(KmsFailure::Other(f)) if f.transient && attempt < KMS_TRIES => {
                        tracing::debug!(key = %self.inner.key_id, attempt, "KMS call failed transiently; retrying");
                        config::backoff(attempt, 100).await;
                        attempt += 1;
                    }
                    r => return r,
                }
            }
        })
    }

    fn classify(&self, f: Failure) -> KmsFailure {
        let key = &self.inner.key_id;
        match f.code.as_deref() {
            Some("NotFoundException") => KmsFailure::NotFound(format!(
                "KMS key {key} does not exist in region {} (or this identity cannot see it)",
                self.inner.region
            )),
            Some("DisabledException" | "KMSInvalidStateException" | "InvalidKeyUsageException" | "UnsupportedOperationException") => {
                KmsFailure::Unusable(format!("KMS key {key} cannot be used: {}", f.message))
            }
            Some("InvalidCiphertextException" | "IncorrectKeyException") => KmsFailure::BadCiphertext(f.message),
            _ => KmsFailure::Other(f),
        }
    }

    /// As a [`KeyError`].
    pub(crate) fn key_error(&self, f: KmsFailure) -> KeyError {
        let key = self.key_ref();
        match f {
            KmsFailure::NotFound(m) | KmsFailure::Unusable(m) => {
                KeyError::Service { provider: PROVIDER, key, message: m, transient: false }
            }
            KmsFailure::BadCiphertext(m) => KeyError::Unwrap {
                what: format!("a data key wrapped by {key}"),
                message: format!("KMS refused it (another key, another encryption context, or damaged bytes): {m}"),
            },
            KmsFailure::Other(f) => {
                let message = if f.is_access_denied() { format!("access denied by KMS: {}", f.message) } else { f.message };
                KeyError::Service { provider: PROVIDER, key, message, transient: f.transient }
            }
        }
    }
}

/// A key context as the SDK's encryption context.
fn encryption_context(context: &KeyContext) -> HashMap<String, String> {
    context.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Moves a 32-byte key out of a response blob, wiping the blob's copy.
fn take_key(blob: Option<Blob>, op: &str) -> Result<Zeroizing<[u8; 32]>, KmsFailure> {
    let mut bytes = blob.map(Blob::into_inner).unwrap_or_default();
    let mut key = Zeroizing::new([0u8; 32]);
    let ok = bytes.len() == 32;
    if ok {
        key.copy_from_slice(&bytes);
    }
    let len = bytes.len();
    bytes.zeroize();
    if ok { Ok(key) } else { Err(KmsFailure::Other(Failure::other(format!("{op} answered with a {len}-byte key, not 32"), false))) }
}

impl KeyWrapper for KmsWrapper {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    /// The key's ARN (the configured id until DescribeKey has answered).
    fn key_ref(&self) -> String {
        self.inner.arn.get().cloned().unwrap_or_else(|| self.inner.key_id.clone())
    }

    fn generate(&self, context: &KeyContext) -> Result<DataKey, KeyError> {
        self.generate_data_key(context).map_err(|f| self.key_error(f))
    }

    fn unwrap(&self, wrapped: &[u8], context: &KeyContext) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.decrypt(wrapped, context).map_err(|f| self.key_error(f))
    }
}
