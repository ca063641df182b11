//! MySQL and MariaDB: prepared keyset queries in a consistent-snapshot transaction.
//!
//! Prepared statements return the binary result format: integers as little-endian
//! bytes of their width, dates as length-prefixed structs (a zero date has length 0
//! or zero fields), decimals as exact text. The session time zone is UTC, so a
//! `TIMESTAMP` (stored as an instant) arrives in UTC; a `DATETIME` is wall-clock time.

use ehrlift_core::Reason;
use ehrlift_mapping::ZeroDates;
use sqlx::mysql::{MySql, MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Column, Connection, Decode, Executor, Row, Statement, TypeInfo};

use super::values::{Builder, KeyValue, Kind};
use super::{DbError, RowSink, Rows, SourceColumn, TableSpec};

pub(super) async fn connect(spec: &TableSpec) -> Result<MySqlConnection, DbError> {
    let mut conn = MySqlConnection::connect(spec.db.url.expose()).await.map_err(|e| spec.driver("cannot connect", &e))?;
    conn.execute("SET time_zone = '+00:00', NAMES utf8mb4").await.map_err(|e| spec.driver("cannot set up the session", &e))?;
    Ok(conn)
}

pub(super) async fn open(
    conn: &mut MySqlConnection,
    spec: &TableSpec,
    select: &[String],
) -> Result<(Vec<SourceColumn>, Option<u64>), DbError> {
    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(|e| spec.driver("cannot set the isolation level", &e))?;
    conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|e| spec.driver("cannot begin the read transaction", &e))?;
    let stmt = super::describe::<MySql>(conn, spec, select).await?;
    // The protocol marks text with a binary collation (`utf8mb4_bin`, MariaDB's JSON) like
    // bytes; the catalog says what a table's column really is.
    let declared: Vec<(String, String)> = match &spec.relation {
        ehrlift_mapping::Relation::Table(t) => {
            let (schema, table) = split_table(t);
            sqlx::query_as::<_, (String, String)>(
                "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            )
            .bind(schema)
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| spec.driver("cannot read the catalog", &e))?
        }
        ehrlift_mapping::Relation::Query(_) => Vec::new(),
    };
    let columns = select
        .iter()
        .zip(stmt.columns())
        .map(|(name, c)| {
            let catalog = declared.iter().find(|(n, _)| n == name).map(|(_, t)| t.to_ascii_lowercase());
            let kind = match catalog.as_deref() {
                Some("char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set") => Ok(Kind::Text),
                Some("json") => Ok(Kind::Json),
                _ => kind_of(c.type_info().name()),
            };
            SourceColumn { name: name.clone(), kind, as_text: false }
        })
        .collect();
    let estimate = match &spec.relation {
        ehrlift_mapping::Relation::Table(t) => {
            let (schema, table) = split_table(t);
            sqlx::query_scalar::<_, u64>(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            )
            .bind(schema)
            .bind(table)
            .fetch_optional(&mut *conn)
            .await
            .ok()
            .flatten()
        }
        ehrlift_mapping::Relation::Query(_) => None,
    };
    Ok((columns, estimate))
}

/// `db.table` → (Some(db), table); `table` → (None, table).
fn split_table(t: &str) -> (Option<String>, String) {
    match t.split_once('.') {
        Some((s, t)) => (Some(s.to_owned()), t.to_owned()),
        None => (None, t.to_owned()),
    }
}

/// The raw kind of a MySQL type as sqlx names it.
fn kind_of(name: &str) -> Result<Kind, String> {
    Ok(match name {
        // TINYINT(1) may hold any of -128..127: read the number; a bool column converts it.
        "BOOLEAN" | "TINYINT" => Kind::I8,
        "SMALLINT" | "YEAR" => Kind::I16,
        "MEDIUMINT" | "INT" => Kind::I32,
        "BIGINT" => Kind::I64,
        "TINYINT UNSIGNED" => Kind::U8,
        "SMALLINT UNSIGNED" => Kind::U16,
        "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => Kind::U32,
        "BIGINT UNSIGNED" | "BIT" => Kind::U64,
        "FLOAT" => Kind::F32,
        "DOUBLE" => Kind::F64,
        "DECIMAL" => Kind::Decimal,
        "JSON" => Kind::Json,
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => Kind::Text,
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => Kind::Binary,
        "DATE" => Kind::Date,
        "TIME" => Kind::Time,
        "DATETIME" => Kind::Timestamp,
        "TIMESTAMP" => Kind::TimestampTz,
        other => return Err(other.to_owned()),
    })
}

pub(super) async fn chunk(
    conn: &mut MySqlConnection,
    spec: &TableSpec,
    select: &[String],
    kinds: &[Kind],
    cursor: Option<&[KeyValue]>,
    rows: &mut Rows,
    emit: &mut impl RowSink,
) -> Result<Option<u64>, DbError> {
    let (sql, binds) = super::keyset_select(spec, select, cursor);
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for v in binds {
        q = match v {
            KeyValue::Int(v) => q.bind(*v),
            KeyValue::Uint(v) => q.bind(*v),
            KeyValue::Text(v) => q.bind(v.clone()),
            KeyValue::Bytes(v) => q.bind(v.clone()),
            KeyValue::Date(d) => q.bind(chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163)),
            KeyValue::Time(t) => {
                q.bind(chrono::NaiveTime::from_num_seconds_from_midnight_opt((t / 1_000_000) as u32, (t % 1_000_000 * 1000) as u32))
            }
            KeyValue::Micros(m) => q.bind(chrono::DateTime::from_timestamp_micros(*m).map(|d| d.naive_utc())),
            KeyValue::Uuid(u) => q.bind(u.to_vec()),
        };
    }
    super::read_rows(spec, q.fetch(&mut *conn), |row, rows| decode_row(row, kinds, rows), rows, emit).await
}

fn decode_row(row: &MySqlRow, kinds: &[Kind], rows: &mut Rows) {
    let zero = rows.zero_dates;
    for (col, kind) in kinds.iter().enumerate() {
        // Not `is_null()`: sqlx reports zero dates as NULL, and they need their own policy.
        let Ok(bytes) = row.try_get_raw(col).and_then(|raw| <&[u8] as Decode<MySql>>::decode(raw).map_err(sqlx::Error::Decode)) else {
            rows.builder(col).append_null();
            continue;
        };
        rows.add_bytes(bytes.len());
        match decode_value(rows.builder(col), kind, bytes, zero) {
            Ok(()) => {}
            Err(None) => {} // a zero date read as null
            Err(Some(reason)) => {
                rows.builder(col).append_null();
                rows.reject(col, reason);
            }
        }
    }
}

fn le<const N: usize>(v: &[u8]) -> Result<[u8; N], Option<Reason>> {
    v.try_into().map_err(|_| Some(Reason::UnrepresentableValue))
}

/// Little-endian integer of any width up to 8 bytes (BIT(n) is big-endian).
fn uint(v: &[u8]) -> Result<u64, Option<Reason>> {
    if v.len() > 8 {
        return Err(Some(Reason::UnrepresentableValue));
    }
    Ok(v.iter().rev().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}

/// `Err(None)`: a zero date appended as null; `Err(Some(r))`: nothing appended, reject.
fn decode_value(b: &mut Builder, kind: &Kind, v: &[u8], zero: ZeroDates) -> Result<(), Option<Reason>> {
    match (b, kind) {
        (Builder::I8(b), _) => b.append_value(i8::from_le_bytes(le(v)?)),
        (Builder::I16(b), _) => b.append_value(i16::from_le_bytes(le(v)?)),
        (Builder::I32(b), _) => b.append_value(match v.len() {
            4 => i32::from_le_bytes(le(v)?),
            _ => return Err(Some(Reason::UnrepresentableValue)),
        }),
        (Builder::I64(b), _) => b.append_value(i64::from_le_bytes(le(v)?)),
        (Builder::U8(b), _) => b.append_value(u8::from_le_bytes(le(v)?)),
        (Builder::U16(b), _) => b.append_value(u16::from_le_bytes(le(v)?)),
        (Builder::U32(b), _) => b.append_value(u32::from_le_bytes(le(v)?)),
        (Builder::U64(b), _) if v.len() == 8 => b.append_value(u64::from_le_bytes(le(v)?)),
        // BIT(n): big-endian bytes.
        (Builder::U64(b), _) => b.append_value(uint(&v.iter().rev().copied().collect::<Vec<_>>())?),
        (Builder::F32(b), _) => b.append_value(f32::from_le_bytes(le(v)?)),
        (Builder::F64(b), _) => b.append_value(f64::from_le_bytes(le(v)?)),
        (Builder::Text(b), _) => b.append_bytes(v),
        (Builder::Binary(b), _) => b.append_value(v),
        (Builder::Date(b), _) => match date(v)? {
            Some(d) => b.append_value(d),
            None => return zero_date(b, zero),
        },
        (Builder::Ts(b), _) => match date(v)? {
            Some(d) => {
                let (h, m, s, us) = (
                    *v.get(5).unwrap_or(&0) as i64,
                    *v.get(6).unwrap_or(&0) as i64,
                    *v.get(7).unwrap_or(&0) as i64,
                    v.get(8..12).map_or(0, |x| u32::from_le_bytes(x.try_into().expect("4 bytes")) as i64),
                );
                b.append_value(i64::from(d) * 86_400_000_000 + ((h * 60 + m) * 60 + s) * 1_000_000 + us)
            }
            None => return zero_date(b, zero),
        },
        (Builder::Time(b), _) => {
            // [len, negative, days u32, h, m, s, micros u32]
            if v.first().copied().unwrap_or(0) == 0 {
                b.append_value(0);
            } else {
                let neg = v.get(1).copied().unwrap_or(0) != 0;
                let days = v.get(2..6).map_or(0, |x| u32::from_le_bytes(x.try_into().expect("4 bytes")));
                if neg || days > 0 {
                    return Err(Some(Reason::UnrepresentableValue)); // an interval, not a time of day
                }
                let (h, m, s) = (*v.get(6).unwrap_or(&0) as i64, *v.get(7).unwrap_or(&0) as i64, *v.get(8).unwrap_or(&0) as i64);
                let us = v.get(9..13).map_or(0, |x| u32::from_le_bytes(x.try_into().expect("4 bytes")) as i64);
                b.append_value(((h * 60 + m) * 60 + s) * 1_000_000 + us)
            }
        }
        _ => return Err(Some(Reason::UnrepresentableValue)),
    }
    Ok(())
}

fn zero_date(b: &mut dyn ZeroNull, zero: ZeroDates) -> Result<(), Option<Reason>> {
    match zero {
        ZeroDates::Null => {
            b.null();
            Err(None)
        }
        ZeroDates::Quarantine => Err(Some(Reason::ZeroDate)),
    }
}

trait ZeroNull {
    fn null(&mut self);
}

impl<T: arrow_array::ArrowPrimitiveType> ZeroNull for arrow_array::builder::PrimitiveBuilder<T> {
    fn null(&mut self) {
        self.append_null();
    }
}

/// Days since the epoch of a binary DATE/DATETIME, `None` for a zero date (a zero
/// year, month or day).
fn date(v: &[u8]) -> Result<Option<i32>, Option<Reason>> {
    if v.first().copied().unwrap_or(0) < 4 {
        return Ok(None);
    }
    let y = u16::from_le_bytes([v[1], v[2]]) as i32;
    let (m, d) = (v[3] as u32, v[4] as u32);
    if y == 0 || m == 0 || d == 0 {
        return Ok(None);
    }
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d).ok_or(Some(Reason::InvalidDate))?;
    Ok(Some(chrono::Datelike::num_days_from_ce(&date) - 719_163))
}
