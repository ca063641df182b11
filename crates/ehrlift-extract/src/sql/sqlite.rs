//! SQLite: a read-only connection, one read transaction, keyset queries.
//!
//! SQLite types values, not columns: a column declared INTEGER may hold text. Each value
//! is read by its own storage class and converted to the column's kind when that is
//! exact; otherwise the row is quarantined, naming the column.

use std::str::FromStr;

use ehrlift_core::Reason;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Decode, Executor, Row, Statement, TypeInfo, ValueRef};

use super::values::{Builder, KeyValue, Kind};
use super::{DbError, RowSink, Rows, SourceColumn, TableSpec};

pub(super) async fn connect(spec: &TableSpec) -> Result<SqliteConnection, DbError> {
    let opts = SqliteConnectOptions::from_str(spec.db.url.expose()).map_err(|e| spec.driver("bad sqlite URL", &e))?.read_only(true);
    opts.connect().await.map_err(|e| spec.driver("cannot open", &e))
}

pub(super) async fn open(
    conn: &mut SqliteConnection,
    spec: &TableSpec,
    select: &[String],
) -> Result<(Vec<SourceColumn>, Option<u64>), DbError> {
    conn.execute("BEGIN").await.map_err(|e| spec.driver("cannot begin the read transaction", &e))?;
    let stmt = super::describe::<Sqlite>(conn, spec, select).await?;
    let columns = select
        .iter()
        .zip(stmt.columns())
        .map(|(name, c)| SourceColumn { name: name.clone(), kind: Ok(kind_of(c.type_info().name())), as_text: false })
        .collect();
    Ok((columns, None))
}

/// SQLite's type affinity of a declared type (as sqlx names it).
fn kind_of(name: &str) -> Kind {
    match name.to_ascii_uppercase().as_str() {
        "INTEGER" | "INT8" | "BOOLEAN" => Kind::I64,
        "REAL" => Kind::F64,
        "BLOB" => Kind::Binary,
        // TEXT, NUMERIC, DATE, TIME, DATETIME and expressions: text, parsed by the mapping.
        _ => Kind::Text,
    }
}

pub(super) async fn chunk(
    conn: &mut SqliteConnection,
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
            KeyValue::Uint(v) => q.bind(*v as i64),
            KeyValue::Text(v) => q.bind(v.clone()),
            KeyValue::Bytes(v) => q.bind(v.clone()),
            other => unreachable!("SQLite keys are integers, text or bytes (see `kind_of`), not {}", key_kind(other)),
        };
    }
    super::read_rows(spec, q.fetch(&mut *conn), |row, rows| decode_row(row, kinds, rows), rows, emit).await
}

fn key_kind(v: &KeyValue) -> &'static str {
    match v {
        KeyValue::Date(_) => "dates",
        KeyValue::Time(_) => "times",
        KeyValue::Micros(_) => "timestamps",
        _ => "uuids",
    }
}

fn decode_row(row: &SqliteRow, kinds: &[Kind], rows: &mut Rows) {
    for (col, kind) in kinds.iter().enumerate() {
        let raw = match row.try_get_raw(col) {
            Ok(v) if !v.is_null() => v,
            _ => {
                rows.builder(col).append_null();
                continue;
            }
        };
        let class = raw.type_info().name().to_owned();
        let mut bytes = 0;
        let r: Result<(), Reason> = (|| {
            match (rows.builder(col), kind) {
                (Builder::I64(b), _) => match class.as_str() {
                    "INTEGER" => b.append_value(<i64 as Decode<Sqlite>>::decode(raw).map_err(|_| Reason::InvalidInteger)?),
                    _ => return Err(Reason::InvalidInteger),
                },
                (Builder::F64(b), _) => match class.as_str() {
                    "INTEGER" | "REAL" => b.append_value(<f64 as Decode<Sqlite>>::decode(raw).map_err(|_| Reason::InvalidFloat)?),
                    _ => return Err(Reason::InvalidFloat),
                },
                (Builder::Binary(b), _) => {
                    let v = <&[u8] as Decode<Sqlite>>::decode(raw).map_err(|_| Reason::UnrepresentableValue)?;
                    bytes = v.len();
                    b.append_value(v)
                }
                (Builder::Text(b), _) => match class.as_str() {
                    "INTEGER" => b.append_str(&<i64 as Decode<Sqlite>>::decode(raw).map_err(|_| Reason::InvalidInteger)?.to_string()),
                    "REAL" => b.append_str(&<f64 as Decode<Sqlite>>::decode(raw).map_err(|_| Reason::InvalidFloat)?.to_string()),
                    _ => {
                        let v = <&[u8] as Decode<Sqlite>>::decode(raw).map_err(|_| Reason::InvalidEncoding)?;
                        bytes = v.len();
                        b.append_bytes(v)
                    }
                },
                _ => return Err(Reason::UnrepresentableValue),
            }
            Ok(())
        })();
        rows.add_bytes(bytes);
        if let Err(reason) = r {
            rows.builder(col).append_null();
            rows.reject(col, reason);
        }
    }
}
