//! Rebuilding a table's checkpoint from its commit records.

use std::collections::BTreeMap;

use ehrlift_core::Position;
use ehrlift_load::{CommitRecord, ObjectStore, RunState, STATE_KEY, TableStatus, commit_prefix};
use ehrlift_mapping::Plan;
use serde::{Deserialize, Serialize};

use crate::PipelineError;

/// Key of the record that marks a table (or one slice of it) finished.
pub(crate) fn done_key(run_id: &str, table: &str, slice: Option<u32>) -> String {
    format!("{}done.json", commit_prefix(run_id, table, slice))
}

/// The record that marks a table finished (complete, or stopped by its threshold).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableDone {
    pub format: u32,
    pub table: String,
    pub status: TableStatus,
    /// Rows read when the table stopped (more than committed if it stopped mid-part).
    pub rows_read_at_stop: u64,
    pub rows_quarantined_at_stop: u64,
}

/// A table's committed progress within a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableProgress {
    /// Output table.
    pub table: String,
    /// Parts committed.
    pub parts: u32,
    /// Where reading resumes.
    pub position: Position,
    /// Sequence number of the next batch.
    pub next_seq: u64,
    /// Source rows read in committed parts.
    pub rows_read: u64,
    /// Rows written in committed parts.
    pub rows_written: u64,
    /// Rows quarantined in committed parts.
    pub rows_quarantined: u64,
    /// Quarantine entries by reason.
    pub quarantine_reasons: BTreeMap<String, u64>,
    /// Items of other types passed over in committed parts.
    pub rows_passed_over: u64,
    /// Set once the table finished.
    pub finished: Option<TableStatus>,
    /// Fingerprint of the file list the committed parts were read from.
    pub files_fingerprint: Option<String>,
    /// The slice of the table, when a sharded run split it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// The shard that runs it, in a sharded run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// Commit records, in part order.
    #[serde(skip)]
    pub(crate) records: Vec<CommitRecord>,
}

impl TableProgress {
    /// Moves the checkpoint to after a committed part (on replay and on commit alike).
    pub(crate) fn apply(&mut self, rec: CommitRecord) {
        self.parts = rec.part;
        self.position = rec.end.clone();
        self.next_seq = rec.next_seq;
        self.rows_read = rec.rows_read;
        self.rows_written = rec.rows_written;
        self.rows_quarantined = rec.rows_quarantined;
        self.quarantine_reasons = rec.quarantine_reasons.clone();
        self.rows_passed_over = rec.rows_passed_over;
        self.files_fingerprint = Some(rec.files_fingerprint.clone());
        self.records.push(rec);
    }
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(store: &dyn ObjectStore, key: &str) -> Result<Option<T>, PipelineError> {
    match store.get(key)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| PipelineError::Corrupt { key: key.to_owned(), message: e.to_string() }),
    }
}

pub(crate) fn put_json<T: Serialize>(store: &dyn ObjectStore, key: &str, value: &T) -> Result<(), PipelineError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| PipelineError::Internal(format!("serialize {key}: {e}")))?;
    Ok(store.put(key, &bytes)?)
}

/// Writes a JSON object only if `key` is new: a commit record two runners race for
/// is committed by exactly one; the other gets [`ehrlift_load::StoreError::Conflict`].
pub(crate) fn put_json_new<T: Serialize>(store: &dyn ObjectStore, key: &str, value: &T) -> Result<(), PipelineError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| PipelineError::Internal(format!("serialize {key}: {e}")))?;
    Ok(store.put_new(key, &bytes)?)
}

/// Deletes a table's commit records (a table without a resume key that starts over);
/// its parts are swept when the table runs.
pub(crate) fn forget_table(store: &dyn ObjectStore, run_id: &str, table: &str, slice: Option<u32>) -> Result<(), PipelineError> {
    // Newest first, so an interruption leaves a consistent prefix of records.
    let mut records = store.list(&commit_prefix(run_id, table, slice))?;
    records.sort_by(|a, b| b.key.cmp(&a.key));
    for obj in records {
        store.delete(&obj.key)?;
    }
    Ok(())
}

/// Replays the commit records of a table (or of one slice of it, in a sharded run).
pub(crate) fn load_progress(
    store: &dyn ObjectStore,
    run_id: &str,
    table: &str,
    slice: Option<u32>,
) -> Result<TableProgress, PipelineError> {
    let prefix = commit_prefix(run_id, table, slice);
    let mut p = TableProgress { table: table.to_owned(), position: Position { line: 1, ..Position::default() }, ..Default::default() };
    for obj in store.list(&prefix)? {
        // Only this folder's records: a split table's slices keep theirs in folders below it.
        if obj.key.ends_with("/done.json") || obj.key[prefix.len()..].contains('/') {
            continue;
        }
        let rec: CommitRecord =
            get_json(store, &obj.key)?.ok_or_else(|| PipelineError::Corrupt { key: obj.key.clone(), message: "vanished".into() })?;
        if rec.part != p.parts + 1 || rec.table != table {
            return Err(PipelineError::Corrupt { key: obj.key.clone(), message: format!("expected part {} of `{table}`", p.parts + 1) });
        }
        p.apply(rec);
    }
    p.finished = get_json::<TableDone>(store, &done_key(run_id, table, slice))?.map(|d| d.status);
    Ok(p)
}

/// What `ehrlift status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The run state, if any run exists at the destination.
    pub state: Option<RunState>,
    /// Whether the plan on disk matches the run's.
    pub plan_matches: bool,
    /// Per table of the plan; in a sharded run, per table or slice, in plan order.
    pub tables: Vec<TableProgress>,
    /// Per shard of a sharded run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
}

/// Where one shard of a sharded run stands.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    /// Shard index.
    pub shard: u32,
    /// Units it was given (none until the first shard split the run).
    pub units: usize,
    /// Attempts so far.
    pub attempts: usize,
    /// Whether it wrote its shard manifest.
    pub finished: bool,
}

/// Reads the saved state of `plan` at the store.
pub fn status(plan: &Plan, store: &dyn ObjectStore) -> Result<StatusReport, PipelineError> {
    let state: Option<RunState> = get_json(store, STATE_KEY)?;
    let mut tables = Vec::new();
    let mut shards = Vec::new();
    match &state {
        Some(s) if s.shards.is_some() => {
            let units: Option<crate::shard::UnitPlan> = get_json(store, &crate::shard::units_key(&s.run_id))?;
            let units = units.map(|u| u.units).unwrap_or_default();
            for u in &units {
                for p in &u.pieces {
                    let mut t = load_progress(store, &s.run_id, &p.table, p.slice)?;
                    (t.slice, t.shard) = (p.slice, Some(u.shard));
                    tables.push(t);
                }
            }
            tables.sort_by_key(|t| (plan.tables.iter().position(|m| m.table == t.table), t.slice));
            for i in 0..s.shards.unwrap_or(0) {
                shards.push(ShardStatus {
                    shard: i,
                    units: units.iter().filter(|u| u.shard == i).count(),
                    attempts: store.list(&crate::shard::attempts_prefix(&s.run_id, i))?.len(),
                    finished: store.get(&crate::shard::shard_manifest_key(&s.run_id, i))?.is_some(),
                });
            }
        }
        Some(s) => {
            for m in &plan.tables {
                tables.push(load_progress(store, &s.run_id, &m.table, None)?);
            }
        }
        None => {}
    }
    let plan_matches = state.as_ref().is_some_and(|s| s.plan_fingerprint == crate::run::plan_fingerprint(plan));
    Ok(StatusReport { state, plan_matches, tables, shards })
}
