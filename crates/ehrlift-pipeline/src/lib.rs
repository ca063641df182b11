//! The runner: reads each table through its kernels into Parquet parts, commits
//! parts in order, and moves a table's checkpoint only after its part is durable.
//!
//! Commit protocol, per part: data object (and quarantine object) written and
//! made durable → commit record written → only then does the next part start.
//! The commit records *are* the checkpoint: a resumed run replays them, so a
//! crash at any instant loses at most the part in flight, which is rewritten
//! byte for byte (parts are deterministic) and never duplicated.

mod convert;
mod error;
mod privacy;
mod replay;
mod run;
mod table;

pub use error::PipelineError;
pub use privacy::{
    KEYS_RECORD, KeysRecord, VAULT_PREFIX, VAULT_RECORD, VaultCheck, VaultRecord, check_vault, key_provider, load_project_key, needs_key,
};
pub use replay::{StatusReport, TableProgress, status};
pub use run::{RunOptions, RunOutcome, ValidationReport, run, validate};
