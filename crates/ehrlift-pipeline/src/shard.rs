//! Sharded runs: one plan spread over N processes that a batch engine (AWS Batch array
//! jobs, Kubernetes Indexed Jobs) starts with an index each. ehrlift schedules nothing:
//! the shards agree through conditional writes at the destination.
//!
//! Layout, under `_ehrlift/`:
//! - `state.json`: the run, with `shards: N`. The first shard creates it (a write that
//!   succeeds only if absent); the others join it.
//! - `runs/<run>/units.json` ([`UnitPlan`]): the units of work and the shard of each,
//!   written once by the first shard to get there (a conditional write); every shard
//!   follows it, so the split does not depend on start order or on statistics that
//!   change meanwhile.
//! - `leases/<run>/shard-0003.lock`: shard 3's lease, so two copies of one shard (a
//!   retry while the first is still alive) never interleave.
//! - `runs/<run>/shards/0003/attempt-001.json`: one per attempt of shard 3.
//! - `runs/<run>/commits/<table>/[slice-0002/]…`: commit records, as for any run.
//! - `runs/<run>/shards/0003/manifest.json` ([`ShardManifest`]): shard 3's units, once
//!   all are done.
//! - `runs/<run>/manifest.json`: the run manifest, written by the last shard to finish
//!   (or `ehrlift finalize`) once every shard's manifest is there.
//!
//! Units: tables that share a surrogate namespace form one unit of whole tables (their
//! surrogates come from one vault writer); any other table is one unit, or, when it is
//! larger than both `[run] shard_unit_mib` and its share of the run, several slices:
//! runs of its files (by size, in path order), or key ranges of a keyset-read database
//! table (from the database's statistics or sampled keys). Units go to shards by weight,
//! largest first, each to the least loaded shard.

use std::collections::BTreeMap;

use ehrlift_extract::SourceFile;
use ehrlift_extract::sql::{CursorSeal, KeyRange, PgSnapshot, TableSpec, split_points};
use ehrlift_load::{
    FORMAT_VERSION, Manifest, ObjectEntry, ObjectStore, ProjectKeyEntry, RunState, RunStatus, STATE_KEY, SealedKeyRange, ShardsInfo,
    SliceSummary, StoreError, TableStatus, TableSummary, manifest_key, run_prefix,
};
use ehrlift_mapping::{Engine, Mapping, Plan, Resume, Rule};
use serde::{Deserialize, Serialize};

use crate::PipelineError;
use crate::replay::{get_json, load_progress, put_json, put_json_new};
use crate::run::{Done, Found, RunOptions, RunOutcome, Work, file_names, files_fingerprint, fingerprint};
use crate::table::TableInput;

/// Which shard this process is: `index` of `count` (0-based, as batch engines number them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0 ≤ index < count.
    pub index: u32,
    /// Shards in the run.
    pub count: u32,
}

/// Most shards a run may have.
pub const MAX_SHARDS: u32 = 10_000;

impl Shard {
    /// A shard, checked.
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 || count > MAX_SHARDS {
            return Err(format!("the shard count must be from 1 to {MAX_SHARDS}, not {count}"));
        }
        if index >= count {
            return Err(format!("shard index {index} is out of range: indexes of {count} shards run from 0 to {}", count - 1));
        }
        Ok(Shard { index, count })
    }

    /// The shard a batch engine gave this process, when no `--shard` flag did:
    /// `EHRLIFT_SHARD=I/N`; else AWS Batch's `AWS_BATCH_JOB_ARRAY_INDEX` with
    /// `AWS_BATCH_JOB_ARRAY_SIZE` (or `EHRLIFT_SHARDS`); else Kubernetes'
    /// `JOB_COMPLETION_INDEX` with `EHRLIFT_SHARDS` (Kubernetes does not expose the
    /// job's completions: the manifest sets it). `None`: not sharded.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let var = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(s) = var("EHRLIFT_SHARD") {
            return s.parse().map(Some).map_err(|e| format!("EHRLIFT_SHARD: {e}"));
        }
        let number = |name: &str, v: String| v.parse::<u32>().map_err(|_| format!("{name} is not a number"));
        let (index_var, index) = match (var("AWS_BATCH_JOB_ARRAY_INDEX"), var("JOB_COMPLETION_INDEX")) {
            (Some(i), _) => ("AWS_BATCH_JOB_ARRAY_INDEX", i),
            (None, Some(i)) => ("JOB_COMPLETION_INDEX", i),
            (None, None) => return Ok(None),
        };
        let index = number(index_var, index)?;
        let count = match (index_var, var("AWS_BATCH_JOB_ARRAY_SIZE"), var("EHRLIFT_SHARDS")) {
            (_, _, Some(n)) => number("EHRLIFT_SHARDS", n)?,
            ("AWS_BATCH_JOB_ARRAY_INDEX", Some(n), None) => number("AWS_BATCH_JOB_ARRAY_SIZE", n)?,
            _ => {
                return Err(format!(
                    "{index_var} is set but not the number of shards: set EHRLIFT_SHARDS to the job's {}",
                    if index_var == "JOB_COMPLETION_INDEX" { "completions" } else { "array size" }
                ));
            }
        };
        Shard::new(index, count).map(Some).map_err(|e| format!("{index_var}: {e}"))
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: expected INDEX/COUNT, such as 0/4 (indexes start at 0)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (i.trim().parse::<u32>().map_err(|_| bad())?, n.trim().parse::<u32>().map_err(|_| bad())?);
        Shard::new(i, n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// `_ehrlift/runs/<run>/units.json`: how a sharded run is split, fixed by the first
/// shard to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitPlan {
    /// Format version.
    pub format: u32,
    /// Run id.
    pub run_id: String,
    /// Fingerprint of the plan the split was made for.
    pub plan_fingerprint: String,
    /// Shards.
    pub shards: u32,
    /// The shard that made the split.
    pub created_by: u32,
    /// RFC 3339 time it was made.
    pub created_at: String,
    /// Weight (bytes) a slice aims at: the larger of `shard_unit_mib` and the run's
    /// weight over 4 × shards.
    pub slice_bytes: u64,
    /// The units, numbered from 1.
    pub units: Vec<Unit>,
}

/// One unit of work: what one shard reads, whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// Unit number, from 1.
    pub id: u32,
    /// The shard that runs it.
    pub shard: u32,
    /// Its weight in bytes (files' sizes, or estimated rows × 256).
    pub weight: u64,
    /// Whole tables (several when they share a surrogate namespace), or one slice.
    pub pieces: Vec<Piece>,
}

/// A table, or one slice of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    /// Output table.
    pub table: String,
    /// Slice number from 1, and the table's slice count; absent for a whole table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// Slices of the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<u32>,
    /// A file slice's files, relative to the source directory, in path order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// A key slice's range, bounds sealed (key values may be PHI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_range: Option<SealedKeyRange>,
    /// How a key slice's bounds were found (`pg_stats histogram`, `sampled keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_by: Option<String>,
}

/// `_ehrlift/runs/<run>/shards/<i>/manifest.json`: what one shard committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    /// Format version.
    pub format: u32,
    /// Run id.
    pub run_id: String,
    /// Shard index.
    pub shard: u32,
    /// Shards.
    pub shards: u32,
    /// Attempts of this shard.
    pub attempts: u32,
    /// RFC 3339 end.
    pub finished_at: String,
    /// Ids of the keys its keyed rules used.
    pub key_ids: Vec<String>,
    /// The project key's provider and where it is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<ProjectKeyEntry>,
    /// Its units.
    pub units: Vec<u32>,
    /// Per table or slice: totals.
    pub pieces: Vec<PieceResult>,
    /// Every object it committed, in piece and part order.
    pub objects: Vec<ObjectEntry>,
}

/// A piece's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PieceResult {
    /// The piece.
    pub piece: Piece,
    /// Its totals, as a table's in a manifest (`files`: the piece's input names).
    pub totals: TableSummary,
}

/// Key of a sharded run's unit plan.
pub fn units_key(run_id: &str) -> String {
    format!("{}units.json", run_prefix(run_id))
}

/// Key of a shard's manifest.
pub fn shard_manifest_key(run_id: &str, shard: u32) -> String {
    format!("{}shards/{shard:04}/manifest.json", run_prefix(run_id))
}

pub(crate) fn attempts_prefix(run_id: &str, shard: u32) -> String {
    format!("{}shards/{shard:04}/attempts/", run_prefix(run_id))
}

/// Key of a shard's lease: outside `runs/`, because it is rewritten and deleted.
pub fn lease_key(run_id: &str, shard: u32) -> String {
    format!("_ehrlift/leases/{run_id}/shard-{shard:04}.lock")
}

/// Estimated bytes of a database row, to weigh tables against files.
const ROW_BYTES: u64 = 256;
/// Slices a table may be split into, per shard.
const SLICES_PER_SHARD: u64 = 4;

/// Runs (or resumes) shard `shard` of `plan` into `store`, and finalizes the run when it
/// is the last shard to finish.
pub fn run_shard(plan: &Plan, store: &dyn ObjectStore, opts: &RunOptions, shard: Shard) -> Result<RunOutcome, PipelineError> {
    if opts.fresh {
        return Err(PipelineError::Config(
            "--fresh cannot be combined with --shard: shards would start over each other's work. Write a new sharded run to a new destination prefix, or start over once without --shard".into(),
        ));
    }
    let (fp, inputs) = crate::run::begin(plan, store)?;
    let prepared = crate::privacy::prepare(plan, store)?;
    let state = match join(plan, store, &fp, shard)? {
        Joined::Finished(outcome) => return Ok(*outcome),
        Joined::Running(s) => s,
    };
    let run_id = state.run_id.clone();
    let _lease = store.lock(&lease_key(&run_id, shard.index))?;
    // Every log line from here on carries the run id and the shard.
    let _run_span = tracing::info_span!("run", run_id = %run_id, shard = %shard).entered();
    if let Some(done) = get_json::<ShardManifest>(store, &shard_manifest_key(&run_id, shard.index))? {
        tracing::info!(%shard, "this shard already finished; nothing to do");
        return shard_outcome(plan, store, &state, &done, true);
    }
    let attempt = store.list(&attempts_prefix(&run_id, shard.index))?.len() as u32 + 1;
    put_json_new(
        store,
        &format!("{}attempt-{attempt:03}.json", attempts_prefix(&run_id, shard.index)),
        &serde_json::json!({ "format": FORMAT_VERSION, "shard": shard.index, "attempt": attempt, "started_at": crate::run::now() }),
    )?;
    let reference_date = crate::run::reference_date_of(plan, &state)?;
    let privacy = prepared.finish(plan, store, &run_id, attempt, reference_date, Some(shard.index))?;
    let units = units_for(plan, store, &state, &inputs, shard, privacy.cursor_seal.as_ref())?;
    check_file_slices(plan, &inputs, &units)?;
    let mine: Vec<&Unit> = units.units.iter().filter(|u| u.shard == shard.index).collect();
    let r = &plan.run;
    tracing::info!(
        run_id = %run_id, %shard, attempt, units = mine.len(), of_units = units.units.len(), dest = %store.url(),
        batch_rows = r.batch_rows, part_rows = r.part_rows, max_quarantine_ratio = r.max_quarantine_ratio, "shard started"
    );

    let mut work = Vec::new();
    let mut pieces = Vec::new();
    let mut snapshots = BTreeMap::new();
    for unit in &mine {
        for piece in &unit.pieces {
            let (m, found) =
                plan.tables.iter().zip(&inputs).find(|(m, _)| m.table == piece.table).ok_or_else(|| PipelineError::Corrupt {
                    key: units_key(&run_id),
                    message: format!("names table `{}`, which the plan does not have", piece.table),
                })?;
            let mut progress = load_progress(store, &run_id, &m.table, piece.slice)?;
            if let Found::Database { source, db } = found
                && db.engine == Engine::Postgres
                && progress.finished.is_none()
                && !snapshots.contains_key(source)
            {
                snapshots.insert(source.clone(), PgSnapshot::export(source, db)?);
            }
            let snapshot = match found {
                Found::Database { source, .. } => snapshots.get(source).map(|s: &PgSnapshot| s.id().to_owned()),
                Found::Files { .. } => None,
            };
            let (input, names, ffp) = piece_input(m, found, piece, snapshot, privacy.cursor_seal.as_ref(), &units)?;
            if progress.files_fingerprint.as_ref().is_some_and(|f| f != &ffp) {
                return Err(PipelineError::Config(format!(
                    "table `{}`{}: its source changed since run {run_id} committed part {}; restore it, or write the run to a new destination",
                    m.table,
                    piece.slice.map(|s| format!(" slice {s}")).unwrap_or_default(),
                    progress.parts
                )));
            }
            if progress.finished.is_none() && progress.parts > 0 && m.db.as_ref().is_some_and(|d| d.resume == Resume::RestartTable) {
                tracing::info!(table = %m.table, parts = progress.parts, "restarting a table without a resume key from its first row");
                crate::replay::forget_table(store, &run_id, &m.table, piece.slice)?;
                progress = load_progress(store, &run_id, &m.table, piece.slice)?;
            }
            pieces.push(piece.clone());
            work.push(Work { mapping: m, slice: piece.slice, input, names, fingerprint: ffp, progress });
        }
    }
    let results = crate::run::run_tables(plan, store, opts, &run_id, &privacy, crate::run::converters(plan), work)?;
    drop(snapshots);
    let mut objects = Vec::new();
    let mut results_out = Vec::new();
    for (piece, Done { mapping: m, names, progress }) in pieces.into_iter().zip(results) {
        objects.extend(progress.records.iter().flat_map(|r| r.objects.iter().cloned()));
        results_out.push(PieceResult { totals: crate::run::table_summary(m, names, &progress), piece });
    }
    let manifest = ShardManifest {
        format: FORMAT_VERSION,
        run_id: run_id.clone(),
        shard: shard.index,
        shards: shard.count,
        attempts: attempt,
        finished_at: crate::run::now(),
        key_ids: privacy.ctx.key_id().map(str::to_owned).into_iter().collect(),
        project_key: privacy.project_key.clone(),
        units: mine.iter().map(|u| u.id).collect(),
        pieces: results_out,
        objects,
    };
    // The shard's commit point: written once; a rerun finds it and does nothing.
    put_json_new(store, &shard_manifest_key(&run_id, shard.index), &manifest)?;
    tracing::info!(%shard, units = manifest.units.len(), objects = manifest.objects.len(), "shard finished");
    drop(privacy);
    shard_outcome(plan, store, &state, &manifest, false)
}

/// A shard's outcome after its manifest is written: the run's, when this shard (or an
/// earlier one) could finalize it; else the shard's own tables, with status running.
fn shard_outcome(
    plan: &Plan,
    store: &dyn ObjectStore,
    state: &RunState,
    m: &ShardManifest,
    already: bool,
) -> Result<RunOutcome, PipelineError> {
    let shard = Shard { index: m.shard, count: m.shards };
    match finalize_run(plan, store, state) {
        Ok(mut outcome) => {
            outcome.already_finished = already;
            outcome.shard = Some(shard.to_string());
            Ok(outcome)
        }
        Err(Pending { missing, .. }) if !missing.is_empty() => {
            tracing::info!(
                %shard, waiting_for = %list(&missing), "shard done; the run is finalized by the last shard to finish (or `ehrlift finalize`)"
            );
            Ok(RunOutcome {
                run_id: state.run_id.clone(),
                status: RunStatus::Running,
                already_finished: already,
                attempts: m.attempts,
                manifest: manifest_key(&state.run_id),
                tables: merge_tables(plan, std::slice::from_ref(m)),
                shard: Some(shard.to_string()),
                pending_shards: missing,
            })
        }
        Err(Pending { error, .. }) => Err(*error),
    }
}

/// Why a run could not be finalized: shards still to finish, or an error.
struct Pending {
    missing: Vec<u32>,
    error: Box<PipelineError>,
}

fn list(shards: &[u32]) -> String {
    shards.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// `ehrlift finalize`: checks that every shard of the destination's sharded run has
/// committed all its units, and writes the run manifest (once; a finalized run is
/// reported as it is). Shards still to finish are a transient error (exit 3): run or
/// wait for them and finalize again.
pub fn finalize(plan: &Plan, store: &dyn ObjectStore) -> Result<RunOutcome, PipelineError> {
    let state: RunState =
        get_json(store, STATE_KEY)?.ok_or_else(|| PipelineError::Config(format!("no ehrlift run at {} (no {STATE_KEY})", store.url())))?;
    if state.shards.is_none() {
        return Err(PipelineError::Config(format!(
            "run {} at {} is not sharded: `ehrlift run` finishes it and writes its manifest",
            state.run_id,
            store.url()
        )));
    }
    finalize_run(plan, store, &state).map_err(|p| *p.error)
}

fn finalize_run(plan: &Plan, store: &dyn ObjectStore, state: &RunState) -> Result<RunOutcome, Pending> {
    let fail = |error: PipelineError| Pending { missing: Vec::new(), error: Box::new(error) };
    let run_id = &state.run_id;
    let count = state.shards.unwrap_or(1);
    if let Some(done) = get_json::<Manifest>(store, &manifest_key(run_id)).map_err(fail)? {
        if state.status == RunStatus::Running {
            // Finalized, but the state was not yet updated (interrupted, or a race).
            put_json(store, STATE_KEY, &RunState { status: done.status, ..state.clone() }).map_err(fail)?;
        }
        return Ok(RunOutcome::of_manifest(&done, true));
    }
    if state.plan_fingerprint != crate::run::plan_fingerprint(plan) {
        return Err(fail(PipelineError::Config(format!(
            "the plan or its mappings changed since run {run_id} started at {}; finalize with the original plan",
            store.url()
        ))));
    }
    let mut shards = Vec::new();
    let mut missing = Vec::new();
    for i in 0..count {
        match get_json::<ShardManifest>(store, &shard_manifest_key(run_id, i)).map_err(fail)? {
            Some(m) => shards.push(m),
            None => missing.push(i),
        }
    }
    if !missing.is_empty() {
        let error = PipelineError::Pending(format!(
            "run {run_id} at {}: shard(s) {} of {count} have not finished (no shard manifest); run them, or wait for them, then finalize again",
            store.url(),
            list(&missing)
        ));
        return Err(Pending { missing, error: Box::new(error) });
    }
    let units: UnitPlan = get_json(store, &units_key(run_id))
        .map_err(fail)?
        .ok_or_else(|| fail(PipelineError::Corrupt { key: units_key(run_id), message: "missing, though every shard finished".into() }))?;
    // Every unit is committed by the shard it was given to.
    for u in &units.units {
        if !shards.iter().any(|m| m.shard == u.shard && m.units.contains(&u.id)) {
            return Err(fail(PipelineError::Corrupt {
                key: shard_manifest_key(run_id, u.shard),
                message: format!("does not list unit {} given to shard {}", u.id, u.shard),
            }));
        }
    }
    // The vault's size, recorded once the manifest is written (no shard writes it): what
    // it held before the run plus this run's segments. Each entry is in exactly one of
    // them: a namespace has one writer, a retried shard reopens its earlier segments,
    // and shards never compact. No key is needed: segment headers carry their counts.
    let vault_entries = if ehrlift_deid::needs_vault(plan) {
        let before = get_json::<crate::privacy::VaultRecord>(store, crate::privacy::VAULT_RECORD).map_err(fail)?.map_or(0, |r| r.entries);
        let mine = format!("{}{run_id}-s", crate::privacy::VAULT_PREFIX);
        let mut added = 0;
        for o in store.list(crate::privacy::VAULT_PREFIX).map_err(|e| fail(e.into()))?.into_iter().filter(|o| o.key.starts_with(&mine)) {
            let bytes = store.get(&o.key).map_err(|e| fail(e.into()))?.unwrap_or_default();
            added += ehrlift_deid::vault::Vault::entries_in(&bytes);
        }
        Some(before + added)
    } else {
        None
    };
    let tables = merge_tables(plan, &shards);
    let order = |o: &ObjectEntry| {
        (plan.tables.iter().position(|m| m.table == o.table), o.slice, o.part, o.kind == ehrlift_load::ObjectKind::Quarantine)
    };
    let mut objects: Vec<ObjectEntry> = shards.iter().flat_map(|m| m.objects.iter().cloned()).collect();
    objects.sort_by_key(order);
    let status = if tables.iter().all(|t| t.status == TableStatus::Complete) { RunStatus::Complete } else { RunStatus::Failed };
    let reference_date = crate::run::reference_date_of(plan, state).map_err(fail)?;
    let first = &shards[0];
    let manifest = Manifest {
        format: FORMAT_VERSION,
        tool: "ehrlift".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        run_id: run_id.clone(),
        project: plan.project.clone(),
        destination: store.url(),
        plan: ehrlift_load::FileDigest { path: plan.path.display().to_string(), sha256: plan.sha256.clone() },
        plan_fingerprint: state.plan_fingerprint.clone(),
        profile: plan.profile.name().into(),
        key_ids: first.key_ids.clone(),
        project_key: first.project_key.clone(),
        destination_encryption: store.encryption(),
        reference_date: crate::run::uses_reference_date(plan).then(|| reference_date.to_string()),
        vault_entries,
        zip3_list: crate::run::uses_zip3(plan).then(|| ehrlift_deid::generalize::RESTRICTED_ZIP3.version.clone()),
        started_at: state.started_at.clone(),
        finished_at: crate::run::now(),
        attempts: shards.iter().map(|m| m.attempts).max().unwrap_or(1),
        status,
        shards: Some(ShardsInfo { count, units: units.units.len() as u32, attempts: shards.iter().map(|m| m.attempts).collect() }),
        tables,
        objects,
    };
    // Written once: a shard finishing at the same moment finds it and reports it.
    let written = match put_json_new(store, &manifest_key(run_id), &manifest) {
        Ok(()) => manifest,
        Err(PipelineError::Store(StoreError::Conflict { .. })) => get_json(store, &manifest_key(run_id))
            .map_err(fail)?
            .ok_or_else(|| fail(PipelineError::Corrupt { key: manifest_key(run_id), message: "vanished".into() }))?,
        Err(e) => return Err(fail(e)),
    };
    if let Some(entries) = written.vault_entries {
        put_json(store, crate::privacy::VAULT_RECORD, &crate::privacy::VaultRecord { format: 1, entries }).map_err(fail)?;
    }
    put_json(store, STATE_KEY, &RunState { status: written.status, ..state.clone() }).map_err(fail)?;
    tracing::info!(run_id = %run_id, status = ?written.status, shards = count, "run finalized");
    Ok(RunOutcome::of_manifest(&written, false))
}

/// Per table of the plan (those the shards ran), its totals over its pieces.
fn merge_tables(plan: &Plan, shards: &[ShardManifest]) -> Vec<TableSummary> {
    let mut out = Vec::new();
    for m in &plan.tables {
        let mut pieces: Vec<(u32, &PieceResult)> =
            shards.iter().flat_map(|s| s.pieces.iter().map(move |p| (s.shard, p))).filter(|(_, p)| p.piece.table == m.table).collect();
        pieces.sort_by_key(|(_, p)| p.piece.slice);
        match pieces.as_slice() {
            [] => continue,
            [(_, whole)] if whole.piece.slice.is_none() => {
                out.push(whole.totals.clone());
                continue;
            }
            _ => {}
        }
        let mut t = TableSummary {
            status: TableStatus::Complete,
            files: Vec::new(),
            rows_read: 0,
            rows_written: 0,
            rows_quarantined: 0,
            quarantine_reasons: BTreeMap::new(),
            rows_passed_over: 0,
            parts: 0,
            slices: Vec::new(),
            ..pieces[0].1.totals.clone()
        };
        for (shard, PieceResult { piece, totals: s }) in pieces {
            if s.status != TableStatus::Complete {
                t.status = s.status;
            }
            t.rows_read += s.rows_read;
            t.rows_written += s.rows_written;
            t.rows_quarantined += s.rows_quarantined;
            t.rows_passed_over += s.rows_passed_over;
            t.parts += s.parts;
            for (reason, n) in &s.quarantine_reasons {
                *t.quarantine_reasons.entry(reason.clone()).or_default() += n;
            }
            // File slices list their own files; key slices all read the same relation.
            let files = if piece.key_range.is_none() { s.files.clone() } else { Vec::new() };
            if piece.key_range.is_none() {
                t.files.extend(files.iter().cloned());
            } else if t.files.is_empty() {
                t.files = s.files.clone();
            }
            t.slices.push(SliceSummary {
                slice: piece.slice.unwrap_or(1),
                of: piece.of.unwrap_or(1),
                shard,
                status: s.status,
                files,
                key_range: piece.key_range.clone(),
                rows_read: s.rows_read,
                rows_written: s.rows_written,
                rows_quarantined: s.rows_quarantined,
                rows_passed_over: s.rows_passed_over,
                parts: s.parts,
            });
        }
        out.push(t);
    }
    out
}

/// A shard's view of the run state.
enum Joined {
    /// The run this shard takes part in.
    Running(RunState),
    /// The destination's run already finished: nothing to do.
    Finished(Box<RunOutcome>),
}

/// Joins the destination's sharded run, or starts it (a conditional write: of shards
/// starting together, one creates the run and the others join it).
fn join(plan: &Plan, store: &dyn ObjectStore, fp: &str, shard: Shard) -> Result<Joined, PipelineError> {
    for _ in 0..3 {
        let Some(s) = get_json::<RunState>(store, STATE_KEY)? else {
            // Objects no run recorded are refused, unless a shard started the run meanwhile.
            if let Err(e) = crate::run::clear_unrecorded(plan, store, false) {
                if get_json::<RunState>(store, STATE_KEY)?.is_some() {
                    continue;
                }
                return Err(e);
            }
            let s = crate::run::new_state(fp, Some(shard.count));
            match put_json_new(store, STATE_KEY, &s) {
                Ok(()) => {
                    tracing::info!(run_id = %s.run_id, %shard, "started a new sharded run");
                    return Ok(Joined::Running(s));
                }
                Err(PipelineError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        };
        if s.plan_fingerprint != fp {
            return Err(PipelineError::Config(format!(
                "the plan or its mappings changed since run {} started at {}; run the shards with the original plan, or write to a new destination",
                s.run_id,
                store.url()
            )));
        }
        if s.status != RunStatus::Running {
            tracing::info!(run_id = %s.run_id, %shard, "the run already finished; nothing to do");
            let mut outcome = crate::run::finished(store, &s)?;
            outcome.shard = Some(shard.to_string());
            return Ok(Joined::Finished(Box::new(outcome)));
        }
        return match s.shards {
            Some(n) if n == shard.count => Ok(Joined::Running(s)),
            Some(n) => Err(PipelineError::Config(format!(
                "run {} at {} has {n} shards, not {}: every shard of a run must be given the same count",
                s.run_id,
                store.url(),
                shard.count
            ))),
            None => Err(PipelineError::Config(format!(
                "run {} at {} was started without shards: finish it with `ehrlift run` (no --shard)",
                s.run_id,
                store.url()
            ))),
        };
    }
    Err(PipelineError::Store(StoreError::Conflict { key: STATE_KEY.into() }))
}

/// The run's unit plan: read, or (first shard here) made and written once.
fn units_for(
    plan: &Plan,
    store: &dyn ObjectStore,
    state: &RunState,
    inputs: &[Found],
    shard: Shard,
    seal: Option<&CursorSeal>,
) -> Result<UnitPlan, PipelineError> {
    let key = units_key(&state.run_id);
    let units = match get_json::<UnitPlan>(store, &key)? {
        Some(u) => u,
        None => {
            let made = make_units(plan, state, inputs, shard, seal)?;
            match put_json_new(store, &key, &made) {
                Ok(()) => {
                    tracing::info!(units = made.units.len(), shards = shard.count, "split the run into units");
                    made
                }
                Err(PipelineError::Store(StoreError::Conflict { .. })) => {
                    get_json(store, &key)?.ok_or_else(|| PipelineError::Corrupt { key: key.clone(), message: "vanished".into() })?
                }
                Err(e) => return Err(e),
            }
        }
    };
    if units.shards != shard.count || units.plan_fingerprint != state.plan_fingerprint {
        return Err(PipelineError::Corrupt { key, message: format!("was made for {} shards of another plan", units.shards) });
    }
    Ok(units)
}

/// A table's candidate split, before units are numbered.
struct Candidate {
    table: usize,
    weight: u64,
    /// Files (path order) with sizes, for file tables.
    files: Vec<(String, u64)>,
    /// Split points of a keyset database table, sealed, and how they were found.
    points: Vec<String>,
    split_by: Option<&'static str>,
}

/// Splits the plan into units and gives each a shard (see the module's doc).
fn make_units(plan: &Plan, state: &RunState, inputs: &[Found], shard: Shard, seal: Option<&CursorSeal>) -> Result<UnitPlan, PipelineError> {
    let n = u64::from(shard.count);
    let mut candidates = Vec::new();
    for (i, (m, found)) in plan.tables.iter().zip(inputs).enumerate() {
        let mut c = Candidate { table: i, weight: 0, files: Vec::new(), points: Vec::new(), split_by: None };
        match found {
            Found::Files { dir, files, .. } => {
                c.files = file_names(dir, files).into_iter().zip(files.iter().map(|f| f.size)).collect();
                c.weight = files.iter().map(|f| f.size).sum();
            }
            Found::Database { source, db } => {
                let spec = TableSpec::new(m, source, db, None);
                if spec.key.is_empty() || shard.count == 1 {
                    c.weight = ROW_BYTES; // unknown size: weighed as small
                } else {
                    let seal = seal.ok_or_else(|| PipelineError::Internal("a keyset table without a cursor seal".into()))?;
                    let splits = split_points(&spec, (n * SLICES_PER_SHARD) as usize)?;
                    c.weight = splits.estimate.unwrap_or(0).saturating_mul(ROW_BYTES).max(ROW_BYTES);
                    c.points = splits.points.iter().map(|p| seal.seal(&m.table, p)).collect();
                    c.split_by = Some(splits.method);
                }
            }
        }
        candidates.push(c);
    }
    let total: u64 = candidates.iter().map(|c| c.weight).sum();
    let slice_bytes = (plan.run.shard_unit_mib << 20).max(total / (n * SLICES_PER_SHARD));

    // Tables sharing a surrogate namespace: one unit of whole tables.
    let groups = vault_groups(plan);
    let mut units: Vec<Unit> = Vec::new();
    let mut grouped = vec![false; plan.tables.len()];
    for g in &groups {
        let weight = g.iter().map(|&t| candidates[t].weight).sum();
        let pieces = g.iter().map(|&t| whole(&plan.tables[t])).collect();
        g.iter().for_each(|&t| grouped[t] = true);
        units.push(Unit { id: 0, shard: 0, weight, pieces });
    }
    for c in candidates.iter().filter(|c| !grouped[c.table]) {
        let m = &plan.tables[c.table];
        let want = c.weight.div_ceil(slice_bytes.max(1)).min(n * SLICES_PER_SHARD);
        if want >= 2 && c.files.len() >= 2 {
            let runs = file_runs(&c.files, want as usize);
            let of = runs.len() as u32;
            for (k, run) in runs.into_iter().enumerate() {
                let weight = run.iter().map(|(_, size)| size).sum();
                let files = run.into_iter().map(|(name, _)| name).collect();
                let piece = Piece { slice: Some(k as u32 + 1), of: Some(of), files, ..whole(m) };
                units.push(Unit { id: 0, shard: 0, weight, pieces: vec![piece] });
            }
        } else if want >= 2 && !c.points.is_empty() {
            let points = pick(&c.points, want as usize - 1);
            let of = points.len() as u32 + 1;
            let mut after = None;
            for k in 0..of as usize {
                let upto = points.get(k).cloned();
                let piece = Piece {
                    slice: Some(k as u32 + 1),
                    of: Some(of),
                    key_range: Some(SealedKeyRange { after: after.clone(), upto: upto.clone() }),
                    split_by: c.split_by.map(str::to_owned),
                    ..whole(m)
                };
                units.push(Unit { id: 0, shard: 0, weight: c.weight / u64::from(of), pieces: vec![piece] });
                after = upto;
            }
        } else {
            units.push(Unit { id: 0, shard: 0, weight: c.weight, pieces: vec![whole(m)] });
        }
    }
    for (i, u) in units.iter_mut().enumerate() {
        u.id = i as u32 + 1;
    }
    assign(&mut units, shard.count);
    Ok(UnitPlan {
        format: FORMAT_VERSION,
        run_id: state.run_id.clone(),
        plan_fingerprint: state.plan_fingerprint.clone(),
        shards: shard.count,
        created_by: shard.index,
        created_at: crate::run::now(),
        slice_bytes,
        units,
    })
}

fn whole(m: &Mapping) -> Piece {
    Piece { table: m.table.clone(), slice: None, of: None, files: Vec::new(), key_range: None, split_by: None }
}

/// Tables connected by a shared surrogate namespace, each group in plan order.
fn vault_groups(plan: &Plan) -> Vec<Vec<usize>> {
    let spaces = |m: &Mapping| -> Vec<String> {
        m.columns
            .iter()
            .filter_map(|c| match &c.rule {
                Rule::Surrogate { namespace } => Some(namespace.clone()),
                _ => None,
            })
            .collect()
    };
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for (i, m) in plan.tables.iter().enumerate() {
        let mine = spaces(m);
        if mine.is_empty() {
            continue;
        }
        // Merge every group that shares a namespace with this table.
        let (joined, rest): (Vec<_>, Vec<_>) = groups.into_iter().partition(|(ns, _)| ns.iter().any(|n| mine.contains(n)));
        let mut merged = (mine, vec![i]);
        for (ns, tables) in joined {
            merged.0.extend(ns);
            merged.1.extend(tables);
        }
        merged.1.sort_unstable();
        groups = rest;
        groups.push(merged);
    }
    let mut out: Vec<Vec<usize>> = groups.into_iter().map(|(_, t)| t).collect();
    out.sort();
    out
}

/// Cuts files (path order) into at most `k` consecutive runs of about equal size: each
/// file goes to the run its middle byte falls in.
fn file_runs(files: &[(String, u64)], k: usize) -> Vec<Vec<(String, u64)>> {
    let total: u64 = files.iter().map(|(_, s)| s).sum::<u64>().max(1);
    let mut runs: Vec<Vec<(String, u64)>> = vec![Vec::new(); k];
    let mut before = 0u64;
    for (name, size) in files {
        let middle = before + size / 2;
        let at = ((u128::from(middle) * k as u128) / u128::from(total)).min(k as u128 - 1) as usize;
        runs[at].push((name.clone(), *size));
        before += size;
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// `want` of `points`, evenly spaced.
fn pick(points: &[String], want: usize) -> Vec<String> {
    if want >= points.len() {
        return points.to_vec();
    }
    let l = points.len() + 1;
    let mut out: Vec<String> = (1..=want).map(|j| points[(j * l / (want + 1)).clamp(1, points.len()) - 1].clone()).collect();
    out.dedup();
    out
}

/// Gives each unit a shard: largest first, each to the least loaded shard (lowest
/// index on ties), so the same units always land on the same shards.
fn assign(units: &mut [Unit], shards: u32) {
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(units[i].weight), units[i].id));
    let mut load = vec![0u64; shards as usize];
    for i in order {
        let s = (0..load.len()).min_by_key(|&s| (load[s], s)).expect("at least one shard");
        units[i].shard = s as u32;
        load[s] += units[i].weight.max(1);
    }
}

/// A table split by its files must still have exactly the files the unit plan cut: a
/// file added since would be read by no shard, a file removed by none.
fn check_file_slices(plan: &Plan, inputs: &[Found], units: &UnitPlan) -> Result<(), PipelineError> {
    for (m, found) in plan.tables.iter().zip(inputs) {
        let Found::Files { dir, files, .. } = found else { continue };
        let pieces = units.units.iter().flat_map(|u| &u.pieces).filter(|p| p.table == m.table && p.slice.is_some());
        let mut planned: Vec<&String> = pieces.flat_map(|p| &p.files).collect();
        if planned.is_empty() {
            continue;
        }
        planned.sort();
        let mut now = file_names(dir, files);
        now.sort();
        if planned.len() != now.len() || planned.iter().zip(&now).any(|(a, b)| *a != b) {
            return Err(PipelineError::Config(format!(
                "table `{}`: its files changed since run {} split them between shards ({} then, {} now); restore them, or write the run to a new destination",
                m.table,
                units.run_id,
                planned.len(),
                now.len()
            )));
        }
    }
    Ok(())
}

/// A piece's input, its names and its fingerprint.
fn piece_input(
    m: &Mapping,
    found: &Found,
    piece: &Piece,
    snapshot: Option<String>,
    seal: Option<&CursorSeal>,
    units: &UnitPlan,
) -> Result<(TableInput, Vec<String>, String), PipelineError> {
    let corrupt = |message: String| PipelineError::Corrupt { key: units_key(&units.run_id), message };
    match found {
        Found::Files { kind, dir, files } => {
            let files: Vec<SourceFile> = if piece.slice.is_some() {
                let names = file_names(dir, files);
                piece
                    .files
                    .iter()
                    .map(|want| {
                        names.iter().position(|n| n == want).map(|i| files[i].clone()).ok_or_else(|| {
                            PipelineError::Config(format!(
                                "table `{}` slice {}: file `{want}` was listed when the run started and is gone; restore it, or write the run to a new destination",
                                m.table,
                                piece.slice.unwrap_or_default()
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?
            } else {
                files.clone()
            };
            let names = file_names(dir, &files);
            let fp = files_fingerprint(&files);
            Ok((TableInput::Files { kind: kind.clone(), files }, names, fp))
        }
        Found::Database { source, db } => {
            let mut spec = TableSpec::new(m, source, db, snapshot);
            let names = vec![format!("{source}:{}", spec.label())];
            let mut fp = found.fingerprint(m);
            if let Some(range) = &piece.key_range {
                let seal = seal.ok_or_else(|| PipelineError::Internal("a key slice without a cursor seal".into()))?;
                let open = |b: &Option<String>| {
                    b.as_ref().map(|s| seal.open(&m.table, s)).transpose().map_err(|e| corrupt(format!("table `{}`: {e}", m.table)))
                };
                spec.range = KeyRange { after: open(&range.after)?, upto: open(&range.upto)? };
                fp = fingerprint(&[fp, range.after.clone().unwrap_or_default(), range.upto.clone().unwrap_or_default()]);
            }
            Ok((TableInput::Database { spec: Box::new(spec), seal: seal.cloned() }, names, fp))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn shards_parse_and_refuse_what_is_out_of_range() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        assert_eq!("0/1".parse::<Shard>().unwrap().to_string(), "0/1");
        for bad in ["4/4", "1/0", "x/2", "2", "-1/3", "1/10001"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn batch_engines_give_the_shard_through_the_environment() {
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        let aws = [("AWS_BATCH_JOB_ARRAY_INDEX", "3"), ("AWS_BATCH_JOB_ARRAY_SIZE", "8")];
        assert_eq!(Shard::from_env(env(&aws)).unwrap(), Some(Shard { index: 3, count: 8 }));
        let k8s = [("JOB_COMPLETION_INDEX", "1"), ("EHRLIFT_SHARDS", "4")];
        assert_eq!(Shard::from_env(env(&k8s)).unwrap(), Some(Shard { index: 1, count: 4 }));
        assert_eq!(
            Shard::from_env(env(&[("EHRLIFT_SHARD", "0/2"), ("JOB_COMPLETION_INDEX", "1")])).unwrap(),
            Some(Shard::new(0, 2).unwrap())
        );
        let e = Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "1")])).unwrap_err();
        assert!(e.contains("EHRLIFT_SHARDS") && e.contains("completions"), "{e}");
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "4"), ("EHRLIFT_SHARDS", "4")])).is_err());
        assert!(Shard::from_env(env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "x"), ("AWS_BATCH_JOB_ARRAY_SIZE", "2")])).is_err());
    }

    #[test]
    fn file_runs_are_consecutive_balanced_and_cover_every_file_once() {
        let files: Vec<(String, u64)> = (0..10).map(|i| (format!("f{i}"), 100 + i * 10)).collect();
        let runs = file_runs(&files, 4);
        assert_eq!(runs.len(), 4);
        let flat: Vec<&String> = runs.iter().flatten().map(|(n, _)| n).collect();
        assert_eq!(flat, files.iter().map(|(n, _)| n).collect::<Vec<_>>(), "every file once, in order");
        let total: u64 = files.iter().map(|(_, s)| s).sum();
        for r in &runs {
            let w: u64 = r.iter().map(|(_, s)| s).sum();
            assert!(w * 4 > total / 2 && w * 4 < total * 2, "{w} of {total}");
        }
        // One huge file cannot be cut: fewer runs, none empty.
        let skew = vec![("a".to_owned(), 1000), ("b".to_owned(), 1), ("c".to_owned(), 1)];
        let runs = file_runs(&skew, 3);
        assert!(runs.iter().all(|r| !r.is_empty()));
        assert_eq!(runs.iter().map(Vec::len).sum::<usize>(), 3);
    }

    #[test]
    fn units_go_to_the_least_loaded_shard_deterministically() {
        let unit = |id, weight| Unit { id, shard: 9, weight, pieces: Vec::new() };
        let mut units = vec![unit(1, 10), unit(2, 50), unit(3, 30), unit(4, 30), unit(5, 10)];
        assign(&mut units, 2);
        let shards: Vec<u32> = units.iter().map(|u| u.shard).collect();
        assert_eq!(shards, [0, 0, 1, 1, 0]);
        let load = |s| units.iter().filter(|u| u.shard == s).map(|u| u.weight).sum::<u64>();
        assert_eq!((load(0), load(1)), (70, 60));
    }

    #[test]
    fn picked_points_are_evenly_spaced() {
        let points: Vec<String> = (1..=15).map(|i| i.to_string()).collect();
        assert_eq!(pick(&points, 3), ["4", "8", "12"]);
        assert_eq!(pick(&points, 20).len(), 15);
    }
}
