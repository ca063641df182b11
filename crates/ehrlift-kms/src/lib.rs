//! Key providers: where a project's key lives.
//!
//! The local keyring is the embedded default: one file per project in a directory
//! the plan names, created on first use with mode 0600 and refused when other users
//! may read it. Losing the file loses the ability to reproduce pseudonyms, tokens,
//! date shifts and the vault, so the pipeline records the key id at the destination
//! and refuses to create a new key for a destination written with another one.
//!
//! [`LocalWrapper`] wraps data keys (Parquet column keys) under the local project key;
//! AWS KMS does the same in `ehrlift-aws`.

mod local;
mod wrap;

pub use local::LocalKeyring;
pub use wrap::LocalWrapper;
