//! Privacy operators as Arrow array kernels, the profiles that decide which rule a
//! PHI tag allows, the free-text scrubber and the surrogate vault.
//!
//! Every keyed operator derives its own key from the project key
//! ([`ehrlift_core::ProjectKey`]); nothing here reads files or objects, and no
//! message ever carries a value.

mod engine;
pub mod generalize;
mod keyed;
pub mod policy;
pub mod scrub;
pub mod vault;

pub use engine::{PrivacyContext, TablePrivacy, needs_vault, tokenizer_for, vault_keys};
pub use keyed::{DateShifter, Pseudonymizer, TOKEN_PREFIX, Tokenizer, shift};
