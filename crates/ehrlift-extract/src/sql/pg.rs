//! PostgreSQL: binary `COPY` of keyset chunks in a snapshot-sharing read transaction.
//!
//! Binary COPY is what `pg_dump` and DuckDB's PostgreSQL scanner use: the server sends
//! each value in its send format (no text formatting, no per-row protocol overhead), and
//! decoding is a byte copy or a big-endian read. Text values arrive in the server
//! encoding, so it is checked when the table opens.
//!
//! A table with a key streams its chunks over `read_connections` fetcher connections in
//! the run's snapshot ([`read_parallel`]), so the next chunk's server backend is already
//! at work while this one is decoded; the output is the same as over one connection.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use ehrlift_core::{ErrorClass, Reason};
use futures_util::StreamExt;
use sqlx::postgres::{PgConnection, PgTypeKind};
use sqlx::{AssertSqlSafe, Column, Connection, Executor, Row, Statement, TypeInfo};

use super::values::{Builder, KeyValue, Kind, PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use super::{DbError, Emit, RowSink, Rows, SourceColumn, TableSpec, from_item, quote_ident};
use ehrlift_mapping::{ColumnType, DatabaseSource, Engine, Relation};

/// Session settings of every connection: literals and times read the same everywhere, and
/// a connection that waits on the pipeline inside its transaction (or holds the run's
/// snapshot) is not cut by the server's idle-in-transaction timeout.
const SESSION_SETUP: &str = "SET application_name = 'ehrlift'; SET standard_conforming_strings = on; SET TimeZone = 'UTC'; \
     SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3; SET idle_in_transaction_session_timeout = 0";

/// A table's connection, and the encoding its text arrives in (binary COPY sends text in
/// the server encoding, not the client's).
pub(super) struct PgConn {
    conn: PgConnection,
    encoding: ServerEncoding,
}

impl PgConn {
    /// The connection, for catalog queries.
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// Connects and sets the session up so values and errors are read the same everywhere.
pub(super) async fn connect(spec: &TableSpec) -> Result<PgConn, DbError> {
    let mut conn = PgConnection::connect(spec.db.url.expose()).await.map_err(|e| spec.driver("cannot connect", &e))?;
    set_up(&mut conn, spec).await?;
    let encoding = encoding(&mut conn, spec).await?;
    Ok(PgConn { conn, encoding })
}

async fn set_up(conn: &mut PgConnection, spec: &TableSpec) -> Result<(), DbError> {
    conn.execute(SESSION_SETUP).await.map(drop).map_err(|e| spec.driver("cannot set up the session", &e))
}

/// Server encodings whose text bytes ehrlift can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerEncoding {
    Utf8,
    Latin1,
    Win1252,
}

/// Opens the read transaction, checks the mapping covers every column and describes
/// the select list.
pub(super) async fn open(pg: &mut PgConn, spec: &TableSpec, select: &[String]) -> Result<(Vec<SourceColumn>, Option<u64>), DbError> {
    let (conn, encoding) = (&mut pg.conn, pg.encoding);
    begin(conn, spec).await?;
    let from = from_item(spec);
    let stmt = super::describe::<sqlx::Postgres>(conn, spec, select).await?;
    let list = super::select_list(Engine::Postgres, select);
    // PostgreSQL checks privileges when a statement runs, not when it is prepared: run it
    // for no rows, so a missing grant is refused before the run touches the destination.
    sqlx::query(AssertSqlSafe(format!("SELECT {list} FROM {from} LIMIT 0")))
        .execute(&mut *conn)
        .await
        .map_err(|e| spec.driver("cannot read", &e))?;
    let mut columns = Vec::new();
    for (name, col) in select.iter().zip(stmt.columns()) {
        let info = col.type_info();
        let mut kind = kind_of(info);
        let declared_text = spec.declared.iter().any(|(f, t, _)| f == name && matches!(t, ColumnType::Utf8 | ColumnType::Json));
        let as_text = kind.is_err() && declared_text;
        if as_text {
            kind = Ok(Kind::Text);
        }
        columns.push(SourceColumn { name: name.clone(), kind, as_text });
    }
    if encoding != ServerEncoding::Utf8 && columns.iter().any(|c| c.kind.as_ref().is_ok_and(has_text)) {
        // Binary COPY sends text in the server encoding; these two decode exactly.
        tracing::info!(table = %spec.table, ?encoding, "transcoding text from the server encoding");
    }
    let estimate = match &spec.relation {
        ehrlift_mapping::Relation::Table(_) => sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
            .bind(&from)
            .fetch_optional(&mut *conn)
            .await
            .ok()
            .flatten()
            .filter(|r| *r >= 0.0)
            .map(|r| r as u64),
        ehrlift_mapping::Relation::Query(_) => None,
    };
    Ok((columns, estimate))
}

/// Begins the read transaction, in the run's snapshot when there is one.
async fn begin(conn: &mut PgConnection, spec: &TableSpec) -> Result<(), DbError> {
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| spec.driver("cannot begin the read transaction", &e))?;
    if let Some(id) = &spec.snapshot {
        // Snapshot ids are server-generated hex and dashes; anything else is refused.
        if !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(spec.error(ErrorClass::Internal, "malformed snapshot id"));
        }
        conn.execute(sqlx::query(AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{id}'")))).await.map_err(|e| {
            let mut err = spec.driver("cannot import the run's snapshot", &e);
            // 22023: the snapshot is gone with the connection that exported it (dropped,
            // terminated); a rerun exports a new one, so this is not the plan's fault.
            if matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("22023")) {
                err.class = ErrorClass::Transient;
            }
            err
        })?;
    }
    Ok(())
}

async fn encoding(conn: &mut PgConnection, spec: &TableSpec) -> Result<ServerEncoding, DbError> {
    let enc: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| spec.driver("cannot read the server encoding", &e))?;
    match enc.as_str() {
        "UTF8" | "SQL_ASCII" => Ok(ServerEncoding::Utf8),
        "LATIN1" => Ok(ServerEncoding::Latin1),
        "WIN1252" => Ok(ServerEncoding::Win1252),
        other => {
            Err(spec
                .error(ErrorClass::Configuration, format!("server_encoding {other} is not supported (UTF8, SQL_ASCII, LATIN1, WIN1252)")))
        }
    }
}

fn has_text(k: &Kind) -> bool {
    match k {
        Kind::Text | Kind::Json => true,
        Kind::List(e) => has_text(e),
        _ => false,
    }
}

/// The raw kind of a PostgreSQL type, or its name when there is no lossless decoder.
fn kind_of(info: &sqlx::postgres::PgTypeInfo) -> Result<Kind, String> {
    match info.kind() {
        PgTypeKind::Enum(_) => return Ok(Kind::Text),
        PgTypeKind::Domain(base) => return kind_of(base),
        PgTypeKind::Array(elem) => {
            let e = kind_of(elem).map_err(|_| info.name().to_owned())?;
            return match e {
                Kind::List(_) => Err(info.name().to_owned()),
                e => Ok(Kind::List(Box::new(e))),
            };
        }
        _ => {}
    }
    if info.name().eq_ignore_ascii_case("citext") {
        return Ok(Kind::Text);
    }
    Ok(match info.oid().map(|o| o.0) {
        Some(16) => Kind::Bool,
        Some(21) => Kind::I16,
        Some(23) => Kind::I32,
        Some(20) | Some(26) => Kind::I64,
        Some(700) => Kind::F32,
        Some(701) => Kind::F64,
        // NUMERIC: exact decimal text, parsed to the declared precision by the mapping.
        Some(1700) => Kind::Decimal,
        Some(114 | 3802) => Kind::Json,
        Some(25 | 1043 | 1042 | 19 | 18 | 142) => Kind::Text,
        Some(17) => Kind::Binary,
        Some(1082) => Kind::Date,
        Some(1083) => Kind::Time,
        Some(1114) => Kind::Timestamp,
        Some(1184) => Kind::TimestampTz,
        Some(2950) => Kind::Uuid,
        _ => return Err(info.name().to_owned()),
    })
}

/// The `COPY` of one keyset chunk: the rows after `after`, up to the spec's range end (all
/// rows without a key).
fn chunk_sql(spec: &TableSpec, select: &[String], columns: &[SourceColumn], after: Option<&[KeyValue]>) -> String {
    let exprs: Vec<String> = columns
        .iter()
        .map(|c| {
            let q = quote_ident(Engine::Postgres, &c.name);
            if c.as_text { format!("{q}::text") } else { q }
        })
        .collect();
    let mut sql = format!("COPY (SELECT {} FROM {}", exprs.join(", "), from_item(spec));
    if !spec.key.is_empty() {
        sql.push_str(&keyset_tail(spec, select, columns, after));
        sql.push_str(&format!(" LIMIT {}", spec.chunk_rows));
    }
    sql.push_str(") TO STDOUT (FORMAT binary)");
    sql
}

/// ` [WHERE (k1, k2) > (literals) [AND (k1, k2) <= (literals)]] ORDER BY k1, k2` for the
/// rows after `after`, up to and including the spec's range end.
fn keyset_tail(spec: &TableSpec, select: &[String], columns: &[SourceColumn], after: Option<&[KeyValue]>) -> String {
    let keys = spec.key.iter().map(|k| quote_ident(Engine::Postgres, k)).collect::<Vec<_>>().join(", ");
    let kinds = key_kinds(spec, select, columns);
    let tuple = |values: &[KeyValue]| values.iter().zip(&kinds).map(|(v, k)| literal(v, k)).collect::<Vec<_>>().join(", ");
    let mut conds = Vec::new();
    if let Some(cur) = after {
        conds.push(format!("({keys}) > ({})", tuple(cur)));
    }
    if let Some(upto) = &spec.range.upto {
        conds.push(format!("({keys}) <= ({})", tuple(upto)));
    }
    let mut sql = String::new();
    if !conds.is_empty() {
        sql.push_str(&format!(" WHERE {}", conds.join(" AND ")));
    }
    sql.push_str(&format!(" ORDER BY {keys}"));
    sql
}

fn key_kinds<'c>(spec: &TableSpec, select: &[String], columns: &'c [SourceColumn]) -> Vec<&'c Kind> {
    spec.key.iter().map(|k| columns[select.iter().position(|s| s == k).expect("key selected")].kind.as_ref().expect("checked")).collect()
}

/// Reads one keyset chunk (or, without a key, the whole table) into `rows`, handing
/// full batches to `emit`. Returns the rows read, or `None` if the pipeline stopped.
pub(super) async fn chunk(
    pg: &mut PgConn,
    spec: &TableSpec,
    select: &[String],
    columns: &[SourceColumn],
    cursor: Option<&[KeyValue]>,
    rows: &mut Rows,
    emit: &mut impl RowSink,
) -> Result<Option<u64>, DbError> {
    let sql = chunk_sql(spec, select, columns, cursor);
    let mut decoder = CopyDecoder::new(columns, pg.encoding);
    let mut stream = pg.conn.copy_out_raw(&sql).await.map_err(|e| spec.driver("cannot start reading", &e))?;
    while let Some(part) = stream.next().await {
        let part = part.map_err(|e| spec.driver("reading failed", &e))?;
        if !decoder.feed(spec, &part, rows, emit)? {
            return Ok(None);
        }
    }
    decoder.finish(spec).map(Some)
}

/// Decodes a binary `COPY` stream fed in pieces of any size.
struct CopyDecoder {
    kinds: Vec<Kind>,
    encoding: ServerEncoding,
    /// A tuple split across pieces, assembled.
    buf: Vec<u8>,
    st: CopyState,
}

impl CopyDecoder {
    fn new(columns: &[SourceColumn], encoding: ServerEncoding) -> Self {
        let kinds = columns.iter().map(|c| c.kind.clone().expect("checked")).collect();
        CopyDecoder { kinds, encoding, buf: Vec::new(), st: CopyState { header: false, done: false, read: 0 } }
    }

    /// Decodes the whole tuples of `part` (and of what was left over); `Ok(false)` when
    /// the pipeline stopped asking.
    fn feed(&mut self, spec: &TableSpec, part: &[u8], rows: &mut Rows, emit: &mut impl RowSink) -> Result<bool, DbError> {
        // The server sends one tuple per message: tuples are decoded straight from the
        // piece, and only a tuple split across pieces is assembled in `buf`.
        if self.buf.is_empty() {
            let Some(n) = consume(spec, part, &mut self.st, &self.kinds, self.encoding, rows, emit)? else { return Ok(false) };
            self.buf.extend_from_slice(&part[n..]);
        } else {
            self.buf.extend_from_slice(part);
            let Some(n) = consume(spec, &self.buf, &mut self.st, &self.kinds, self.encoding, rows, emit)? else { return Ok(false) };
            self.buf.drain(..n);
        }
        Ok(true)
    }

    /// The rows the stream held; an error if it ended before its trailer.
    fn finish(self, spec: &TableSpec) -> Result<u64, DbError> {
        if !self.st.done {
            return Err(spec.error(ErrorClass::Transient, "the COPY stream ended early"));
        }
        Ok(self.st.read)
    }
}

/// Whether a table is read over several connections (see [`read_parallel`]).
pub(super) fn parallel(spec: &TableSpec) -> bool {
    spec.db.read_connections > 1 && !spec.key.is_empty() && spec.snapshot.is_some() && matches!(spec.relation, Relation::Table(_))
}

/// Reads a keyset table over `read_connections` extra connections that share the run's
/// snapshot: while one chunk is decoded, the next ones are already streaming from their
/// own server backends, so the server's work is no longer one process's.
///
/// This connection computes where each chunk starts (the `chunk_rows`-th key after the
/// previous start, an index-only scan) and hands the chunk's `COPY` to a free fetcher;
/// chunks are decoded strictly in key order, each ending a batch, exactly as the
/// one-connection path reads them, so the output is the same byte for byte. Each
/// fetcher holds at most [`FETCH_BLOCKS`] blocks of [`FETCH_BLOCK_BYTES`]; past that its
/// backend waits on the socket. Fetchers the server refuses are left out (see
/// [`Parallel::Unavailable`] when none is left).
pub(super) async fn read_parallel(
    pg: &mut PgConn,
    spec: &TableSpec,
    select: &[String],
    columns: &[SourceColumn],
    cursor: Option<Vec<KeyValue>>,
    rows: &mut Rows,
    emit: &mut Emit<'_, '_>,
) -> Result<Parallel, DbError> {
    let shared = std::sync::Arc::new(spec.clone());
    let spawned: Vec<Fetcher> = (0..spec.db.read_connections).map(|i| Fetcher::spawn(shared.clone(), i)).collect::<Result<_, _>>()?;
    // A server that has no connection slot left for a fetcher (too many connections, for
    // the server, the database or the role) gets fewer fetchers, or none: the table is then
    // read over the reader's own connection. Retrying the run would not free a slot.
    let mut fetchers = Vec::with_capacity(spawned.len());
    for f in spawned {
        match f.ready.recv() {
            Ok(Ok(())) => fetchers.push(f),
            Ok(Err(FetcherDown::Refused)) => {}
            Ok(Err(FetcherDown::Failed(e))) => return Err(e),
            Err(_) => return Err(spec.error(ErrorClass::Internal, "a fetcher thread stopped unexpectedly")),
        }
    }
    if fetchers.len() < usize::from(spec.db.read_connections) {
        tracing::warn!(
            table = %spec.table,
            read_connections = spec.db.read_connections,
            connected = fetchers.len(),
            "the server refused connections (too many connections): reading over fewer"
        );
    }
    if fetchers.is_empty() {
        return Ok(Parallel::Unavailable);
    }
    let mut free: std::collections::VecDeque<usize> = (0..fetchers.len()).collect();
    let mut in_flight = std::collections::VecDeque::new();
    // Where the next chunk starts; `None` once the last chunk is handed out.
    let mut next: Option<Option<Vec<KeyValue>>> = Some(cursor);
    loop {
        while let (Some(after), Some(&f)) = (&next, free.front()) {
            fetchers[f].start(spec, chunk_sql(spec, select, columns, after.as_deref()))?;
            free.pop_front();
            in_flight.push_back(f);
            // The chunk after this one starts after its last key: none, and this is the last.
            next = boundary(pg, spec, select, columns, after.as_deref()).await?.map(Some);
        }
        let Some(f) = in_flight.pop_front() else { return Ok(Parallel::Done) };
        let mut decoder = CopyDecoder::new(columns, pg.encoding);
        loop {
            match fetchers[f].blocks.recv() {
                Ok(Ok(Fetched::Block(b))) => {
                    if !decoder.feed(spec, &b, rows, emit)? {
                        return Ok(Parallel::Stopped);
                    }
                    fetchers[f].give_back(b);
                }
                Ok(Ok(Fetched::Done)) => break,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(spec.error(ErrorClass::Internal, "a fetcher thread stopped unexpectedly")),
            }
        }
        decoder.finish(spec)?;
        free.push_back(f);
        // Every chunk ends a batch, as on one connection.
        if rows.rows > 0 && !emit.send(rows)? {
            return Ok(Parallel::Stopped);
        }
    }
}

/// How [`read_parallel`] ended.
pub(super) enum Parallel {
    /// Every chunk was read.
    Done,
    /// The pipeline stopped asking.
    Stopped,
    /// No fetcher could connect: read the table over the reader's connection.
    Unavailable,
}

/// Why a fetcher has no connection.
enum FetcherDown {
    /// The server has no slot left (SQLSTATE 53300).
    Refused,
    /// Anything else.
    Failed(DbError),
}

/// The key of the `chunk_rows`-th row after `after` (within the spec's range): the last
/// key of the chunk that starts there, or `None` when that chunk is the table's last.
async fn boundary(
    pg: &mut PgConn,
    spec: &TableSpec,
    select: &[String],
    columns: &[SourceColumn],
    after: Option<&[KeyValue]>,
) -> Result<Option<Vec<KeyValue>>, DbError> {
    let sql = boundary_sql(spec, select, columns, after);
    let kinds: Vec<Kind> = key_kinds(spec, select, columns).into_iter().cloned().collect();
    let mut found = copy_keys(pg, spec, &sql, &kinds, "cannot find the next chunk").await?;
    if found.len() > 1 {
        return Err(spec.error(ErrorClass::Internal, "malformed COPY tuple"));
    }
    Ok(found.pop())
}

/// The `COPY` of the key of the `chunk_rows`-th row after `after` (see [`boundary`]).
fn boundary_sql(spec: &TableSpec, select: &[String], columns: &[SourceColumn], after: Option<&[KeyValue]>) -> String {
    let keys: Vec<String> = spec.key.iter().map(|k| quote_ident(Engine::Postgres, k)).collect();
    format!(
        "COPY (SELECT {} FROM {}{} OFFSET {} LIMIT 1) TO STDOUT (FORMAT binary)",
        keys.join(", "),
        from_item(spec),
        keyset_tail(spec, select, columns, after),
        spec.chunk_rows - 1
    )
}

/// Runs a small binary `COPY` whose columns are the key columns (of `kinds`, in key order)
/// and returns each row's key: a chunk boundary, a statistics histogram.
pub(super) async fn copy_keys(
    pg: &mut PgConn,
    spec: &TableSpec,
    sql: &str,
    kinds: &[Kind],
    doing: &str,
) -> Result<Vec<Vec<KeyValue>>, DbError> {
    let mut rows = Rows {
        builders: kinds.iter().map(super::values::Builder::new).collect(),
        key_at: Vec::new(),
        needed: kinds.len(),
        names: spec.key.clone(),
        rows: 0,
        bytes: 0,
        bad: Vec::new(),
        zero_dates: spec.db.zero_dates,
    };
    let mut data = Vec::new();
    let mut stream = pg.conn.copy_out_raw(sql).await.map_err(|e| spec.driver(doing, &e))?;
    while let Some(part) = stream.next().await {
        data.extend_from_slice(&part.map_err(|e| spec.driver(doing, &e))?);
    }
    drop(stream);
    let Some(Ok(mut pos)) = parse_header(&data) else { return Err(spec.error(ErrorClass::Internal, "unexpected COPY header")) };
    loop {
        match tuple_len(&data[pos..], kinds.len()) {
            Ok(Some(0)) if pos + 2 == data.len() => break,
            Ok(Some(len)) if len > 0 => {
                decode_tuple(&data[pos..pos + len], kinds, pg.encoding, &mut rows);
                pos += len;
                rows.rows += 1;
            }
            _ => return Err(spec.error(ErrorClass::Internal, "malformed COPY tuple")),
        }
    }
    if !rows.bad.is_empty() {
        return Err(spec.error(ErrorClass::Internal, "malformed COPY tuple"));
    }
    let arrays: Vec<_> = rows.builders.iter_mut().map(|b| b.finish()).collect();
    let mut out = Vec::with_capacity(rows.rows);
    for i in 0..rows.rows {
        let mut key = Vec::with_capacity(kinds.len());
        for (a, name) in arrays.iter().zip(&spec.key) {
            match KeyValue::of(a.as_ref(), i) {
                Some(v) => key.push(v),
                None => {
                    return Err(spec.error(
                        ErrorClass::Configuration,
                        format!("key column `{name}` holds a NULL; keyset reading needs a non-null key, or resume = \"restart_table\""),
                    ));
                }
            }
        }
        out.push(key);
    }
    Ok(out)
}

/// Most blocks a fetcher holds before its backend waits.
const FETCH_BLOCKS: usize = 8;
/// A fetcher's block size: server messages (one tuple each) gathered to this size.
/// Copying them costs less than holding sqlx's messages, each of which pins its whole
/// receive buffer (measured: peak RSS 95 MiB copied, 130-150 MiB held).
const FETCH_BLOCK_BYTES: usize = 1 << 20;

/// What a fetcher sends for its chunk.
enum Fetched {
    /// The next part of the `COPY` stream.
    Block(Vec<u8>),
    /// The stream ended (after its trailer, which the decoder checks).
    Done,
}

/// A thread with its own connection in the run's snapshot, streaming the chunks it is
/// given as blocks of raw `COPY` data.
struct Fetcher {
    /// Whether the fetcher's connection is up, sent once after it connects.
    ready: Receiver<Result<(), FetcherDown>>,
    jobs: Option<SyncSender<String>>,
    blocks: Receiver<Result<Fetched, DbError>>,
    /// Decoded blocks go back to be filled again: no fresh megabyte (and its page
    /// faults) per block.
    spent: SyncSender<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fetcher {
    fn spawn(spec: std::sync::Arc<TableSpec>, index: u8) -> Result<Fetcher, DbError> {
        let (job_tx, job_rx) = sync_channel::<String>(1);
        let (tx, rx) = sync_channel::<Result<Fetched, DbError>>(FETCH_BLOCKS);
        let (spent_tx, spent_rx) = sync_channel::<Vec<u8>>(2);
        let (ready_tx, ready_rx) = sync_channel::<Result<(), FetcherDown>>(1);
        let name = format!("ehrlift-pg-fetch-{index}");
        let err_spec = spec.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let e = spec.error(ErrorClass::Internal, format!("cannot start a runtime: {e}"));
                        let _ = ready_tx.send(Err(FetcherDown::Failed(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut conn = match fetcher_connect(&spec).await {
                        Ok(conn) => conn,
                        Err(down) => {
                            let _ = ready_tx.send(Err(down));
                            return;
                        }
                    };
                    if ready_tx.send(Ok(())).is_err() {
                        return;
                    }
                    while let Ok(sql) = job_rx.recv() {
                        match fetch(&mut conn, &spec, &sql, &tx, &spent_rx).await {
                            Ok(true) => {}
                            Ok(false) => return, // the reader stopped
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = conn.close().await;
                });
            })
            .map_err(|e| err_spec.error(ErrorClass::Internal, format!("cannot start a fetcher thread: {e}")))?;
        Ok(Fetcher { ready: ready_rx, jobs: Some(job_tx), blocks: rx, spent: spent_tx, thread: Some(thread) })
    }

    /// Returns a decoded block for reuse (dropped if the fetcher has enough).
    fn give_back(&self, block: Vec<u8>) {
        let _ = self.spent.try_send(block);
    }

    fn start(&self, spec: &TableSpec, sql: String) -> Result<(), DbError> {
        let lost = || spec.error(ErrorClass::Internal, "a fetcher thread stopped unexpectedly");
        let jobs = self.jobs.as_ref().ok_or_else(lost)?;
        match jobs.send(sql) {
            Ok(()) => Ok(()),
            // The thread ended: its error is waiting in `blocks`.
            Err(_) => match self.blocks.try_recv() {
                Ok(Err(e)) => Err(e),
                _ => Err(lost()),
            },
        }
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // No more jobs; a thread blocked on a full channel sees it closed and ends.
        self.jobs = None;
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.blocks, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fetcher's connection: the reader's session settings, in the run's snapshot. It only
/// streams bytes (the reader decodes them), so it needs no server encoding.
async fn fetcher_connect(spec: &TableSpec) -> Result<PgConnection, FetcherDown> {
    let mut conn = PgConnection::connect(spec.db.url.expose()).await.map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("53300") => FetcherDown::Refused,
        _ => FetcherDown::Failed(spec.driver("cannot connect", &e)),
    })?;
    set_up(&mut conn, spec).await.map_err(FetcherDown::Failed)?;
    begin(&mut conn, spec).await.map_err(FetcherDown::Failed)?;
    Ok(conn)
}

/// Streams one chunk into `tx` in blocks; `Ok(false)` if the reader stopped listening.
async fn fetch(
    conn: &mut PgConnection,
    spec: &TableSpec,
    sql: &str,
    tx: &SyncSender<Result<Fetched, DbError>>,
    spent: &Receiver<Vec<u8>>,
) -> Result<bool, DbError> {
    let fresh = || {
        let mut b = spent.try_recv().unwrap_or_else(|_| Vec::with_capacity(FETCH_BLOCK_BYTES + (64 << 10)));
        b.clear();
        b
    };
    let mut stream = conn.copy_out_raw(sql).await.map_err(|e| spec.driver("cannot start reading", &e))?;
    let mut block = fresh();
    while let Some(part) = stream.next().await {
        block.extend_from_slice(&part.map_err(|e| spec.driver("reading failed", &e))?);
        if block.len() >= FETCH_BLOCK_BYTES {
            let full = std::mem::replace(&mut block, fresh());
            if tx.send(Ok(Fetched::Block(full))).is_err() {
                return Ok(false);
            }
        }
    }
    if !block.is_empty() && tx.send(Ok(Fetched::Block(block))).is_err() {
        return Ok(false);
    }
    Ok(tx.send(Ok(Fetched::Done)).is_ok())
}

/// Where a COPY stream stands.
struct CopyState {
    header: bool,
    done: bool,
    read: u64,
}

/// Decodes the whole tuples at the start of `data`; returns the bytes consumed, or `None`
/// when the pipeline stopped asking.
fn consume(
    spec: &TableSpec,
    data: &[u8],
    st: &mut CopyState,
    kinds: &[Kind],
    encoding: ServerEncoding,
    rows: &mut Rows,
    emit: &mut impl RowSink,
) -> Result<Option<usize>, DbError> {
    let mut pos = 0;
    if !st.header {
        match parse_header(data) {
            Some(Ok(n)) => {
                pos = n;
                st.header = true;
            }
            Some(Err(())) => return Err(spec.error(ErrorClass::Internal, "unexpected COPY header")),
            None => return Ok(Some(0)),
        }
    }
    while !st.done {
        match tuple_len(&data[pos..], kinds.len()) {
            Err(()) => return Err(spec.error(ErrorClass::Internal, "malformed COPY tuple")),
            Ok(None) => break,
            Ok(Some(0)) => {
                st.done = true; // trailer
                pos += 2;
            }
            Ok(Some(len)) => {
                decode_tuple(&data[pos..pos + len], kinds, encoding, rows);
                pos += len;
                st.read += 1;
                rows.end_row();
                if !emit.after_row(rows)? {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(pos))
}

/// The untyped literal of a key value: PostgreSQL coerces it to the column's type.
pub(super) fn literal(v: &KeyValue, kind: &Kind) -> String {
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match v {
        KeyValue::Int(i) => i.to_string(),
        KeyValue::Uint(u) => u.to_string(),
        KeyValue::Text(s) => quoted(s),
        KeyValue::Bytes(b) => format!("'\\x{}'", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        KeyValue::Date(d) => quoted(&date_text(*d)),
        KeyValue::Time(t) => {
            quoted(&format!("{:02}:{:02}:{:02}.{:06}", t / 3_600_000_000, t / 60_000_000 % 60, t / 1_000_000 % 60, t % 1_000_000))
        }
        KeyValue::Micros(m) => {
            let dt = chrono::DateTime::from_timestamp_micros(*m).expect("a timestamp that was read").naive_utc();
            let s = dt.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            quoted(&if *kind == Kind::TimestampTz { format!("{s}+00") } else { s })
        }
        KeyValue::Uuid(u) => {
            let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
            quoted(&format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
        }
    }
}

fn date_text(days: i32) -> String {
    chrono::NaiveDate::from_num_days_from_ce_opt(days + 719_163).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// The header's length, `None` if incomplete.
fn parse_header(buf: &[u8]) -> Option<Result<usize, ()>> {
    const SIG: &[u8] = b"PGCOPY\n\xff\r\n\0";
    if buf.len() < 19 {
        return None;
    }
    if &buf[..11] != SIG {
        return Some(Err(()));
    }
    let ext = i32::from_be_bytes(buf[15..19].try_into().expect("4 bytes"));
    let n = 19 + usize::try_from(ext).ok()?;
    (buf.len() >= n).then_some(Ok(n))
}

/// The length of the tuple at the start of `buf`: `Some(0)` for the trailer, `None`
/// when it is not complete yet.
fn tuple_len(buf: &[u8], fields: usize) -> Result<Option<usize>, ()> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let n = i16::from_be_bytes([buf[0], buf[1]]);
    if n == -1 {
        return Ok(Some(0));
    }
    if n as usize != fields {
        return Err(());
    }
    let mut p = 2;
    for _ in 0..fields {
        if buf.len() < p + 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes(buf[p..p + 4].try_into().expect("4 bytes"));
        p += 4;
        if len > 0 {
            p += len as usize;
        }
    }
    Ok((buf.len() >= p).then_some(p))
}

fn decode_tuple(t: &[u8], kinds: &[Kind], enc: ServerEncoding, rows: &mut Rows) {
    let mut p = 2;
    for (col, kind) in kinds.iter().enumerate() {
        let len = i32::from_be_bytes(t[p..p + 4].try_into().expect("4 bytes"));
        p += 4;
        if len < 0 {
            rows.builder(col).append_null();
            continue;
        }
        let v = &t[p..p + len as usize];
        p += len as usize;
        rows.add_bytes(v.len());
        if let Err(reason) = decode_value(rows.builder(col), kind, v, enc) {
            rows.builder(col).append_null();
            rows.reject(col, reason);
        }
    }
}

fn be<const N: usize>(v: &[u8]) -> Result<[u8; N], Reason> {
    v.try_into().map_err(|_| Reason::UnrepresentableValue)
}

/// Decodes one value in PostgreSQL's binary send format. On error nothing was appended
/// (a list may hold some elements), and the caller appends a null.
fn decode_value(b: &mut Builder, kind: &Kind, v: &[u8], enc: ServerEncoding) -> Result<(), Reason> {
    (|| -> Result<(), Reason> {
        match (b, kind) {
            (Builder::Bool(b), _) => b.append_value(v.first().ok_or(Reason::UnrepresentableValue)? != &0),
            (Builder::I16(b), _) => b.append_value(i16::from_be_bytes(be(v)?)),
            (Builder::I32(b), _) => b.append_value(i32::from_be_bytes(be(v)?)),
            (Builder::I64(b), _) => {
                b.append_value(if v.len() == 4 { i64::from(u32::from_be_bytes(be(v)?)) } else { i64::from_be_bytes(be(v)?) })
            }
            (Builder::F32(b), _) => b.append_value(f32::from_be_bytes(be(v)?)),
            (Builder::F64(b), _) => b.append_value(f64::from_be_bytes(be(v)?)),
            (Builder::Text(b), Kind::Decimal) => b.append_str(&numeric_text(v)?),
            // jsonb's send format is a version byte (1) before the text.
            (Builder::Text(b), Kind::Json) => append_text(b, v.strip_prefix(&[1]).unwrap_or(v), enc)?,
            (Builder::Text(b), _) => append_text(b, v, enc)?,
            (Builder::Binary(b), _) => b.append_value(v),
            (Builder::Date(b), _) => {
                let d = i32::from_be_bytes(be(v)?);
                if d == i32::MAX || d == i32::MIN {
                    return Err(Reason::UnrepresentableValue); // ±infinity
                }
                b.append_value(d.checked_add(PG_EPOCH_DAYS).ok_or(Reason::UnrepresentableValue)?)
            }
            (Builder::Time(b), _) => b.append_value(i64::from_be_bytes(be(v)?)),
            (Builder::Ts(b), _) => {
                let t = i64::from_be_bytes(be(v)?);
                if t == i64::MAX || t == i64::MIN {
                    return Err(Reason::UnrepresentableValue);
                }
                b.append_value(t.checked_add(PG_EPOCH_MICROS).ok_or(Reason::UnrepresentableValue)?)
            }
            (Builder::Uuid(b), _) => b.append_value(v).map_err(|_| Reason::UnrepresentableValue)?,
            (Builder::List(l), Kind::List(elem)) => {
                decode_array(&mut l.values, elem, v, enc)?;
                l.close(true);
            }
            _ => return Err(Reason::UnrepresentableValue),
        }
        Ok(())
    })()
}

fn append_text(b: &mut super::values::TextBuilder, v: &[u8], enc: ServerEncoding) -> Result<(), Reason> {
    match enc {
        // Checked for the whole batch when it is finished.
        ServerEncoding::Utf8 => b.append_bytes(v),
        ServerEncoding::Latin1 => b.append_str(&v.iter().map(|&c| c as char).collect::<String>()),
        ServerEncoding::Win1252 => b.append_str(&encoding_rs::WINDOWS_1252.decode_without_bom_handling(v).0),
    }
    Ok(())
}

/// Elements of a one-dimensional array into the list's element builder.
fn decode_array(values: &mut Builder, elem: &Kind, v: &[u8], enc: ServerEncoding) -> Result<(), Reason> {
    let i = |at: usize| -> Result<i32, Reason> { Ok(i32::from_be_bytes(be(v.get(at..at + 4).ok_or(Reason::UnrepresentableValue)?)?)) };
    let ndim = i(0)?;
    if ndim == 0 {
        return Ok(());
    }
    if ndim != 1 {
        return Err(Reason::UnrepresentableValue); // multi-dimensional arrays have no list image
    }
    let n = i(12)?;
    let mut p = 20;
    for _ in 0..n {
        let len = i(p)?;
        p += 4;
        if len < 0 {
            values.append_null();
            continue;
        }
        let e = v.get(p..p + len as usize).ok_or(Reason::UnrepresentableValue)?;
        p += len as usize;
        decode_value(values, elem, e, enc)?;
    }
    Ok(())
}

/// NUMERIC's binary form to exact decimal text (`-12.3400`, keeping the scale).
pub(super) fn numeric_text(v: &[u8]) -> Result<String, Reason> {
    let h = |at: usize| -> Result<u16, Reason> { Ok(u16::from_be_bytes(be(v.get(at..at + 2).ok_or(Reason::UnrepresentableValue)?)?)) };
    let ndigits = h(0)? as usize;
    let weight = h(2)? as i16 as i32;
    let sign = h(4)?;
    let dscale = h(6)? as usize;
    if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
        return Err(Reason::UnrepresentableValue); // NaN, ±infinity
    }
    let digit = |k: i32| -> Result<u16, Reason> { if k >= 0 && (k as usize) < ndigits { h(8 + 2 * k as usize) } else { Ok(0) } };
    // Base-10000 groups to decimal digits, written without formatting machinery: this runs
    // once per NUMERIC value.
    let mut out = String::with_capacity(((weight.max(0) as usize + 1) * 4) + dscale + 2);
    let push4 = |out: &mut String, d: u16, lead: bool| {
        let ds = [d / 1000, d / 100 % 10, d / 10 % 10, d % 10];
        let mut started = !lead;
        for x in ds {
            if started || x != 0 {
                out.push((b'0' + x as u8) as char);
                started = true;
            }
        }
    };
    let neg = sign == 0x4000;
    if neg {
        out.push('-');
    }
    let int_start = out.len();
    for k in 0..=weight {
        let lead = out.len() == int_start;
        push4(&mut out, digit(k)?, lead);
    }
    if out.len() == int_start {
        out.push('0');
    }
    if dscale > 0 {
        out.push('.');
        let frac_start = out.len();
        let mut k = weight + 1;
        while out.len() - frac_start < dscale {
            push4(&mut out, digit(k)?, false);
            k += 1;
        }
        out.truncate(frac_start + dscale);
    }
    // A negative zero prints as zero.
    if neg && out[1..].bytes().all(|c| c == b'0' || c == b'.') {
        out.remove(0);
    }
    Ok(out)
}

/// An exported snapshot: one transaction held open for the run so every table's
/// connection reads the same instant (`SET TRANSACTION SNAPSHOT`).
pub struct PgSnapshot {
    id: String,
    stop: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PgSnapshot {
    /// Opens a `REPEATABLE READ READ ONLY` transaction on `db` and exports its snapshot.
    pub fn export(source_name: &str, db: &DatabaseSource) -> Result<Self, DbError> {
        let fail = |class, message: String| DbError {
            source_name: source_name.to_owned(),
            url: db.url.redacted(),
            table: "(snapshot)".into(),
            message,
            class,
        };
        let (id_tx, id_rx) = sync_channel::<Result<String, DbError>>(1);
        let (stop_tx, stop_rx): (SyncSender<()>, Receiver<()>) = sync_channel(1);
        let url = db.url.clone();
        let err = fail(ErrorClass::Internal, String::new());
        let thread = std::thread::Builder::new()
            .name("ehrlift-pg-snapshot".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = id_tx.send(Err(DbError { message: format!("cannot start a runtime: {e}"), ..err }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let conn = async {
                        let mut c = PgConnection::connect(url.expose()).await?;
                        c.execute(SESSION_SETUP).await?;
                        c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
                        let id: String = sqlx::query("SELECT pg_export_snapshot()").fetch_one(&mut c).await?.try_get(0)?;
                        Ok::<_, sqlx::Error>((c, id))
                    }
                    .await;
                    match conn {
                        Ok((c, id)) => {
                            let _ = id_tx.send(Ok(id));
                            // Hold the transaction until the run is done.
                            let _ = stop_rx.recv();
                            let _ = c.close().await;
                        }
                        Err(e) => {
                            let class = if matches!(e, sqlx::Error::Io(_)) { ErrorClass::Transient } else { ErrorClass::Configuration };
                            let message = match &e {
                                sqlx::Error::Database(d) => format!("cannot export a snapshot: {}", super::scrub_quoted(d.message(), &[])),
                                other => format!("cannot export a snapshot: {}", super::scrub_quoted(&other.to_string(), &[])),
                            };
                            let _ = id_tx.send(Err(DbError { class, message, ..err }));
                        }
                    }
                });
            })
            .map_err(|e| fail(ErrorClass::Internal, format!("cannot start the snapshot thread: {e}")))?;
        let id = id_rx.recv().map_err(|_| fail(ErrorClass::Internal, "the snapshot thread stopped".into()))??;
        Ok(PgSnapshot { id, stop: Some(stop_tx), thread: Some(thread) })
    }

    /// The snapshot id to import.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: &[u16], weight: i16, neg: bool, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((ndigits.len() as u16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend((if neg { 0x4000u16 } else { 0 }).to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in ndigits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    fn column(name: &str, kind: Kind) -> SourceColumn {
        SourceColumn { name: name.into(), kind: Ok(kind), as_text: false }
    }

    #[test]
    fn chunks_and_chunk_starts_stop_at_the_range_end() {
        let text = |s: &str| KeyValue::Text(s.into());
        // One key column.
        let mut s = super::super::spec_for_tests(Engine::Postgres, "postgres://h/db", "pts", &["id"], &["id", "note"]);
        let select = super::super::select_columns(&s);
        let columns = [column("id", Kind::I32), column("note", Kind::Text)];
        s.range.upto = Some(vec![KeyValue::Int(30)]);
        assert_eq!(
            chunk_sql(&s, &select, &columns, None),
            r#"COPY (SELECT "id", "note" FROM "pts" WHERE ("id") <= (30) ORDER BY "id" LIMIT 700) TO STDOUT (FORMAT binary)"#
        );
        assert_eq!(
            chunk_sql(&s, &select, &columns, Some(&[KeyValue::Int(9)])),
            r#"COPY (SELECT "id", "note" FROM "pts" WHERE ("id") > (9) AND ("id") <= (30) ORDER BY "id" LIMIT 700) TO STDOUT (FORMAT binary)"#
        );
        assert_eq!(
            boundary_sql(&s, &select, &columns, Some(&[KeyValue::Int(9)])),
            r#"COPY (SELECT "id" FROM "pts" WHERE ("id") > (9) AND ("id") <= (30) ORDER BY "id" OFFSET 699 LIMIT 1) TO STDOUT (FORMAT binary)"#
        );
        // A composite key of text and a timestamp with time zone; literals are escaped.
        let mut s = super::super::spec_for_tests(Engine::Postgres, "postgres://h/db", "emr.visits", &["site", "at"], &["note"]);
        let select = super::super::select_columns(&s);
        let columns = [column("note", Kind::Text), column("site", Kind::Text), column("at", Kind::TimestampTz)];
        s.range.upto = Some(vec![text("O'Hare"), KeyValue::Micros(0)]);
        let after = [text("A"), KeyValue::Micros(-1)];
        assert_eq!(
            chunk_sql(&s, &select, &columns, Some(&after)),
            r#"COPY (SELECT "note", "site", "at" FROM "emr"."visits" WHERE ("site", "at") > ('A', '1969-12-31 23:59:59.999999+00') AND ("site", "at") <= ('O''Hare', '1970-01-01 00:00:00.000000+00') ORDER BY "site", "at" LIMIT 700) TO STDOUT (FORMAT binary)"#
        );
        assert_eq!(
            boundary_sql(&s, &select, &columns, None),
            r#"COPY (SELECT "site", "at" FROM "emr"."visits" WHERE ("site", "at") <= ('O''Hare', '1970-01-01 00:00:00.000000+00') ORDER BY "site", "at" OFFSET 699 LIMIT 1) TO STDOUT (FORMAT binary)"#
        );
        // No range: as before.
        s.range.upto = None;
        assert_eq!(
            boundary_sql(&s, &select, &columns, None),
            r#"COPY (SELECT "site", "at" FROM "emr"."visits" ORDER BY "site", "at" OFFSET 699 LIMIT 1) TO STDOUT (FORMAT binary)"#
        );
    }

    #[test]
    fn numerics_decode_exactly_with_their_scale() {
        assert_eq!(numeric_text(&numeric(&[12, 3400], 0, true, 4)).unwrap(), "-12.3400");
        assert_eq!(numeric_text(&numeric(&[1, 0], 1, false, 0)).unwrap(), "10000");
        assert_eq!(numeric_text(&numeric(&[500], -1, false, 2)).unwrap(), "0.05");
        assert_eq!(numeric_text(&numeric(&[5], -1, true, 4)).unwrap(), "-0.0005");
        assert_eq!(numeric_text(&numeric(&[5], -1, true, 2)).unwrap(), "0.00");
        assert_eq!(numeric_text(&numeric(&[], 0, false, 3)).unwrap(), "0.000");
        assert_eq!(numeric_text(&numeric(&[9999, 9999, 9999], 2, false, 0)).unwrap(), "999999999999");
        assert_eq!(numeric_text(&numeric(&[1234], -2, false, 8)).unwrap(), "0.00001234");
    }
}
