//! The runner: reads each table through its kernels into Parquet parts, commits
//! parts in order, and moves a table's checkpoint only after its part is durable.
//!
//! Commit protocol, per part: data object (and quarantine object) written and
//! made durable → commit record written → only then does the next part start.
//! The commit records *are* the checkpoint: a resumed run replays them, so a
//! crash at any instant loses at most the part in flight, which is rewritten
//! byte for byte (parts are deterministic) and never duplicated.

mod convert;
mod crypto;
mod dest;
mod error;
mod privacy;
mod profile;
mod replay;
pub mod report;
mod run;
mod shard;
mod source;
mod table;

pub use crypto::{ColumnKeyMetadata, key_unwrapper};
pub use dest::{DestOverrides, kms_settings, open_destination, plan_destination, s3_settings};
pub use error::PipelineError;
pub use privacy::{
    KEYS_RECORD, KeysRecord, VAULT_PREFIX, VAULT_RECORD, VaultCheck, VaultRecord, WRAPPED_PROJECT_KEY, WrappedProjectKey, check_keys,
    check_vault, key_provider, load_project_key, needs_key,
};
pub use profile::{ProfileOptions, profile};
pub use replay::{ShardStatus, StatusReport, TableProgress, status};
pub use run::{Preflight, RunOptions, RunOutcome, ValidationReport, preflights, run, validate};
pub use shard::{
    MAX_SHARDS, Piece, PieceResult, Shard, ShardManifest, Unit, UnitPlan, finalize, lease_key, run_shard, shard_manifest_key, units_key,
};
