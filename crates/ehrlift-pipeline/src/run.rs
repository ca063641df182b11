//! `run` and `validate` over a whole plan.

use std::sync::Arc;

use ehrlift_core::Reporter;
use ehrlift_deid::TablePrivacy;
use ehrlift_deid::policy::{Coverage, checklist};
use ehrlift_extract::sql::{PgSnapshot, SqlTableSource, TableSpec, relation_label};
use ehrlift_extract::{CsvTableSource, FixedTableSource, Hl7TableSource, SourceFile, list_files};
use ehrlift_load::{
    FORMAT_VERSION, FileDigest, Manifest, ObjectStore, RunState, RunStatus, STATE_KEY, TableStatus, TableSummary, manifest_key,
};
use ehrlift_mapping::kernel::TableKernels;
use ehrlift_mapping::{DatabaseSource, Engine, Generalize, Mapping, Plan, Resume, Rule, SourceKind};
use serde::Serialize;

use crate::PipelineError;
use crate::privacy::needs_key;
use crate::replay::{get_json, load_progress, put_json};
use crate::table::{TableInput, TableJob, run_table};

/// Options of one `run`.
pub struct RunOptions {
    /// Start over: delete the plan's tables at the destination and begin a new run.
    pub fresh: bool,
    /// Progress sink.
    pub reporter: Arc<dyn Reporter>,
}

/// How a run ended (errors aside).
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// Run id.
    pub run_id: String,
    /// Complete, or failed because a table passed its quarantine threshold.
    pub status: RunStatus,
    /// True when the run had already finished and nothing was done.
    pub already_finished: bool,
    /// Attempts of this run so far.
    pub attempts: u32,
    /// Manifest key.
    pub manifest: String,
    /// Per-table totals (a shard whose run is not finalized yet: its own tables and slices).
    pub tables: Vec<TableSummary>,
    /// The shard (`I/N`), for a sharded run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// Shards still to finish before the run can be finalized (status `running`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_shards: Vec<u32>,
}

impl RunOutcome {
    /// The outcome a manifest records.
    pub(crate) fn of_manifest(m: &Manifest, already_finished: bool) -> Self {
        RunOutcome {
            run_id: m.run_id.clone(),
            status: m.status,
            already_finished,
            attempts: m.attempts,
            manifest: manifest_key(&m.run_id),
            tables: m.tables.clone(),
            shard: None,
            pending_shards: Vec::new(),
        }
    }
}

/// The outcome of a run that finished before: nothing more to do.
pub(crate) fn finished(store: &dyn ObjectStore, state: &RunState) -> Result<RunOutcome, PipelineError> {
    let key = manifest_key(&state.run_id);
    let manifest: Manifest =
        get_json(store, &key)?.ok_or_else(|| PipelineError::Corrupt { key, message: "finished run without a manifest".into() })?;
    Ok(RunOutcome::of_manifest(&manifest, true))
}

/// Fingerprint of the plan and every mapping: a resumed run must see the same.
pub(crate) fn plan_fingerprint(plan: &Plan) -> String {
    let mut parts = vec![plan.sha256.clone()];
    parts.extend(plan.tables.iter().map(|t| format!("{}={}", t.table, t.sha256)));
    fingerprint(&parts)
}

pub(crate) fn files_fingerprint(files: &[SourceFile]) -> String {
    fingerprint(&files.iter().map(|f| format!("{}\t{}", f.path.display(), f.size)).collect::<Vec<_>>())
}

pub(crate) fn fingerprint(parts: &[String]) -> String {
    ehrlift_load::sha256_hex(parts.join("\n").as_bytes())
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn new_run_id() -> String {
    let t = chrono::Utc::now();
    format!("{}-{:04x}", t.format("%Y%m%dT%H%M%SZ"), (t.timestamp_subsec_nanos() ^ std::process::id()) & 0xffff)
}

/// A table's input, found and checked before the run touches the destination.
pub(crate) enum Found {
    Files { kind: SourceKind, dir: std::path::PathBuf, files: Vec<SourceFile> },
    Database { source: String, db: DatabaseSource },
}

/// Names of a table's files relative to its source directory, for manifests and quarantine.
pub(crate) fn file_names(dir: &std::path::Path, files: &[SourceFile]) -> Vec<String> {
    files.iter().map(|f| f.path.strip_prefix(dir).unwrap_or(&f.path).display().to_string()).collect()
}

/// Finds a table's input and checks it against the mapping: files exist and their
/// headers match; a database table exists, its columns are classified and convertible.
fn find_input(plan: &Plan, m: &Mapping) -> Result<Found, PipelineError> {
    let source = &plan.sources[&m.source];
    match &source.kind {
        SourceKind::Csv { dir, .. } | SourceKind::Hl7 { dir } | SourceKind::FixedWidth { dir, .. } => {
            let source_err = |source| PipelineError::Source { table: m.table.clone(), source };
            let files = list_files(&m.table, dir, &m.files, &m.exclude).map_err(source_err)?;
            match &source.kind {
                SourceKind::Hl7 { .. } => Hl7TableSource::open(m, files.clone(), Default::default()).check_files(),
                SourceKind::FixedWidth { .. } => FixedTableSource::open(m, files.clone(), Default::default()).check_files(),
                _ => CsvTableSource::open(m, files.clone(), Default::default()).check_headers(),
            }
            .map_err(source_err)?;
            Ok(Found::Files { kind: source.kind.clone(), dir: dir.clone(), files })
        }
        SourceKind::Database(db) => {
            // Opening describes the columns and checks them; dropping rolls back.
            drop(SqlTableSource::open(TableSpec::new(m, &source.name, db, None), &Default::default(), None)?);
            Ok(Found::Database { source: source.name.clone(), db: db.clone() })
        }
    }
}

impl Found {
    pub(crate) fn names(&self, m: &Mapping) -> Vec<String> {
        match self {
            Found::Files { dir, files, .. } => file_names(dir, files),
            Found::Database { source, .. } => {
                vec![format!("{source}:{}", relation_label(&m.db.as_ref().expect("a database mapping").relation, &m.table))]
            }
        }
    }

    /// What a resumed run must find unchanged: the files and sizes, or the source and
    /// what is read from it.
    pub(crate) fn fingerprint(&self, m: &Mapping) -> String {
        match self {
            Found::Files { files, .. } => files_fingerprint(files),
            Found::Database { source, db } => {
                let t = m.db.as_ref().expect("a database mapping");
                fingerprint(&[
                    format!("{}\t{source}\t{}", db.engine.name(), db.url.redacted()),
                    format!("{:?}\t{:?}\t{}", t.relation, t.key, t.chunk_rows),
                ])
            }
        }
    }
}

/// Refuses a plan whose rules its profile does not allow (the CLI reports these
/// with the plan's other diagnostics; a library caller gets them here).
fn check_profile(plan: &Plan) -> Result<(), PipelineError> {
    let v = ehrlift_deid::policy::check(plan);
    if v.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = v.iter().map(ToString::to_string).collect();
    Err(PipelineError::Config(format!("the plan breaks its {} profile:\n{}", plan.profile.name(), lines.join("\n"))))
}

pub(crate) fn uses_reference_date(plan: &Plan) -> bool {
    plan.rules().any(|r| matches!(r, Rule::Generalize(Generalize::BirthYear)))
}

pub(crate) fn uses_zip3(plan: &Plan) -> bool {
    plan.rules().any(|r| matches!(r, Rule::Generalize(Generalize::Zip3)))
}

/// Converter threads: one per core up to two, plus one more on larger machines when
/// the plan has privacy rules (the reader and encoders take the rest).
pub(crate) fn converters(plan: &Plan) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let keyed = plan.rules().any(|r| !matches!(r, Rule::Keep | Rule::Drop | Rule::Null));
    match (cores, keyed) {
        (1, _) => 1,
        (2..=3, _) => 2,
        (_, true) => 3,
        _ => 2,
    }
}

/// What every run (and every shard) checks before it touches the destination: the
/// profile, every table's input (files exist and headers match; database tables are
/// readable as mapped), the destination (reachable, KMS-encrypted, writable) and the
/// project key's KMS key. Returns the plan's fingerprint and the inputs, in plan order.
pub(crate) fn begin(plan: &Plan, store: &dyn ObjectStore) -> Result<(String, Vec<Found>), PipelineError> {
    check_profile(plan)?;
    let fp = plan_fingerprint(plan);
    let mut inputs = Vec::new();
    for m in &plan.tables {
        inputs.push(find_input(plan, m)?);
    }
    for check in store.preflight()? {
        tracing::info!(dest = %store.url(), "preflight: {check}");
    }
    if kms_project_key(plan).is_some() {
        for check in crate::privacy::check_keys(plan)? {
            tracing::info!("preflight: {check}");
        }
    }
    Ok((fp, inputs))
}

/// Before a new run's state is written: objects under the plan's table prefixes that no
/// run recorded are refused, or deleted with `fresh`.
pub(crate) fn clear_unrecorded(plan: &Plan, store: &dyn ObjectStore, fresh: bool) -> Result<(), PipelineError> {
    for m in &plan.tables {
        let prefixes = [format!("{}/", m.table), format!("_quarantine/{}/", m.table)];
        for p in &prefixes {
            let existing = store.list(p)?;
            if !existing.is_empty() && !fresh {
                return Err(PipelineError::Config(format!(
                    "destination {} already holds {} object(s) under `{p}` that no ehrlift run recorded; use --fresh to replace them",
                    store.url(),
                    existing.len()
                )));
            }
            for o in existing {
                store.delete(&o.key)?;
            }
        }
    }
    Ok(())
}

/// A new run's state: the first attempt of a new run id.
pub(crate) fn new_state(fp: &str, shards: Option<u32>) -> RunState {
    RunState {
        format: FORMAT_VERSION,
        run_id: new_run_id(),
        plan_fingerprint: fp.to_owned(),
        status: RunStatus::Running,
        started_at: now(),
        attempts: 1,
        shards,
    }
}

/// The reference date of a run: the plan's, else the day its first attempt started.
pub(crate) fn reference_date_of(plan: &Plan, state: &RunState) -> Result<chrono::NaiveDate, PipelineError> {
    match plan.privacy.reference_date {
        Some(d) => Ok(d),
        None => chrono::NaiveDate::parse_from_str(state.started_at.get(..10).unwrap_or_default(), "%Y-%m-%d")
            .map_err(|_| PipelineError::Corrupt { key: STATE_KEY.into(), message: "`started_at` is not an RFC 3339 time".into() }),
    }
}

/// Runs (or resumes) `plan` into `store`.
pub fn run(plan: &Plan, store: &dyn ObjectStore, opts: &RunOptions) -> Result<RunOutcome, PipelineError> {
    // Fail closed before touching the destination.
    let (fp, inputs) = begin(plan, store)?;
    let _lock = store.lock_run()?;
    // Keys and vault are checked before the run state or any table is touched.
    let prepared = crate::privacy::prepare(plan, store)?;
    let prior: Option<RunState> = get_json(store, STATE_KEY)?;
    let state = match prior {
        Some(s) if !opts.fresh => {
            if s.plan_fingerprint != fp {
                return Err(PipelineError::Config(format!(
                    "the plan or its mappings changed since run {} started at {}; run with the original plan to finish it, or start over with --fresh",
                    s.run_id,
                    store.url()
                )));
            }
            if s.status != RunStatus::Running {
                return finished(store, &s);
            }
            if let Some(n) = s.shards {
                return Err(PipelineError::Config(format!(
                    "run {} at {} is sharded into {n} shards: run each with `ehrlift run PLAN --shard I/{n}` (or let the batch scheduler), then `ehrlift finalize PLAN`",
                    s.run_id,
                    store.url()
                )));
            }
            let s = RunState { attempts: s.attempts + 1, ..s };
            put_json(store, STATE_KEY, &s)?;
            s
        }
        prior => {
            clear_unrecorded(plan, store, opts.fresh)?;
            let s = new_state(&fp, None);
            match prior {
                // Nothing recorded yet: a sharded run starting at the same moment must not be overwritten.
                None => crate::replay::put_json_new(store, STATE_KEY, &s)?,
                Some(_) => put_json(store, STATE_KEY, &s)?,
            }
            s
        }
    };
    store.sweep_incomplete("_ehrlift/")?;
    let reference_date = reference_date_of(plan, &state)?;
    // Every log line from here on carries the run id (JSON logs list their spans).
    let _run_span = tracing::info_span!("run", run_id = %state.run_id).entered();
    let privacy = prepared.finish(plan, store, &state.run_id, state.attempts, reference_date, None)?;
    let r = &plan.run;
    tracing::info!(
        run_id = %state.run_id, attempt = state.attempts, dest = %store.url(), batch_rows = r.batch_rows, part_rows = r.part_rows,
        row_group_rows = r.row_group_rows, encode_threads = r.encode_threads, max_quarantine_ratio = r.max_quarantine_ratio, "run started"
    );

    let converters = converters(plan);
    // One snapshot per PostgreSQL source for the whole attempt: every table reads the same instant.
    let progresses = plan.tables.iter().map(|m| load_progress(store, &state.run_id, &m.table, None)).collect::<Result<Vec<_>, _>>()?;
    let mut snapshots = std::collections::BTreeMap::new();
    for (found, progress) in inputs.iter().zip(&progresses) {
        if let Found::Database { source, db } = found
            && db.engine == Engine::Postgres
            && !snapshots.contains_key(source)
            && progress.finished.is_none()
        {
            snapshots.insert(source.clone(), PgSnapshot::export(source, db)?);
        }
    }
    let mut work = Vec::new();
    for ((m, found), mut progress) in plan.tables.iter().zip(inputs).zip(progresses) {
        let names = found.names(m);
        let ffp = found.fingerprint(m);
        if progress.files_fingerprint.as_ref().is_some_and(|f| f != &ffp) {
            return Err(PipelineError::Config(format!(
                "table `{}`: its source changed (files added, removed or resized; or the database table, query or key) since run {} committed part {}; restore it or start over with --fresh",
                m.table, state.run_id, progress.parts
            )));
        }
        if progress.finished.is_none() && progress.parts > 0 && m.db.as_ref().is_some_and(|d| d.resume == Resume::RestartTable) {
            // No key to resume after: the table starts over; its parts go with its records.
            tracing::info!(table = %m.table, parts = progress.parts, "restarting a table without a resume key from its first row");
            crate::replay::forget_table(store, &state.run_id, &m.table, None)?;
            progress = load_progress(store, &state.run_id, &m.table, None)?;
        }
        let input = match found {
            Found::Files { kind, files, .. } => TableInput::Files { kind, files },
            Found::Database { source, db } => TableInput::Database {
                spec: Box::new(TableSpec::new(m, &source, &db, snapshots.get(&source).map(|s| s.id().to_owned()))),
                seal: privacy.cursor_seal.clone(),
            },
        };
        work.push(Work { mapping: m, slice: None, input, names, fingerprint: ffp, progress });
    }
    let results = run_tables(plan, store, opts, &state.run_id, &privacy, converters, work)?;
    drop(snapshots);
    let mut summaries = Vec::new();
    let mut objects = Vec::new();
    for done in results {
        objects.extend(done.progress.records.iter().flat_map(|r| r.objects.iter().cloned()));
        summaries.push(table_summary(done.mapping, done.names, &done.progress));
    }

    let status = if summaries.iter().all(|s| s.status == TableStatus::Complete) { RunStatus::Complete } else { RunStatus::Failed };
    let manifest = Manifest {
        format: FORMAT_VERSION,
        tool: "ehrlift".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        run_id: state.run_id.clone(),
        project: plan.project.clone(),
        destination: store.url(),
        plan: FileDigest { path: plan.path.display().to_string(), sha256: plan.sha256.clone() },
        plan_fingerprint: fp,
        profile: plan.profile.name().into(),
        key_ids: privacy.ctx.key_id().map(str::to_owned).into_iter().collect(),
        project_key: privacy.project_key.clone(),
        destination_encryption: store.encryption(),
        reference_date: uses_reference_date(plan).then(|| reference_date.to_string()),
        vault_entries: privacy.vault.as_ref().map(|v| v.entries()),
        shards: None,
        zip3_list: uses_zip3(plan).then(|| ehrlift_deid::generalize::RESTRICTED_ZIP3.version.clone()),
        started_at: state.started_at.clone(),
        finished_at: now(),
        attempts: state.attempts,
        status,
        tables: summaries.clone(),
        objects,
    };
    // The manifest is the run's commit point: written before the state says finished.
    put_json(store, &manifest_key(&state.run_id), &manifest)?;
    put_json(store, STATE_KEY, &RunState { status, ..state.clone() })?;
    tracing::info!(run_id = %state.run_id, ?status, "run finished");
    Ok(RunOutcome {
        run_id: state.run_id.clone(),
        status,
        already_finished: false,
        attempts: state.attempts,
        manifest: manifest_key(&state.run_id),
        tables: summaries,
        shard: None,
        pending_shards: Vec::new(),
    })
}

/// A table's totals in the manifest, from its final progress.
pub(crate) fn table_summary(m: &Mapping, names: Vec<String>, progress: &crate::replay::TableProgress) -> TableSummary {
    TableSummary {
        table: m.table.clone(),
        status: progress.finished.expect("table finished"),
        files: names,
        mapping_sha256: m.sha256.clone(),
        mapping_path: m.path.display().to_string(),
        rows_read: progress.rows_read,
        rows_written: progress.rows_written,
        rows_quarantined: progress.rows_quarantined,
        quarantine_reasons: progress.quarantine_reasons.clone(),
        rows_passed_over: progress.rows_passed_over,
        parts: progress.parts,
        slices: Vec::new(),
    }
}

/// One table's (or slice's) work: its input and names, the input's fingerprint, and
/// its committed progress.
pub(crate) struct Work<'p> {
    pub mapping: &'p Mapping,
    pub slice: Option<u32>,
    pub input: TableInput,
    pub names: Vec<String>,
    pub fingerprint: String,
    pub progress: crate::replay::TableProgress,
}

/// One table (or slice) done: its input names and final progress.
pub(crate) struct Done<'p> {
    pub mapping: &'p Mapping,
    pub names: Vec<String>,
    pub progress: crate::replay::TableProgress,
}

/// Runs the tables on `plan.run.jobs` threads, each taking the next table in plan order;
/// results come back in plan order. After a failure no new table starts.
pub(crate) fn run_tables<'p>(
    plan: &'p Plan,
    store: &dyn ObjectStore,
    opts: &RunOptions,
    run_id: &str,
    privacy: &crate::privacy::RunPrivacy,
    converters: usize,
    work: Vec<Work<'p>>,
) -> Result<Vec<Done<'p>>, PipelineError> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let n = work.len();
    let queue: Vec<Mutex<Option<Work<'p>>>> = work.into_iter().map(|w| Mutex::new(Some(w))).collect();
    let results: Vec<Mutex<Option<Result<Done<'p>, PipelineError>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let one = |i: usize| -> Result<Done<'p>, PipelineError> {
        let Work { mapping: m, slice, input, names, fingerprint, progress } =
            queue[i].lock().expect("queue").take().expect("each table once");
        if progress.finished.is_some() {
            opts.reporter.event(ehrlift_core::TableEvent::Skipped { table: crate::table::label(&m.table, slice) });
            return Ok(Done { mapping: m, names, progress });
        }
        let table_span = tracing::info_span!("table", table = %m.table, slice = tracing::field::Empty);
        if let Some(s) = slice {
            table_span.record("slice", s);
        }
        let _table_span = table_span.entered();
        let kernels = TableKernels::compile(m);
        // Fresh data keys for every attempt at a table: a key never encrypts more than one run's parts.
        let keys = match &privacy.wrapper {
            Some(w) => crate::crypto::table_keys(w.as_ref(), &plan.project, m)?,
            None => None,
        };
        let job = TableJob {
            keys,
            run_id,
            mapping: m,
            slice,
            privacy: TablePrivacy::compile(m, &kernels, &privacy.ctx),
            vault: privacy.vault.as_ref(),
            converters,
            kernels,
            input,
            file_names: names.clone(),
            files_fingerprint: fingerprint,
            settings: &plan.run,
            reporter: opts.reporter.as_ref(),
        };
        Ok(Done { mapping: m, names, progress: run_table(store, job, progress)? })
    };
    let run_span = tracing::Span::current();
    std::thread::scope(|scope| {
        for w in 0..plan.run.jobs.clamp(1, n.max(1)) {
            let (one, next, failed, results, run_span) = (&one, &next, &failed, &results, &run_span);
            std::thread::Builder::new()
                .name(format!("ehrlift-table-{w}"))
                .spawn_scoped(scope, move || {
                    let _run = run_span.enter();
                    loop {
                        if failed.load(Ordering::SeqCst) {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            return;
                        }
                        let r = one(i);
                        if r.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        *results[i].lock().expect("results") = Some(r);
                    }
                })
                .map_err(|e| PipelineError::Internal(format!("cannot start a table thread: {e}")))?;
        }
        Ok::<_, PipelineError>(())
    })?;
    let mut out = Vec::with_capacity(n);
    for r in results {
        match r.into_inner().expect("results") {
            Some(r) => out.push(r?),
            // A table that never started because another failed: that failure was returned above.
            None => return Err(PipelineError::Internal("a table was neither run nor failed".into())),
        }
    }
    Ok(out)
}

/// Result of `validate`: per table, its files, or the problem that stops it.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    /// The plan's privacy profile.
    pub profile: &'static str,
    /// The destination's preflight, when a destination was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Preflight>,
    /// The KMS key's preflight, when the project key is KMS-wrapped and needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Preflight>,
    /// Per table: name, files found, and a problem if any.
    pub tables: Vec<TableCheck>,
}

/// One table's check.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    /// Output table.
    pub table: String,
    /// Files its globs match.
    pub files: usize,
    /// Total bytes of those files.
    pub bytes: u64,
    /// Output columns (kept).
    pub columns: usize,
    /// The problem, if any (configuration class).
    pub problem: Option<String>,
    /// The 18 Safe Harbor categories and the columns and rules covering each.
    pub safe_harbor: Vec<Coverage>,
}

/// A preflight: what was checked, or the problem that refuses it.
#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    /// What was checked (a URL, a key).
    pub target: String,
    /// Checks passed, one line each.
    pub checks: Vec<String>,
    /// The refusal, if any.
    pub problem: Option<String>,
}

impl ValidationReport {
    /// True when no table, destination or key has a problem.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.problem.is_none())
            && self.destination.as_ref().is_none_or(|d| d.problem.is_none())
            && self.keys.as_ref().is_none_or(|d| d.problem.is_none())
    }
}

/// The KMS key id of the plan's project key, when the project key is KMS-wrapped and the
/// plan needs it: then that key is preflighted too.
fn kms_project_key(plan: &Plan) -> Option<&str> {
    match &plan.keys {
        ehrlift_mapping::KeysConfig::AwsKms { key_id } if needs_key(plan) => Some(key_id),
        _ => None,
    }
}

/// The preflights `run` starts with, as reports: the destination's (given a store) and
/// the project key's KMS key (when it is KMS-wrapped and needed). A refusal is recorded
/// as the preflight's problem, not returned.
pub fn preflights(plan: &Plan, store: Option<&dyn ObjectStore>) -> (Option<Preflight>, Option<Preflight>) {
    let report = |target: String, checked: Result<Vec<String>, String>| match checked {
        Ok(checks) => Preflight { target, checks, problem: None },
        Err(problem) => Preflight { target, checks: Vec::new(), problem: Some(problem) },
    };
    let destination = store.map(|s| report(s.url(), s.preflight().map_err(|e| e.to_string())));
    let keys = kms_project_key(plan).map(|key_id| report(key_id.to_owned(), crate::privacy::check_keys(plan).map_err(|e| e.to_string())));
    (destination, keys)
}

/// Checks that every table's input exists and matches its mapping (files and headers;
/// database tables, their columns and types), and, given a destination, runs its
/// preflight (and the KMS key's) as `run` would. Writes nothing but the preflight's
/// probe object, which it deletes.
pub fn validate(plan: &Plan, store: Option<&dyn ObjectStore>) -> ValidationReport {
    let (destination, keys) = preflights(plan, store);
    let tables = plan
        .tables
        .iter()
        .map(|m| {
            let columns = m.columns.iter().filter(|c| c.rule.outputs()).count();
            let safe_harbor = checklist(m);
            let (files, bytes, problem) = match find_input(plan, m) {
                Ok(Found::Files { files, .. }) => (files.len(), files.iter().map(|f| f.size).sum(), None),
                Ok(Found::Database { .. }) => (0, 0, None),
                Err(e) => (0, 0, Some(e.to_string())),
            };
            TableCheck { table: m.table.clone(), files, bytes, columns, problem, safe_harbor }
        })
        .collect();
    ValidationReport { profile: plan.profile.name(), destination, keys, tables }
}
