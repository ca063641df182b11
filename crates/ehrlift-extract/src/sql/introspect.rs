//! Reads a database's catalog (tables, column types, primary and foreign keys) and a few
//! sampled values per column, for `ehrlift init` to scaffold mappings from.
//!
//! Everything here is read-only: one connection, catalog queries, then one bounded
//! `SELECT … LIMIT n` per table. Sampled values stay in memory (they may be PHI): they never
//! reach an error, a log line, `Debug` output or a generated file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use ehrlift_mapping::ColumnType;
#[cfg(test)]
use ehrlift_mapping::ListOf;

use super::scaffold::map_db_type;

/// Longest prefix of a sampled value kept: enough to recognise a shape, and a bound on memory
/// when a sampled column holds documents.
const SAMPLE_CHARS: usize = 256;
/// A server that does not answer within this is unreachable for our purposes; without it a
/// dropped SYN would hang `ehrlift init` for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which SQL dialect a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// The dialect a URL's scheme names, if it names a supported one.
    pub fn from_url(url: &str) -> Option<Dialect> {
        let scheme = url.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// The source `kind` a plan names this dialect by.
    pub fn kind(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

/// What one database (one schema of it) holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// The dialect the catalog was read with.
    pub dialect: Dialect,
    /// Base tables, sorted by name (views are not scaffolded).
    pub tables: Vec<TableInfo>,
}

/// One base table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Schema (PostgreSQL) or database (MySQL) it lives in; `None` for SQLite.
    pub schema: Option<String>,
    /// Name as the database spells it.
    pub name: String,
    /// Columns in ordinal order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order; empty when the table has none.
    pub primary_key: Vec<String>,
    /// Declared foreign keys, by constraint name.
    pub foreign_keys: Vec<ForeignKey>,
    /// The catalog's row estimate (statistics, not a count); `None` when unknown.
    pub row_estimate: Option<u64>,
}

/// One column. `Debug` shows how many values were sampled, never the values.
#[derive(Clone, PartialEq)]
pub struct ColumnInfo {
    /// Name as the database spells it.
    pub name: String,
    /// Type as the database spells it: `numeric(10,2)`, `character varying(40)`, `tinyint(1)`.
    pub db_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// The ehrlift type it is read as.
    pub mapped: ColumnType,
    /// Up to the requested number of non-null values as text. In memory only: may be PHI.
    pub samples: Vec<String>,
}

impl fmt::Debug for ColumnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnInfo")
            .field("name", &self.name)
            .field("db_type", &self.db_type)
            .field("nullable", &self.nullable)
            .field("mapped", &self.mapped)
            .field("samples", &format_args!("<{} values withheld>", self.samples.len()))
            .finish()
    }
}

/// A declared foreign key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// Referencing columns of this table, in key order.
    pub columns: Vec<String>,
    /// Referenced table: bare when in the same schema, else `schema.table`.
    pub ref_table: String,
    /// Referenced columns, pairwise with `columns`.
    pub ref_columns: Vec<String>,
}

/// Why introspection failed. Carries the redacted URL and catalog context, never a password
/// and never a cell value (database messages are passed through the password filter, and
/// sampling failures are not reported at all: they only cost the guess).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntrospectError {
    /// The URL's scheme is not one we read, or the URL does not parse.
    #[error("`{url}`: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to `{url}`: {message}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's message, password redacted.
        message: String,
    },
    /// A catalog query failed (permissions, an unsupported server version).
    #[error("`{url}`: reading {step} failed: {message}")]
    Catalog {
        /// The URL, password redacted.
        url: String,
        /// Which part of the catalog.
        step: &'static str,
        /// The driver's message, password redacted.
        message: String,
    },
    /// A MySQL URL without a database and no schema given.
    #[error("`{url}` names no database: add it to the URL (mysql://host/DATABASE) or pass --schema")]
    NoDatabase {
        /// The URL, password redacted.
        url: String,
    },
    /// The schema holds no base table (it may not exist, or hold only views).
    #[error("`{url}`: no tables in `{schema}` (it may not exist, or hold only views, which are not scaffolded)")]
    NoTables {
        /// The URL, password redacted.
        url: String,
        /// The schema or database looked in.
        schema: String,
    },
}

impl IntrospectError {
    /// The class of the error, for exit statuses: a server that does not answer may answer
    /// later (transient); everything else needs a different URL, schema or grant.
    pub fn class(&self) -> ehrlift_core::ErrorClass {
        match self {
            IntrospectError::Connect { .. } => ehrlift_core::ErrorClass::Transient,
            _ => ehrlift_core::ErrorClass::Configuration,
        }
    }
}

pub use ehrlift_mapping::redact_url;
use ehrlift_mapping::redact_url_secrets as redact;

/// What an error needs to say where it happened without saying anything secret.
struct Ctx {
    url: String,
    secrets: Vec<String>,
}

impl Ctx {
    /// A driver error as one line, password removed. For server errors only the primary
    /// message is used: PostgreSQL's DETAIL line can quote row values.
    fn message(&self, err: &sqlx::Error) -> String {
        let mut msg = match err.as_database_error() {
            Some(db) => db.message().to_owned(),
            None => err.to_string(),
        };
        for s in &self.secrets {
            msg = msg.replace(s.as_str(), "***");
        }
        msg.replace(['\n', '\r'], " ")
    }

    fn catalog(&self, step: &'static str) -> impl Fn(sqlx::Error) -> IntrospectError + '_ {
        move |e| IntrospectError::Catalog { url: self.url.clone(), step, message: self.message(&e) }
    }

    fn connect_err(&self, e: &sqlx::Error) -> IntrospectError {
        IntrospectError::Connect { url: self.url.clone(), message: self.message(e) }
    }
}

/// Reads the tables of `schema` (default: PostgreSQL `public`, the MySQL URL's database;
/// ignored for SQLite) with columns, keys and up to `sample_rows` sampled values per column
/// (0: none). Opens one read-only connection; no statement writes.
pub async fn introspect(url: &str, schema: Option<&str>, sample_rows: u32) -> Result<Schema, IntrospectError> {
    let (redacted, secrets) = redact(url);
    let ctx = Ctx { url: redacted, secrets };
    let dialect = Dialect::from_url(url).ok_or_else(|| IntrospectError::Url {
        url: ctx.url.clone(),
        reason: "unsupported scheme: expected postgres://, postgresql://, mysql://, mariadb://, sqlite:// or sqlite:".into(),
    })?;
    let mut tables = match dialect {
        Dialect::Postgres => {
            let mut conn = connect(&ctx, PgConnection::connect(url)).await?;
            let out = postgres(&ctx, &mut conn, schema.unwrap_or("public"), sample_rows).await;
            let _ = conn.close().await;
            out?
        }
        Dialect::Mysql => {
            // sqlx knows MariaDB only by the mysql scheme; the protocol is the same.
            let url = match url.split_once("://") {
                Some((s, rest)) if s.eq_ignore_ascii_case("mariadb") => format!("mysql://{rest}"),
                _ => url.to_owned(),
            };
            let mut conn = connect(&ctx, MySqlConnection::connect(&url)).await?;
            let out = mysql(&ctx, &mut conn, schema, sample_rows).await;
            let _ = conn.close().await;
            out?
        }
        Dialect::Sqlite => {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| IntrospectError::Url { url: ctx.url.clone(), reason: ctx.message(&e) })?
                .read_only(true)
                .create_if_missing(false);
            let mut conn = connect(&ctx, options.connect()).await?;
            let out = sqlite(&ctx, &mut conn, sample_rows).await;
            let _ = conn.close().await;
            out?
        }
    };
    if tables.is_empty() {
        let schema =
            schema.map(str::to_owned).unwrap_or_else(|| if dialect == Dialect::Postgres { "public".into() } else { "the database".into() });
        return Err(IntrospectError::NoTables { url: ctx.url, schema });
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Schema { dialect, tables })
}

async fn connect<C>(ctx: &Ctx, fut: impl Future<Output = Result<C, sqlx::Error>>) -> Result<C, IntrospectError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(ctx.connect_err(&e)),
        Err(_) => {
            Err(IntrospectError::Connect { url: ctx.url.clone(), message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()) })
        }
    }
}

/// A cell as text: tries text, then bytes decoded lossily (MySQL reports some catalog
/// columns and casts with a binary collation).
fn text<'r, R>(row: &'r R, i: usize) -> Option<String>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match row.try_get::<Option<String>, _>(i) {
        Ok(v) => v,
        Err(_) => row.try_get::<Option<Vec<u8>>, _>(i).ok().flatten().map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}

fn quote(ident: &str, q: char) -> String {
    let doubled = ident.replace(q, &format!("{q}{q}"));
    format!("{q}{doubled}{q}")
}

/// The sampling query for a table: every sampled column cast to text, `n` rows from wherever
/// the scan starts. One bounded query per table, because a per-column `WHERE x IS NOT NULL`
/// would scan a whole table for a column that is mostly null.
fn sample_sql(dialect: Dialect, table: &TableInfo, cols: &[usize], n: u32) -> String {
    let q = if dialect == Dialect::Mysql { '`' } else { '"' };
    let list: Vec<String> = cols
        .iter()
        .map(|&i| {
            let c = quote(&table.columns[i].name, q);
            match dialect {
                Dialect::Postgres => format!("{c}::text"),
                Dialect::Mysql => format!("CAST({c} AS CHAR)"),
                Dialect::Sqlite => format!("CAST({c} AS TEXT)"),
            }
        })
        .collect();
    let from = match &table.schema {
        Some(s) => format!("{}.{}", quote(s, q), quote(&table.name, q)),
        None => quote(&table.name, q),
    };
    format!("SELECT {} FROM {from} LIMIT {n}", list.join(", "))
}

/// Columns worth sampling: bytes are not text, and spatial/bit values cast to noise.
fn sampled_columns(table: &TableInfo) -> Vec<usize> {
    (0..table.columns.len())
        .filter(|&i| {
            let c = &table.columns[i];
            c.mapped != ColumnType::Binary
        })
        .collect()
}

/// Keeps the non-null values of each sampled column, truncated to [`SAMPLE_CHARS`].
fn store_samples(table: &mut TableInfo, cols: &[usize], rows: Vec<Vec<Option<String>>>) {
    for row in rows {
        for (cell, &i) in row.into_iter().zip(cols) {
            if let Some(v) = cell {
                table.columns[i].samples.push(v.chars().take(SAMPLE_CHARS).collect());
            }
        }
    }
}

macro_rules! sample_table {
    ($conn:expr, $dialect:expr, $table:expr, $n:expr) => {{
        let cols = sampled_columns($table);
        if $n > 0 && !cols.is_empty() {
            let sql = sample_sql($dialect, $table, &cols, $n);
            // A failed sample only costs the value-based guesses; its message may quote a
            // value (a failed cast), so it is not reported.
            if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *$conn).await {
                let rows = rows.iter().map(|r| (0..cols.len()).map(|i| text(r, i)).collect()).collect();
                store_samples($table, &cols, rows);
            }
        }
    }};
}

/// Runs a catalog query with its bound parameters; a failure names the catalog step.
macro_rules! fetch {
    ($conn:expr, $ctx:expr, $step:literal, $sql:expr $(, $bind:expr)*) => {
        sqlx::query($sql)$(.bind($bind))*.fetch_all(&mut *$conn).await.map_err($ctx.catalog($step))?
    };
}

fn table_info(schema: Option<String>, name: String, row_estimate: Option<u64>) -> TableInfo {
    TableInfo { schema, name, columns: vec![], primary_key: vec![], foreign_keys: vec![], row_estimate }
}

fn column(dialect: Dialect, name: String, db_type: String, nullable: bool) -> ColumnInfo {
    let mapped = map_db_type(dialect, &db_type);
    ColumnInfo { name, db_type, nullable, mapped, samples: Vec::new() }
}

async fn postgres(ctx: &Ctx, conn: &mut PgConnection, schema: &str, n: u32) -> Result<Vec<TableInfo>, IntrospectError> {
    // Read-only session: init must never write, whatever a bug in here would try; the
    // timeout keeps a sampling scan of a huge table from hanging init.
    for setting in ["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET statement_timeout = '60s'"] {
        sqlx::query(setting).execute(&mut *conn).await.map_err(ctx.catalog("session settings"))?;
    }
    // Ordinary and partitioned tables; partitions are read through their parent.
    let rows = fetch!(
        conn,
        ctx,
        "tables",
        "SELECT c.relname::text, c.reltuples::float8 FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname",
        schema
    );
    let mut tables = BTreeMap::new();
    for r in &rows {
        let name: String = r.get(0);
        let tuples: f64 = r.get(1);
        // reltuples is -1 before the first ANALYZE (PostgreSQL 14+).
        let row_estimate = (tuples >= 0.0).then_some(tuples as u64);
        tables.insert(name.clone(), table_info(Some(schema.to_owned()), name, row_estimate));
    }
    // Domains are mapped by their base type; db_type keeps the domain's own name.
    let rows = fetch!(
        conn,
        ctx,
        "columns",
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY c.relname, a.attnum",
        schema
    );
    for r in &rows {
        let table: String = r.get(0);
        let Some(t) = tables.get_mut(&table) else { continue };
        let mut col = column(Dialect::Postgres, r.get(1), r.get(2), !r.get::<bool, _>(3));
        if let Some(base) = r.get::<Option<String>, _>(4) {
            col.mapped = map_db_type(Dialect::Postgres, &base);
        }
        t.columns.push(col);
    }
    let key_cols = |arr: &str, rel: &str| {
        format!(
            "ARRAY(SELECT a.attname::text FROM unnest(con.{arr}) WITH ORDINALITY k(num, ord) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.{rel} AND a.attnum = k.num ORDER BY k.ord)"
        )
    };
    let sql = format!(
        "SELECT c.relname::text, con.contype::text, {}, fn.nspname::text, fc.relname::text, {} \
         FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace \
         WHERE n.nspname = $1 AND con.contype IN ('p', 'f') ORDER BY c.relname, con.conname",
        key_cols("conkey", "conrelid"),
        key_cols("confkey", "confrelid")
    );
    let rows = fetch!(conn, ctx, "keys", AssertSqlSafe(sql), schema);
    for r in &rows {
        let table: String = r.get(0);
        let Some(t) = tables.get_mut(&table) else { continue };
        let columns: Vec<String> = r.get(2);
        if r.get::<String, _>(1) == "p" {
            t.primary_key = columns;
        } else {
            let ref_schema: String = r.get(3);
            let ref_name: String = r.get(4);
            let ref_table = if ref_schema == schema { ref_name } else { format!("{ref_schema}.{ref_name}") };
            t.foreign_keys.push(ForeignKey { columns, ref_table, ref_columns: r.get(5) });
        }
    }
    for t in tables.values_mut() {
        sample_table!(conn, Dialect::Postgres, t, n);
    }
    Ok(tables.into_values().collect())
}

async fn mysql(ctx: &Ctx, conn: &mut MySqlConnection, schema: Option<&str>, n: u32) -> Result<Vec<TableInfo>, IntrospectError> {
    // Best effort: every statement here reads anyway. MySQL and MariaDB spell the statement
    // timeout differently; whichever is unknown fails.
    let _ = sqlx::query("SET SESSION TRANSACTION READ ONLY").execute(&mut *conn).await;
    let _ = sqlx::query("SET SESSION max_execution_time = 60000").execute(&mut *conn).await;
    let _ = sqlx::query("SET SESSION max_statement_time = 60").execute(&mut *conn).await;
    let schema = match schema {
        Some(s) => s.to_owned(),
        None => {
            let row = sqlx::query("SELECT DATABASE()").fetch_one(&mut *conn).await.map_err(ctx.catalog("current database"))?;
            text(&row, 0).ok_or_else(|| IntrospectError::NoDatabase { url: ctx.url.clone() })?
        }
    };
    let rows = fetch!(
        conn,
        ctx,
        "tables",
        "SELECT TABLE_NAME, CAST(TABLE_ROWS AS CHAR) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        &schema
    );
    let mut tables = BTreeMap::new();
    for r in &rows {
        let name = text(r, 0).unwrap_or_default();
        let row_estimate = text(r, 1).and_then(|s| s.parse().ok());
        tables.insert(name.clone(), table_info(Some(schema.clone()), name, row_estimate));
    }
    let rows = fetch!(
        conn,
        ctx,
        "columns",
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
        &schema
    );
    for r in &rows {
        let Some(t) = tables.get_mut(&text(r, 0).unwrap_or_default()) else { continue };
        let nullable = text(r, 3).as_deref() != Some("NO");
        t.columns.push(column(Dialect::Mysql, text(r, 1).unwrap_or_default(), text(r, 2).unwrap_or_default(), nullable));
    }
    let rows = fetch!(
        conn,
        ctx,
        "keys",
        "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME \
         FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? \
         AND (CONSTRAINT_NAME = 'PRIMARY' OR REFERENCED_TABLE_NAME IS NOT NULL) \
         ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
        &schema
    );
    let mut fks: BTreeMap<(String, String), ForeignKey> = BTreeMap::new();
    for r in &rows {
        let [table, constraint, col, ref_schema, ref_table, ref_col] = std::array::from_fn(|i| text(r, i).unwrap_or_default());
        let Some(t) = tables.get_mut(&table) else { continue };
        if constraint == "PRIMARY" {
            t.primary_key.push(col);
            continue;
        }
        let ref_table = if ref_schema == schema { ref_table } else { format!("{ref_schema}.{ref_table}") };
        let fk = fks.entry((table, constraint)).or_insert_with(|| ForeignKey { columns: vec![], ref_table, ref_columns: vec![] });
        fk.columns.push(col);
        fk.ref_columns.push(ref_col);
    }
    for ((table, _), fk) in fks {
        if let Some(t) = tables.get_mut(&table) {
            t.foreign_keys.push(fk);
        }
    }
    for t in tables.values_mut() {
        sample_table!(conn, Dialect::Mysql, t, n);
    }
    Ok(tables.into_values().collect())
}

async fn sqlite(ctx: &Ctx, conn: &mut SqliteConnection, n: u32) -> Result<Vec<TableInfo>, IntrospectError> {
    let rows = fetch!(
        conn,
        ctx,
        "tables",
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    );
    let names: Vec<String> = rows.iter().filter_map(|r| text(r, 0)).collect();
    let mut tables = BTreeMap::new();
    for name in names {
        let cols = fetch!(conn, ctx, "columns", "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid", &name);
        let mut t = table_info(None, name.clone(), None);
        let mut pk: Vec<(i64, String)> = Vec::new();
        for r in &cols {
            let (col, db_type): (String, String) = (text(r, 0).unwrap_or_default(), text(r, 1).unwrap_or_default());
            let (notnull, pk_pos): (i64, i64) = (r.get(2), r.get(3));
            if pk_pos > 0 {
                pk.push((pk_pos, col.clone()));
            }
            t.columns.push(column(Dialect::Sqlite, col, db_type, notnull == 0));
        }
        pk.sort();
        t.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        // An INTEGER PRIMARY KEY is the rowid: never null, though the pragma says nullable.
        if let [only] = t.primary_key.as_slice()
            && let Some(c) = t.columns.iter_mut().find(|c| &c.name == only && c.db_type.eq_ignore_ascii_case("integer"))
        {
            c.nullable = false;
        }
        let fk_rows = fetch!(
            conn,
            ctx,
            "foreign keys",
            "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq",
            &name
        );
        for r in &fk_rows {
            let id: i64 = r.get(0);
            let (ref_table, from, to) = (text(r, 1).unwrap_or_default(), text(r, 2).unwrap_or_default(), text(r, 3));
            if t.foreign_keys.len() as i64 <= id {
                t.foreign_keys.push(ForeignKey { columns: vec![], ref_table, ref_columns: vec![] });
            }
            let fk = t.foreign_keys.last_mut().expect("pushed above");
            fk.columns.push(from);
            // A missing `to` means the referenced table's primary key, resolved below.
            fk.ref_columns.extend(to);
        }
        tables.insert(name, t);
    }
    let pks: BTreeMap<String, Vec<String>> = tables.iter().map(|(k, t)| (k.to_ascii_lowercase(), t.primary_key.clone())).collect();
    for t in tables.values_mut() {
        for fk in &mut t.foreign_keys {
            if fk.ref_columns.len() != fk.columns.len() {
                fk.ref_columns = pks.get(&fk.ref_table.to_ascii_lowercase()).cloned().unwrap_or_default();
            }
        }
        sample_table!(conn, Dialect::Sqlite, t, n);
    }
    Ok(tables.into_values().collect())
}

#[cfg(test)]
mod tests {
    //! Against real servers: PostgreSQL on 127.0.0.1:5432 (postgres, trust) and MariaDB on
    //! 127.0.0.1:3306 (root, no password). Unreachable servers skip a test, except with CI=true.
    use super::*;
    use crate::sql::live::{DropDb, admin, run, unique_name};
    use crate::sql::scaffold::scaffold_on;
    use sqlx::Executor;

    const SENTINEL: &str = "ZZSENTINELZZ";

    fn table<'s>(s: &'s Schema, name: &str) -> &'s TableInfo {
        s.tables.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no table {name}"))
    }

    fn col<'t>(t: &'t TableInfo, name: &str) -> &'t ColumnInfo {
        t.columns.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no column {name}"))
    }

    fn fk(cols: &[&str], table: &str, refs: &[&str]) -> ForeignKey {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        ForeignKey { columns: v(cols), ref_table: table.into(), ref_columns: v(refs) }
    }

    /// The lines of one `[[columns]]` group of a mapping, by source name.
    fn block<'a>(text: &'a str, from: &str) -> &'a str {
        let needle = format!("from = \"{from}\"");
        text.split("[[columns]]").find(|b| b.contains(&needle)).unwrap_or_else(|| panic!("no column {from}"))
    }

    /// Scaffolds, checks what every dialect shares, and returns the mappings by file name.
    fn scaffold_checked(schema: &Schema) -> std::collections::HashMap<String, String> {
        let date = chrono::NaiveDate::from_ymd_opt(2025, 1, 2).unwrap();
        let hint = if schema.dialect == Dialect::Sqlite { "sqlite:/data/ehr.db?mode=ro" } else { "postgres://u:pw@h/db" };
        let out = scaffold_on(schema, "legacy", "ehr", hint, date);
        assert!(!format!("{schema:?}").contains(SENTINEL), "Debug must withhold samples");
        assert!(!out.plan.contains(SENTINEL) && !out.plan.contains("pw@"));
        for (_, text) in &out.mappings {
            assert!(!text.contains(SENTINEL) && !text.contains("123-45-6789"), "a sampled value leaked:\n{text}");
        }
        let m: std::collections::HashMap<_, _> = out.mappings.into_iter().collect();
        let p = &m["patients.toml"];
        assert!(block(p, "ssn").contains("rule = \"drop\"\nphi = \"ssn\""));
        assert!(block(p, "mrn").contains("rule = \"surrogate\"\nnamespace = \"mrn\"\nphi = \"mrn\""));
        assert!(block(p, "first_name").contains("rule = \"drop\"\nphi = \"name\""));
        assert!(block(p, "balance").contains("# REVIEW: not sure what this holds; dropped until a person classifies it"));
        assert!(block(p, "balance").contains("rule = \"drop\"\nphi = \"other_id\""));
        m
    }

    #[test]
    fn redact_url_hides_passwords() {
        assert_eq!(
            redact_url("postgres://bob:s3cr@t@db.example:5432/ehr?sslmode=require"),
            "postgres://bob:***@db.example:5432/ehr?sslmode=require"
        );
        assert_eq!(redact_url("mysql://root@localhost/ehr"), "mysql://root@localhost/ehr");
        assert_eq!(redact_url("postgres://h/db?user=a&password=x&sslpassword=y"), "postgres://h/db?user=a&password=***&sslpassword=***");
        assert_eq!(redact_url("sqlite:data/ehr.db?mode=ro"), "sqlite:data/ehr.db?mode=ro");
        assert_eq!(redact_url(&redact_url("mariadb://a:b@h:3306/x")), "mariadb://a:***@h:3306/x");
        assert_eq!(redact_url("postgres://:only@h/x"), "postgres://:***@h/x");
        // Malformed passwords (unencoded '/', '?', '@') are hidden all the same.
        assert_eq!(redact_url("postgres://u:a/b?c@d@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://h/db?user=a@b&password=x"), "postgres://h/db?user=a@b&password=***");
    }

    #[test]
    fn errors_carry_no_password() {
        let e = run(introspect("oracle://scott:tiger@h/x", None, 0)).unwrap_err();
        assert!(matches!(e, IntrospectError::Url { .. }) && !e.to_string().contains("tiger"), "{e}");
        // Nothing listens on port 1; the password must not surface in any form.
        let e = run(introspect("postgres://postgres:ZZPASSWORDZZ@127.0.0.1:1/x", None, 0)).unwrap_err();
        assert!(matches!(e, IntrospectError::Connect { .. }) && !format!("{e} {e:?}").contains("ZZPASSWORDZZ"), "{e}");
        // A missing SQLite file is an error, not a new empty database.
        let path = std::env::temp_dir().join(format!("{}.db", unique_name("init")));
        let e = run(introspect(&format!("sqlite://{}", path.display()), None, 0)).unwrap_err();
        assert!(matches!(e, IntrospectError::Connect { .. }) && !path.exists(), "{e}");
    }

    #[test]
    fn postgres_legacy_schema() {
        let admin_url = "postgres://postgres@127.0.0.1:5432/postgres";
        run(async {
            let Some(mut admin) = admin::<PgConnection>(admin_url).await else { return };
            let db = unique_name("init");
            admin.execute(AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
            let _cleanup = DropDb(admin_url, format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            let url = format!("postgres://postgres:ZZPASSWORDZZ@127.0.0.1:5432/{db}");
            let mut c = PgConnection::connect(&url).await.unwrap();
            c.execute(
                "CREATE TABLE patients (patient_id serial PRIMARY KEY, mrn varchar(20) NOT NULL, ssn char(11), first_name text,
                   birth_date date, zip varchar(10), balance numeric(10,2), lab_value numeric, photo bytea, ext_id uuid,
                   created_at timestamptz NOT NULL DEFAULT now(), allergy_codes integer[], alias text);
                 CREATE TABLE encounters (id bigint PRIMARY KEY, patient_id integer NOT NULL REFERENCES patients (patient_id),
                   admitted_at timestamp, notes text, weight_kg real, contact text);
                 CREATE TABLE audit_log (event text, happened_at timestamptz);
                 CREATE VIEW v_patients AS SELECT patient_id FROM patients;
                 INSERT INTO patients (mrn, ssn, first_name, birth_date, zip, balance, lab_value, photo, ext_id, allergy_codes, alias)
                   VALUES ('M1', '123-45-6789', 'ZZSENTINELZZ', '1950-02-03', '02134', 12.5, 1.25, '\\x00', gen_random_uuid(), '{1,2}', 'ZZSENTINELZZ');
                 INSERT INTO encounters VALUES (1, 1, now(), 'seen', 70.5, '123-45-6789');",
            )
            .await
            .unwrap();
            c.close().await.unwrap();

            let s = introspect(&url, None, 20).await.unwrap();
            assert_eq!(s.dialect, Dialect::Postgres);
            let names: Vec<&str> = s.tables.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(names, ["audit_log", "encounters", "patients"], "views are skipped");
            let p = table(&s, "patients");
            assert_eq!((p.schema.as_deref(), p.primary_key.as_slice()), (Some("public"), ["patient_id".to_string()].as_slice()));
            assert_eq!((col(p, "mrn").db_type.as_str(), col(p, "mrn").nullable), ("character varying(20)", false));
            assert_eq!(col(p, "balance").mapped, ColumnType::Decimal { precision: 10, scale: 2 });
            assert_eq!((col(p, "lab_value").db_type.as_str(), &col(p, "lab_value").mapped), ("numeric", &ColumnType::Utf8));
            assert_eq!(col(p, "photo").mapped, ColumnType::Binary);
            assert!(col(p, "photo").samples.is_empty(), "binary columns are not sampled");
            assert_eq!(col(p, "ext_id").mapped, ColumnType::Uuid);
            assert_eq!((&col(p, "created_at").mapped, col(p, "created_at").nullable), (&ColumnType::TimestampTz, false));
            assert_eq!(col(p, "allergy_codes").mapped, ColumnType::List(ListOf::Int32));
            assert_eq!(col(p, "alias").samples, [SENTINEL]);
            let e = table(&s, "encounters");
            assert_eq!(e.foreign_keys, [fk(&["patient_id"], "patients", &["patient_id"])]);
            assert_eq!(col(e, "admitted_at").mapped, ColumnType::Timestamp);

            let m = scaffold_checked(&s);
            assert!(m["patients.toml"].contains("source_table = \"public.patients\"\nkey = [\"patient_id\"]"));
            assert!(block(&m["patients.toml"], "lab_value").contains("# unbounded NUMERIC: exact text;"));
            assert!(block(&m["patients.toml"], "allergy_codes").contains("type = \"list<int32>\""));
            assert!(block(&m["patients.toml"], "birth_date").contains("to = \"birth_year\""));
            let enc = block(&m["encounters.toml"], "patient_id");
            assert!(enc.contains("# references patients.patient_id") && enc.contains("namespace = \"patients\""), "{enc}");
            assert!(block(&m["encounters.toml"], "contact").contains("REVIEW: sampled values look like Social Security numbers"));
            let log = &m["audit_log.toml"];
            assert!(log.contains("resume = \"restart_table\"") && !log.contains("key ="), "{log}");

            let e = introspect(&url, Some("no_such_schema"), 5).await.unwrap_err();
            assert!(matches!(e, IntrospectError::NoTables { .. }) && !e.to_string().contains("ZZPASSWORDZZ"), "{e}");
        });
    }

    #[test]
    fn mariadb_legacy_schema() {
        let admin_url = "mysql://root@127.0.0.1:3306/";
        run(async {
            let Some(mut admin) = admin::<MySqlConnection>(admin_url).await else { return };
            let db = unique_name("init");
            admin.execute(AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
            let _cleanup = DropDb(admin_url, format!("DROP DATABASE IF EXISTS {db}"));
            let url = format!("mariadb://root@127.0.0.1:3306/{db}");
            let mut c = MySqlConnection::connect(&url.replace("mariadb:", "mysql:")).await.unwrap();
            for sql in [
                "CREATE TABLE patients (id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, mrn VARCHAR(20) NOT NULL, ssn CHAR(11),
                   first_name VARCHAR(50), sex ENUM('F','M','U') NOT NULL, active TINYINT(1) NOT NULL DEFAULT 1, balance DECIMAL(10,2),
                   photo BLOB, registered DATETIME, updated TIMESTAMP NULL, yr YEAR, small TINYINT, alias TEXT) ENGINE=InnoDB",
                "CREATE TABLE visits (visit_id BIGINT NOT NULL, line_no SMALLINT NOT NULL, patient_id INT UNSIGNED NOT NULL, note TEXT,
                   PRIMARY KEY (visit_id, line_no), FOREIGN KEY (patient_id) REFERENCES patients (id)) ENGINE=InnoDB",
                "CREATE TABLE legacy_log (msg VARCHAR(200))",
                "INSERT INTO patients (mrn, ssn, first_name, sex, balance, photo, alias) VALUES ('M1', '123-45-6789', 'ZZSENTINELZZ', 'F', 1.5, 'x', 'ZZSENTINELZZ')",
            ] {
                c.execute(sql).await.unwrap();
            }
            c.close().await.unwrap();

            let s = introspect(&url, None, 20).await.unwrap();
            assert_eq!(s.dialect, Dialect::Mysql);
            let p = table(&s, "patients");
            assert_eq!((p.schema.as_deref(), p.primary_key.as_slice()), (Some(db.as_str()), ["id".to_string()].as_slice()));
            assert!(col(p, "id").db_type.starts_with("int") && col(p, "id").db_type.ends_with("unsigned"));
            assert_eq!(col(p, "id").mapped, ColumnType::UInt32);
            assert!(col(p, "sex").db_type.starts_with("enum(") && col(p, "sex").mapped == ColumnType::Utf8);
            assert_eq!((col(p, "active").db_type.as_str(), &col(p, "active").mapped), ("tinyint(1)", &ColumnType::Bool));
            assert_eq!(col(p, "small").mapped, ColumnType::Int8);
            assert_eq!(col(p, "balance").mapped, ColumnType::Decimal { precision: 10, scale: 2 });
            assert_eq!(col(p, "photo").mapped, ColumnType::Binary);
            assert_eq!(col(p, "registered").mapped, ColumnType::Timestamp);
            assert_eq!(col(p, "updated").mapped, ColumnType::TimestampTz);
            assert_eq!(col(p, "yr").mapped, ColumnType::Int16);
            assert_eq!(col(p, "alias").samples, [SENTINEL]);
            let v = table(&s, "visits");
            assert_eq!(v.primary_key, ["visit_id", "line_no"]);
            assert_eq!(v.foreign_keys, [fk(&["patient_id"], "patients", &["id"])]);

            let m = scaffold_checked(&s);
            assert!(m["visits.toml"].contains(&format!("source_table = \"{db}.visits\"\nkey = [\"visit_id\", \"line_no\"]")));
            assert!(block(&m["visits.toml"], "patient_id").contains("namespace = \"patients\""));
            assert!(block(&m["visits.toml"], "line_no").contains("rule = \"surrogate\"\nnamespace = \"visits_line_no\""));
            assert!(block(&m["patients.toml"], "active").contains("rule = \"keep\""));
            assert!(m["legacy_log.toml"].contains("resume = \"restart_table\""));

            let e = introspect("mysql://root@127.0.0.1:3306/", None, 5).await.unwrap_err();
            assert!(matches!(e, IntrospectError::NoDatabase { .. }), "{e}");
            let e = introspect(&format!("mariadb://root:ZZPASSWORDZZ@127.0.0.1:3306/{db}"), None, 5).await.unwrap_err();
            assert!(matches!(e, IntrospectError::Connect { .. }) && !format!("{e} {e:?}").contains("ZZPASSWORDZZ"), "{e}");
        });
    }

    #[test]
    fn sqlite_legacy_schema() {
        let path = std::env::temp_dir().join(format!("{}.db", unique_name("init")));
        struct Remove(std::path::PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _cleanup = Remove(path.clone());
        run(async {
            let mut c = SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
            c.execute(
                "CREATE TABLE patients (id INTEGER PRIMARY KEY, mrn TEXT NOT NULL, ssn TEXT, first_name VARCHAR(40), dob DATE,
                   weight REAL, balance NUMERIC(10,2), photo BLOB, misc, alias TEXT);
                 CREATE TABLE visits (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL REFERENCES patients, note TEXT);
                 CREATE TABLE log (msg TEXT);
                 INSERT INTO patients (mrn, ssn, first_name, alias) VALUES ('M1', '123-45-6789', 'ZZSENTINELZZ', 'ZZSENTINELZZ');",
            )
            .await
            .unwrap();
            c.close().await.unwrap();

            let s = introspect(&format!("sqlite:{}", path.display()), None, 20).await.unwrap();
            assert_eq!(s.dialect, Dialect::Sqlite);
            let p = table(&s, "patients");
            assert_eq!((p.schema.as_ref(), p.primary_key.as_slice()), (None, ["id".to_string()].as_slice()));
            assert_eq!((&col(p, "id").mapped, col(p, "id").nullable), (&ColumnType::Int64, false));
            assert_eq!((col(p, "first_name").db_type.as_str(), &col(p, "first_name").mapped), ("VARCHAR(40)", &ColumnType::Utf8));
            assert_eq!(col(p, "weight").mapped, ColumnType::Float64);
            assert_eq!(col(p, "balance").mapped, ColumnType::Utf8);
            assert_eq!(col(p, "photo").mapped, ColumnType::Binary);
            assert_eq!(col(p, "misc").mapped, ColumnType::Binary);
            assert_eq!(col(p, "alias").samples, [SENTINEL]);
            // `REFERENCES patients` names no column: it means the primary key.
            assert_eq!(table(&s, "visits").foreign_keys, [fk(&["patient_id"], "patients", &["id"])]);

            let m = scaffold_checked(&s);
            assert!(m["patients.toml"].contains("source_table = \"patients\"\nkey = [\"id\"]"));
            assert!(block(&m["patients.toml"], "dob").contains("rule = \"drop\"\nphi = \"date\""));
            assert!(block(&m["patients.toml"], "balance").contains("# SQLite declared type `NUMERIC(10,2)`"));
            assert!(m["log.toml"].contains("resume = \"restart_table\""));
            let plan = scaffold_on(&s, "p", "ehr", "sqlite:/data/ehr.db?mode=ro", chrono::NaiveDate::MIN).plan;
            assert!(plan.contains("kind = \"sqlite\"\n# The database file") && plan.contains("path = \"/data/ehr.db\""), "{plan}");
        });
    }
}
