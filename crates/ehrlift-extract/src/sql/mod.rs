//! Database sources: PostgreSQL, MySQL/MariaDB and SQLite through sqlx, streamed in
//! keyset order inside one consistent read transaction, resumable after any batch.
//!
//! Each table reads on its own thread with a single-threaded tokio runtime, so the
//! synchronous pipeline asks for batches the same way it asks a CSV reader. The thread
//! answers one request at a time; while it waits, the server's rows wait in the socket,
//! so memory stays at one batch however large the table is.
//!
//! - PostgreSQL: `COPY (SELECT … ORDER BY key LIMIT chunk) TO STDOUT (FORMAT binary)` in a
//!   `REPEATABLE READ READ ONLY` transaction that imports the run's exported snapshot, so
//!   every table of a plan sees the same instant. A keyed table's chunks stream over
//!   several connections in that snapshot (`read_connections`), decoded in key order.
//! - MySQL/MariaDB: a prepared `SELECT … WHERE key > ? ORDER BY key LIMIT ?` per chunk in
//!   `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` (one snapshot per table).
//! - SQLite: the same query in a read transaction on a read-only connection.
//!
//! Values are read as their natural Arrow type ([`Kind`]); the mapping kernels convert
//! them to the declared types and quarantine what would not fit. Errors name the source
//! and table; a server message is kept only after every quoted part that is not a known
//! identifier is replaced, because servers quote values in some messages.

pub mod introspect;
#[cfg(test)]
#[path = "live_tests.rs"]
mod live;
mod mysql;
mod pg;
pub mod scaffold;
mod split;
mod sqlite;
mod values;

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use ehrlift_core::{ErrorClass, Position, Reason, Rejection, RowOrigin, SourceBatch};
use ehrlift_mapping::kernel::can_convert;
use ehrlift_mapping::{DatabaseSource, Engine, Mapping, Relation, Resume, ZeroDates};

pub use pg::PgSnapshot;
pub use split::{Splits, split_points};
pub use values::{CursorError, CursorSeal, KeyValue, Kind};

use values::Builder;

/// A batch is cut when its values pass this many bytes, whatever its row count, so a
/// table of multi-megabyte notes never holds thousands of them at once.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// A database failure, naming the source and table, never a value or a password.
#[derive(Debug, thiserror::Error)]
#[error("source `{source_name}` ({url}), table `{table}`: {message}")]
pub struct DbError {
    /// Plan source name.
    pub source_name: String,
    /// The URL, redacted.
    pub url: String,
    /// What was read (`emr.patients`, or `query` for a mapping's query).
    pub table: String,
    /// What happened.
    pub message: String,
    /// Configuration (the table, a column or a permission is wrong), transient (the
    /// connection dropped) or internal.
    pub class: ErrorClass,
}

/// Where one table is read from and how.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Plan source name.
    pub source_name: String,
    /// The source.
    pub db: DatabaseSource,
    /// Output table.
    pub table: String,
    /// Table or query.
    pub relation: Relation,
    /// Columns the mapping reads, in order (the raw batch's columns).
    pub needed: Vec<String>,
    /// Declared types of those columns (by mapping column), to check convertibility.
    pub declared: Vec<(String, ehrlift_mapping::ColumnType, String)>,
    /// Keyset columns (empty: read the whole table in one statement).
    pub key: Vec<String>,
    /// Rows per keyset statement.
    pub chunk_rows: u64,
    /// Source columns the mapping leaves out on purpose (`drop`).
    pub dropped: Vec<String>,
    /// Every source column the mapping accounts for (read by a column, any rule, or dropped).
    pub classified: Vec<String>,
    /// PostgreSQL: the run's exported snapshot.
    pub snapshot: Option<String>,
    /// Which keys this reader covers (sharded runs); the whole table by default.
    pub range: KeyRange,
}

/// Which rows a reader covers (sharded runs): keys after `after` (exclusive) up to and
/// including `upto`; `None` = unbounded on that side. Only keyed tables take a range.
///
/// Key values may be PHI: `Debug` shows only whether a side is bounded, and the values
/// cross processes only sealed ([`CursorSeal`]).
#[derive(Clone, Default, PartialEq)]
pub struct KeyRange {
    /// Exclusive lower bound: the starting cursor when there is no resume cursor.
    pub after: Option<Vec<KeyValue>>,
    /// Inclusive upper bound, added to every statement.
    pub upto: Option<Vec<KeyValue>>,
}

impl KeyRange {
    /// Whether the range is the whole table.
    pub fn is_full(&self) -> bool {
        self.after.is_none() && self.upto.is_none()
    }
}

impl std::fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |k: &Option<Vec<KeyValue>>| match k {
            Some(k) => format!("Some(<{} key value(s) withheld>)", k.len()),
            None => "None".to_owned(),
        };
        f.debug_struct("KeyRange")
            .field("after", &format_args!("{}", side(&self.after)))
            .field("upto", &format_args!("{}", side(&self.upto)))
            .finish()
    }
}

impl TableSpec {
    /// The spec of `mapping` over `db`.
    pub fn new(mapping: &Mapping, source_name: &str, db: &DatabaseSource, snapshot: Option<String>) -> Self {
        let t = mapping.db.as_ref().expect("a database mapping");
        let needed = mapping.source_columns();
        let declared = mapping
            .columns
            .iter()
            .filter(|c| c.rule.outputs() || needed.contains(&c.from))
            .map(|c| (c.from.clone(), c.ty, c.name.clone()))
            .collect();
        TableSpec {
            source_name: source_name.to_owned(),
            db: db.clone(),
            table: mapping.table.clone(),
            relation: t.relation.clone(),
            needed,
            declared,
            key: if t.resume == Resume::Keyset { t.key.clone() } else { Vec::new() },
            chunk_rows: t.chunk_rows,
            dropped: mapping.drop.clone(),
            classified: mapping.classified_source_columns().into_iter().map(str::to_owned).collect(),
            snapshot,
            range: KeyRange::default(),
        }
    }

    /// `emr.patients`, or `query of <output table>` for a mapping's query.
    pub fn label(&self) -> String {
        relation_label(&self.relation, &self.table)
    }

    fn error(&self, class: ErrorClass, message: impl Into<String>) -> DbError {
        DbError { source_name: self.source_name.clone(), url: self.db.url.redacted(), table: self.label(), message: message.into(), class }
    }

    /// A driver error with quoted values removed; the class from its kind.
    fn driver(&self, doing: &str, e: &sqlx::Error) -> DbError {
        let class = match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => ErrorClass::Transient,
            sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => ErrorClass::Configuration,
            sqlx::Error::Database(d) => match d.code().as_deref() {
                // Connection exceptions, serialization failures, admin shutdown, too many connections.
                Some(c) if c.starts_with("08") || c.starts_with("40") || c.starts_with("57") || c == "53300" => ErrorClass::Transient,
                _ => ErrorClass::Configuration,
            },
            sqlx::Error::Protocol(_) => ErrorClass::Transient,
            _ => ErrorClass::Configuration,
        };
        let message = match e {
            sqlx::Error::Database(d) => {
                let code = d.code().map(|c| format!(" [{c}]")).unwrap_or_default();
                format!("{doing}: {}{code}", self.scrub(d.message()))
            }
            other => format!("{doing}: {}", self.scrub(&other.to_string())),
        };
        self.error(class, message)
    }

    /// A server message with every quoted span that is not a known identifier replaced.
    fn scrub(&self, msg: &str) -> String {
        let mut known: Vec<&str> = self.needed.iter().chain(&self.key).chain(&self.dropped).map(String::as_str).collect();
        if let Relation::Table(t) = &self.relation {
            known.extend(t.split('.'));
            known.push(t);
        }
        known.push(&self.table);
        scrub_quoted(msg, &known)
    }
}

/// What errors and quarantine rows call a database input: the table (`emr.patients`), or
/// `query of <output table>` for a mapping's query.
pub fn relation_label(relation: &Relation, table: &str) -> String {
    match relation {
        Relation::Table(t) => t.clone(),
        Relation::Query(_) => format!("query of {table}"),
    }
}

/// Replaces the content of `"…"`, `'…'` and `` `…` `` spans that are not in `known`
/// (compared case-insensitively, also as `schema.name`). A quote right after a letter is
/// an apostrophe (`doesn't`), not the start of a span.
fn scrub_quoted(msg: &str, known: &[&str]) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    let opens = |s: &str, i: usize| i == 0 || !s[..i].chars().next_back().is_some_and(char::is_alphanumeric);
    while let Some(i) = rest.char_indices().find(|&(i, c)| matches!(c, '"' | '\'' | '`') && opens(rest, i)).map(|(i, _)| i) {
        let q = rest.as_bytes()[i] as char;
        out.push_str(&rest[..=i]);
        let after = &rest[i + 1..];
        let known = |inner: &str| {
            known.iter().any(|k| k.eq_ignore_ascii_case(inner))
                || inner.split_once('.').is_some_and(|(_, name)| known.iter().any(|k| k.eq_ignore_ascii_case(name)))
        };
        // A quote followed by a letter is inside the span (`'O'Brien'`), not its end.
        let close = after
            .char_indices()
            .find(|&(j, c)| c == q && !after[j + 1..].chars().next().is_some_and(char::is_alphanumeric))
            .map(|(j, _)| j);
        match close {
            Some(j) => {
                let inner = &after[..j];
                out.push_str(if known(inner) { inner } else { "…" });
                out.push(q);
                rest = &after[j + 1..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks the table's (or query's) columns against the mapping: every column it reads
/// exists, and every column is read or dropped, so nothing new slips through unclassified.
pub(crate) fn check_classified(spec: &TableSpec, all: impl Iterator<Item = String>) -> Result<(), DbError> {
    let all: Vec<String> = all.collect();
    let mut problems = Vec::new();
    let missing: Vec<&str> = select_columns(spec)
        .into_iter()
        .filter(|c| !all.contains(c))
        .map(|c| spec.needed.iter().chain(&spec.key).find(|n| *n == &c).expect("selected").as_str())
        .collect();
    if !missing.is_empty() {
        problems.push(format!("column(s) {} not found (the source has {} column(s))", quote_list(&missing), all.len()));
    }
    let unclassified: Vec<&str> = all.iter().filter(|c| !spec.classified.contains(c)).map(String::as_str).collect();
    if !unclassified.is_empty() {
        problems.push(format!("column(s) {} are not classified: map each with a rule or list it in `drop`", quote_list(&unclassified)));
    }
    if problems.is_empty() { Ok(()) } else { Err(spec.error(ErrorClass::Configuration, problems.join("; "))) }
}

fn quote_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// A column of the select list: its name, what it is read as, and its database type name.
#[derive(Debug, Clone)]
pub struct SourceColumn {
    /// Source name.
    pub name: String,
    /// Raw kind, or the database type name when it has no Arrow image.
    pub kind: Result<Kind, String>,
    /// PostgreSQL: read through `::text` (declared utf8 over a type with no binary decoder).
    pub as_text: bool,
}

/// What the reader thread answers.
type Reply = Result<Option<SourceBatch>, DbError>;

/// A table of a database read as a stream of raw batches.
pub struct SqlTableSource {
    spec: Arc<TableSpec>,
    schema: SchemaRef,
    requests: Option<SyncSender<usize>>,
    replies: Receiver<Reply>,
    thread: Option<std::thread::JoinHandle<()>>,
    seq: u64,
    estimate: Option<u64>,
}

/// What the reader thread reports once the table is open.
struct Opened {
    schema: SchemaRef,
    estimate: Option<u64>,
}

impl SqlTableSource {
    /// Connects, opens the read transaction and checks the columns against the mapping;
    /// reading starts after `resume` (its sealed cursor).
    ///
    /// A key range ([`TableSpec::range`]) limits the rows read; a resume cursor inside it
    /// (always at or after its start) wins over its start.
    pub fn open(spec: TableSpec, resume: &Position, seal: Option<CursorSeal>) -> Result<Self, DbError> {
        let spec = Arc::new(spec);
        check_range(&spec)?;
        let cursor = match (&resume.cursor, spec.key.is_empty()) {
            (Some(c), false) => {
                let seal = seal.as_ref().ok_or_else(|| spec.error(ErrorClass::Internal, "a resume cursor but no key to open it"))?;
                Some(seal.open(&spec.table, c).map_err(|e| spec.error(ErrorClass::Configuration, e.to_string()))?)
            }
            _ => spec.range.after.clone(),
        };
        let (req_tx, req_rx) = sync_channel::<usize>(1);
        let (rep_tx, rep_rx) = sync_channel::<Reply>(1);
        let (open_tx, open_rx) = sync_channel::<Result<Opened, DbError>>(1);
        let thread_spec = spec.clone();
        let start = resume.record;
        let sealed = resume.cursor.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ehrlift-db-{}", spec.table))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = open_tx.send(Err(thread_spec.error(ErrorClass::Internal, format!("cannot start a runtime: {e}"))));
                        return;
                    }
                };
                let reader = Reader { spec: &thread_spec, seal, requests: req_rx, replies: rep_tx.clone(), record: start, cursor, sealed };
                if let Err(e) = rt.block_on(reader.run(open_tx)) {
                    let _ = rep_tx.send(Err(e));
                }
            })
            .map_err(|e| spec.error(ErrorClass::Internal, format!("cannot start the reader thread: {e}")))?;
        let opened = match open_rx.recv() {
            Ok(r) => r?,
            Err(_) => match rep_rx.recv() {
                Ok(Err(e)) => return Err(e),
                _ => return Err(spec.error(ErrorClass::Internal, "the reader thread stopped before the table opened")),
            },
        };
        Ok(SqlTableSource {
            spec,
            schema: opened.schema,
            requests: Some(req_tx),
            replies: rep_rx,
            thread: Some(thread),
            seq: 0,
            estimate: opened.estimate,
        })
    }

    /// The raw batch schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The planner's row estimate, for a progress bar.
    pub fn estimate(&self) -> Option<u64> {
        self.estimate
    }

    /// `source:table` as quarantine files name it.
    pub fn label(&self) -> String {
        format!("{}:{}", self.spec.source_name, self.spec.label())
    }

    /// Sets the sequence number of the next batch (after a resume).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// The next batch of at most `limit` rows; `None` at the end of the table.
    pub fn next_batch(&mut self, limit: usize) -> Result<Option<SourceBatch>, DbError> {
        let Some(tx) = &self.requests else { return Ok(None) };
        let lost = || self.spec.error(ErrorClass::Internal, "the reader thread stopped unexpectedly");
        tx.send(limit.max(1)).map_err(|_| lost())?;
        match self.replies.recv().map_err(|_| lost())? {
            Ok(Some(mut b)) => {
                b.seq = self.seq;
                self.seq += 1;
                Ok(Some(b))
            }
            Ok(None) => {
                self.requests = None;
                Ok(None)
            }
            Err(e) => {
                self.requests = None;
                Err(e)
            }
        }
    }
}

impl Drop for SqlTableSource {
    fn drop(&mut self) {
        // Closing the request channel ends the reader, which rolls its transaction back.
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A key range needs a key, and each of its sides a value per key column.
fn check_range(spec: &TableSpec) -> Result<(), DbError> {
    if spec.range.is_full() {
        return Ok(());
    }
    if spec.key.is_empty() {
        return Err(spec.error(ErrorClass::Internal, "a key range for a table read without a key"));
    }
    for side in [&spec.range.after, &spec.range.upto].into_iter().flatten() {
        if side.len() != spec.key.len() {
            return Err(spec.error(
                ErrorClass::Internal,
                format!("a key range bound has {} value(s) for a key of {} column(s)", side.len(), spec.key.len()),
            ));
        }
    }
    Ok(())
}

/// The reader thread's state.
struct Reader<'a> {
    spec: &'a TableSpec,
    seal: Option<CursorSeal>,
    requests: Receiver<usize>,
    replies: SyncSender<Reply>,
    /// Rows read so far (the resume position's record count).
    record: u64,
    /// Key of the last row sent.
    cursor: Option<Vec<KeyValue>>,
    /// That key, sealed (the position batches end at).
    sealed: Option<String>,
}

/// Rows being collected into the next batch.
pub(crate) struct Rows {
    builders: Vec<Builder>,
    /// Index of each key column among the select columns.
    key_at: Vec<usize>,
    /// Number of needed (batch) columns: the first ones of the select list.
    needed: usize,
    names: Vec<String>,
    rows: usize,
    bytes: usize,
    /// (row in batch, select column, reason) of values the source could not read.
    bad: Vec<(usize, usize, Reason)>,
    pub(crate) zero_dates: ZeroDates,
}

impl Rows {
    pub(crate) fn builder(&mut self, col: usize) -> &mut Builder {
        &mut self.builders[col]
    }

    /// Records that column `col` of the current row could not be read (a null was appended).
    pub(crate) fn reject(&mut self, col: usize, reason: Reason) {
        self.bad.push((self.rows, col, reason));
    }

    pub(crate) fn add_bytes(&mut self, n: usize) {
        self.bytes += n;
    }

    /// Ends the current row.
    pub(crate) fn end_row(&mut self) {
        self.rows += 1;
    }
}

/// The select list: needed columns, then key columns not among them.
pub(crate) fn select_columns(spec: &TableSpec) -> Vec<String> {
    let mut cols = spec.needed.clone();
    for k in &spec.key {
        if !cols.contains(k) {
            cols.push(k.clone());
        }
    }
    cols
}

/// Connection of one engine.
enum Conn {
    Pg(pg::PgConn),
    My(sqlx::MySqlConnection),
    Lite(sqlx::SqliteConnection),
}

impl Reader<'_> {
    async fn run(mut self, opened: SyncSender<Result<Opened, DbError>>) -> Result<(), DbError> {
        let spec = self.spec;
        let mut conn = match spec.db.engine {
            Engine::Postgres => Conn::Pg(pg::connect(spec).await?),
            Engine::Mysql => Conn::My(mysql::connect(spec).await?),
            Engine::Sqlite => Conn::Lite(sqlite::connect(spec).await?),
        };
        let select = select_columns(spec);
        let (columns, estimate) = match &mut conn {
            Conn::Pg(c) => pg::open(c, spec, &select).await?,
            Conn::My(c) => mysql::open(c, spec, &select).await?,
            Conn::Lite(c) => sqlite::open(c, spec, &select).await?,
        };
        let kinds = check_columns(spec, &columns)?;
        let schema: SchemaRef =
            Arc::new(Schema::new(spec.needed.iter().zip(&kinds).map(|(n, k)| Field::new(n, k.data_type(), true)).collect::<Vec<_>>()));
        if opened.send(Ok(Opened { schema: schema.clone(), estimate })).is_err() {
            return Ok(());
        }
        let mut rows = Rows {
            builders: kinds.iter().map(Builder::new).collect(),
            key_at: spec.key.iter().map(|k| select.iter().position(|s| s == k).expect("key selected")).collect(),
            needed: spec.needed.len(),
            names: select.clone(),
            rows: 0,
            bytes: 0,
            bad: Vec::new(),
            zero_dates: spec.db.zero_dates,
        };
        let Ok(mut limit) = self.requests.recv() else { return Ok(()) };
        let mut emit = Emit { reader: &mut self, schema, limit: &mut limit };
        // A keyed PostgreSQL table streams over several connections unless the server has
        // no slot for them; every other table reads chunk after chunk on this one.
        let mut read_all = false;
        if let Conn::Pg(c) = &mut conn
            && pg::parallel(spec)
        {
            let cursor = emit.reader.cursor.clone();
            match pg::read_parallel(c, spec, &select, &columns, cursor, &mut rows, &mut emit).await? {
                pg::Parallel::Done => read_all = true,
                pg::Parallel::Stopped => return Ok(()), // the pipeline stopped asking
                pg::Parallel::Unavailable => {}
            }
        }
        while !read_all {
            let cursor = emit.reader.cursor.clone();
            let read = match &mut conn {
                Conn::Pg(c) => pg::chunk(c, spec, &select, &columns, cursor.as_deref(), &mut rows, &mut emit).await?,
                Conn::My(c) => mysql::chunk(c, spec, &select, &kinds, cursor.as_deref(), &mut rows, &mut emit).await?,
                Conn::Lite(c) => sqlite::chunk(c, spec, &select, &kinds, cursor.as_deref(), &mut rows, &mut emit).await?,
            };
            let Some(read) = read else { return Ok(()) }; // the pipeline stopped asking
            // Every chunk ends a batch, so the next chunk starts after the cursor of the
            // last row read.
            if rows.rows > 0 && !emit.send(&mut rows)? {
                return Ok(());
            }
            // A keyset chunk that came back full may have more rows after it.
            read_all = spec.key.is_empty() || read < spec.chunk_rows;
        }
        // End of table: answer the pending request with `None`.
        let _ = emit.reader.replies.send(Ok(None));
        Ok(())
    }
}

/// Checks every select column against the mapping: readable, convertible to the
/// declared type, and usable as a key. Every problem is reported at once.
fn check_columns(spec: &TableSpec, columns: &[SourceColumn]) -> Result<Vec<Kind>, DbError> {
    let mut problems = Vec::new();
    let mut kinds = Vec::new();
    for c in columns {
        let kind = match &c.kind {
            Ok(k) => k.clone(),
            Err(db_type) => {
                problems.push(format!(
                    "column `{}` has type {db_type}, which ehrlift cannot read losslessly; declare it type = \"utf8\" to read its text form{}",
                    c.name,
                    if spec.db.engine == Engine::Postgres { "" } else { " (or cast it in a `query`)" }
                ));
                Kind::Text
            }
        };
        for (_, ty, name) in spec.declared.iter().filter(|(f, _, _)| f == &c.name) {
            if c.kind.is_ok() && !can_convert(&kind.data_type(), *ty) {
                problems.push(format!(
                    "column `{name}` (from `{}`, {}) cannot be read as {}; declare a type it converts to without loss",
                    c.name,
                    kind.data_type(),
                    ty.name()
                ));
            }
        }
        if spec.key.contains(&c.name) && !kind.orderable() {
            problems.push(format!(
                "key column `{}` ({}) cannot order a keyset; use another key or resume = \"restart_table\"",
                c.name,
                kind.data_type()
            ));
        }
        kinds.push(kind);
    }
    if problems.is_empty() { Ok(kinds) } else { Err(spec.error(ErrorClass::Configuration, problems.join("; "))) }
}

/// Where decoded rows go: the pipeline's batches ([`Emit`]), or the split sampler.
pub(crate) trait RowSink {
    /// After a row was added to `rows`. `Ok(false)`: stop reading.
    fn after_row(&mut self, rows: &mut Rows) -> Result<bool, DbError>;
}

impl RowSink for Emit<'_, '_> {
    /// Sends the batch when it is full. `Ok(false)`: the pipeline stopped.
    fn after_row(&mut self, rows: &mut Rows) -> Result<bool, DbError> {
        if rows.rows >= *self.limit || rows.bytes >= MAX_BATCH_BYTES { self.send(rows) } else { Ok(true) }
    }
}

/// Hands full batches to the pipeline and waits for its next request.
pub(crate) struct Emit<'r, 'a> {
    reader: &'r mut Reader<'a>,
    schema: SchemaRef,
    limit: &'r mut usize,
}

impl Emit<'_, '_> {
    /// Sends the collected rows as one batch, then waits for the next request.
    fn send(&mut self, rows: &mut Rows) -> Result<bool, DbError> {
        let spec = self.reader.spec;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(rows.builders.len());
        for (col, b) in rows.builders.iter_mut().enumerate() {
            let (a, not_utf8) = b.finish_checked();
            rows.bad.extend(not_utf8.into_iter().map(|row| (row, col, Reason::InvalidEncoding)));
            arrays.push(a);
        }
        let n = rows.rows;
        let last = n - 1;
        if !rows.key_at.is_empty() {
            let mut key = Vec::with_capacity(rows.key_at.len());
            for (&at, name) in rows.key_at.iter().zip(&spec.key) {
                for i in 0..n {
                    if arrays[at].is_null(i) {
                        return Err(spec.error(
                            ErrorClass::Configuration,
                            format!("key column `{name}` holds a NULL (row {}); keyset reading needs a non-null key, or resume = \"restart_table\"", self.reader.record + i as u64 + 1),
                        ));
                    }
                }
                key.push(KeyValue::of(arrays[at].as_ref(), last).expect("non-null key"));
            }
            self.reader.cursor = Some(key);
        }
        let first = self.reader.record;
        let start = Position { record: first, cursor: self.reader.sealed.clone(), ..Position::default() };
        self.reader.record += n as u64;
        self.reader.sealed = match (&self.reader.cursor, &self.reader.seal) {
            (Some(k), Some(seal)) => Some(seal.seal(&spec.table, k)),
            (Some(_), None) => return Err(spec.error(ErrorClass::Internal, "keyset reading without a cursor seal")),
            _ => None,
        };
        let end = Position { record: self.reader.record, cursor: self.reader.sealed.clone(), ..Position::default() };
        let origin = |i: usize| RowOrigin { file: 0, record: first + i as u64 + 1, line: 0, byte: 0 };
        let mut rejected = Vec::new();
        let mut bad_rows = vec![false; n];
        for &(row, col, reason) in &rows.bad {
            bad_rows[row] = true;
            rejected.push(Rejection { origin: origin(row), column: Some(rows.names[col].clone()), reason });
        }
        let mut columns: Vec<ArrayRef> = arrays.into_iter().take(rows.needed).collect();
        let good: Vec<RowOrigin> = (0..n).filter(|&i| !bad_rows[i]).map(origin).collect();
        if !rows.bad.is_empty() {
            let keep = BooleanArray::from(bad_rows.iter().map(|b| !b).collect::<Vec<_>>());
            columns = columns.iter().map(|c| arrow_select::filter::filter(c, &keep).expect("same length")).collect();
        }
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(good.len())),
        )
        .map_err(|e| spec.error(ErrorClass::Internal, format!("batch assembly: {e}")))?;
        rows.rows = 0;
        rows.bytes = 0;
        rows.bad.clear();
        let out = SourceBatch { table: spec.table.clone(), seq: 0, batch, rows: good, start, end, rejected, passed_over: 0 };
        if self.reader.replies.send(Ok(Some(out))).is_err() {
            return Ok(false);
        }
        match self.reader.requests.recv() {
            Ok(l) => {
                *self.limit = l;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }
}

/// Describes the table (or query) and the select list: every source column must be
/// classified (see [`check_classified`]); the select list's statement carries the types.
pub(crate) async fn describe<DB>(conn: &mut DB::Connection, spec: &TableSpec, select: &[String]) -> Result<DB::Statement, DbError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    use sqlx::{Column as _, Executor as _, SqlSafeStr as _, Statement as _};
    let from = from_item(spec);
    let all = (&mut *conn)
        .prepare(sqlx::AssertSqlSafe(format!("SELECT * FROM {from}")).into_sql_str())
        .await
        .map_err(|e| spec.driver("cannot describe", &e))?;
    check_classified(spec, all.columns().iter().map(|c| c.name().to_owned()))?;
    let list = select_list(spec.db.engine, select);
    (&mut *conn)
        .prepare(sqlx::AssertSqlSafe(format!("SELECT {list} FROM {from}")).into_sql_str())
        .await
        .map_err(|e| spec.driver("cannot describe", &e))
}

/// The quoted select list.
pub(crate) fn select_list(engine: Engine, select: &[String]) -> String {
    select.iter().map(|c| quote_ident(engine, c)).collect::<Vec<_>>().join(", ")
}

/// A keyset chunk's `SELECT` with `?` placeholders (MySQL, SQLite) and the values to bind
/// to them in order: the rows after `after` and up to the spec's range end, if it has one.
/// Without a key, the whole table in one statement.
pub(crate) fn keyset_select<'a>(spec: &'a TableSpec, select: &[String], after: Option<&'a [KeyValue]>) -> (String, Vec<&'a KeyValue>) {
    let engine = spec.db.engine;
    let mut sql = format!("SELECT {} FROM {}", select_list(engine, select), from_item(spec));
    let mut binds = Vec::new();
    if !spec.key.is_empty() {
        // Expanded `OR` forms, not row values: MySQL cannot range-scan an index for a row
        // value comparison.
        let mut preds = Vec::new();
        for (side, values) in [(Side::After, after), (Side::UpTo, spec.range.upto.as_deref())] {
            if let Some(values) = values {
                let (pred, order) = keyset_predicate(engine, &spec.key, side, &mut || "?".to_owned());
                preds.push(pred);
                binds.extend(order.into_iter().map(|i| &values[i]));
            }
        }
        if !preds.is_empty() {
            // A composite key's predicate is an `OR` of terms: parenthesized to be `AND`ed.
            let wrap = |p: &String| if preds.len() > 1 && spec.key.len() > 1 { format!("({p})") } else { p.clone() };
            sql.push_str(&format!(" WHERE {}", preds.iter().map(wrap).collect::<Vec<_>>().join(" AND ")));
        }
        let keys: Vec<String> = spec.key.iter().map(|k| quote_ident(engine, k)).collect();
        sql.push_str(&format!(" ORDER BY {} LIMIT {}", keys.join(", "), spec.chunk_rows));
    }
    (sql, binds)
}

/// Reads a chunk's row stream (MySQL, SQLite): each row decoded into `rows`, full batches
/// handed to `emit`. Returns the rows read, or `None` if the pipeline stopped asking.
pub(crate) async fn read_rows<R>(
    spec: &TableSpec,
    mut stream: impl futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    decode: impl Fn(&R, &mut Rows),
    rows: &mut Rows,
    emit: &mut impl RowSink,
) -> Result<Option<u64>, DbError> {
    use futures_util::TryStreamExt as _;
    let mut read = 0u64;
    while let Some(row) = stream.try_next().await.map_err(|e| spec.driver("reading failed", &e))? {
        decode(&row, rows);
        read += 1;
        rows.end_row();
        if !emit.after_row(rows)? {
            return Ok(None);
        }
    }
    Ok(Some(read))
}

/// Quotes an identifier (`"a""b"` for PostgreSQL and SQLite, `` `a``b` `` for MySQL).
pub(crate) fn quote_ident(engine: Engine, name: &str) -> String {
    match engine {
        Engine::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// The `FROM` item: a quoted, possibly schema-qualified table, or the query as a subquery.
pub(crate) fn from_item(spec: &TableSpec) -> String {
    match &spec.relation {
        Relation::Table(t) => t.split('.').map(|p| quote_ident(spec.db.engine, p)).collect::<Vec<_>>().join("."),
        Relation::Query(q) => format!("({q}) AS ehrlift_q"),
    }
}

/// Which side of a key tuple a keyset predicate keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Keys after the tuple: `(k1, k2) > (v1, v2)`.
    After,
    /// Keys up to and including the tuple: `(k1, k2) <= (v1, v2)`.
    UpTo,
}

/// The keyset predicate over placeholders, expanded from the row value comparison:
/// `(k1 > ?) OR (k1 = ? AND k2 > ?)` for [`Side::After`], `(k1 < ?) OR (k1 = ? AND k2 <= ?)`
/// for [`Side::UpTo`]; with the index of the key value each placeholder binds.
pub(crate) fn keyset_predicate(
    engine: Engine,
    key: &[String],
    side: Side,
    placeholder: &mut dyn FnMut() -> String,
) -> (String, Vec<usize>) {
    let mut ors = Vec::new();
    let mut order = Vec::new();
    for i in 0..key.len() {
        let mut ands = Vec::new();
        for (j, k) in key.iter().enumerate().take(i) {
            ands.push(format!("{} = {}", quote_ident(engine, k), placeholder()));
            order.push(j);
        }
        let op = match side {
            Side::After => ">",
            Side::UpTo if i + 1 == key.len() => "<=",
            Side::UpTo => "<",
        };
        ands.push(format!("{} {op} {}", quote_ident(engine, &key[i]), placeholder()));
        order.push(i);
        ors.push(format!("({})", ands.join(" AND ")));
    }
    (ors.join(" OR "), order)
}

/// A spec over `table` reading `columns` (which the test classifies), keyed by `key`.
#[cfg(test)]
pub(crate) fn spec_for_tests(engine: Engine, url: &str, table: &str, key: &[&str], columns: &[&str]) -> TableSpec {
    let v = |s: &[&str]| s.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    TableSpec {
        source_name: "legacy".into(),
        db: DatabaseSource { engine, url: ehrlift_mapping::SecretUrl::new(url), zero_dates: ZeroDates::Quarantine, read_connections: 1 },
        table: table.into(),
        relation: Relation::Table(table.into()),
        needed: v(columns),
        declared: Vec::new(),
        key: v(key),
        chunk_rows: 700,
        dropped: Vec::new(),
        classified: v(columns),
        snapshot: None,
        range: KeyRange::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_keep_identifiers_and_lose_values() {
        let known = ["patients", "mrn"];
        assert_eq!(
            scrub_quoted(r#"invalid input syntax for type integer: "MRN-ZZSENTINEL""#, &known),
            r#"invalid input syntax for type integer: "…""#
        );
        assert_eq!(scrub_quoted(r#"relation "patients" does not exist"#, &known), r#"relation "patients" does not exist"#);
        assert_eq!(scrub_quoted("Unknown column 'mrn' in 'secret value'", &known), "Unknown column 'mrn' in '…'");
        assert_eq!(scrub_quoted("unterminated \"ZZSENTINEL", &known), "unterminated \"…");
        assert_eq!(scrub_quoted("Table 'ehr.patients' doesn't exist", &known), "Table 'ehr.patients' doesn't exist");
        assert_eq!(scrub_quoted("Table 'ehr.secret' doesn't exist", &known), "Table '…' doesn't exist");
        assert_eq!(scrub_quoted("Incorrect date value: 'O'Brien' for column 'mrn'", &known), "Incorrect date value: '…' for column 'mrn'");
    }

    #[test]
    fn keyset_predicates_expand_for_every_index() {
        let mut n = 0;
        let (p, order) = keyset_predicate(Engine::Mysql, &["a".into(), "b".into()], Side::After, &mut || {
            n += 1;
            "?".into()
        });
        assert_eq!(p, "(`a` > ?) OR (`a` = ? AND `b` > ?)");
        assert_eq!(order, [0, 0, 1]);
        assert_eq!(n, 3);
        let (p, order) = keyset_predicate(Engine::Sqlite, &["a".into(), "b".into(), "c".into()], Side::UpTo, &mut || "?".into());
        assert_eq!(p, r#"("a" < ?) OR ("a" = ? AND "b" < ?) OR ("a" = ? AND "b" = ? AND "c" <= ?)"#);
        assert_eq!(order, [0, 0, 1, 0, 1, 2]);
    }

    #[test]
    fn keyset_selects_stop_at_the_range_end() {
        let (int, text) = (|i| KeyValue::Int(i), |s: &str| KeyValue::Text(s.into()));
        // MySQL, one key column: after the cursor and up to the range end.
        let mut s = spec_for_tests(Engine::Mysql, "mysql://h/db", "pts", &["id"], &["id", "note"]);
        s.range.upto = Some(vec![int(30)]);
        let after = [int(9)];
        let (sql, binds) = keyset_select(&s, &select_columns(&s), Some(&after));
        assert_eq!(sql, "SELECT `id`, `note` FROM `pts` WHERE (`id` > ?) AND (`id` <= ?) ORDER BY `id` LIMIT 700");
        assert_eq!(binds, [&int(9), &int(30)]);
        // The range's start is the reader's first cursor, not a predicate of its own.
        s.range.after = Some(vec![int(3)]);
        let (sql, binds) = keyset_select(&s, &select_columns(&s), None);
        assert_eq!(sql, "SELECT `id`, `note` FROM `pts` WHERE (`id` <= ?) ORDER BY `id` LIMIT 700");
        assert_eq!(binds, [&int(30)]);
        // SQLite, a composite key: both expanded predicates, each parenthesized.
        let mut s = spec_for_tests(Engine::Sqlite, "sqlite://x.db", "visits", &["site", "n"], &["note"]);
        s.range.upto = Some(vec![text("b"), int(5)]);
        let after = [text("a"), int(1)];
        let (sql, binds) = keyset_select(&s, &select_columns(&s), Some(&after));
        assert_eq!(
            sql,
            r#"SELECT "note", "site", "n" FROM "visits" WHERE (("site" > ?) OR ("site" = ? AND "n" > ?)) AND (("site" < ?) OR ("site" = ? AND "n" <= ?)) ORDER BY "site", "n" LIMIT 700"#
        );
        assert_eq!(binds, [&text("a"), &text("a"), &int(1), &text("b"), &text("b"), &int(5)]);
        let (sql, binds) = keyset_select(&s, &select_columns(&s), None);
        assert_eq!(
            sql,
            r#"SELECT "note", "site", "n" FROM "visits" WHERE ("site" < ?) OR ("site" = ? AND "n" <= ?) ORDER BY "site", "n" LIMIT 700"#
        );
        assert_eq!(binds, [&text("b"), &text("b"), &int(5)]);
        // MySQL, a composite key, no range: as before.
        let s = spec_for_tests(Engine::Mysql, "mysql://h/db", "visits", &["site", "n"], &["note"]);
        let (sql, binds) = keyset_select(&s, &select_columns(&s), Some(&after));
        assert_eq!(
            sql,
            "SELECT `note`, `site`, `n` FROM `visits` WHERE (`site` > ?) OR (`site` = ? AND `n` > ?) ORDER BY `site`, `n` LIMIT 700"
        );
        assert_eq!(binds.len(), 3);
        // Without a key: the whole table, whatever the cursor.
        let s = spec_for_tests(Engine::Sqlite, "sqlite://x.db", "log", &[], &["msg"]);
        assert_eq!(keyset_select(&s, &select_columns(&s), None), (r#"SELECT "msg" FROM "log""#.to_owned(), Vec::new()));
    }

    #[test]
    fn a_range_needs_a_key_and_withholds_its_values() {
        let sentinel = KeyValue::Text("ZZSENTINEL".into());
        let mut s = spec_for_tests(Engine::Sqlite, "sqlite:///nonexistent/x.db", "log", &[], &["msg"]);
        s.range.upto = Some(vec![sentinel.clone()]);
        // Refused before connecting: the file does not exist.
        let e = SqlTableSource::open(s.clone(), &Position::default(), None).err().expect("refused");
        assert_eq!(e.class, ErrorClass::Internal, "{e}");
        assert!(!format!("{e} {e:?} {s:?}").contains("ZZSENTINEL"), "{s:?}");
        // A bound of the wrong width is a bug too.
        let mut s = spec_for_tests(Engine::Sqlite, "sqlite:///nonexistent/x.db", "visits", &["site", "n"], &["note"]);
        s.range.after = Some(vec![sentinel]);
        let e = SqlTableSource::open(s, &Position::default(), None).err().expect("refused");
        assert!(e.class == ErrorClass::Internal && !e.to_string().contains("ZZSENTINEL"), "{e}");
    }
}
