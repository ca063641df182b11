//! `validate --sample N | --full`: every table of a plan read through the same sources,
//! kernels and privacy rules as `ehrlift run`, measured, and nothing written anywhere
//! (no store, no temporary file, no key file, no vault segment).
//!
//! Memory stays bounded per table (batches, 16 KiB HyperLogLogs, at most ten positions
//! per list, a 64 Ki-row Parquet size sample) except for hash sets: 8 bytes per distinct
//! key of a table's declared key and per distinct value of a referenced column, 16 bytes
//! per k-anonymity class, and 40 bytes per row of a column whose referenced table is read
//! after it (a reference cycle; tables are otherwise read referenced-first).
//!
//! Keys and surrogates: the project key is loaded read-only; when there is none yet a
//! random in-memory key stands in (problem `ephemeral_key`), and surrogates come from an
//! in-memory vault. Pseudonym and surrogate values then differ from a run's, their
//! distinct counts do not. The key's uniqueness and references are checked on the typed
//! values before privacy rules.

mod hash;
mod problems;
mod stats;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use arrow_array::ArrayRef;
use ehrlift_core::{Position, ProjectKey, RowOrigin, SourceBatch};
use ehrlift_deid::policy::checklist;
use ehrlift_deid::scrub::Scrubber;
use ehrlift_deid::{PrivacyContext, TablePrivacy};
use ehrlift_extract::sql::{CursorSeal, SqlTableSource, TableSpec, relation_label};
use ehrlift_extract::{CsvTableSource, list_files};

use crate::source::Source;
use ehrlift_mapping::kernel::TableKernels;
use ehrlift_mapping::{Mapping, Phi, Plan, Rule, SourceKind};

use crate::PipelineError;
use crate::convert::convert_keeping;
use crate::privacy::{load_project_key, needs_key};
use crate::report::{
    ColumnReport, Estimate, ForeignKeyCheck, KAnonymity, KeyCheck, Problem, REPORT_FORMAT, Report, ResidualPhi, Sampling, Severity,
    SourceColumns, TableReport,
};
use crate::run::{Preflight, file_names};
use stats::{ParentSets, RefSet, TableStats, row_ref};

/// Options of [`profile`].
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// How much of each table to read.
    pub sampling: Sampling,
    /// The destination's preflight (run by the caller), copied into the report.
    pub destination: Option<Preflight>,
    /// The KMS key's preflight (run by the caller), copied into the report.
    pub keys: Option<Preflight>,
}

/// Profiles every table of `plan` as a run would convert it, writing nothing. A table
/// that cannot be read is reported (problem `unreadable`) and the others still run;
/// `Err` only for what stops every table (e.g. the plan's keyed rules cannot be set up).
pub fn profile(plan: &Plan, opts: &ProfileOptions) -> Result<Report, PipelineError> {
    let mut global = Vec::new();
    let key = if needs_key(plan) {
        Some(match load_project_key(plan, None) {
            Ok(k) => k,
            Err(e) => {
                global.push(Problem {
                    severity: Severity::Info,
                    code: "ephemeral_key".into(),
                    table: String::new(),
                    column: None,
                    count: 0,
                    message: format!(
                        "no project key loaded ({e}); keyed rules use a throwaway in-memory key: pseudonym values differ from a run's, counts do not"
                    ),
                });
                ephemeral_key()?
            }
        })
    } else {
        None
    };
    let reference_date = plan.privacy.reference_date.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let seal = key.as_ref().map(|k| CursorSeal::new(&k.derive("ehrlift/cursor/v1")));
    let vault = match (&key, ehrlift_deid::needs_vault(plan)) {
        (Some(k), true) => Some(Arc::new(
            ehrlift_deid::vault::Vault::open(ehrlift_deid::vault_keys(k), Vec::new())
                .map_err(|e| PipelineError::Internal(format!("in-memory vault: {e}")))?,
        )),
        _ => None,
    };
    let ctx = PrivacyContext::new(key, &plan.privacy, reference_date, vault);
    let scrubber = plan
        .tables
        .iter()
        .flat_map(|m| &m.columns)
        .any(|c| matches!(c.rule, Rule::Keep | Rule::Encrypt) && matches!(c.phi, None | Some(Phi::None | Phi::Quasi)))
        .then(Scrubber::new);

    // `table` → its columns other tables reference.
    let mut referenced: HashMap<String, Vec<String>> = HashMap::new();
    for c in plan.tables.iter().flat_map(|m| &m.columns) {
        if let Some((t, col)) = c.references.as_deref().and_then(|r| r.split_once('.')) {
            let v = referenced.entry(t.to_owned()).or_default();
            if !v.iter().any(|x| x == col) {
                v.push(col.to_owned());
            }
        }
    }
    let catalogs = Catalogs::default();
    let mut sets: HashMap<String, (RefSet, bool)> = HashMap::new();
    let mut outs: Vec<Option<TableOut>> = (0..plan.tables.len()).map(|_| None).collect();
    for i in read_order(plan) {
        let m = &plan.tables[i];
        let parents: ParentSets<'_> = sets.iter().map(|(k, (s, c))| (k.clone(), (s, *c))).collect();
        let cols = referenced.get(&m.table).cloned().unwrap_or_default();
        let mut out = profile_table(plan, m, &ctx, seal.as_ref(), opts.sampling, &cols, scrubber.as_ref(), &parents, &catalogs);
        drop(parents);
        if let Some(st) = out.stats.as_mut() {
            for (col, _, set) in std::mem::take(&mut st.referenced) {
                sets.insert(format!("{}.{col}", m.table), (set, out.complete));
            }
        }
        outs[i] = Some(out);
    }
    // References to tables read later (cycles): resolved now.
    for out in outs.iter_mut().flatten() {
        let Some(st) = out.stats.as_mut() else { continue };
        for r in &mut st.refs {
            if r.pending.is_empty() {
                continue;
            }
            let (set, complete) = sets.get(&r.references).map_or((None, false), |(s, c)| (Some(s), *c));
            r.exact = complete;
            for (h, o) in std::mem::take(&mut r.pending) {
                if !set.is_some_and(|s| s.contains(&h)) {
                    r.orphans += 1;
                    if r.first.len() < stats::FIRST {
                        r.first.push(o);
                    }
                }
            }
        }
    }
    let tables: Vec<TableReport> =
        plan.tables.iter().zip(outs).map(|(m, o)| o.expect("every table profiled").into_report(plan, m)).collect();
    let mut problems = global;
    for t in &tables {
        problems.extend(problems::of_table(plan, t));
    }
    problems::rank(&mut problems);
    let gates = problems::gates(plan, &tables, &problems);
    let ok = gates.iter().all(|g| g.passed) && tables.iter().all(|t| t.problem.is_none() && t.source_columns.unmapped.is_empty());
    Ok(Report {
        format: REPORT_FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        plan: plan.path.display().to_string(),
        project: plan.project.clone(),
        profile: plan.profile.name().into(),
        sampling: opts.sampling,
        destination: opts.destination.clone(),
        keys: opts.keys.clone(),
        tables,
        problems,
        gates,
        ok,
    })
}

/// A random project key that lives only in memory.
fn ephemeral_key() -> Result<ProjectKey, PipelineError> {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut secret[..]).map_err(|e| PipelineError::Internal(format!("no random numbers for a throwaway key: {e}")))?;
    Ok(ProjectKey::new("ephemeral", secret))
}

/// Plan order, except that a table others reference is read before them when it comes
/// later (so references are checked as read, without keeping the referring rows).
fn read_order(plan: &Plan) -> Vec<usize> {
    let n = plan.tables.len();
    let deps: Vec<Vec<usize>> = plan
        .tables
        .iter()
        .map(|m| {
            m.columns
                .iter()
                .filter_map(|c| c.references.as_deref()?.split_once('.'))
                .filter_map(|(t, _)| plan.tables.iter().position(|x| x.table == t))
                .filter(|&j| plan.tables[j].table != m.table)
                .collect()
        })
        .collect();
    let mut order = Vec::with_capacity(n);
    let mut state = vec![0u8; n]; // 0 new, 1 visiting, 2 done
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) {
        if state[i] != 0 {
            return; // done, or a cycle: read in plan order and resolved at the end
        }
        state[i] = 1;
        for &d in &deps[i] {
            visit(d, deps, state, order);
        }
        state[i] = 2;
        order.push(i);
    }
    for i in 0..n {
        visit(i, &deps, &mut state, &mut order);
    }
    order
}

/// One table's result before it becomes a [`TableReport`].
struct TableOut {
    inputs: Vec<String>,
    problem: Option<String>,
    complete: bool,
    unmapped: Vec<String>,
    stats: Option<TableStats>,
    source_bytes: Option<u64>,
    /// Total bytes when known (plain files) and bytes read.
    bytes: Option<(u64, u64)>,
    db_estimate: Option<u64>,
    elapsed: f64,
}

/// What the reader thread sends.
enum Read {
    Batch(Box<SourceBatch>, u64),
    End { complete: bool },
}

#[allow(clippy::too_many_arguments)]
fn profile_table(
    plan: &Plan,
    m: &Mapping,
    ctx: &PrivacyContext,
    seal: Option<&CursorSeal>,
    sampling: Sampling,
    referenced: &[String],
    scrubber: Option<&Scrubber>,
    parents: &ParentSets<'_>,
    catalogs: &Catalogs,
) -> TableOut {
    let started = Instant::now();
    let mut out = TableOut {
        inputs: Vec::new(),
        problem: None,
        complete: false,
        unmapped: Vec::new(),
        stats: None,
        source_bytes: None,
        bytes: None,
        db_estimate: None,
        elapsed: 0.0,
    };
    let source = &plan.sources[&m.source];
    // The mapping as read: source columns it does not account for are read as dropped,
    // so the rest can still be measured (a run refuses the table; reported as an error).
    let mut m = m.clone();
    let (mut src, total_bytes) = match &source.kind {
        kind @ (SourceKind::Csv { dir, .. } | SourceKind::Hl7 { dir } | SourceKind::FixedWidth { dir, .. }) => {
            let files = match list_files(&m.table, dir, &m.files, &m.exclude) {
                Ok(f) => f,
                Err(e) => {
                    out.problem = Some(PipelineError::Source { table: m.table.clone(), source: e }.to_string());
                    return out;
                }
            };
            let classified: HashSet<&str> = m.classified_source_columns().into_iter().collect();
            // Unreadable headers are reported when the table is read.
            // (HL7 and fixed-width mappings read named paths or fields: nothing is unaccounted for.)
            if matches!(kind, SourceKind::Csv { .. }) {
                let names = CsvTableSource::open(&m, files.clone(), Position::default()).header_names().unwrap_or_default();
                out.unmapped = names.into_iter().filter(|h| !classified.contains(h.as_str())).collect::<Vec<_>>();
                m.drop.extend(out.unmapped.iter().cloned());
            }
            out.inputs = file_names(dir, &files);
            out.source_bytes = Some(files.iter().map(|f| f.size).sum());
            let s = Source::files(kind, &m, files, Position::default());
            let total = s.total_bytes();
            (s, total)
        }
        SourceKind::Database(db) => {
            out.inputs =
                vec![format!("{}:{}", source.name, relation_label(&m.db.as_ref().expect("a database mapping").relation, &m.table))];
            // The table's columns from the catalog, so columns the mapping does not account
            // for are reported and the rest measured, as for files. A query's columns are
            // checked by the reader (a run refuses them; so does the report).
            if let Some(ehrlift_mapping::Relation::Table(name)) = m.db.as_ref().map(|d| &d.relation) {
                let classified: HashSet<&str> = m.classified_source_columns().into_iter().collect();
                out.unmapped = catalogs
                    .columns(&source.name, db, name)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| !classified.contains(c.as_str()))
                    .collect();
                m.drop.extend(out.unmapped.iter().cloned());
            }
            match SqlTableSource::open(TableSpec::new(&m, &source.name, db, None), &Position::default(), seal.cloned()) {
                Ok(s) => {
                    out.db_estimate = s.estimate();
                    (Source::Sql(s), None)
                }
                Err(e) => {
                    out.problem = Some(PipelineError::from(e).to_string());
                    return out;
                }
            }
        }
    };
    let kernels = TableKernels::compile(&m);
    let privacy = TablePrivacy::compile(&m, &kernels, ctx);
    let encoder = parquet_sampler(plan, &privacy);
    let mut st = TableStats::new(&m, &kernels, out.inputs.clone(), referenced, scrubber.is_some(), encoder);
    let limit_total = match sampling {
        Sampling::Sample(n) => Some(n),
        Sampling::Full => None,
    };
    let batch_rows = plan.run.batch_rows.max(1);
    let table = m.table.clone();
    let mut bytes_done = 0u64;
    let result: Result<bool, PipelineError> = std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Result<Read, PipelineError>>(2);
        let src = &mut src;
        let table = table.as_str();
        scope.spawn(move || {
            let mut read = 0u64;
            loop {
                let limit = match limit_total {
                    Some(n) if read >= n => {
                        // Sample reached: one peek tells whether the table had more.
                        let complete = matches!(src.next_batch(table, 1), Ok(None));
                        let _ = tx.send(Ok(Read::End { complete }));
                        return;
                    }
                    Some(n) => batch_rows.min((n - read) as usize),
                    None => batch_rows,
                };
                match src.next_batch(table, limit) {
                    Ok(Some(b)) => {
                        read += (b.rows.len() + b.rejected.len()) as u64;
                        let done = src.bytes_done(&b.end);
                        if tx.send(Ok(Read::Batch(Box::new(b), done))).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = tx.send(Ok(Read::End { complete: true }));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        for msg in rx {
            match msg? {
                Read::Batch(raw, done) => {
                    bytes_done = done;
                    let origins: Vec<RowOrigin> = raw.rows.clone();
                    let rows_read = (raw.rows.len() + raw.rejected.len()) as u64;
                    st.rows_passed_over += raw.passed_over;
                    let (c, typed) = convert_keeping(&kernels, &privacy, *raw, true);
                    let typed: Vec<ArrayRef> = typed.unwrap_or_default();
                    st.add(&m, &origins, rows_read, &c, &typed, parents, scrubber);
                }
                Read::End { complete } => return Ok(complete),
            }
        }
        Err(PipelineError::Internal(format!("reader of `{table}` ended without a final message")))
    });
    match result {
        Ok(c) => out.complete = c,
        Err(e) => out.problem = Some(e.to_string()),
    }
    st.finish_encoding();
    out.bytes = total_bytes.map(|t| (t, bytes_done));
    out.elapsed = started.elapsed().as_secs_f64();
    out.stats = Some(st);
    out
}

/// An in-memory Parquet writer with the run's compression, for the size estimate.
fn parquet_sampler(plan: &Plan, privacy: &TablePrivacy) -> Option<parquet::arrow::ArrowWriter<Vec<u8>>> {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    use parquet::schema::types::ColumnPath;
    let mut b = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(plan.run.zstd_level).ok()?));
    for c in privacy.no_dictionary() {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), false);
    }
    parquet::arrow::ArrowWriter::try_new(Vec::new(), privacy.schema().clone(), Some(b.build())).ok()
}

impl TableOut {
    fn into_report(self, plan: &Plan, m: &Mapping) -> TableReport {
        let mut source_columns = SourceColumns {
            unmapped: self.unmapped.clone(),
            unclassified: m.columns.iter().filter(|c| c.phi.is_none()).map(|c| c.from.clone()).collect(),
            // Not distinguishable from `unmapped` without a record of the source's past columns.
            new: self.unmapped.clone(),
        };
        source_columns.unclassified.dedup();
        let Some(st) = self.stats else {
            return TableReport {
                table: m.table.clone(),
                inputs: self.inputs,
                problem: self.problem,
                complete: false,
                rows_read: 0,
                rows_written: 0,
                rows_quarantined: 0,
                quarantine_reasons: BTreeMap::new(),
                rows_passed_over: 0,
                columns: Vec::new(),
                key: None,
                foreign_keys: Vec::new(),
                source_columns,
                residual_phi: Vec::new(),
                safe_harbor: checklist(m),
                k_anonymity: None,
                estimate: Estimate { source_bytes: self.source_bytes, ..Estimate::default() },
            };
        };
        let names = &st.names[..];
        let refs = |v: &[RowOrigin]| v.iter().map(|o| row_ref(names, o)).collect::<Vec<_>>();
        let written = st.rows_written;
        let columns: Vec<ColumnReport> = st
            .columns
            .iter()
            .map(|s| {
                let c = &m.columns[s.col];
                let (min, max) = s.min_max();
                ColumnReport {
                    name: c.name.clone(),
                    from: c.from.clone(),
                    r#type: c.ty.name(),
                    rule: c.rule.describe(),
                    phi: c.phi.map(|p| p.code().to_owned()),
                    failures: s.failures,
                    failure_reasons: s.reasons.clone(),
                    first_failures: refs(&s.first_failures),
                    nulls: s.nulls,
                    null_rate: if written == 0 { 0.0 } else { s.nulls as f64 / written as f64 },
                    distinct_approx: s.hll.estimate().min(written - s.nulls.min(written)),
                    min,
                    max,
                    lossiness: problems::lossiness(c, s.reasons.get("decimal_out_of_range").copied().unwrap_or(0)),
                }
            })
            .collect();
        let residual_phi = st
            .columns
            .iter()
            .flat_map(|s| {
                let name = m.columns[s.col].name.clone();
                s.residual.iter().flatten().map(move |(tag, (count, first))| (name.clone(), *tag, *count, first.clone()))
            })
            .map(|(column, tag, count, first)| ResidualPhi { column, detector: tag.code().into(), count, first: refs(&first) })
            .collect();
        let key = st.key.as_ref().map(|k| KeyCheck {
            columns: k.columns.clone(),
            duplicates: k.duplicates,
            first: refs(&k.first),
            nulls: k.nulls,
        });
        let foreign_keys = st
            .refs
            .iter()
            .map(|r| ForeignKeyCheck {
                column: r.column.clone(),
                references: r.references.clone(),
                orphans: r.orphans,
                first: refs(&r.first),
                exact: r.exact,
            })
            .collect();
        let k_anonymity = st.k.as_ref().filter(|k| !k.classes.is_empty()).map(|k| {
            let records: u64 = k.classes.values().sum();
            let min = k.classes.values().copied().min().unwrap_or(0);
            KAnonymity {
                columns: k.columns.clone(),
                classes: k.classes.len() as u64,
                k: min,
                records_below_5: k.classes.values().filter(|&&n| n < 5).sum(),
                records_below_11: k.classes.values().filter(|&&n| n < 11).sum(),
                prosecutor_risk_max: if min == 0 { 0.0 } else { 1.0 / min as f64 },
                prosecutor_risk_avg: k.classes.len() as f64 / records as f64,
            }
        });
        let source_rows = if self.complete && self.problem.is_none() {
            Some(st.rows_read)
        } else if let Some((total, done)) = self.bytes.filter(|(_, d)| *d > 0) {
            Some((st.rows_read as f64 * total as f64 / done as f64).round() as u64)
        } else {
            self.db_estimate
        };
        let scale = match source_rows {
            Some(r) if st.rows_read > 0 => r as f64 / st.rows_read as f64,
            _ => 1.0,
        };
        let output_bytes = if st.encoded_rows > 0 {
            (st.encoded_bytes as f64 / st.encoded_rows as f64 * written as f64 * scale).round() as u64
        } else {
            st.encoded_bytes
        };
        let _ = plan;
        TableReport {
            table: m.table.clone(),
            inputs: self.inputs,
            problem: self.problem,
            complete: self.complete,
            rows_read: st.rows_read,
            rows_written: written,
            rows_quarantined: st.rows_quarantined,
            quarantine_reasons: st.reasons.clone(),
            rows_passed_over: st.rows_passed_over,
            columns,
            key,
            foreign_keys,
            source_columns,
            residual_phi,
            safe_harbor: checklist(m),
            k_anonymity,
            estimate: Estimate { source_bytes: self.source_bytes, source_rows, output_bytes, seconds: self.elapsed * scale },
        }
    }
}

/// The catalogs a profile reads database tables' columns from: each source and schema's
/// is read once (one introspection lists every table of the schema), whatever the number
/// of tables mapped from it.
#[derive(Default)]
struct Catalogs {
    /// (source, schema) → the schema's tables; `None` when the catalog could not be read.
    read: RefCell<HashMap<SchemaOf, Option<TableColumns>>>,
}

/// A source's name and a schema in it (`None`: the URL's default).
type SchemaOf = (String, Option<String>);
/// A schema's tables and their columns.
type TableColumns = HashMap<String, Vec<String>>;

impl Catalogs {
    /// The columns of database table `name` (`schema.table` or `table`) of `source`;
    /// `None` when the catalog cannot be read or has no such table (the reader then
    /// reports what is wrong, as a run would).
    fn columns(&self, source: &str, db: &ehrlift_mapping::DatabaseSource, name: &str) -> Option<Vec<String>> {
        let (schema, table) = match name.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, name),
        };
        let mut read = self.read.borrow_mut();
        let catalog = read.entry((source.to_owned(), schema.map(str::to_owned))).or_insert_with(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            let catalog = rt.block_on(ehrlift_extract::sql::introspect::introspect(db.url.expose(), schema, 0)).ok()?;
            Some(catalog.tables.into_iter().map(|t| (t.name, t.columns.into_iter().map(|c| c.name).collect())).collect())
        });
        catalog.as_ref()?.get(table).cloned()
    }
}
