//! Data keys wrapped by the local keyring: AES-256-GCM under a key derived from the
//! project key, with the key context as associated data.
//!
//! Wrapped form: `ehrl` (4 bytes), version 1 (1 byte), a random 96-bit nonce, the
//! encrypted 32-byte key and its 16-byte tag: 65 bytes.

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use ehrlift_core::{DataKey, KeyContext, KeyError, KeyWrapper, ProjectKey};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"ehrl";
const VERSION: u8 = 1;
const WRAPPED_LEN: usize = 4 + 1 + 12 + 32 + 16;

/// Wraps data keys under the local project key (`provider = "local"`).
#[derive(Clone)]
pub struct LocalWrapper {
    key_id: String,
    wrap_key: Arc<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for LocalWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWrapper").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl LocalWrapper {
    /// A wrapper under `key` (its own derived key; the project key itself wraps nothing).
    pub fn new(key: &ProjectKey) -> Self {
        LocalWrapper { key_id: key.id().to_owned(), wrap_key: Arc::new(key.derive("ehrlift/wrap/v1")) }
    }
}

/// The context as associated data: `name=value` lines in key order (a BTreeMap sorts).
fn aad(context: &KeyContext) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

impl KeyWrapper for LocalWrapper {
    fn provider(&self) -> &'static str {
        "local"
    }

    fn key_ref(&self) -> String {
        self.key_id.clone()
    }

    fn generate(&self, context: &KeyContext) -> Result<DataKey, KeyError> {
        let rand_err = |e: getrandom::Error| KeyError::Service {
            provider: "local",
            key: self.key_id.clone(),
            message: format!("no randomness from the OS: {e}"),
            transient: false,
        };
        let mut plaintext = Zeroizing::new([0u8; 32]);
        getrandom::fill(plaintext.as_mut()).map_err(rand_err)?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(rand_err)?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.wrap_key[..]));
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_ref(), aad: &aad(context) })
            .expect("AES-GCM seals 32 bytes");
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(MAGIC);
        wrapped.push(VERSION);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok(DataKey { plaintext, wrapped })
    }

    fn unwrap(&self, wrapped: &[u8], context: &KeyContext) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let fail = |message: &str| KeyError::Unwrap { what: "a data key".into(), message: message.to_owned() };
        if wrapped.len() != WRAPPED_LEN || &wrapped[..4] != MAGIC {
            return Err(fail("not a data key wrapped by the local keyring"));
        }
        if wrapped[4] != VERSION {
            return Err(fail("unsupported wrapped-key version"));
        }
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.wrap_key[..]));
        let plain = Zeroizing::new(
            cipher.decrypt(Nonce::from_slice(&wrapped[5..17]), Payload { msg: &wrapped[17..], aad: &aad(context) }).map_err(|_| {
                fail(&format!("it was not wrapped by project key {} with this context (another key, or damaged)", self.key_id))
            })?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&plain);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(column: &str) -> KeyContext {
        [("ehrlift:project".to_owned(), "p".to_owned()), ("ehrlift:column".to_owned(), column.to_owned())].into()
    }

    #[test]
    fn wraps_and_unwraps_only_with_the_same_key_and_context() {
        let w = LocalWrapper::new(&ProjectKey::new("local", Zeroizing::new([7; 32])));
        let dk = w.generate(&ctx("ssn")).unwrap();
        assert_eq!(dk.wrapped.len(), WRAPPED_LEN);
        assert!(!dk.wrapped.windows(32).any(|x| x == dk.plaintext.as_ref()), "the key is not in its wrapped form");
        assert_eq!(*w.unwrap(&dk.wrapped, &ctx("ssn")).unwrap(), *dk.plaintext);
        assert!(matches!(w.unwrap(&dk.wrapped, &ctx("mrn")), Err(KeyError::Unwrap { .. })));
        let other = LocalWrapper::new(&ProjectKey::new("local", Zeroizing::new([8; 32])));
        let e = other.unwrap(&dk.wrapped, &ctx("ssn")).unwrap_err().to_string();
        assert!(e.contains(&other.key_ref()), "{e}");
        let mut damaged = dk.wrapped.clone();
        damaged[30] ^= 1;
        assert!(w.unwrap(&damaged, &ctx("ssn")).is_err());
        assert_ne!(w.generate(&ctx("ssn")).unwrap().wrapped, dk.wrapped, "every data key is new");
    }
}
