//! Loading: Parquet parts, object stores, the run's commit records and manifest,
//! and `verify`.
//!
//! Every object is written whole or not at all (temp + rename locally), hashed
//! (SHA-256) as it is written, and recorded only after it is durable.

mod decrypt;
mod manifest;
mod part;
mod store;
mod verify;

pub use decrypt::{KeyUnwrap, ReadError, is_encrypted, open_parquet, project};
pub use manifest::{
    CommitRecord, FileDigest, Manifest, ModularEncryption, ObjectEntry, ObjectKind, ProjectKeyEntry, RunState, RunStatus, SealedKeyRange,
    ShardsInfo, SliceSummary, TableStatus, TableSummary, WrappedKeyId,
};
pub use manifest::{
    FORMAT_VERSION, STATE_KEY, commit_key, commit_key_in, commit_prefix, data_key, data_key_in, manifest_key, quarantine_key,
    quarantine_key_in, run_prefix, slice_tag,
};
pub use part::{ColumnKey, PartEncryption, PartSettings, PartWriter, WrittenPart};
pub use store::{
    DestinationEncryption, LOCK_KEY, LocalStore, ObjectEncryption, ObjectMeta, ObjectStore, ObjectWriter, StoreError, open_store,
};
pub use verify::{Finding, FindingKind, VerifyError, VerifyReport, verify};

/// SHA-256 of `bytes`, lowercase hex: the one digest ehrlift records everywhere.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// SHA-256 of an Arrow schema's fields (names, types, nullability), for manifests.
pub fn schema_fingerprint(schema: &arrow_schema::Schema) -> String {
    let text: Vec<String> = schema.fields().iter().map(|f| format!("{}:{}:{}", f.name(), f.data_type(), f.is_nullable())).collect();
    sha256_hex(text.join("\n").as_bytes())
}
