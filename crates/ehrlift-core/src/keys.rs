//! Project keys and the providers that hold them.
//!
//! Every keyed privacy operation (pseudonyms, tokens, date shifts, the surrogate
//! vault) derives its own key from one 32-byte project key with HKDF-SHA256 and a
//! purpose label, so one secret is backed up per project and no two operations
//! ever share key material. A provider (the local keyring now, a KMS later) only
//! stores and unwraps that project key.

use std::fmt;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Salt of every derivation: changing it would change every pseudonym ever made.
const HKDF_SALT: &[u8] = b"ehrlift project key v1";

/// The secret every privacy key of a project derives from. Zeroized on drop; its
/// `Debug` shows the id only.
pub struct ProjectKey {
    provider: &'static str,
    id: String,
    secret: Zeroizing<[u8; 32]>,
}

impl ProjectKey {
    /// Wraps `secret` held by `provider`; the id is computed from the secret.
    pub fn new(provider: &'static str, secret: Zeroizing<[u8; 32]>) -> Self {
        let id = format!("{provider}:{}", key_id_of(&secret));
        ProjectKey { provider, id, secret }
    }

    /// Provider name, for manifests (`local`).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Public id of the key (`local:` and 16 hex digits of a hash of the secret): two
    /// runs used the same key exactly when their ids match. It reveals nothing usable.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A 32-byte key for one purpose (e.g. `pseudonym/mrn`), derived with HKDF-SHA256.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        self.derive_bytes(purpose)
    }

    /// A 64-byte key for one purpose (AES-SIV with AES-256 takes two 256-bit keys).
    pub fn derive64(&self, purpose: &str) -> Zeroizing<[u8; 64]> {
        self.derive_bytes(purpose)
    }

    fn derive_bytes<const N: usize>(&self, purpose: &str) -> Zeroizing<[u8; N]> {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), self.secret.as_ref());
        let mut out = Zeroizing::new([0u8; N]);
        hk.expand(purpose.as_bytes(), out.as_mut()).expect("32 and 64 bytes are valid HKDF-SHA256 lengths");
        out
    }
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// 16 hex digits of SHA-256 over a label and the secret: an id that names a key without
/// revealing it (a hash preimage of 256 random bits is out of reach).
fn key_id_of(secret: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(b"ehrlift key id v1\0");
    h.update(secret);
    hex::encode(&h.finalize()[..8])
}

/// Where a project key lives. Implementations never log or print key material.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// Provider name for manifests (`local`).
    fn name(&self) -> &'static str;
    /// Where the key is kept (a path or an ARN), for messages.
    fn location(&self) -> String;
    /// The project key if it exists; never creates one.
    fn load(&self) -> Result<Option<ProjectKey>, KeyError>;
    /// Creates the project key; fails if one already exists.
    fn create(&self) -> Result<ProjectKey, KeyError>;
}

/// What a wrapped key is bound to: names only (project, table, column, purpose), never
/// a value. KMS checks it on every unwrap (AWS KMS "encryption context"); the local
/// keyring authenticates it as associated data.
pub type KeyContext = std::collections::BTreeMap<String, String>;

/// A fresh 256-bit data key and its wrapped form.
pub struct DataKey {
    /// The key itself; zeroized on drop.
    pub plaintext: Zeroizing<[u8; 32]>,
    /// The key encrypted under the wrapping key; opaque, safe to store beside the data.
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("wrapped_len", &self.wrapped.len()).finish_non_exhaustive()
    }
}

/// Makes and unwraps data keys under a key it never reveals: AWS KMS (`GenerateDataKey`,
/// `Decrypt`), or the local keyring (AES-256-GCM under a key derived from the project key).
pub trait KeyWrapper: Send + Sync + fmt::Debug {
    /// Provider name (`local`, `aws-kms`).
    fn provider(&self) -> &'static str;
    /// The wrapping key's public reference (a local key id, a KMS key ARN), for manifests.
    fn key_ref(&self) -> String;
    /// A new data key bound to `context`.
    fn generate(&self, context: &KeyContext) -> Result<DataKey, KeyError>;
    /// The data key `wrapped` holds; fails unless `context` is the one it was made with.
    fn unwrap(&self, wrapped: &[u8], context: &KeyContext) -> Result<Zeroizing<[u8; 32]>, KeyError>;
}

/// Why a key could not be had. Messages name the place, never the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key store could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// File or directory concerned.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file may be read by other users.
    #[error("key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}` and check who has read it")]
    Insecure {
        /// The key file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not an ehrlift key file.
    #[error("key file {path}: {message}")]
    Corrupt {
        /// The key file.
        path: std::path::PathBuf,
        /// What is wrong (never the content).
        message: String,
    },
    /// The key exists already (on create).
    #[error("key file {path} already exists")]
    Exists {
        /// The key file.
        path: std::path::PathBuf,
    },
    /// A key service refused or failed (KMS: unknown key, access denied, throttled,
    /// unreachable). `transient` when a retry may cure it.
    #[error("{provider} key {key}: {message}")]
    Service {
        /// Provider (`aws-kms`).
        provider: &'static str,
        /// Key reference (id, alias or ARN).
        key: String,
        /// What the service said (never key material).
        message: String,
        /// Whether a retry may help (throttling, network).
        transient: bool,
    },
    /// A wrapped key could not be unwrapped: another wrapping key, another context, or
    /// damaged bytes.
    #[error("cannot unwrap {what}: {message}")]
    Unwrap {
        /// Which key (e.g. `column key of patients.ssn`).
        what: String,
        /// Why.
        message: String,
    },
}

impl KeyError {
    /// The class of the error, for exit statuses.
    pub fn class(&self) -> crate::ErrorClass {
        match self {
            KeyError::Service { transient: true, .. } => crate::ErrorClass::Transient,
            _ => crate::ErrorClass::Configuration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_differ_by_purpose_and_key() {
        let a = ProjectKey::new("local", Zeroizing::new([1; 32]));
        let b = ProjectKey::new("local", Zeroizing::new([2; 32]));
        assert_ne!(*a.derive("pseudonym/mrn"), *a.derive("pseudonym/ssn"));
        assert_ne!(*a.derive("pseudonym/mrn"), *b.derive("pseudonym/mrn"));
        assert_eq!(*a.derive("x"), *ProjectKey::new("local", Zeroizing::new([1; 32])).derive("x"));
        assert_ne!(a.id(), b.id());
        assert!(a.id().starts_with("local:") && a.id().len() == "local:".len() + 16);
        assert!(!format!("{a:?}").contains("secret"));
    }
}
