//! Split points, and reading the ranges they cut. The live tests run against real servers:
//! PostgreSQL on 127.0.0.1:5432 (postgres, trust) and MariaDB on 127.0.0.1:3306 (root, no
//! password); an unreachable server skips its test with a notice, except with CI=true.

use std::collections::BTreeSet;

use ehrlift_core::Position;
use sqlx::{AssertSqlSafe, Connection, Executor, MySqlConnection, PgConnection, SqliteConnection};

use super::*;
use crate::sql::live::{DropDb, admin, run, unique_name};
use crate::sql::{CursorSeal, PgSnapshot, SqlTableSource, spec_for_tests};

const ROWS: usize = 10_000;
const SENTINEL: &str = "ZZSENTINEL";

fn int_rows(values: impl IntoIterator<Item = i64>) -> Rows {
    let mut rows = Rows {
        builders: vec![Builder::new(&Kind::I64)],
        key_at: vec![0],
        needed: 1,
        names: vec!["id".into()],
        rows: 0,
        bytes: 0,
        bad: Vec::new(),
        zero_dates: Default::default(),
    };
    for v in values {
        match rows.builder(0) {
            Builder::I64(b) => b.append_option((v >= 0).then_some(v)),
            _ => unreachable!(),
        }
        rows.end_row();
    }
    rows
}

fn ints(points: &[Vec<KeyValue>]) -> Vec<i64> {
    points
        .iter()
        .map(|p| match p.as_slice() {
            [KeyValue::Int(i)] => *i,
            _ => panic!("one integer per point"),
        })
        .collect()
}

#[test]
fn sampling_keeps_few_keys_and_cuts_evenly() {
    let spec = spec_for_tests(Engine::Sqlite, "sqlite:///nonexistent.db", "pts", &["id"], &["id"]);
    let n = 100_003u64;
    let mut sampler = Sampler::new(&spec, 4);
    // Rows 1..=n hold keys 10, 20, …: row r's key is 10 * r.
    for chunk in (1..=n as i64).collect::<Vec<_>>().chunks(5000) {
        let mut rows = int_rows(chunk.iter().map(|r| r * 10));
        assert!(sampler.after_row(&mut rows).unwrap());
        sampler.flush(&mut rows).unwrap();
        assert!(sampler.kept.len() < 4 * KEEP_PER_PART, "memory stays bounded");
    }
    assert_eq!((sampler.seen, sampler.last.clone()), (n, Some(vec![KeyValue::Int(n as i64 * 10)])));
    let cuts = ints(&sampler.points(4));
    let slack = (n / 4 / KEEP_PER_PART as u64) as i64;
    for (got, ideal) in cuts.iter().zip([25_001i64, 50_002, 75_002]) {
        assert!((got / 10 - ideal).abs() <= slack, "cut at row {} for {ideal}", got / 10);
    }
    assert_eq!(cuts.len(), 3);
    assert!(cuts.windows(2).all(|w| w[0] < w[1]));

    // Fewer rows than parts: every cut is a real row, none repeats, none is the last row.
    let mut small = Sampler::new(&spec, 4);
    small.flush(&mut int_rows([7, 8, 9])).unwrap();
    assert_eq!(ints(&small.points(4)), [7, 8]);
    assert_eq!(Sampler::new(&spec, 4).points(4), Vec::<Vec<KeyValue>>::new(), "an empty table has no cuts");

    // A NULL key is refused, by row, not by value.
    let e = Sampler::new(&spec, 4).flush(&mut int_rows([1, -1])).unwrap_err();
    assert!(e.message.contains("`id`") && e.message.contains("row 2"), "{e}");
}

#[test]
fn histogram_bounds_are_picked_evenly() {
    let bounds: Vec<Vec<KeyValue>> = (0..=100).map(|i| vec![KeyValue::Int(i)]).collect();
    assert_eq!(ints(&pick_bounds(&bounds, 4)), [25, 50, 75]);
    assert_eq!(ints(&pick_bounds(&bounds, 3)), [33, 67]);
    assert_eq!(ints(&pick_bounds(&bounds, 2)), [50]);
    assert_eq!(pick_bounds(&bounds, 1), Vec::<Vec<KeyValue>>::new());
    // Repeated bounds (a key that is not unique) give each point once.
    let repeated: Vec<Vec<KeyValue>> = [1, 5, 5, 5, 9].iter().map(|&i| vec![KeyValue::Int(i)]).collect();
    assert_eq!(ints(&pick_bounds(&repeated, 4)), [5]);
}

#[test]
fn splits_cut_ranges_and_withhold_keys() {
    let splits = Splits {
        points: vec![vec![KeyValue::Text(SENTINEL.into())], vec![KeyValue::Text(format!("{SENTINEL}2"))]],
        estimate: Some(3),
        method: "sampled keys",
    };
    let ranges = splits.ranges();
    assert_eq!(ranges.len(), 3);
    assert_eq!((&ranges[0].after, &ranges[0].upto), (&None, &Some(splits.points[0].clone())));
    assert_eq!((&ranges[1].after, &ranges[1].upto), (&Some(splits.points[0].clone()), &Some(splits.points[1].clone())));
    assert_eq!((&ranges[2].after, &ranges[2].upto), (&Some(splits.points[1].clone()), &None));
    assert!(!format!("{splits:?} {ranges:?}").contains(SENTINEL), "{splits:?} {ranges:?}");

    // Without a key there is nothing to split; one part needs no connection.
    let unkeyed = spec_for_tests(Engine::Sqlite, "sqlite:///nonexistent/x.db", "log", &[], &["msg"]);
    assert_eq!(split_points(&unkeyed, 4).unwrap_err().class, ErrorClass::Internal);
    let keyed = spec_for_tests(Engine::Sqlite, "sqlite:///nonexistent/x.db", "pts", &["id"], &["id"]);
    let one = split_points(&keyed, 1).unwrap();
    assert!(one.points.is_empty() && one.method == "single range");
}

// ---- against real servers ----

/// A key as text (`site|n` for a composite one), to compare sets of rows.
fn key_text(k: &[KeyValue]) -> String {
    let part = |v: &KeyValue| match v {
        KeyValue::Int(i) => i.to_string(),
        KeyValue::Uint(u) => u.to_string(),
        KeyValue::Text(s) => s.clone(),
        _ => panic!("the test keys are integers and text"),
    };
    k.iter().map(part).collect::<Vec<_>>().join("|")
}

/// Reads one range of the table. With `stop_after`, the reader is dropped after that many
/// batches and a new one resumes after the last batch's end position.
fn read_range(spec: &TableSpec, range: KeyRange, seal: &CursorSeal, mut stop_after: Option<usize>) -> Vec<String> {
    let spec = TableSpec { range, ..spec.clone() };
    let mut src = SqlTableSource::open(spec.clone(), &Position::default(), Some(seal.clone())).unwrap();
    let (mut out, mut batches) = (Vec::new(), 0);
    while let Some(b) = src.next_batch(500).unwrap() {
        let cols: Vec<_> = spec.key.iter().map(|k| b.batch.column_by_name(k).expect("key column read").clone()).collect();
        for i in 0..b.batch.num_rows() {
            out.push(key_text(&cols.iter().map(|c| KeyValue::of(c.as_ref(), i).unwrap()).collect::<Vec<_>>()));
        }
        batches += 1;
        if stop_after == Some(batches) {
            stop_after = None;
            let resume = b.end.clone();
            assert!(resume.cursor.is_some(), "a keyset batch ends at a cursor");
            drop(src);
            src = SqlTableSource::open(spec.clone(), &resume, Some(seal.clone())).unwrap();
            src.set_seq(b.seq + 1);
        }
    }
    out
}

/// Splits the table into 4, reads each range (the second one stopped and resumed), and
/// checks the ranges hold every row once, about a quarter each.
fn check_split(spec: &TableSpec, expected: &BTreeSet<String>, method: &str) {
    let splits = split_points(spec, 4).unwrap();
    let what = format!("{} ({method}, read_connections {})", spec.table, spec.db.read_connections);
    assert_eq!(splits.method, method, "{what}");
    assert_eq!(splits.points.len(), 3, "{what}");
    assert_eq!(splits.estimate, Some(expected.len() as u64), "{what}");
    assert!(!format!("{splits:?}").contains(SENTINEL));
    // Points reach the processes that read the ranges sealed.
    let seal = CursorSeal::new(&[3; 32]);
    let sealed: Vec<String> = splits.points.iter().map(|p| seal.seal(&spec.table, p)).collect();
    let points = sealed.iter().map(|s| seal.open(&spec.table, s).unwrap()).collect();
    let ranges = Splits { points, ..splits }.ranges();
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for (i, range) in ranges.into_iter().enumerate() {
        let keys = read_range(spec, range, &seal, (i == 1).then_some(3));
        let share = keys.len() as f64 / expected.len() as f64;
        assert!((0.10..=0.40).contains(&share), "{what}: range {i} holds {} of {} rows", keys.len(), expected.len());
        total += keys.len();
        seen.extend(keys);
    }
    assert_eq!(total, seen.len(), "{what}: a key was read twice");
    assert!(seen == *expected, "{what}: the ranges read {} distinct keys of {}", seen.len(), expected.len());
}

/// The table's keys as [`key_text`] spells them, from a query that spells them so.
macro_rules! keys_of {
    ($conn:expr, $sql:expr) => {{
        let rows: Vec<(String,)> = sqlx::query_as($sql).fetch_all($conn).await.unwrap();
        let set: BTreeSet<String> = rows.into_iter().map(|(k,)| k).collect();
        assert_eq!(set.len(), ROWS);
        set
    }};
}

#[test]
fn postgres_ranges_cover_the_table_once() {
    let admin_url = "postgres://postgres@127.0.0.1:5432/postgres";
    let db = unique_name("split");
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let Some(_cleanup) = run(async {
        let mut admin = admin::<PgConnection>(admin_url).await?;
        admin.execute(AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
        Some(DropDb(admin_url, format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")))
    }) else {
        return;
    };
    // No autovacuum: the tables stay unanalyzed until the test says so.
    let (pts, codes, visits) = run(async {
        let mut c = PgConnection::connect(&url).await.unwrap();
        c.execute(
            "CREATE TABLE pts (id integer PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
             INSERT INTO pts SELECT g * 3, 'n' || g FROM generate_series(1, 10000) g ORDER BY random();
             CREATE TABLE codes (code varchar(12) PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
             INSERT INTO codes SELECT 'C' || lpad((g * 7919 % 100000)::text, 6, '0'), 'x' FROM generate_series(1, 10000) g;
             CREATE TABLE visits (site text, n integer, note text, PRIMARY KEY (site, n)) WITH (autovacuum_enabled = false);
             INSERT INTO visits SELECT 'ZZSENTINEL-' || (g % 7), g, 'v' FROM generate_series(1, 10000) g;",
        )
        .await
        .unwrap();
        let pts = keys_of!(&mut c, "SELECT id::text FROM pts");
        let codes = keys_of!(&mut c, "SELECT code::text FROM codes");
        let visits = keys_of!(&mut c, "SELECT site || '|' || n FROM visits");
        (pts, codes, visits)
    });
    let pts_spec = spec_for_tests(Engine::Postgres, &url, "pts", &["id"], &["id", "note"]);
    let codes_spec = spec_for_tests(Engine::Postgres, &url, "codes", &["code"], &["code", "note"]);
    let visits_spec = spec_for_tests(Engine::Postgres, &url, "visits", &["site", "n"], &["site", "n", "note"]);
    for analyzed in [false, true] {
        if analyzed {
            run(async { PgConnection::connect(&url).await.unwrap().execute("ANALYZE").await.unwrap() });
        }
        // Over several connections in the run's snapshot (the parallel reader), the split in
        // it too; exported after the ANALYZE, whose statistics an older snapshot cannot see.
        let snapshot = PgSnapshot::export("legacy", &pts_spec.db).unwrap();
        let parallel = |s: &TableSpec| {
            let mut s = TableSpec { snapshot: Some(snapshot.id().to_owned()), ..s.clone() };
            s.db.read_connections = 3;
            s
        };
        let single = if analyzed { "pg_stats histogram" } else { "sampled keys" };
        check_split(&pts_spec, &pts, single);
        check_split(&parallel(&pts_spec), &pts, single);
        check_split(&codes_spec, &codes, single);
        check_split(&visits_spec, &visits, "sampled keys");
        check_split(&parallel(&visits_spec), &visits, "sampled keys");
    }
}

#[test]
fn mariadb_ranges_cover_the_table_once() {
    let admin_url = "mysql://root@127.0.0.1:3306/";
    let db = unique_name("split");
    let url = format!("mysql://root@127.0.0.1:3306/{db}");
    let Some(_cleanup) = run(async {
        let mut admin = admin::<MySqlConnection>(admin_url).await?;
        admin.execute(AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.unwrap();
        Some(DropDb(admin_url, format!("DROP DATABASE IF EXISTS {db}")))
    }) else {
        return;
    };
    let (pts, visits) = run(async {
        let mut c = MySqlConnection::connect(&url).await.unwrap();
        c.execute("CREATE TABLE pts (id INT NOT NULL PRIMARY KEY, note VARCHAR(20)) ENGINE=InnoDB").await.unwrap();
        c.execute("CREATE TABLE visits (site VARCHAR(30) NOT NULL, n INT NOT NULL, note TEXT, PRIMARY KEY (site, n)) ENGINE=InnoDB")
            .await
            .unwrap();
        for start in (1..=ROWS).step_by(1000) {
            let g = start..start + 1000;
            let values = |f: &dyn Fn(usize) -> String| g.clone().map(f).collect::<Vec<_>>().join(", ");
            c.execute(AssertSqlSafe(format!("INSERT INTO pts VALUES {}", values(&|g| format!("({}, 'n{g}')", g * 3))))).await.unwrap();
            c.execute(AssertSqlSafe(format!("INSERT INTO visits VALUES {}", values(&|g| format!("('{SENTINEL}-{}', {g}, 'v')", g % 7)))))
                .await
                .unwrap();
        }
        let pts = keys_of!(&mut c, "SELECT CAST(id AS CHAR) FROM pts");
        let visits = keys_of!(&mut c, "SELECT CONCAT(site, '|', n) FROM visits");
        (pts, visits)
    });
    check_split(&spec_for_tests(Engine::Mysql, &url, "pts", &["id"], &["id", "note"]), &pts, "sampled keys");
    check_split(&spec_for_tests(Engine::Mysql, &url, "visits", &["site", "n"], &["site", "n", "note"]), &visits, "sampled keys");
}

#[test]
fn sqlite_ranges_cover_the_table_once() {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name("split")));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _cleanup = Remove(path.clone());
    let (pts, visits) = run(async {
        let mut c = SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
        c.execute(
            "CREATE TABLE pts (id INTEGER PRIMARY KEY, note TEXT);
             CREATE TABLE visits (site TEXT NOT NULL, n INTEGER NOT NULL, note TEXT, PRIMARY KEY (site, n));
             WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 10000)
               INSERT INTO pts SELECT g * 3, 'n' || g FROM s;
             WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 10000)
               INSERT INTO visits SELECT 'ZZSENTINEL-' || (g % 7), g, 'v' FROM s;",
        )
        .await
        .unwrap();
        let pts = keys_of!(&mut c, "SELECT CAST(id AS TEXT) FROM pts");
        let visits = keys_of!(&mut c, "SELECT site || '|' || n FROM visits");
        c.close().await.unwrap();
        (pts, visits)
    });
    let url = format!("sqlite://{}", path.display());
    check_split(&spec_for_tests(Engine::Sqlite, &url, "pts", &["id"], &["id", "note"]), &pts, "sampled keys");
    check_split(&spec_for_tests(Engine::Sqlite, &url, "visits", &["site", "n"], &["site", "n", "note"]), &visits, "sampled keys");
}
