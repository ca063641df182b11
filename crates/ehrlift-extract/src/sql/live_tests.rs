//! What the live database tests share: PostgreSQL on 127.0.0.1:5432 (postgres, trust) and
//! MariaDB on 127.0.0.1:3306 (root, no password); an unreachable server skips its test with
//! a notice, except with CI=true.

use sqlx::{AssertSqlSafe, Connection, Executor, MySqlConnection, PgConnection};

pub(crate) fn run<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// A database or file name no other test (or test process) uses: `ehrlift_<what>_…`.
pub(crate) fn unique_name(what: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("ehrlift_{what}_{}_{nanos}_{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Connects to a server's admin database, or says why the test is skipped.
pub(crate) async fn admin<C: Connection>(url: &str) -> Option<C> {
    match C::connect(url).await {
        Ok(c) => Some(c),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!("{url} is required under CI: {e}"),
        Err(e) => {
            eprintln!("notice: skipping, {url} is unreachable: {e}");
            None
        }
    }
}

/// Drops the test database when the test ends, passing or not. Runs on its own thread
/// because a runtime cannot be started inside the test's.
pub(crate) struct DropDb(pub &'static str, pub String);

impl Drop for DropDb {
    fn drop(&mut self) {
        let (admin, sql) = (self.0, self.1.clone());
        let _ = std::thread::spawn(move || {
            run(async move {
                if admin.starts_with("postgres") {
                    PgConnection::connect(admin).await?.execute(AssertSqlSafe(sql)).await.map(drop)
                } else {
                    MySqlConnection::connect(admin).await?.execute(AssertSqlSafe(sql)).await.map(drop)
                }
            })
        })
        .join();
    }
}
