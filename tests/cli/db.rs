//! Database sources against real servers: PostgreSQL and MariaDB on 127.0.0.1, SQLite
//! files in temp dirs. Each test creates its own database and drops it when done, also
//! when it fails. A server that cannot be reached skips the test with a notice, unless
//! CI=true, where it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection};

use crate::harness::*;

// ---------------------------------------------------------------------------------------
// Servers and test databases
// ---------------------------------------------------------------------------------------

const PG_ADDR: &str = "127.0.0.1:5432";
const MY_ADDR: &str = "127.0.0.1:3306";

/// The database engines ehrlift reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mariadb,
    Sqlite,
}

/// A service a test needs is not there: skip (with a notice) or, under CI, fail.
fn service_missing<T>(what: &str, addr: &str, why: impl std::fmt::Display) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} not reachable at {addr} ({why}); CI=true requires it");
    }
    eprintln!("skipping: {what} not reachable at {addr} ({why})");
    None
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn admin_url(engine: Engine) -> String {
    match engine {
        // The tests' own connections skip TLS: a debug build's handshake costs ~0.1 s.
        Engine::Postgres => format!("postgres://postgres@{PG_ADDR}/postgres?sslmode=disable"),
        _ => format!("mysql://root@{MY_ADDR}/"),
    }
}

/// A legacy database of one test: a PostgreSQL or MariaDB database named after the test
/// and the process, or a SQLite file in a temp dir. Dropped (with its roles) on drop.
pub struct Legacy {
    pub engine: Engine,
    /// Database name, or the SQLite file's path.
    pub name: String,
    rt: tokio::runtime::Runtime,
    _dir: Option<tempfile::TempDir>,
    roles: std::cell::RefCell<Vec<String>>,
}

impl Legacy {
    /// A fresh database `ehrlift_t_<test>_<pid>`; `None` (skip) when the server is not there.
    pub fn server(engine: Engine, test: &str) -> Option<Legacy> {
        let rt = runtime();
        let name = format!("ehrlift_t_{test}_{}", std::process::id());
        let (what, addr) = match engine {
            Engine::Postgres => ("PostgreSQL", PG_ADDR),
            Engine::Mariadb => ("MariaDB", MY_ADDR),
            Engine::Sqlite => return Some(Legacy::sqlite(test)),
        };
        let setup = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                match engine {
                    Engine::Postgres => {
                        let mut c = sqlx::PgConnection::connect(&admin_url(engine)).await?;
                        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut c).await?;
                        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await?;
                    }
                    _ => {
                        let mut c = sqlx::MySqlConnection::connect(&admin_url(engine)).await?;
                        let sql = format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4");
                        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await?;
                    }
                }
                Ok::<_, sqlx::Error>(())
            })
            .await
        });
        match setup {
            Ok(Ok(())) => Some(Legacy { engine, name, rt, _dir: None, roles: Default::default() }),
            Ok(Err(e)) => service_missing(what, addr, e),
            Err(_) => service_missing(what, addr, "timed out"),
        }
    }

    pub fn postgres(test: &str) -> Option<Legacy> {
        Legacy::server(Engine::Postgres, test)
    }

    pub fn mariadb(test: &str) -> Option<Legacy> {
        Legacy::server(Engine::Mariadb, test)
    }

    /// A new SQLite file (created through sqlx, read-write) in its own temp dir.
    pub fn sqlite(test: &str) -> Legacy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{test}.db"));
        let rt = runtime();
        rt.block_on(async {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
            sqlx::SqliteConnection::connect_with(&opts).await.unwrap().close().await.unwrap();
        });
        Legacy { engine: Engine::Sqlite, name: path.display().to_string(), rt, _dir: Some(dir), roles: Default::default() }
    }

    /// Every engine whose server is reachable (SQLite always).
    pub fn all(test: &str) -> Vec<Legacy> {
        [Engine::Postgres, Engine::Mariadb, Engine::Sqlite].into_iter().filter_map(|e| Legacy::server(e, test)).collect()
    }

    /// The URL ehrlift and sqlx connect with.
    pub fn url(&self) -> String {
        match self.engine {
            Engine::Postgres => format!("postgres://postgres@{PG_ADDR}/{}", self.name),
            Engine::Mariadb => format!("mysql://root@{MY_ADDR}/{}", self.name),
            Engine::Sqlite => format!("sqlite://{}", self.name),
        }
    }

    /// `[sources.<name>]` reading this database, with `extra` lines.
    pub fn source(&self, name: &str, extra: &str) -> String {
        match self.engine {
            Engine::Sqlite => format!("[sources.{name}]\nkind = \"sqlite\"\npath = \"{}\"\n{extra}\n", self.name),
            Engine::Postgres => format!("[sources.{name}]\nkind = \"postgres\"\nurl = \"{}\"\n{extra}\n", self.url()),
            Engine::Mariadb => format!("[sources.{name}]\nkind = \"mysql\"\nurl = \"{}\"\n{extra}\n", self.url()),
        }
    }

    /// `pg`, `mariadb` or `sqlite`, for messages.
    pub fn label(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "pg",
            Engine::Mariadb => "mariadb",
            Engine::Sqlite => "sqlite",
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A setup connection (without TLS, see [`admin_url`]).
    pub async fn pg(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&format!("{}?sslmode=disable", self.url())).await.unwrap()
    }

    pub async fn my(&self) -> sqlx::MySqlConnection {
        sqlx::MySqlConnection::connect(&self.url()).await.unwrap()
    }

    pub async fn lite(&self) -> sqlx::SqliteConnection {
        sqlx::SqliteConnection::connect(&self.url()).await.unwrap()
    }

    /// Runs a script of statements (PostgreSQL runs it as one transaction).
    #[track_caller]
    pub fn exec(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        let r = self.rt.block_on(async {
            match self.engine {
                Engine::Postgres => sqlx::raw_sql(sql).execute(&mut self.pg().await).await.map(drop),
                Engine::Mariadb => sqlx::raw_sql(sql).execute(&mut self.my().await).await.map(drop),
                Engine::Sqlite => sqlx::raw_sql(sql).execute(&mut self.lite().await).await.map(drop),
            }
        });
        if let Err(e) = r {
            panic!("setting up {} ({}): {e}", self.name, self.label());
        }
    }

    /// A PostgreSQL login role (no privileges) dropped with the database; returns its name.
    pub fn role(&self, suffix: &str) -> String {
        let role = format!("{}_{suffix}", self.name);
        self.rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&admin_url(Engine::Postgres)).await.unwrap();
            let sql = format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN");
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        });
        self.roles.borrow_mut().push(role.clone());
        role
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        let (name, roles) = (self.name.clone(), self.roles.take());
        let engine = self.engine;
        let r = self.rt.block_on(async {
            match engine {
                Engine::Postgres => {
                    let mut c = sqlx::PgConnection::connect(&admin_url(engine)).await?;
                    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut c).await?;
                    for r in roles {
                        sqlx::raw_sql(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}"))).execute(&mut c).await?;
                    }
                }
                Engine::Mariadb => {
                    let mut c = sqlx::MySqlConnection::connect(&admin_url(engine)).await?;
                    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}"))).execute(&mut c).await?;
                }
                Engine::Sqlite => {}
            }
            Ok::<_, sqlx::Error>(())
        });
        if let Err(e) = r {
            eprintln!("warning: could not drop the test database {name}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plans, runs and outputs
// ---------------------------------------------------------------------------------------

/// Writes `dir/ehrlift.toml` (custom profile, its own keyring beside it) with `[run]`
/// lines and `sources`, and `dir/tables/<name>.toml` per mapping (replacing earlier ones).
pub fn db_plan(dir: &Path, run: &str, sources: &str, tables: &[(&str, String)]) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir.join("tables"));
    std::fs::create_dir_all(dir.join("tables")).unwrap();
    let plan = format!(
        "project = \"t\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"custom\"\n[keys]\nprovider = \"local\"\npath = \"keyring\"\n[run]\n{run}\n{sources}"
    );
    std::fs::write(dir.join("ehrlift.toml"), plan).unwrap();
    for (name, body) in tables {
        std::fs::write(dir.join(format!("tables/{name}.toml")), body).unwrap();
    }
    dir.join("ehrlift.toml")
}

/// A mapping of output `table` from `source`: `head` holds `source_table`/`query`, `key`,
/// `drop`, `chunk_rows`…; each column is `(name, type, extra lines)` with rule `keep`.
pub fn mapping(table: &str, source: &str, head: &str, cols: &[(&str, &str, &str)]) -> String {
    let mut m = format!("table = \"{table}\"\nsource = \"{source}\"\n{head}\n");
    for (name, ty, extra) in cols {
        m.push_str(&format!("\n[[columns]]\nname = \"{name}\"\ntype = \"{ty}\"\nrule = \"keep\"\n{extra}\n"));
    }
    m
}

/// `ehrlift run [args] PLAN --dest file://DEST`.
pub fn run_db(plan: &Path, dest: &Path, args: &[&str]) -> Run {
    run(ehrlift().arg("run").args(args).arg(plan).arg("--dest").arg(url(dest)))
}

/// Every data part of `table` at `dest`, in part order.
pub fn parts(dest: &Path, table: &str) -> Vec<RecordBatch> {
    let Ok(dir) = std::fs::read_dir(dest.join(table)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect();
    files.sort();
    files.iter().flat_map(|f| read_parquet(f)).collect()
}

/// One quarantined row: file, record, column, reason.
pub type Quarantined = (String, u64, Option<String>, String);

/// Every quarantined row of `table` at `dest`, in part order.
pub fn quarantined(dest: &Path, table: &str) -> Vec<Quarantined> {
    let mut out = Vec::new();
    for b in parts(&dest.join("_quarantine"), table) {
        let rows = text_rows(std::slice::from_ref(&b));
        let at = |n: &str| b.schema().index_of(n).unwrap();
        for r in rows {
            out.push((
                r[at("file")].clone().unwrap(),
                r[at("record")].as_ref().unwrap().parse().unwrap(),
                r[at("column")].clone(),
                r[at("reason")].clone().unwrap(),
            ));
        }
    }
    out
}

/// Every row as display text (`None` for null), in order.
pub fn text_rows(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    for b in batches {
        let opts = FormatOptions::default();
        let fmts: Vec<ArrayFormatter> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for i in 0..b.num_rows() {
            rows.push(b.columns().iter().zip(&fmts).map(|(c, f)| c.is_valid(i).then(|| f.value(i).to_string())).collect());
        }
    }
    rows
}

/// Commit records (`NNNNNN.json`) of `table` at `dest`, over every run.
pub fn commit_records(dest: &Path, table: &str) -> Vec<PathBuf> {
    let Ok(runs) = std::fs::read_dir(dest.join("_ehrlift/runs")) else { return Vec::new() };
    let mut out = Vec::new();
    for r in runs.flatten() {
        if let Ok(d) = std::fs::read_dir(r.path().join("commits").join(table)) {
            out.extend(d.flatten().map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| n != "done.json")));
        }
    }
    out
}

/// Starts `ehrlift run` in the background; its stderr goes to [`run_log`] (a pipe
/// nobody reads while waiting could fill up and stall the run).
pub fn spawn_run(plan: &Path, dest: &Path) -> Child {
    let log = std::fs::File::create(dest.with_extension("log")).unwrap();
    ehrlift().arg("run").arg(plan).arg("--dest").arg(url(dest)).stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

/// The stderr of the last [`spawn_run`] into `dest`.
pub fn run_log(dest: &Path) -> String {
    std::fs::read_to_string(dest.with_extension("log")).unwrap()
}

/// Waits until `table` has `n` commit records at `dest`; `false` if the run ended first.
pub fn wait_for_commits(child: &mut Child, dest: &Path, table: &str, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if commit_records(dest, table).len() >= n {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts every cursor in the commit records at `dest` is sealed: a base64 string of
/// nonce, ciphertext and tag, never a number, never holding `sentinel`.
pub fn assert_cursors_sealed(dest: &Path, sentinel: &str) {
    fn walk(v: &Value, found: &mut Vec<Value>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if k == "cursor" {
                        found.push(x.clone());
                    }
                    walk(x, found);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    let mut cursors = Vec::new();
    for (k, bytes) in snapshot(&dest.join("_ehrlift")) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(sentinel), "_ehrlift/{k} holds a key value");
        if k.ends_with(".json") {
            walk(&serde_json::from_slice(&bytes).unwrap(), &mut cursors);
        }
    }
    assert!(!cursors.is_empty(), "the commit records hold cursors");
    for c in cursors {
        let s = c.as_str().unwrap_or_else(|| panic!("a cursor in clear: {c}"));
        assert!(s.len() >= 40 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "not a sealed cursor: {s}");
        assert!(s.parse::<i64>().is_err() && !s.contains(sentinel));
    }
}

/// Output rows of `table` sorted by its first column (the key), which must be unique.
fn rows_by_key(dest: &Path, table: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = text_rows(&parts(dest, table));
    rows.sort();
    let keys: BTreeSet<&Option<String>> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(keys.len(), rows.len(), "{table}: duplicated keys");
    rows
}

// ---------------------------------------------------------------------------------------
// 1. Synthea through PostgreSQL, MariaDB and SQLite equals the CSV route
// ---------------------------------------------------------------------------------------

/// A source column's type in the legacy schema (what the mapping declares it as).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Text,
    Int,
    Float,
    Decimal(u8, u8),
    Date,
    Timestamp,
}

/// One table of the Synthea export with its mapping (every rule `keep`).
struct SyntheaTable {
    /// CSV base name: the legacy table's name.
    name: String,
    mapping: toml::Table,
    headers: Vec<String>,
    types: Vec<(Ty, String)>,
    /// Source names of the key columns.
    key: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

fn synthea_dir() -> PathBuf {
    shared_data().join("synthea-csv")
}

/// The shipped Synthea mappings with every rule `keep`, so every source value is compared
/// and surrogates (random per destination) don't get in the way, with their CSV files.
fn synthea_tables() -> Vec<SyntheaTable> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("mappings/synthea/tables")).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let mut m: toml::Table = toml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let mut from_of = BTreeMap::new();
        let mut typed = BTreeMap::new();
        for c in m["columns"].as_array_mut().unwrap() {
            let c = c.as_table_mut().unwrap();
            c.insert("rule".into(), "keep".into());
            for k in ["namespace", "to", "shift_by", "bounds", "keep_last"] {
                c.remove(k);
            }
            let name = c["name"].as_str().unwrap().to_owned();
            let from = c.get("from").and_then(|v| v.as_str()).unwrap_or(&name).to_owned();
            let ty = c["type"].as_str().unwrap();
            let ty = match ty {
                "int64" => Ty::Int,
                "float64" => Ty::Float,
                "date32" => Ty::Date,
                "timestamptz" => Ty::Timestamp,
                "utf8" => Ty::Text,
                d if d.starts_with("decimal(") => {
                    let (p, s) = d["decimal(".len()..d.len() - 1].split_once(',').unwrap();
                    Ty::Decimal(p.trim().parse().unwrap(), s.trim().parse().unwrap())
                }
                other => panic!("{}: type {other} not handled by the loader", f.display()),
            };
            let format = c.get("format").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            typed.insert(from.clone(), (ty, format));
            from_of.insert(name, from);
        }
        let name = m["files"].as_str().unwrap().trim_end_matches(".csv").to_owned();
        let key =
            m.get("key").map(|k| k.as_array().unwrap().iter().map(|k| from_of[k.as_str().unwrap()].clone()).collect()).unwrap_or_default();
        let mut rdr = csv::Reader::from_path(synthea_dir().join(format!("{name}.csv"))).unwrap();
        let headers: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
        let types = headers.iter().map(|h| typed.get(h).cloned().unwrap_or((Ty::Text, String::new()))).collect();
        let rows = rdr.records().map(Result::unwrap).collect();
        out.push(SyntheaTable { name, mapping: m, headers, types, key, rows });
    }
    out
}

/// A typed value to bind; the `Option` is the SQL NULL (typed, so prepared statements
/// keep one parameter type per column).
enum Val {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Date(Option<chrono::NaiveDate>),
    Ts(Option<chrono::NaiveDateTime>),
}

/// Binds `vals` to query `q`; `ts` turns a UTC wall clock into what the column takes.
macro_rules! bind_vals {
    ($q:expr, $vals:expr, $ts:expr) => {{
        let mut q = $q;
        for v in $vals {
            q = match v {
                Val::Int(x) => q.bind(*x),
                Val::Float(x) => q.bind(*x),
                Val::Text(x) => q.bind(x.clone()),
                Val::Date(x) => q.bind(*x),
                Val::Ts(x) => q.bind(x.map($ts)),
            };
        }
        q
    }};
}

/// Creates the Synthea tables in `db` (in `schema` if given): the key as primary key,
/// numbers, dates and timestamps in native types (text in SQLite, as a legacy SQLite
/// would), empty CSV fields as NULL.
fn load_synthea(db: &Legacy, tables: &[SyntheaTable], schema: Option<&str>) {
    let q = |n: &str| if db.engine == Engine::Mariadb { format!("`{n}`") } else { format!("\"{n}\"") };
    if let Some(s) = schema {
        db.exec(&format!("CREATE SCHEMA {s}"));
    }
    for t in tables {
        let full = schema.map_or(q(&t.name), |s| format!("{s}.{}", q(&t.name)));
        let cols: Vec<String> = t
            .headers
            .iter()
            .zip(&t.types)
            .map(|(h, (ty, _))| {
                let key = t.key.contains(h);
                let sql = match (db.engine, ty) {
                    (Engine::Postgres, Ty::Text) => "text".to_owned(),
                    (Engine::Postgres, Ty::Int) => "bigint".into(),
                    (Engine::Postgres, Ty::Float) => "double precision".into(),
                    // Unbounded: the declared decimal(P,S) decides what fits.
                    (Engine::Postgres, Ty::Decimal(..)) => "numeric".into(),
                    (Engine::Postgres, Ty::Date) => "date".into(),
                    (Engine::Postgres, Ty::Timestamp) => "timestamptz".into(),
                    (Engine::Mariadb, Ty::Text) if key => "varchar(64)".into(),
                    (Engine::Mariadb, Ty::Text) => "text".into(),
                    (Engine::Mariadb, Ty::Int) => "bigint".into(),
                    (Engine::Mariadb, Ty::Float) => "double".into(),
                    (Engine::Mariadb, Ty::Decimal(p, s)) => format!("decimal({p},{s})"),
                    (Engine::Mariadb, Ty::Date) => "date".into(),
                    // DATETIME, not TIMESTAMP: Synthea has instants before 1970.
                    (Engine::Mariadb, Ty::Timestamp) => "datetime".into(),
                    (Engine::Sqlite, Ty::Int) => "INTEGER".into(),
                    (Engine::Sqlite, Ty::Float) => "REAL".into(),
                    (Engine::Sqlite, _) => "TEXT".into(),
                };
                format!("{} {sql}", q(h))
            })
            .collect();
        let pk = if t.key.is_empty() {
            String::new()
        } else {
            format!(", PRIMARY KEY ({})", t.key.iter().map(|k| q(k)).collect::<Vec<_>>().join(", "))
        };
        db.exec(&format!("CREATE TABLE {full} ({}{pk})", cols.join(", ")));

        let per_stmt = (20_000 / t.headers.len()).min(500);
        let names = t.headers.iter().map(|h| q(h)).collect::<Vec<_>>().join(", ");
        db.block_on(async {
            enum C {
                Pg(sqlx::PgConnection),
                My(sqlx::MySqlConnection),
                Lite(sqlx::SqliteConnection),
            }
            let mut c = match db.engine {
                Engine::Postgres => C::Pg(db.pg().await),
                Engine::Mariadb => C::My(db.my().await),
                Engine::Sqlite => C::Lite(db.lite().await),
            };
            for chunk in t.rows.chunks(per_stmt) {
                let mut vals = Vec::new();
                let mut tuples = Vec::new();
                for r in chunk {
                    let mut ph = Vec::new();
                    for (v, (ty, fmt)) in r.iter().zip(&t.types) {
                        let v = (!v.is_empty()).then_some(v);
                        let native = db.engine != Engine::Sqlite;
                        let (val, cast) = match ty {
                            Ty::Int => (Val::Int(v.map(|v| v.parse().unwrap())), "bigint"),
                            Ty::Float => (Val::Float(v.map(|v| v.parse().unwrap())), "float8"),
                            Ty::Decimal(..) => (Val::Text(v.map(str::to_owned)), "numeric"),
                            Ty::Date if native => (Val::Date(v.map(|v| chrono::NaiveDate::parse_from_str(v, fmt).unwrap())), "date"),
                            Ty::Timestamp if native => {
                                (Val::Ts(v.map(|v| chrono::NaiveDateTime::parse_from_str(v, fmt).unwrap())), "timestamptz")
                            }
                            _ => (Val::Text(v.map(str::to_owned)), "text"),
                        };
                        vals.push(val);
                        ph.push(match db.engine {
                            Engine::Postgres => format!("${}::{cast}", vals.len()),
                            _ => "?".into(),
                        });
                    }
                    tuples.push(format!("({})", ph.join(", ")));
                }
                let sql = AssertSqlSafe(format!("INSERT INTO {full} ({names}) VALUES {}", tuples.join(", ")));
                let r = match &mut c {
                    C::Pg(c) => bind_vals!(sqlx::query(sql), &vals, |t: chrono::NaiveDateTime| t.and_utc()).execute(c).await.map(drop),
                    // DATETIME holds the UTC wall clock: bound naive.
                    C::My(c) => bind_vals!(sqlx::query(sql), &vals, |t: chrono::NaiveDateTime| t).execute(c).await.map(drop),
                    C::Lite(c) => bind_vals!(sqlx::query(sql), &vals, |t: chrono::NaiveDateTime| t).execute(c).await.map(drop),
                };
                r.unwrap_or_else(|e| panic!("loading {} into {}: {e}", t.name, db.label()));
            }
        });
    }
}

/// Writes the plan of the Synthea tables over `source` (a `[sources.synthea]` block);
/// with `relation`, database mappings (`source_table` instead of `files`).
fn synthea_plan(dir: &Path, tables: &[SyntheaTable], source: &str, relation: Option<&dyn Fn(&str) -> String>) -> PathBuf {
    let maps: Vec<(&str, String)> = tables
        .iter()
        .map(|t| {
            let mut m = t.mapping.clone();
            if let Some(rel) = relation {
                m.remove("files");
                m.insert("source_table".into(), rel(&t.name).into());
                if !m.contains_key("key") {
                    m.insert("resume".into(), "restart_table".into());
                }
            }
            (t.name.as_str(), toml::to_string(&m).unwrap())
        })
        .collect();
    db_plan(dir, "max_quarantine_ratio = 0.0", source, &maps)
}

/// A table's output: field names and types, and its rows (as text) sorted.
#[derive(Debug, PartialEq)]
struct TableOut {
    fields: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

fn table_out(dest: &Path, table: &str) -> TableOut {
    let batches = parts(dest, table);
    let fields =
        batches.first().map_or_else(Vec::new, |b| b.schema().fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect());
    let mut rows = text_rows(&batches);
    rows.sort();
    TableOut { fields, rows }
}

/// The CSV route: the Synthea mappings (rules `keep`) over the CSV export, run once.
struct Reference {
    _tmp: tempfile::TempDir,
    outcome: Value,
    tables: BTreeMap<String, TableOut>,
}

static CSV_ROUTE: LazyLock<Reference> = LazyLock::new(|| {
    let tmp = tempfile::tempdir().unwrap();
    let tables = synthea_tables();
    let source = format!("[sources.synthea]\nkind = \"csv\"\ndir = \"{}\"\n", synthea_dir().display());
    let plan = synthea_plan(tmp.path(), &tables, &source, None);
    let dest = tmp.path().join("out");
    let outcome = run_db(&plan, &dest, &["--json"]).expect(0).json();
    let outs = tables
        .iter()
        .map(|t| (t.mapping["table"].as_str().unwrap().to_owned(), table_out(&dest, t.mapping["table"].as_str().unwrap())))
        .collect();
    Reference { _tmp: tmp, outcome, tables: outs }
});

/// Loads Synthea into `db`, runs the database route and compares it with the CSV route.
fn synthea_through(db: &Legacy, schema: Option<&str>) {
    let reference = &*CSV_ROUTE;
    let tables = synthea_tables();
    load_synthea(db, &tables, schema);
    let tmp = tempfile::tempdir().unwrap();
    let rel = |n: &str| schema.map_or(n.to_owned(), |s| format!("{s}.{n}"));
    let plan = synthea_plan(tmp.path(), &tables, &db.source("synthea", ""), Some(&rel));
    let dest = tmp.path().join("out");
    let outcome = run_db(&plan, &dest, &["--json"]).expect(0).json();
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);

    let counts = |o: &Value| -> BTreeMap<String, (u64, u64, u64)> {
        o["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let n = |k: &str| t[k].as_u64().unwrap();
                (t["table"].as_str().unwrap().to_owned(), (n("rows_read"), n("rows_written"), n("rows_quarantined")))
            })
            .collect()
    };
    let (got, want) = (counts(&outcome), counts(&reference.outcome));
    assert_eq!(got, want, "{}: per-table row counts (read, written, quarantined)", db.label());
    assert!(want.values().map(|c| c.0).sum::<u64>() > 10_000, "the export was read");
    for t in &tables {
        assert_eq!(got[t.mapping["table"].as_str().unwrap()].0, t.rows.len() as u64);
    }

    for (table, want) in &reference.tables {
        let got = table_out(&dest, table);
        if want.rows.is_empty() {
            assert!(got.rows.is_empty(), "{}: {table} has rows", db.label());
            continue;
        }
        assert_eq!(got.fields, want.fields, "{}: {table}: output schema", db.label());
        assert_eq!(got.rows.len(), want.rows.len(), "{}: {table}: rows", db.label());
        if got.rows != want.rows {
            // Name the columns whose values differ (as sorted multisets).
            let differing: Vec<&String> = want
                .fields
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    let col = |rows: &[Vec<Option<String>>]| {
                        let mut v: Vec<Option<String>> = rows.iter().map(|r| r[*i].clone()).collect();
                        v.sort();
                        v
                    };
                    col(&got.rows) != col(&want.rows)
                })
                .map(|(_, f)| f)
                .collect();
            let first = got.rows.iter().zip(&want.rows).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{}: {table}: values differ from the CSV route in {differing:?}; first differing row {first}:\n db: {:?}\ncsv: {:?}",
                db.label(),
                got.rows[first],
                want.rows[first]
            );
        }
    }
}

/// The shipped Safe Harbor mappings over the CSV export and over `db` (Synthea loaded in
/// `schema`), with one keyring: every column but the surrogates (random per destination)
/// holds the same values; the surrogates still join.
fn synthea_under_safe_harbor(db: &Legacy, schema: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let keyring = tmp.path().join("keyring");
    let tables = synthea_tables();
    let mut surrogates = BTreeSet::new();
    let plan = |dir: &str, source: String, db_route: bool| -> PathBuf {
        let dir = tmp.path().join(dir);
        std::fs::create_dir_all(dir.join("tables")).unwrap();
        let head = format!(
            "project = \"synthea\"\ninclude = [\"tables/*.toml\"]\n[privacy]\nprofile = \"safe_harbor\"\nreference_date = \"2026-01-01\"\n[keys]\nprovider = \"local\"\npath = \"{}\"\n",
            keyring.display()
        );
        std::fs::write(dir.join("ehrlift.toml"), head + &source).unwrap();
        for t in &tables {
            let text = std::fs::read_to_string(repo().join(format!("mappings/synthea/tables/{}.toml", t.name))).unwrap();
            let files = format!("files = \"{}.csv\"", t.name);
            assert!(text.contains(&files));
            let relation =
                format!("source_table = \"{schema}.{}\"{}", t.name, if t.key.is_empty() { "\nresume = \"restart_table\"" } else { "" });
            std::fs::write(dir.join(format!("tables/{}.toml", t.name)), if db_route { text.replace(&files, &relation) } else { text })
                .unwrap();
        }
        dir.join("ehrlift.toml")
    };
    for t in &tables {
        let text = std::fs::read_to_string(repo().join(format!("mappings/synthea/tables/{}.toml", t.name))).unwrap();
        let m: toml::Table = toml::from_str(&text).unwrap();
        for c in m["columns"].as_array().unwrap() {
            if c["rule"].as_str() == Some("surrogate") {
                surrogates.insert(format!("{}.{}", m["table"].as_str().unwrap(), c["name"].as_str().unwrap()));
            }
        }
    }
    let csv_plan = plan("csv", format!("[sources.synthea]\nkind = \"csv\"\ndir = \"{}\"\n", synthea_dir().display()), false);
    // Without TLS this time (the other route negotiated it): a debug build's handshake
    // costs ~0.1 s per connection, two per table.
    let plain = db.source("synthea", "").replace(&db.url(), &format!("{}?sslmode=disable", db.url()));
    let db_plan = plan("db", plain, true);
    let (csv_dest, db_dest) = (tmp.path().join("csv-out"), tmp.path().join("db-out"));
    run_db(&csv_plan, &csv_dest, &[]).expect(0);
    run_db(&db_plan, &db_dest, &[]).expect(0);
    run(ehrlift().arg("verify").arg(url(&db_dest))).expect(0);

    // Column by column, as sorted multisets (rows cannot be paired: their ids are surrogates).
    let columns = |dest: &Path| -> BTreeMap<String, Vec<Option<String>>> {
        let mut out: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for t in &tables {
            let table = t.mapping["table"].as_str().unwrap().to_owned();
            let batches = parts(dest, &table);
            let Some(first) = batches.first() else { continue };
            let names: Vec<String> = first.schema().fields().iter().map(|f| format!("{table}.{}", f.name())).collect();
            for row in text_rows(&batches) {
                for (n, v) in names.iter().zip(row) {
                    out.entry(n.clone()).or_default().push(v);
                }
            }
        }
        out.values_mut().for_each(|v| v.sort());
        out
    };
    let (want, got) = (columns(&csv_dest), columns(&db_dest));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "output columns");
    assert!(surrogates.contains("patients.id") && want.contains_key("patients.id"), "{surrogates:?}");
    let compared: Vec<&String> = want.keys().filter(|k| !surrogates.contains(*k)).collect();
    assert!(compared.len() > 80, "{} columns compared", compared.len());
    let differing: Vec<&&String> = compared.iter().filter(|k| got[**k] != want[**k]).collect();
    assert!(differing.is_empty(), "columns differ from the CSV route under Safe Harbor: {differing:?}");
    let patients: BTreeSet<&Option<String>> = got["patients.id"].iter().collect();
    assert!(
        !got["encounters.patient_id"].is_empty() && got["encounters.patient_id"].iter().all(|p| patients.contains(p)),
        "surrogates join"
    );
}

#[test]
fn synthea_through_postgres_equals_the_csv_route() {
    let Some(db) = Legacy::postgres("synthea") else { return };
    synthea_through(&db, Some("legacy"));
    synthea_under_safe_harbor(&db, "legacy");
}

#[test]
fn synthea_through_mariadb_equals_the_csv_route() {
    let Some(db) = Legacy::mariadb("synthea") else { return };
    synthea_through(&db, None);
}

#[test]
fn synthea_through_sqlite_equals_the_csv_route() {
    synthea_through(&Legacy::sqlite("synthea"), None);
}

// ---------------------------------------------------------------------------------------
// 3. SIGKILL mid-table, run again: the same rows, none lost, none twice; cursors sealed
// ---------------------------------------------------------------------------------------

/// `big`: `rows` rows keyed by a bigint running from negative to positive, with text, a
/// decimal and a date (NULL in every 9973rd row, which its mapping quarantines); `heap`:
/// 60 000 rows without a key; `skeys`: 30 000 rows keyed by sentinel text.
fn big_tables(db: &Legacy, rows: i64) {
    let half = rows * 3 / 2;
    match db.engine {
        Engine::Postgres => db.exec(&format!(
            "CREATE TABLE big (id bigint PRIMARY KEY, note text, amount numeric(12,2), born date);
             INSERT INTO big SELECT g * 3 - {half}, 'note ' || g || repeat('x', (g % 50)::int), (g % 100000) / 100.0,
               CASE WHEN g % 9973 = 0 THEN NULL ELSE date '1940-01-01' + (g % 30000)::int END FROM generate_series(1, {rows}) g;
             CREATE TABLE skeys (k text PRIMARY KEY, v integer);
             INSERT INTO skeys SELECT 'ZZSENTINEL' || lpad(g::text, 6, '0'), g FROM generate_series(1, 30000) g;
             CREATE TABLE heap (id bigint, note text);
             INSERT INTO heap SELECT g, 'heap ' || g FROM generate_series(1, 60000) g;
             ANALYZE;"
        )),
        Engine::Mariadb => db.exec(&format!(
            "CREATE TABLE big (id BIGINT PRIMARY KEY, note TEXT, amount DECIMAL(12,2), born DATE);
             INSERT INTO big SELECT CAST(seq AS SIGNED) * 3 - {half}, CONCAT('note ', seq, REPEAT('x', seq % 50)), (seq % 100000) / 100,
               IF(seq % 9973 = 0, NULL, DATE_ADD('1940-01-01', INTERVAL seq % 30000 DAY)) FROM seq_1_to_{rows};
             CREATE TABLE skeys (k VARCHAR(32) PRIMARY KEY, v INT);
             INSERT INTO skeys SELECT CONCAT('ZZSENTINEL', LPAD(seq, 6, '0')), seq FROM seq_1_to_30000;
             CREATE TABLE heap (id BIGINT, note TEXT);
             INSERT INTO heap SELECT seq, CONCAT('heap ', seq) FROM seq_1_to_60000;"
        )),
        Engine::Sqlite => unimplemented!("the kill tests use servers"),
    }
}

fn big_mappings(chunk_rows: u64) -> Vec<(&'static str, String)> {
    vec![
        (
            "big",
            mapping(
                "big",
                "legacy",
                &format!("source_table = \"big\"\nkey = [\"id\"]\nchunk_rows = {chunk_rows}"),
                &[
                    ("id", "int64", ""),
                    ("note", "utf8", "null = []"),
                    ("amount", "decimal(12,2)", ""),
                    ("born", "date32", "nullable = false"),
                ],
            ),
        ),
        (
            "heap",
            mapping("heap", "legacy", "source_table = \"heap\"\nresume = \"restart_table\"", &[("id", "int64", ""), ("note", "utf8", "")]),
        ),
        (
            "skeys",
            mapping(
                "skeys",
                "legacy",
                "source_table = \"skeys\"\nkey = [\"k\"]\nchunk_rows = 7000",
                &[("k", "utf8", ""), ("v", "int32", "")],
            ),
        ),
    ]
}

/// Asserts `dest` holds exactly the rows of `reference`, each key once, all `rows` of
/// them but the quarantined ones, and the same quarantined rows.
fn assert_same_rows(dest: &Path, reference: &Path, rows: usize) {
    assert_eq!(quarantined(dest, "big"), quarantined(reference, "big"));
    assert_eq!(quarantined(dest, "big").len(), rows / 9973);
    for (table, n) in [("big", rows - rows / 9973), ("heap", 60_000), ("skeys", 30_000)] {
        let (got, want) = (rows_by_key(dest, table), rows_by_key(reference, table));
        assert_eq!((got.len(), want.len()), (n, n), "{table}: rows");
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(first.is_none(), "{table}: row {first:?} differs from the uninterrupted run");
    }
}

fn sigkill_mid_table_then_rerun(db: &Legacy, rows: i64, chunk_rows: u64) {
    big_tables(db, rows);
    let tmp = tempfile::tempdir().unwrap();
    let plan = db_plan(
        tmp.path(),
        "batch_rows = 5000\npart_rows = 20000\nmax_quarantine_ratio = 0.001",
        &db.source("legacy", ""),
        &big_mappings(chunk_rows),
    );
    let reference = tmp.path().join("reference");
    run_db(&plan, &reference, &[]).expect(0);

    let dest = tmp.path().join("killed");
    let mut kills = Vec::new();
    // Twice in the keyset table, then once in the table without a key (it starts over).
    for (table, target) in [("big", 1), ("big", 4), ("heap", 1)] {
        let mut child = spawn_run(&plan, &dest);
        if wait_for_commits(&mut child, &dest, table, target) {
            child.kill().unwrap(); // SIGKILL
            kills.push(table);
        }
        child.wait().unwrap();
    }
    assert!(kills.contains(&"big") && kills.contains(&"heap"), "the runs must have been killed mid-table: {kills:?}");
    let before = commit_records(&dest, "heap").len();
    let r = run_db(&plan, &dest, &["--json"]).expect(0);
    assert!(r.json()["attempts"].as_u64().unwrap() >= 2, "the last run resumed the killed one");
    assert!(commit_records(&dest, "heap").len() > before, "the rerun wrote the rest");
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);
    assert_same_rows(&dest, &reference, rows as usize);
    assert_same_objects(&objects(&dest), &objects(&reference), "resumed objects differ from an uninterrupted run's");
    assert_cursors_sealed(&dest, "ZZSENTINEL");
}

#[test]
fn postgres_sigkill_mid_table_then_rerun_equals_an_uninterrupted_run() {
    let Some(db) = Legacy::postgres("kill") else { return };
    sigkill_mid_table_then_rerun(&db, 300_000, 50_000);
}

#[test]
fn mariadb_sigkill_mid_table_then_rerun_equals_an_uninterrupted_run() {
    let Some(db) = Legacy::mariadb("kill") else { return };
    sigkill_mid_table_then_rerun(&db, 100_000, 30_000);
}

/// Terminates the backends of `db` whose last statement matches `like`; returns how many.
fn terminate(db: &Legacy, like: &str) -> i64 {
    db.block_on(async {
        let mut c = sqlx::PgConnection::connect(&admin_url(Engine::Postgres)).await.unwrap();
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND query LIKE $2) t",
        )
        .bind(&db.name)
        .bind(like)
        .fetch_one(&mut c)
        .await
        .unwrap()
    })
}

#[test]
fn postgres_connections_cut_mid_run_are_transient_and_the_rerun_completes() {
    let Some(db) = Legacy::postgres("cut") else { return };
    let rows = 200_000;
    big_tables(&db, rows);
    let tmp = tempfile::tempdir().unwrap();
    let plan = db_plan(
        tmp.path(),
        "batch_rows = 5000\npart_rows = 10000\nmax_quarantine_ratio = 0.001",
        &db.source("legacy", ""),
        &big_mappings(30_000),
    );
    let reference = tmp.path().join("reference");
    run_db(&plan, &reference, &[]).expect(0);

    // The reading connections (the reader's and its fetchers'), after the first part; then
    // the connection holding the run's snapshot (the next table cannot import it), after
    // some more.
    let dest = tmp.path().join("cut");
    for (more, like, backends) in [(1, "COPY %", 1..=3), (2, "%pg_export_snapshot%", 1..=1)] {
        let at = commit_records(&dest, "big").len() + more;
        let mut child = spawn_run(&plan, &dest);
        assert!(wait_for_commits(&mut child, &dest, "big", at), "the run finished before its connection could be cut");
        let cut = terminate(&db, like);
        assert!(backends.contains(&cut), "{cut} backend(s) ran {like}");
        let status = child.wait().unwrap();
        let stderr = run_log(&dest);
        assert_eq!(status.code(), Some(3), "a lost connection is transient:\n{stderr}");
        assert!(stderr.contains("source `legacy`") && stderr.contains("table `"), "the error names source and table:\n{stderr}");
        assert!(!stderr.contains("ZZSENTINEL"));
    }
    run_db(&plan, &dest, &[]).expect(0);
    run(ehrlift().arg("verify").arg(url(&dest))).expect(0);
    assert_same_rows(&dest, &reference, rows as usize);
}

/// Changes the tables while a run is in `big` (after its first part): the run still
/// writes what was there when it started. PostgreSQL: every table reads the run's exported
/// snapshot; MariaDB: each table reads one consistent snapshot of its own.
fn one_snapshot_while_the_tables_change(db: &Legacy) {
    let rows = 200_000;
    big_tables(db, rows);
    let tmp = tempfile::tempdir().unwrap();
    let plan = db_plan(
        tmp.path(),
        "batch_rows = 5000\npart_rows = 20000\nmax_quarantine_ratio = 0.001",
        &db.source("legacy", ""),
        &big_mappings(30_000),
    );
    let reference = tmp.path().join("reference");
    run_db(&plan, &reference, &[]).expect(0);

    let dest = tmp.path().join("changing");
    let mut child = spawn_run(&plan, &dest);
    assert!(wait_for_commits(&mut child, &dest, "big", 1), "the run finished before the tables could change");
    // Small changes at the end of each table, so they land before the run gets there.
    let last = rows * 3 - rows * 3 / 2;
    db.exec(&format!(
        "DELETE FROM big WHERE id > {}; UPDATE big SET note = 'changed' WHERE id > {};
         INSERT INTO big VALUES (999999999, 'new', 1, '2000-01-01');
         UPDATE heap SET note = 'changed' WHERE id > 59000; UPDATE skeys SET v = -v WHERE v > 29000",
        last - 3000,
        last - 6000
    ));
    assert!(child.try_wait().unwrap().is_none() && commit_records(&dest, "big").len() < 8, "the change came too late to matter");
    assert_eq!(child.wait().unwrap().code(), Some(0), "{}", run_log(&dest));
    let (got, want) = (rows_by_key(&dest, "big"), rows_by_key(&reference, "big"));
    assert!(got.len() == rows as usize - rows as usize / 9973 && got == want, "{}: big changed under the run", db.label());
    if db.engine == Engine::Postgres {
        for t in ["heap", "skeys"] {
            assert!(rows_by_key(&dest, t) == rows_by_key(&reference, t), "{t} was read after the run's snapshot");
        }
    }
}

#[test]
fn postgres_run_reads_one_snapshot_while_the_tables_change() {
    let Some(db) = Legacy::postgres("snapshot") else { return };
    one_snapshot_while_the_tables_change(&db);
}

#[test]
fn mariadb_table_reads_one_snapshot_while_it_changes() {
    let Some(db) = Legacy::mariadb("snapshot") else { return };
    one_snapshot_while_the_tables_change(&db);
}

// ---------------------------------------------------------------------------------------
// 4. Bad input: configuration errors name source, table and column, never a value
// ---------------------------------------------------------------------------------------

/// A table `t` with sentinel values in its text column, in `db`.
fn sentinel_table(db: &Legacy) {
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT); INSERT INTO t VALUES (1, 'ZZSENTINEL-a'), (2, 'ZZSENTINEL-b')");
}

/// Runs a one-table plan (mapping `body`) over `db` and expects exit 2 with nothing
/// written and no value in the output; returns stderr.
#[track_caller]
fn refused(db: &Legacy, source: &str, body: String) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let plan = db_plan(tmp.path(), "", source, &[("patients", body)]);
    let dest = tmp.path().join("out");
    let r = run_db(&plan, &dest, &["--json"]);
    let stderr = r.stderr();
    assert_eq!(r.code(), 2, "{}: configuration error expected:\n{stderr}", db.label());
    assert!(!stderr.contains("ZZSENTINEL") && !r.stdout().contains("ZZSENTINEL"), "{}: a value in the output:\n{stderr}", db.label());
    // Refused before the run touches the destination.
    assert!(!dest.exists(), "{}: the destination was written: {:?}", db.label(), snapshot(&dest).keys().collect::<Vec<_>>());
    stderr
}

#[test]
fn a_query_or_table_the_database_refuses_exits_2_naming_source_and_table() {
    for db in Legacy::all("refused") {
        sentinel_table(&db);
        let cols = [("id", "int64", ""), ("note", "utf8", "")];
        let src = db.source("legacy", "");
        let e = refused(&db, &src, mapping("patients", "legacy", "source_table = \"missing_table\"\nkey = [\"id\"]", &cols));
        assert!(e.contains("source `legacy`") && e.contains("table `missing_table`"), "{}: {e}", db.label());
        let e =
            refused(&db, &src, mapping("patients", "legacy", "query = \"SELECT id, nonexistent AS note FROM t\"\nkey = [\"id\"]", &cols));
        assert!(e.contains("source `legacy`") && e.contains("table `query of patients`"), "{}: {e}", db.label());
    }
}

#[test]
fn postgres_permission_denied_exits_2_naming_source_and_table_without_the_password() {
    let Some(db) = Legacy::postgres("denied") else { return };
    sentinel_table(&db);
    let role = db.role("reader"); // may log in, may not read `t`
    let src = format!("[sources.legacy]\nkind = \"postgres\"\nurl = \"postgres://{role}:NOTTHEPASSWORD@{PG_ADDR}/{}\"\n", db.name);
    let cols = [("id", "int64", ""), ("note", "utf8", "")];
    let e = refused(&db, &src, mapping("patients", "legacy", "source_table = \"t\"\nkey = [\"id\"]", &cols));
    assert!(e.contains("source `legacy`") && e.contains("table `t`") && e.contains("permission denied"), "{e}");
    assert!(!e.contains("NOTTHEPASSWORD") && e.contains(&format!("{role}:***@")), "the URL is redacted: {e}");
}

#[test]
fn an_unclassified_or_missing_column_exits_2_naming_it() {
    for db in Legacy::all("unclassified") {
        db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT, ssn_unmapped TEXT); INSERT INTO t VALUES (1, 'ZZSENTINEL-a', 'ZZSENTINEL-b')");
        let src = db.source("legacy", "");
        let e = refused(
            &db,
            &src,
            mapping("patients", "legacy", "source_table = \"t\"\nkey = [\"id\"]", &[("id", "int64", ""), ("note", "utf8", "")]),
        );
        assert!(e.contains("`ssn_unmapped`") && e.contains("not classified") && e.contains("table `t`"), "{}: {e}", db.label());
        let cols = [("id", "int64", ""), ("note", "utf8", ""), ("ghost", "utf8", "")];
        let e = refused(&db, &src, mapping("patients", "legacy", "source_table = \"t\"\nkey = [\"id\"]\ndrop = [\"ssn_unmapped\"]", &cols));
        assert!(e.contains("`ghost`") && e.contains("not found"), "{}: {e}", db.label());
        // Listing it in `drop` is enough.
        let tmp = tempfile::tempdir().unwrap();
        let body = mapping(
            "patients",
            "legacy",
            "source_table = \"t\"\nkey = [\"id\"]\ndrop = [\"ssn_unmapped\"]",
            &[("id", "int64", ""), ("note", "utf8", "")],
        );
        run_db(&db_plan(tmp.path(), "", &src, &[("patients", body)]), &tmp.path().join("out"), &[]).expect(0);
    }
}

#[test]
fn a_null_in_a_key_column_stops_the_table_naming_the_column() {
    for db in Legacy::all("null_key") {
        db.exec(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT); INSERT INTO t VALUES (1, 'ZZSENTINEL-a'), (2, NULL), (3, 'ZZSENTINEL-c')",
        );
        let tmp = tempfile::tempdir().unwrap();
        let body = mapping("patients", "legacy", "source_table = \"t\"\nkey = [\"k\"]", &[("id", "int64", ""), ("k", "utf8", "")]);
        let plan = db_plan(tmp.path(), "", &db.source("legacy", ""), &[("patients", body)]);
        let r = run_db(&plan, &tmp.path().join("out"), &[]);
        let e = r.stderr();
        assert_eq!(r.code(), 2, "{}: {e}", db.label());
        assert!(e.contains("key column `k`") && e.contains("NULL") && e.contains("table `t`"), "{}: {e}", db.label());
        assert!(!e.contains("ZZSENTINEL"), "{}: {e}", db.label());
    }
}

/// Every cell of the quarantine objects under `dest`, as text.
fn quarantine_cells(dest: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (k, bytes) in snapshot(dest).into_iter().filter(|(k, _)| k.starts_with("_quarantine/")) {
        assert!(!String::from_utf8_lossy(&bytes).contains("ZZSENTINEL"), "{k}");
        for r in text_rows(&read_parquet(&dest.join(&k))) {
            out.extend(r.into_iter().flatten());
        }
    }
    out
}

#[test]
fn sentinel_values_appear_in_no_message_quarantine_or_run_metadata() {
    for db in Legacy::all("sentinel") {
        let l = db.label();
        let numeric = if db.engine == Engine::Sqlite { "TEXT" } else { "NUMERIC(30,6)" };
        db.exec(&format!("CREATE TABLE t (k VARCHAR(40) PRIMARY KEY, note TEXT, num TEXT, amount {numeric}, born TEXT)"));
        let mut rows = Vec::new();
        for i in 0..60 {
            let num = if i % 3 == 0 { format!("'ZZSENTINEL-{i}'") } else { format!("'{i}'") };
            let amount = if i % 5 == 0 { "1.005" } else { "2.5" };
            let born = if i % 7 == 0 { format!("'ZZSENTINEL-{i}'") } else { "'1999-12-31'".into() };
            rows.push(format!("('ZZSENTINEL-KEY-{i:04}', 'ZZSENTINEL note {i}', {num}, {amount}, {born})"));
        }
        db.exec(&format!("INSERT INTO t VALUES {}", rows.join(", ")));
        let tmp = tempfile::tempdir().unwrap();
        let body = mapping(
            "patients",
            "legacy",
            "source_table = \"t\"\nkey = [\"k\"]\nchunk_rows = 7",
            &[("k", "utf8", ""), ("note", "utf8", ""), ("num", "int64", ""), ("amount", "decimal(10,2)", ""), ("born", "date32", "")],
        );
        let src = db.source("legacy", "");
        let dest = tmp.path().join("out");
        let mut outputs = Vec::new();
        // Quarantined under the threshold, then over it; then the status and verify reports.
        let plan = db_plan(tmp.path(), "batch_rows = 10\npart_rows = 20\nmax_quarantine_ratio = 1.0", &src, &[("patients", body.clone())]);
        let ok = run(ehrlift().args(["-vv", "run", "--json"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(0);
        assert!(ok.json()["tables"][0]["rows_quarantined"].as_u64().unwrap() > 20, "{l}: rows were quarantined");
        let keys: Vec<Option<String>> = text_rows(&parts(&dest, "patients")).into_iter().map(|r| r[0].clone()).collect();
        assert!(
            !keys.is_empty() && keys.iter().all(|k| k.as_deref().unwrap().starts_with("ZZSENTINEL-KEY-")),
            "{l}: the sentinels were read"
        );
        let cells = quarantine_cells(&dest);
        assert!(cells.iter().any(|c| c == "invalid_integer") && cells.iter().any(|c| c == "decimal_out_of_range"));
        assert!(cells.iter().any(|c| c == "invalid_date"), "{l}");
        assert!(!cells.iter().any(|c| c.contains("ZZSENTINEL")), "{l}: a value in quarantine");
        outputs.push(ok);
        outputs.push(run(ehrlift().args(["status", "--json"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(0));
        outputs.push(run(ehrlift().args(["verify", "--json"]).arg(url(&dest))).expect(0));
        let plan = db_plan(tmp.path(), "batch_rows = 10\npart_rows = 20\nmax_quarantine_ratio = 0.0", &src, &[("patients", body)]);
        outputs.push(run(ehrlift().args(["-vv", "run", "--fresh"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(1));
        assert!(!quarantine_cells(&dest).iter().any(|c| c.contains("ZZSENTINEL")), "{l}");
        if db.engine == Engine::Postgres {
            // The server quotes the value it cannot cast: the message must lose it.
            let body = mapping(
                "patients",
                "legacy",
                "query = \"SELECT k, CAST(note AS date) AS note FROM t\"\nkey = [\"k\"]",
                &[("k", "utf8", ""), ("note", "date32", "")],
            );
            let plan = db_plan(tmp.path(), "", &src, &[("patients", body)]);
            let r = run(ehrlift().args(["-vv", "run", "--fresh"]).arg(&plan).arg("--dest").arg(url(&dest))).expect(2);
            assert!(r.stderr().contains("invalid input syntax for type date"), "{}", r.stderr());
            outputs.push(r);
        }
        for o in &outputs {
            assert!(
                !o.stderr().contains("ZZSENTINEL") && !o.stdout().contains("ZZSENTINEL"),
                "{l}: a value in\n{}\n{}",
                o.stdout(),
                o.stderr()
            );
        }
        assert_cursors_sealed(&dest, "ZZSENTINEL");
    }
}

// ---------------------------------------------------------------------------------------
// 5. Tables in parallel
// ---------------------------------------------------------------------------------------

#[test]
fn jobs_2_writes_what_jobs_1_writes() {
    let Some(db) = Legacy::postgres("jobs") else { return };
    db.exec(
        "CREATE TABLE a (id bigint PRIMARY KEY, note text);
         INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 30000) g;
         CREATE TABLE b (g integer, h integer, v numeric, PRIMARY KEY (g, h));
         INSERT INTO b SELECT g / 100, g % 100, round(g / 7.0, 6) FROM generate_series(1, 20000) g;
         CREATE TABLE c (v text, d date);
         INSERT INTO c SELECT 'c' || g, date '2000-01-01' + g FROM generate_series(1, 10000) g;",
    );
    let maps = vec![
        (
            "a",
            mapping("a", "legacy", "source_table = \"a\"\nkey = [\"id\"]\nchunk_rows = 3000", &[("id", "int64", ""), ("note", "utf8", "")]),
        ),
        (
            "b",
            mapping(
                "b",
                "legacy",
                "source_table = \"b\"\nkey = [\"g\", \"h\"]\nchunk_rows = 3000",
                &[("g", "int32", ""), ("h", "int32", ""), ("v", "decimal(20,6)", "")],
            ),
        ),
        ("c", mapping("c", "legacy", "source_table = \"c\"\nresume = \"restart_table\"", &[("v", "utf8", ""), ("d", "date32", "")])),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let plan = db_plan(tmp.path(), "batch_rows = 1000\npart_rows = 4000", &db.source("legacy", ""), &maps);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let r1 = run_db(&plan, &one, &["--json", "--jobs", "1"]).expect(0).json();
    let r2 = run_db(&plan, &two, &["--json", "--jobs", "2"]).expect(0).json();
    let summary = |r: &Value| -> Vec<(String, u64, u64)> {
        r["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["table"].as_str().unwrap().to_owned(), t["rows_written"].as_u64().unwrap(), t["parts"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(summary(&r1), [("a".to_owned(), 30_000, 8), ("b".into(), 20_000, 5), ("c".into(), 10_000, 3)]);
    assert_eq!(summary(&r2), summary(&r1));
    for t in ["a", "b", "c"] {
        let (mut x, mut y) = (text_rows(&parts(&one, t)), text_rows(&parts(&two, t)));
        x.sort();
        y.sort();
        assert!(x == y, "{t}: --jobs 2 wrote other rows than --jobs 1");
    }
    assert_same_objects(&objects(&two), &objects(&one), "objects differ");
    run(ehrlift().arg("verify").arg(url(&two))).expect(0);
}

/// One PostgreSQL table read over 1, 2 or 3 connections (`read_connections`): the same
/// objects byte for byte, for an integer, a composite and a text key, with chunks that
/// do not divide the table evenly. (The kill tests resume over the default 2.)
#[test]
fn read_connections_change_nothing_in_the_output() {
    let Some(db) = Legacy::postgres("conns") else { return };
    db.exec(
        "CREATE TABLE a (id bigint PRIMARY KEY, note text);
         INSERT INTO a SELECT g * 7 - 50000, 'a' || g || repeat('y', (g % 40)::int) FROM generate_series(1, 25001) g;
         CREATE TABLE b (g integer, h integer, v numeric, PRIMARY KEY (g, h));
         INSERT INTO b SELECT g / 100, g % 100, round(g / 7.0, 6) FROM generate_series(1, 20000) g;
         CREATE TABLE s (k text PRIMARY KEY, v integer);
         INSERT INTO s SELECT 'ZZSENTINEL' || lpad(g::text, 6, '0'), g FROM generate_series(1, 9999) g;
         ANALYZE;",
    );
    let maps = vec![
        (
            "a",
            mapping("a", "legacy", "source_table = \"a\"\nkey = [\"id\"]\nchunk_rows = 3001", &[("id", "int64", ""), ("note", "utf8", "")]),
        ),
        (
            "b",
            mapping(
                "b",
                "legacy",
                "source_table = \"b\"\nkey = [\"g\", \"h\"]\nchunk_rows = 2999",
                &[("g", "int32", ""), ("h", "int32", ""), ("v", "decimal(20,6)", "")],
            ),
        ),
        ("s", mapping("s", "legacy", "source_table = \"s\"\nkey = [\"k\"]\nchunk_rows = 1000", &[("k", "utf8", ""), ("v", "int32", "")])),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for n in [1, 2, 3] {
        let dir = tmp.path().join(format!("plan{n}"));
        let plan = db_plan(&dir, "batch_rows = 1000\npart_rows = 4000", &db.source("legacy", &format!("read_connections = {n}")), &maps);
        let dest = tmp.path().join(format!("out{n}"));
        let r = run_db(&plan, &dest, &["--json"]).expect(0).json();
        let written: Vec<u64> = r["tables"].as_array().unwrap().iter().map(|t| t["rows_written"].as_u64().unwrap()).collect();
        assert_eq!(written, [25_001, 20_000, 9_999], "read_connections = {n}");
        run(ehrlift().arg("verify").arg(url(&dest))).expect(0);
        assert_cursors_sealed(&dest, "ZZSENTINEL");
        outs.push(objects(&dest));
    }
    for (n, o) in [(2, &outs[1]), (3, &outs[2])] {
        assert_same_objects(o, &outs[0], &format!("read_connections = {n} wrote other objects than 1"));
    }
}

/// A role that may hold only a few connections: fetchers the server refuses (too many
/// connections) are left out, down to none (the reader's connection reads alone), with a
/// warning, and the output is what a run without the limit writes.
#[test]
fn fetchers_the_server_refuses_are_left_out_and_the_output_is_the_same() {
    let Some(db) = Legacy::postgres("connlimit") else { return };
    db.exec(
        "CREATE TABLE a (id bigint PRIMARY KEY, note text);
         INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 20000) g;
         ANALYZE;",
    );
    let role = db.role("few");
    db.exec(&format!("GRANT SELECT ON a TO {role}"));
    let maps = vec![(
        "a",
        mapping("a", "legacy", "source_table = \"a\"\nkey = [\"id\"]\nchunk_rows = 3000", &[("id", "int64", ""), ("note", "utf8", "")]),
    )];
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let plan = db_plan(&tmp.path().join("p0"), "batch_rows = 1000\npart_rows = 4000", &db.source("legacy", "read_connections = 1"), &maps);
    run_db(&plan, &reference, &[]).expect(0);
    // The run holds the snapshot's and the reader's connections; 3 leaves room for one
    // fetcher of the four asked for, 2 for none.
    for limit in [3, 2] {
        db.exec(&format!("ALTER ROLE {role} CONNECTION LIMIT {limit}"));
        let src =
            format!("[sources.legacy]\nkind = \"postgres\"\nurl = \"postgres://{role}@{PG_ADDR}/{}\"\nread_connections = 4\n", db.name);
        let plan = db_plan(&tmp.path().join(format!("p{limit}")), "batch_rows = 1000\npart_rows = 4000", &src, &maps);
        let dest = tmp.path().join(format!("limit{limit}"));
        let r = run_db(&plan, &dest, &[]);
        let stderr = r.stderr();
        assert_eq!(r.code(), 0, "limit {limit}:\n{stderr}");
        assert!(stderr.contains("reading over fewer") && stderr.contains("read_connections=4"), "limit {limit}: no warning:\n{stderr}");
        assert_same_objects(&objects(&dest), &objects(&reference), &format!("limit {limit}: objects differ"));
    }
}
