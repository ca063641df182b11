//! `run` and `validate` over a whole plan.

use std::sync::Arc;

use ehrlift_core::Reporter;
use ehrlift_deid::TablePrivacy;
use ehrlift_deid::policy::{Coverage, checklist};
use ehrlift_extract::{CsvTableSource, SourceFile, list_files};
use ehrlift_load::{
    FORMAT_VERSION, FileDigest, Manifest, ObjectStore, RunState, RunStatus, STATE_KEY, TableStatus, TableSummary, manifest_key,
};
use ehrlift_mapping::kernel::TableKernels;
use ehrlift_mapping::{Generalize, Mapping, Plan, Rule, SourceKind};
use serde::Serialize;

use crate::PipelineError;
use crate::replay::{get_json, load_progress, put_json};
use crate::table::{TableJob, run_table};

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
    /// Per-table totals.
    pub tables: Vec<TableSummary>,
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

fn fingerprint(parts: &[String]) -> String {
    ehrlift_load::sha256_hex(parts.join("\n").as_bytes())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn new_run_id() -> String {
    let t = chrono::Utc::now();
    format!("{}-{:04x}", t.format("%Y%m%dT%H%M%SZ"), (t.timestamp_subsec_nanos() ^ std::process::id()) & 0xffff)
}

/// The source directory of a mapping.
fn source_dir<'a>(plan: &'a Plan, m: &Mapping) -> &'a std::path::Path {
    match &plan.sources[&m.source].kind {
        SourceKind::Csv { dir, .. } => dir,
    }
}

/// Names of a table's files relative to its source directory, for manifests and quarantine.
pub(crate) fn file_names(dir: &std::path::Path, files: &[SourceFile]) -> Vec<String> {
    files.iter().map(|f| f.path.strip_prefix(dir).unwrap_or(&f.path).display().to_string()).collect()
}

fn open_files(plan: &Plan, m: &Mapping) -> Result<Vec<SourceFile>, PipelineError> {
    list_files(&m.table, source_dir(plan, m), &m.files).map_err(|source| PipelineError::Source { table: m.table.clone(), source })
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

fn uses_reference_date(plan: &Plan) -> bool {
    plan.rules().any(|r| matches!(r, Rule::Generalize(Generalize::BirthYear)))
}

fn uses_zip3(plan: &Plan) -> bool {
    plan.rules().any(|r| matches!(r, Rule::Generalize(Generalize::Zip3)))
}

/// Converter threads: one per core up to two, plus one more on larger machines when
/// the plan has privacy rules (the reader and encoders take the rest).
fn converters(plan: &Plan) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let keyed = plan.rules().any(|r| !matches!(r, Rule::Keep | Rule::Drop | Rule::Null));
    match (cores, keyed) {
        (1, _) => 1,
        (2..=3, _) => 2,
        (_, true) => 3,
        _ => 2,
    }
}

/// Runs (or resumes) `plan` into `store`.
pub fn run(plan: &Plan, store: &dyn ObjectStore, opts: &RunOptions) -> Result<RunOutcome, PipelineError> {
    check_profile(plan)?;
    let fp = plan_fingerprint(plan);
    // Fail closed before touching the destination: every table's files must exist and
    // every header must match its mapping.
    let mut inputs = Vec::new();
    for m in &plan.tables {
        let files = open_files(plan, m)?;
        CsvTableSource::open(m, files.clone(), Default::default())
            .check_headers()
            .map_err(|source| PipelineError::Source { table: m.table.clone(), source })?;
        inputs.push(files);
    }

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
                let manifest: Manifest = get_json(store, &manifest_key(&s.run_id))?.ok_or_else(|| PipelineError::Corrupt {
                    key: manifest_key(&s.run_id),
                    message: "finished run without a manifest".into(),
                })?;
                return Ok(RunOutcome {
                    run_id: s.run_id.clone(),
                    status: s.status,
                    already_finished: true,
                    attempts: s.attempts,
                    manifest: manifest_key(&s.run_id),
                    tables: manifest.tables,
                });
            }
            let s = RunState { attempts: s.attempts + 1, ..s };
            put_json(store, STATE_KEY, &s)?;
            s
        }
        _ => {
            for m in &plan.tables {
                let prefixes = [format!("{}/", m.table), format!("_quarantine/{}/", m.table)];
                for p in &prefixes {
                    let existing = store.list(p)?;
                    if !existing.is_empty() && !opts.fresh {
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
            let s = RunState {
                format: FORMAT_VERSION,
                run_id: new_run_id(),
                plan_fingerprint: fp.clone(),
                status: RunStatus::Running,
                started_at: now(),
                attempts: 1,
            };
            put_json(store, STATE_KEY, &s)?;
            s
        }
    };
    store.sweep_incomplete("_ehrlift/")?;
    let reference_date = match plan.privacy.reference_date {
        Some(d) => d,
        None => chrono::NaiveDate::parse_from_str(state.started_at.get(..10).unwrap_or_default(), "%Y-%m-%d")
            .map_err(|_| PipelineError::Corrupt { key: STATE_KEY.into(), message: "`started_at` is not an RFC 3339 time".into() })?,
    };
    let privacy = prepared.finish(plan, store, &state.run_id, state.attempts, reference_date)?;
    let r = &plan.run;
    tracing::info!(
        run_id = %state.run_id, attempt = state.attempts, dest = %store.url(), batch_rows = r.batch_rows, part_rows = r.part_rows,
        row_group_rows = r.row_group_rows, encode_threads = r.encode_threads, max_quarantine_ratio = r.max_quarantine_ratio, "run started"
    );

    let converters = converters(plan);
    let mut summaries = Vec::new();
    let mut objects = Vec::new();
    for (m, files) in plan.tables.iter().zip(inputs) {
        let names = file_names(source_dir(plan, m), &files);
        let progress = load_progress(store, &state.run_id, &m.table)?;
        let ffp = files_fingerprint(&files);
        if progress.files_fingerprint.as_ref().is_some_and(|f| f != &ffp) {
            return Err(PipelineError::Config(format!(
                "table `{}`: its source files changed (added, removed or resized) since run {} committed part {}; restore them or start over with --fresh",
                m.table, state.run_id, progress.parts
            )));
        }
        let progress = if progress.finished.is_some() {
            opts.reporter.event(ehrlift_core::TableEvent::Skipped { table: m.table.clone() });
            progress
        } else {
            let kernels = TableKernels::compile(m);
            let job = TableJob {
                run_id: &state.run_id,
                mapping: m,
                privacy: TablePrivacy::compile(m, &kernels, &privacy.ctx),
                vault: privacy.vault.as_ref(),
                converters,
                kernels,
                files,
                file_names: names.clone(),
                files_fingerprint: ffp,
                settings: &plan.run,
                reporter: opts.reporter.as_ref(),
            };
            run_table(store, job, progress)?
        };
        objects.extend(progress.records.iter().flat_map(|r| r.objects.iter().cloned()));
        summaries.push(TableSummary {
            table: m.table.clone(),
            status: progress.finished.expect("table finished"),
            files: names,
            mapping_sha256: m.sha256.clone(),
            mapping_path: m.path.display().to_string(),
            rows_read: progress.rows_read,
            rows_written: progress.rows_written,
            rows_quarantined: progress.rows_quarantined,
            quarantine_reasons: progress.quarantine_reasons,
            parts: progress.parts,
        });
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
        reference_date: uses_reference_date(plan).then(|| reference_date.to_string()),
        vault_entries: privacy.vault.as_ref().map(|v| v.entries()),
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
    })
}

/// Result of `validate`: per table, its files, or the problem that stops it.
#[derive(Debug, Clone, Serialize)]
pub struct ValidationReport {
    /// The plan's privacy profile.
    pub profile: &'static str,
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

impl ValidationReport {
    /// True when no table has a problem.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.problem.is_none())
    }
}

/// Checks that every table's files exist and their headers match the mapping.
pub fn validate(plan: &Plan) -> ValidationReport {
    let tables = plan
        .tables
        .iter()
        .map(|m| {
            let columns = m.columns.iter().filter(|c| c.rule.outputs()).count();
            let safe_harbor = checklist(m);
            match open_files(plan, m) {
                Ok(files) => {
                    let bytes = files.iter().map(|f| f.size).sum();
                    let n = files.len();
                    let problem = CsvTableSource::open(m, files, Default::default()).check_headers().err().map(|e| e.to_string());
                    TableCheck { table: m.table.clone(), files: n, bytes, columns, problem, safe_harbor }
                }
                Err(e) => TableCheck { table: m.table.clone(), files: 0, bytes: 0, columns, problem: Some(e.to_string()), safe_harbor },
            }
        })
        .collect();
    ValidationReport { profile: plan.profile.name(), tables }
}
