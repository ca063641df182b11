//! One table: a reader thread (parse and convert) feeding the part writer through a
//! bounded channel, so memory stays at a few batches whatever the table's size.

use std::collections::BTreeMap;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use arrow_array::RecordBatch;
use ehrlift_core::{Position, Rejection, Reporter, SourceRange, TableEvent};
use ehrlift_deid::TablePrivacy;
use ehrlift_extract::SourceFile;
use ehrlift_extract::sql::{CursorSeal, SqlTableSource, TableSpec};
use ehrlift_load::{
    CommitRecord, FORMAT_VERSION, ObjectEntry, ObjectKind, ObjectStore, PartSettings, PartWriter, TableStatus, WrittenPart, commit_key_in,
    data_key_in, quarantine_key_in, schema_fingerprint, slice_tag,
};
use ehrlift_mapping::kernel::TableKernels;
use ehrlift_mapping::{Mapping, RunSettings, SourceKind};

use crate::PipelineError;
use crate::convert::{convert, count_reasons, quarantine_batch, quarantine_schema};
use crate::privacy::VaultSink;
use crate::replay::{TableDone, TableProgress, done_key, put_json_new};
use crate::source::Source;

/// Everything one table's run needs.
pub(crate) struct TableJob<'a> {
    pub run_id: &'a str,
    pub mapping: &'a Mapping,
    /// The slice of the table this job reads (a sharded run split the table); `None`: all of it.
    pub slice: Option<u32>,
    pub kernels: TableKernels,
    pub privacy: TablePrivacy,
    /// Where new surrogates are flushed before a part commits.
    pub vault: Option<&'a VaultSink>,
    /// Threads converting batches (typing and privacy rules) in parallel.
    pub converters: usize,
    pub input: TableInput,
    /// Names of the inputs (files, or `source:table` for a database), for quarantine rows.
    pub file_names: Vec<String>,
    pub files_fingerprint: String,
    pub settings: &'a RunSettings,
    pub reporter: &'a dyn Reporter,
    /// The table's Parquet encryption keys, when it is encrypted.
    pub keys: Option<crate::crypto::TableKeys>,
}

/// A table, or `table slice N` for one slice of it: what progress events name.
pub(crate) fn label(table: &str, slice: Option<u32>) -> String {
    match slice {
        None => table.to_owned(),
        Some(s) => format!("{table} slice {s}"),
    }
}

impl TableJob<'_> {
    /// What this job's progress events name.
    pub(crate) fn label(&self) -> String {
        label(&self.mapping.table, self.slice)
    }
}

/// Where a table's rows come from.
pub(crate) enum TableInput {
    /// A table's files, read as the source's kind says (CSV, HL7 or fixed-width).
    Files { kind: SourceKind, files: Vec<SourceFile> },
    /// A database table or query; `seal` opens and seals keyset cursors.
    Database { spec: Box<TableSpec>, seal: Option<CursorSeal> },
}

impl Source {
    fn open(job: &TableJob<'_>, resume: &Position) -> Result<Self, PipelineError> {
        Ok(match &job.input {
            TableInput::Files { kind, files } => Source::files(kind, job.mapping, files.clone(), resume.clone()),
            TableInput::Database { spec, seal } => Source::Sql(SqlTableSource::open((**spec).clone(), resume, seal.clone())?),
        })
    }
}

/// What the reader thread sends the converter.
struct RawBatch {
    raw: ehrlift_core::SourceBatch,
    rows_read: u64,
    /// The part is complete after this batch.
    close: bool,
    /// Source bytes consumed up to the end of this batch, across files.
    bytes_done: u64,
}

/// What the converter thread sends the writer.
// One message per batch: the size of the end marker does not matter.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Batch {
        batch: RecordBatch,
        rejections: Vec<Rejection>,
        rows_read: u64,
        rows_rejected: u64,
        passed_over: u64,
        start: Position,
        end: Position,
        /// The part is complete after this batch.
        close: bool,
        next_seq: u64,
        /// Source bytes consumed up to the end of this batch, across files.
        bytes_done: u64,
    },
    End,
}

/// The part being written.
struct OpenPart {
    number: u32,
    writer: PartWriter,
    rejections: Vec<Rejection>,
    first: Position,
    end: Position,
    rows_read: u64,
    rows_rejected: u64,
    passed_over: u64,
    next_seq: u64,
}

impl OpenPart {
    /// Starts part `number` at source position `first`.
    fn create(
        store: &dyn ObjectStore,
        job: &TableJob<'_>,
        settings: PartSettings<'_>,
        number: u32,
        first: Position,
        next_seq: u64,
    ) -> Result<Self, PipelineError> {
        let writer =
            PartWriter::create(store, &data_key_in(&job.mapping.table, job.slice, number), job.privacy.schema().clone(), settings)?;
        Ok(OpenPart {
            number,
            writer,
            rejections: Vec::new(),
            end: first.clone(),
            first,
            rows_read: 0,
            rows_rejected: 0,
            passed_over: 0,
            next_seq,
        })
    }
}

/// Runs one table from its committed progress to the end (or to its threshold).
pub(crate) fn run_table(store: &dyn ObjectStore, job: TableJob<'_>, mut progress: TableProgress) -> Result<TableProgress, PipelineError> {
    let table = job.mapping.table.clone();
    let started = Instant::now();
    let mut source = Source::open(&job, &progress.position)?;
    source.set_seq(progress.next_seq);
    let total_bytes = source.total_bytes();
    job.reporter.event(TableEvent::Started {
        table: job.label(),
        total_bytes,
        done_bytes: source.bytes_done(&progress.position),
        done_rows: progress.rows_read,
        total_rows: source.total_rows(),
    });

    // Parts committed by an earlier attempt are final; anything after them (a part
    // renamed into place whose commit record never landed) is rewritten identically.
    // A slice sweeps only its own objects: other shards write the table's other slices.
    let tag = slice_tag(job.slice);
    for folder in [format!("{table}/"), format!("_quarantine/{table}/")] {
        let swept = store.sweep_incomplete(&format!("{folder}{tag}"))?;
        if swept > 0 {
            tracing::info!(%table, swept, "removed incomplete writes of an interrupted attempt");
        }
        for o in store.list(&folder)? {
            let ours = o.key[folder.len()..].starts_with(&tag) && (job.slice.is_some() || !o.key[folder.len()..].starts_with("slice-"));
            if ours && !progress.records.iter().any(|r| r.objects.iter().any(|e| e.key == o.key)) {
                store.delete(&o.key)?;
            }
        }
    }

    let batch_rows = job.settings.batch_rows;
    let part_rows = job.settings.part_rows;
    let kernels = &job.kernels;
    let privacy = &job.privacy;
    // Parsing and converting run on separate threads (CSV records → raw batch → typed,
    // de-identified batch): one reader, and `converters` threads that take batches in
    // turn; the writer puts their results back in order by index.
    let converters = job.converters.max(1);
    let (tx, rx) = sync_channel::<(u64, Result<Msg, PipelineError>)>(converters);
    let (raw_tx, raw_rx) = sync_channel::<(u64, Result<Option<RawBatch>, PipelineError>)>(1);
    // Shared by the converters only: when they all stop, it drops and the reader's next
    // send fails, so no thread waits forever on a writer that gave up.
    let raw_rx = std::sync::Arc::new(std::sync::Mutex::new(raw_rx));

    // The reader and converters log inside the table's span (run id and table).
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let reader_span = span.clone();
        let reader = std::thread::Builder::new()
            .name("ehrlift-read".into())
            .spawn_scoped(scope, move || {
                let _span = reader_span.enter();
                let mut in_part = 0u64;
                for index in 0u64.. {
                    let limit = batch_rows.min((part_rows - in_part) as usize);
                    let raw = match source.next_batch(&job.mapping.table, limit) {
                        Ok(Some(raw)) => raw,
                        Ok(None) => {
                            let skipped = source.skipped();
                            if skipped > 0 {
                                tracing::info!(table = %job.mapping.table, skipped, "messages or records of types the mapping does not read were passed over");
                            }
                            let _ = raw_tx.send((index, Ok(None)));
                            return;
                        }
                        Err(e) => {
                            let _ = raw_tx.send((index, Err(e)));
                            return;
                        }
                    };
                    let bytes_done = source.bytes_done(&raw.end);
                    let rows_read = (raw.rows.len() + raw.rejected.len()) as u64;
                    in_part += rows_read;
                    let close = in_part >= part_rows;
                    if close {
                        in_part = 0;
                    }
                    if raw_tx.send((index, Ok(Some(RawBatch { raw, rows_read, close, bytes_done })))).is_err() {
                        return; // the converter stopped
                    }
                }
            })
            .map_err(failed("reader"))?;
        let mut workers = Vec::with_capacity(converters);
        for _ in 0..converters {
            let (tx, raw_rx, span) = (tx.clone(), raw_rx.clone(), span.clone());
            let worker = std::thread::Builder::new()
                .name("ehrlift-convert".into())
                .spawn_scoped(scope, move || {
                    let _span = span.enter();
                    loop {
                        // The lock is held only to take the next batch.
                        let next = raw_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                        let Ok((index, item)) = next else { return }; // the reader is done
                        let msg = item.map(|r| match r {
                            None => Msg::End,
                            Some(RawBatch { raw, rows_read, close, bytes_done }) => {
                                let (start, end, seq, passed_over) = (raw.start.clone(), raw.end.clone(), raw.seq, raw.passed_over);
                                let c = convert(kernels, privacy, raw);
                                Msg::Batch {
                                    batch: c.batch,
                                    rejections: c.rejections,
                                    rows_read,
                                    rows_rejected: c.rows_rejected,
                                    passed_over,
                                    start,
                                    end,
                                    close,
                                    next_seq: seq + 1,
                                    bytes_done,
                                }
                            }
                        });
                        if tx.send((index, msg)).is_err() {
                            return; // the writer stopped
                        }
                    }
                })
                .map_err(failed("converter"))?;
            workers.push(worker);
        }
        drop((tx, raw_rx));
        let result = write_loop(store, &job, &mut progress, InOrder { rx, next: 0, early: BTreeMap::new() }, started);
        // If the writer stopped early the converters and then the reader see closed channels and end.
        for w in workers {
            w.join().map_err(|_| PipelineError::Internal(format!("converter thread of `{table}` panicked")))?;
        }
        reader.join().map_err(|_| PipelineError::Internal(format!("reader thread of `{table}` panicked")))?;
        result
    })?;
    Ok(progress)
}

/// The converters' results in reading order: a result that arrives before its turn waits
/// (at most one per converter).
struct InOrder {
    rx: std::sync::mpsc::Receiver<(u64, Result<Msg, PipelineError>)>,
    next: u64,
    early: BTreeMap<u64, Result<Msg, PipelineError>>,
}

impl Iterator for InOrder {
    type Item = Result<Msg, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(m) = self.early.remove(&self.next) {
                self.next += 1;
                return Some(m);
            }
            let (index, msg) = self.rx.recv().ok()?;
            self.early.insert(index, msg);
        }
    }
}

fn failed(name: &'static str) -> impl Fn(std::io::Error) -> PipelineError {
    move |e| PipelineError::Internal(format!("cannot start the {name} thread: {e}"))
}

fn write_loop(
    store: &dyn ObjectStore,
    job: &TableJob<'_>,
    progress: &mut TableProgress,
    rx: InOrder,
    started: Instant,
) -> Result<(), PipelineError> {
    let table = job.mapping.table.as_str();
    let workers = match job.settings.encode_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let settings = PartSettings {
        row_group_rows: job.settings.row_group_rows,
        zstd_level: job.settings.zstd_level,
        workers,
        no_dictionary: job.privacy.no_dictionary(),
        encryption: job.keys.as_ref().map(|k| &k.encryption),
    };
    let mut open: Option<OpenPart> = None;
    let (mut read, mut quarantined) = (progress.rows_read, progress.rows_quarantined);
    for msg in rx {
        match msg? {
            Msg::Batch { batch, rejections, rows_read, rows_rejected, passed_over, start, end, close, next_seq, bytes_done } => {
                let part = match open.as_mut() {
                    Some(p) => p,
                    None => open.insert(OpenPart::create(store, job, settings, progress.parts + 1, start, next_seq)?),
                };
                part.writer.write(&batch)?;
                if let Some(v) = job.vault {
                    v.flush_if_large(store)?;
                }
                part.rejections.extend(rejections);
                part.end = end;
                part.rows_read += rows_read;
                part.rows_rejected += rows_rejected;
                part.passed_over += passed_over;
                part.next_seq = next_seq;
                read += rows_read;
                quarantined += rows_rejected;
                job.reporter.event(TableEvent::Progress { table: job.label(), rows: read, quarantined, bytes: bytes_done });
                if over_threshold(quarantined, read, job.settings.max_quarantine_ratio, false) {
                    if let Some(p) = open.take() {
                        p.writer.abort();
                    }
                    return finish_table(store, job, progress, TableStatus::QuarantineThreshold, read, quarantined, started);
                }
                if close {
                    commit_part(store, job, progress, open.take().expect("open part"))?;
                }
            }
            Msg::End => {
                if over_threshold(quarantined, read, job.settings.max_quarantine_ratio, true) {
                    if let Some(p) = open.take() {
                        p.writer.abort();
                    }
                    return finish_table(store, job, progress, TableStatus::QuarantineThreshold, read, quarantined, started);
                }
                if let Some(p) = open.take() {
                    commit_part(store, job, progress, p)?;
                } else if progress.parts == 0 {
                    // An empty table still gets one (empty) part carrying its schema.
                    let p = OpenPart::create(store, job, settings, 1, progress.position.clone(), progress.next_seq)?;
                    commit_part(store, job, progress, p)?;
                }
                return finish_table(store, job, progress, TableStatus::Complete, read, quarantined, started);
            }
        }
    }
    Err(PipelineError::Internal(format!("reader of `{table}` ended without a final message")))
}

/// Rows a table reads before its quarantine ratio is judged (or the whole table, when
/// smaller): a few bad files at the start of a directory of small files must not stop
/// a table whose ratio over a fair sample is within bounds. A ratio of 0 allows nothing:
/// the first quarantined row stops the table.
const THRESHOLD_MIN_ROWS: u64 = 1000;

fn over_threshold(quarantined: u64, read: u64, ratio: f64, at_end: bool) -> bool {
    let judged = ratio == 0.0 || at_end || read >= THRESHOLD_MIN_ROWS;
    judged && read > 0 && quarantined as f64 > ratio * read as f64
}

fn entry(
    job: &TableJob<'_>,
    kind: ObjectKind,
    number: u32,
    w: WrittenPart,
    first: Position,
    end: Position,
    fingerprint: String,
) -> ObjectEntry {
    ObjectEntry {
        key: w.key,
        kind,
        table: job.mapping.table.clone(),
        part: number,
        slice: job.slice,
        bytes: w.bytes,
        sha256: w.sha256,
        rows: w.rows,
        source: SourceRange { first, end },
        schema_fingerprint: fingerprint,
        encryption: match kind {
            ObjectKind::Data => job.keys.as_ref().map(|k| k.entry.clone()),
            ObjectKind::Quarantine => None,
        },
    }
}

/// Data object durable → quarantine object durable → commit record: the checkpoint moves last.
fn commit_part(store: &dyn ObjectStore, job: &TableJob<'_>, progress: &mut TableProgress, p: OpenPart) -> Result<(), PipelineError> {
    let table = job.mapping.table.as_str();
    let data = p.writer.finish()?;
    let mut objects =
        vec![entry(job, ObjectKind::Data, p.number, data, p.first.clone(), p.end.clone(), schema_fingerprint(job.privacy.schema()))];
    if !p.rejections.is_empty() {
        let qschema = quarantine_schema();
        let mut qw = PartWriter::create(
            store,
            &quarantine_key_in(table, job.slice, p.number),
            qschema.clone(),
            PartSettings {
                row_group_rows: job.settings.row_group_rows,
                zstd_level: job.settings.zstd_level,
                workers: 1,
                no_dictionary: &[],
                // Quarantine objects hold positions and reason codes, never values.
                encryption: None,
            },
        )?;
        qw.write(&quarantine_batch(&p.rejections, &job.file_names))?;
        objects.push(entry(
            job,
            ObjectKind::Quarantine,
            p.number,
            qw.finish()?,
            p.first.clone(),
            p.end.clone(),
            schema_fingerprint(&qschema),
        ));
    }
    // Surrogates the part uses are durable before the commit record makes it count.
    if let Some(v) = job.vault {
        v.flush(store)?;
    }
    let mut reasons: BTreeMap<String, u64> = progress.quarantine_reasons.clone();
    count_reasons(&mut reasons, &p.rejections);
    let rec = CommitRecord {
        format: FORMAT_VERSION,
        table: table.to_owned(),
        part: p.number,
        files_fingerprint: job.files_fingerprint.clone(),
        next_seq: p.next_seq,
        end: p.end,
        rows_read: progress.rows_read + p.rows_read,
        rows_written: progress.rows_written + objects[0].rows,
        rows_quarantined: progress.rows_quarantined + p.rows_rejected,
        quarantine_reasons: reasons,
        rows_passed_over: progress.rows_passed_over + p.passed_over,
        objects,
    };
    put_json_new(store, &commit_key_in(job.run_id, table, job.slice, p.number), &rec)?;
    job.reporter.event(TableEvent::PartCommitted { table: job.label(), key: rec.objects[0].key.clone(), rows: rec.objects[0].rows });
    progress.apply(rec);
    Ok(())
}

fn finish_table(
    store: &dyn ObjectStore,
    job: &TableJob<'_>,
    progress: &mut TableProgress,
    status: TableStatus,
    read: u64,
    quarantined: u64,
    started: Instant,
) -> Result<(), PipelineError> {
    let table = job.mapping.table.clone();
    let done =
        TableDone { format: FORMAT_VERSION, table: table.clone(), status, rows_read_at_stop: read, rows_quarantined_at_stop: quarantined };
    put_json_new(store, &done_key(job.run_id, &table, job.slice), &done)?;
    progress.finished = Some(status);
    match status {
        TableStatus::Complete => job.reporter.event(TableEvent::Finished {
            table: job.label(),
            rows_read: progress.rows_read,
            rows_written: progress.rows_written,
            rows_quarantined: progress.rows_quarantined,
            elapsed: started.elapsed(),
        }),
        TableStatus::QuarantineThreshold => job.reporter.event(TableEvent::Failed {
            table: job.label(),
            message: format!(
                "stopped: {quarantined} of {read} rows quarantined, over max_quarantine_ratio = {}; committed parts are kept, see _quarantine/",
                job.settings.max_quarantine_ratio
            ),
        }),
    }
    Ok(())
}
