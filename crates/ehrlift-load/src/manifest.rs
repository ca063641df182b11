//! What a run records: per-part commit records while it runs, and the run manifest
//! (the commit point) when it ends. All of it lives under `<dest>/_ehrlift/`.
//!
//! Layout:
//! - `_ehrlift/state.json`: the current run (id, plan fingerprint, status);
//! - `_ehrlift/runs/<run-id>/commits/<table>/<part>.json`: one [`CommitRecord`] per
//!   committed part, written only after the part's objects are durable;
//! - `_ehrlift/runs/<run-id>/manifest.json`: the [`Manifest`], written last.

use std::collections::BTreeMap;

use ehrlift_core::{Position, SourceRange};
use serde::{Deserialize, Serialize};

/// Version of the manifest and commit-record formats.
pub const FORMAT_VERSION: u32 = 1;

/// Key of the run state object.
pub const STATE_KEY: &str = "_ehrlift/state.json";

/// Prefix of a run's metadata.
pub fn run_prefix(run_id: &str) -> String {
    format!("_ehrlift/runs/{run_id}/")
}

/// Key of a run's manifest.
pub fn manifest_key(run_id: &str) -> String {
    format!("{}manifest.json", run_prefix(run_id))
}

/// Key of a part's commit record.
pub fn commit_key(run_id: &str, table: &str, part: u32) -> String {
    commit_key_in(run_id, table, None, part)
}

/// Data object key of a part: `<table>/part-000001.parquet`.
pub fn data_key(table: &str, part: u32) -> String {
    data_key_in(table, None, part)
}

/// Quarantine object key of a part: `_quarantine/<table>/part-000001.parquet`.
pub fn quarantine_key(table: &str, part: u32) -> String {
    quarantine_key_in(table, None, part)
}

/// Where a slice's objects start within its table's prefix: `slice-0003-` for slice 3
/// of a table a sharded run split, nothing for a whole table.
pub fn slice_tag(slice: Option<u32>) -> String {
    slice.map(|s| format!("slice-{s:04}-")).unwrap_or_default()
}

/// Prefix of the commit records of a table, or of one slice of it
/// (`_ehrlift/runs/<run>/commits/<table>/slice-0003/`).
pub fn commit_prefix(run_id: &str, table: &str, slice: Option<u32>) -> String {
    match slice {
        None => format!("{}commits/{table}/", run_prefix(run_id)),
        Some(s) => format!("{}commits/{table}/slice-{s:04}/", run_prefix(run_id)),
    }
}

/// Key of a part's commit record, within a slice when the table is split.
pub fn commit_key_in(run_id: &str, table: &str, slice: Option<u32>, part: u32) -> String {
    format!("{}{part:06}.json", commit_prefix(run_id, table, slice))
}

/// Data object key of a part: `<table>/part-000001.parquet`, or
/// `<table>/slice-0003-part-000001.parquet` within a slice.
pub fn data_key_in(table: &str, slice: Option<u32>, part: u32) -> String {
    format!("{table}/{}part-{part:06}.parquet", slice_tag(slice))
}

/// Quarantine object key of a part, within a slice when the table is split.
pub fn quarantine_key_in(table: &str, slice: Option<u32>, part: u32) -> String {
    format!("_quarantine/{table}/{}part-{part:06}.parquet", slice_tag(slice))
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not finished: the next `run` resumes it.
    Running,
    /// Every table finished; the manifest is written.
    Complete,
    /// Finished, but some table stopped (over its quarantine threshold); manifest written.
    Failed,
}

/// `_ehrlift/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub format: u32,
    /// Current run.
    pub run_id: String,
    /// Fingerprint of the plan and its mappings; a resume must match it.
    pub plan_fingerprint: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// RFC 3339 start time of the run's first attempt.
    pub started_at: String,
    /// Attempts so far (1 on the first). A sharded run counts attempts per shard instead.
    pub attempts: u32,
    /// Shards of a sharded run (`--shard I/N`): N; absent for a run of one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
}

/// A file's path and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Path as given.
    pub path: String,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Output rows.
    Data,
    /// Quarantined rows' provenance and reasons.
    Quarantine,
}

/// One object of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEntry {
    /// Key relative to the destination.
    pub key: String,
    /// Data or quarantine.
    pub kind: ObjectKind,
    /// Output table.
    pub table: String,
    /// Part number, from 1 (within its slice, when the table is split).
    pub part: u32,
    /// Slice of the table (sharded runs that split it), from 1; absent for a whole table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// Rows in the object.
    pub rows: u64,
    /// Source rows the part covers (positions index the table's `files`).
    pub source: SourceRange,
    /// SHA-256 of the object's Arrow schema (names, types, nullability).
    pub schema_fingerprint: String,
    /// The Parquet modular encryption keys of the object, when it is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ModularEncryption>,
}

/// Which wrapped data keys encrypt an object (ids only: the wrapped keys themselves
/// are in the object's key metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModularEncryption {
    /// Provider that wrapped the data keys (`local`, `aws-kms`).
    pub provider: String,
    /// The wrapping key: a local project key id or a KMS key ARN.
    pub wrapping_key: String,
    /// The footer key and each column with a key of its own.
    pub keys: Vec<WrappedKeyId>,
}

/// One wrapped data key of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKeyId {
    /// `footer` (also every column without a key of its own) or `column:NAME`.
    pub name: String,
    /// 16 hex digits of the SHA-256 of the wrapped key.
    pub id: String,
}

/// The project key of a run and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectKeyEntry {
    /// `local` or `aws-kms`.
    pub provider: String,
    /// Public id of the project key.
    pub key_id: String,
    /// The KMS key ARN that wraps it (aws-kms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapping_key: Option<String>,
    /// Object key of the wrapped project key at the destination (aws-kms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
}

/// What one committed part adds to a table, with the table's running totals after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// Format version.
    pub format: u32,
    /// Output table.
    pub table: String,
    /// Part number, from 1.
    pub part: u32,
    /// Fingerprint of the table's source file list (paths and sizes).
    pub files_fingerprint: String,
    /// Batch sequence number the next part starts with.
    pub next_seq: u64,
    /// Resume position after this part.
    pub end: Position,
    /// The part's objects (data, and quarantine if any row was rejected).
    pub objects: Vec<ObjectEntry>,
    /// Source rows read up to and including this part.
    pub rows_read: u64,
    /// Rows written up to and including this part.
    pub rows_written: u64,
    /// Rows quarantined up to and including this part.
    pub rows_quarantined: u64,
    /// Quarantine entries by reason code, cumulative.
    pub quarantine_reasons: BTreeMap<String, u64>,
    /// HL7 messages or fixed-width records of other types passed over up to and
    /// including this part (absent: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_passed_over: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a table ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// Read to the end.
    Complete,
    /// Stopped because its quarantine ratio passed the threshold.
    QuarantineThreshold,
}

/// Per-table totals in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSummary {
    /// Output table.
    pub table: String,
    /// How it ended.
    pub status: TableStatus,
    /// Source files, in the order positions index them.
    pub files: Vec<String>,
    /// SHA-256 of the mapping file (and its codebooks).
    pub mapping_sha256: String,
    /// Mapping file path.
    pub mapping_path: String,
    /// Source rows read.
    pub rows_read: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Quarantine entries by reason code.
    pub quarantine_reasons: BTreeMap<String, u64>,
    /// HL7 messages or fixed-width records of types the mapping does not read (absent: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_passed_over: u64,
    /// Parts committed.
    pub parts: u32,
    /// The table's slices, when a sharded run split it (source positions of a slice's
    /// objects index that slice's `files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slices: Vec<SliceSummary>,
}

/// One slice of a table a sharded run split: which rows it covers and what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceSummary {
    /// Slice number, from 1.
    pub slice: u32,
    /// Slices of the table.
    pub of: u32,
    /// Shard that ran it (0-based).
    pub shard: u32,
    /// How it ended.
    pub status: TableStatus,
    /// Its source files (file slices), in the order its positions index them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Its key range (database slices): bounds sealed with the project key, because a
    /// key value may be PHI; absent bound = open end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_range: Option<SealedKeyRange>,
    /// Source rows read.
    pub rows_read: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Items of other types passed over (absent: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows_passed_over: u64,
    /// Parts committed.
    pub parts: u32,
}

/// A key range `(after, upto]` with sealed bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKeyRange {
    /// Keys after this one (exclusive); absent: from the first key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Keys up to and including this one; absent: to the last key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<String>,
}

/// How a sharded run was spread, in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsInfo {
    /// Shards (N of `--shard I/N`).
    pub count: u32,
    /// Work units the plan was split into.
    pub units: u32,
    /// Attempts of each shard, by shard index.
    pub attempts: Vec<u32>,
}

/// The run manifest: the audit record, and what `verify` checks objects against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// `ehrlift`.
    pub tool: String,
    /// Version of ehrlift that wrote it.
    pub tool_version: String,
    /// Run id.
    pub run_id: String,
    /// Project name from the plan.
    pub project: String,
    /// Destination URL.
    pub destination: String,
    /// The plan file.
    pub plan: FileDigest,
    /// Fingerprint of plan and mappings.
    pub plan_fingerprint: String,
    /// Privacy profile in force.
    pub profile: String,
    /// Ids of the keys the run's keyed rules used (`local:` and 16 hex digits); empty
    /// when no rule is keyed.
    pub key_ids: Vec<String>,
    /// The project key's provider and where it is kept, when the run used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<ProjectKeyEntry>,
    /// How the destination encrypts objects at rest (S3 SSE-KMS), when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_encryption: Option<crate::DestinationEncryption>,
    /// Date ages and birth years were computed at, when a rule used one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_date: Option<String>,
    /// Entries in the surrogate vault when the run ended, when a rule used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_entries: Option<u64>,
    /// Version of the restricted ZIP3 list, when a column was generalized to zip3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip3_list: Option<String>,
    /// RFC 3339 start of the first attempt.
    pub started_at: String,
    /// RFC 3339 end.
    pub finished_at: String,
    /// Attempts (resumes + 1).
    pub attempts: u32,
    /// Complete or failed.
    pub status: RunStatus,
    /// How a sharded run was spread over its shards; absent for a run of one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardsInfo>,
    /// Per-table totals.
    pub tables: Vec<TableSummary>,
    /// Every object, in table and part order.
    pub objects: Vec<ObjectEntry>,
}
