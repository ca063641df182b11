//! PostgreSQL: binary `COPY` of keyset chunks in a snapshot-sharing read transaction.
//!
//! Binary COPY is what `pg_dump` and DuckDB's PostgreSQL scanner use: the server sends
//! each value in its send format (no text formatting, no per-row protocol overhead), and
//! decoding is a byte copy or a big-endian read. Text values arrive in the server
//! encoding, so it is checked when the table opens.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use ehrlift_core::{ErrorClass, Reason};
use futures_util::StreamExt;
use sqlx::postgres::{PgConnection, PgTypeKind};
use sqlx::{AssertSqlSafe, Column, Connection, Executor, Row, Statement, TypeInfo};

use super::values::{Builder, KeyValue, Kind, PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use super::{DbError, Emit, Rows, SourceColumn, TableSpec, from_item, quote_ident};
use ehrlift_mapping::{ColumnType, DatabaseSource, Engine};

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

/// Connects and sets the session up so values and errors are read the same everywhere.
pub(super) async fn connect(spec: &TableSpec) -> Result<PgConn, DbError> {
    let mut conn = PgConnection::connect(spec.db.url.expose()).await.map_err(|e| spec.driver("cannot connect", &e))?;
    conn.execute(SESSION_SETUP).await.map_err(|e| spec.driver("cannot set up the session", &e))?;
    let encoding = encoding(&mut conn, spec).await?;
    Ok(PgConn { conn, encoding })
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

/// Reads one keyset chunk (or, without a key, the whole table) into `rows`, handing
/// full batches to `emit`. Returns the rows read, or `None` if the pipeline stopped.
pub(super) async fn chunk(
    pg: &mut PgConn,
    spec: &TableSpec,
    select: &[String],
    columns: &[SourceColumn],
    cursor: Option<&[KeyValue]>,
    rows: &mut Rows,
    emit: &mut Emit<'_, '_>,
) -> Result<Option<u64>, DbError> {
    let exprs: Vec<String> = columns
        .iter()
        .map(|c| {
            let q = quote_ident(Engine::Postgres, &c.name);
            if c.as_text { format!("{q}::text") } else { q }
        })
        .collect();
    let mut sql = format!("COPY (SELECT {} FROM {}", exprs.join(", "), from_item(spec));
    if !spec.key.is_empty() {
        let keys: Vec<String> = spec.key.iter().map(|k| quote_ident(Engine::Postgres, k)).collect();
        if let Some(cur) = cursor {
            let kinds: Vec<&Kind> = spec
                .key
                .iter()
                .map(|k| columns[select.iter().position(|s| s == k).expect("key selected")].kind.as_ref().expect("checked"))
                .collect();
            let lits: Vec<String> = cur.iter().zip(kinds).map(|(v, k)| literal(v, k)).collect();
            sql.push_str(&format!(" WHERE ({}) > ({})", keys.join(", "), lits.join(", ")));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT {}", keys.join(", "), spec.chunk_rows));
    }
    sql.push_str(") TO STDOUT (FORMAT binary)");
    let kinds: Vec<Kind> = columns.iter().map(|c| c.kind.clone().expect("checked")).collect();
    let encoding = pg.encoding;
    let mut stream = pg.conn.copy_out_raw(&sql).await.map_err(|e| spec.driver("cannot start reading", &e))?;
    // The server sends one tuple per message: tuples are decoded straight from the message,
    // and only a tuple split across messages is assembled in `buf`.
    let mut buf: Vec<u8> = Vec::new();
    let mut st = CopyState { header: false, done: false, read: 0 };
    while let Some(part) = stream.next().await {
        let part = part.map_err(|e| spec.driver("reading failed", &e))?;
        if buf.is_empty() {
            let Some(n) = consume(spec, &part, &mut st, &kinds, encoding, rows, emit)? else { return Ok(None) };
            buf.extend_from_slice(&part[n..]);
        } else {
            buf.extend_from_slice(&part);
            let Some(n) = consume(spec, &buf, &mut st, &kinds, encoding, rows, emit)? else { return Ok(None) };
            buf.drain(..n);
        }
    }
    let (done, read) = (st.done, st.read);
    if !done {
        return Err(spec.error(ErrorClass::Transient, "the COPY stream ended early"));
    }
    Ok(Some(read))
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
    emit: &mut Emit<'_, '_>,
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
fn literal(v: &KeyValue, kind: &Kind) -> String {
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
