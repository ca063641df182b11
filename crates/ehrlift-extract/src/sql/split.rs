//! Split points for sharded runs: where to cut a keyset table into key ranges of about
//! equal rows, so separate processes can each read one ([`super::KeyRange`]).
//!
//! PostgreSQL keeps an equal-frequency histogram of every analyzed column
//! (`pg_stats.histogram_bounds`): for a single-column key of a table its bounds are the
//! cuts, read for free. Everything else (MySQL/MariaDB, SQLite, composite keys, queries,
//! tables never analyzed) takes one key-only pass in key order through the reader's own
//! keyset statements and decoders, keeping a bounded sample of keys at a fixed stride.
//!
//! Key values may be PHI: they appear in no message, and `Debug` withholds them.

use arrow_array::{Array, ArrayRef};
use ehrlift_core::ErrorClass;
use ehrlift_mapping::{Engine, Relation};

use super::values::{Builder, KeyValue, Kind};
use super::{Conn, DbError, KeyRange, RowSink, Rows, TableSpec, check_columns, from_item, mysql, pg, select_columns, sqlite};

/// Where to cut a keyset table into `parts` ranges of about equal rows.
#[derive(Clone)]
pub struct Splits {
    /// At most `parts - 1` full keys, strictly increasing in the database's key order:
    /// the ranges are (-inf, p1], (p1, p2], …, (pk, +inf) (see [`Splits::ranges`]).
    pub points: Vec<Vec<KeyValue>>,
    /// The row count the points divide: the statistics' estimate (`reltuples`), or the
    /// rows the sampling pass read.
    pub estimate: Option<u64>,
    /// How the points were found, for logs and reports: `pg_stats histogram`,
    /// `sampled keys`, or `single range` (one part asked for).
    pub method: &'static str,
}

impl Splits {
    /// The ranges the points cut the table into, in key order: one more than the points.
    pub fn ranges(&self) -> Vec<KeyRange> {
        let mut bounds: Vec<Option<Vec<KeyValue>>> = vec![None];
        bounds.extend(self.points.iter().cloned().map(Some));
        bounds.push(None);
        bounds.windows(2).map(|w| KeyRange { after: w[0].clone(), upto: w[1].clone() }).collect()
    }
}

impl std::fmt::Debug for Splits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splits")
            .field("points", &format_args!("<{} key(s) withheld>", self.points.len()))
            .field("estimate", &self.estimate)
            .field("method", &self.method)
            .finish()
    }
}

/// Where to cut a keyset table into `parts` ranges of about equal rows, read in the
/// spec's snapshot when it has one. The whole table is split, whatever the spec's range.
///
/// `parts <= 1` and an empty table give no points. A PostgreSQL histogram is as fresh as
/// the table's last `ANALYZE`: rows added since land in the ranges their keys fall in
/// (new keys above the old maximum in the last one).
pub fn split_points(spec: &TableSpec, parts: usize) -> Result<Splits, DbError> {
    if spec.key.is_empty() {
        return Err(spec.error(ErrorClass::Internal, "split points asked for a table read without a key"));
    }
    if parts <= 1 {
        return Ok(Splits { points: Vec::new(), estimate: None, method: "single range" });
    }
    // Its own thread and runtime, like a table's reader, so any caller can wait on it.
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name(format!("ehrlift-split-{}", spec.table))
            .spawn_scoped(s, || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| spec.error(ErrorClass::Internal, format!("cannot start a runtime: {e}")))?;
                rt.block_on(split(spec, parts))
            })
            .map_err(|e| spec.error(ErrorClass::Internal, format!("cannot start the split thread: {e}")))?;
        worker.join().unwrap_or_else(|_| Err(spec.error(ErrorClass::Internal, "the split thread panicked")))
    })
}

async fn split(spec: &TableSpec, parts: usize) -> Result<Splits, DbError> {
    // Only the key is read, over the whole table.
    let mut keys = spec.clone();
    keys.needed = spec.key.clone();
    keys.range = KeyRange::default();
    let keys = &keys;
    let select = select_columns(keys);
    let mut conn = match keys.db.engine {
        Engine::Postgres => Conn::Pg(pg::connect(keys).await?),
        Engine::Mysql => Conn::My(mysql::connect(keys).await?),
        Engine::Sqlite => Conn::Lite(sqlite::connect(keys).await?),
    };
    let (columns, estimate) = match &mut conn {
        Conn::Pg(c) => pg::open(c, keys, &select).await?,
        Conn::My(c) => mysql::open(c, keys, &select).await?,
        Conn::Lite(c) => sqlite::open(c, keys, &select).await?,
    };
    let kinds = check_columns(keys, &columns)?;
    if let Conn::Pg(c) = &mut conn
        && keys.key.len() == 1
        && matches!(keys.relation, Relation::Table(_))
        && !columns[0].as_text
        && let Some(bounds) = pg_histogram(c, keys, &kinds[0]).await?
        // Fewer buckets than parts would give fewer ranges than asked: sample instead.
        && bounds.len() > parts
    {
        return Ok(Splits { points: pick_bounds(&bounds, parts), estimate, method: "pg_stats histogram" });
    }
    let mut rows = Rows {
        builders: kinds.iter().map(Builder::new).collect(),
        key_at: (0..kinds.len()).collect(),
        needed: kinds.len(),
        names: select.clone(),
        rows: 0,
        bytes: 0,
        bad: Vec::new(),
        zero_dates: keys.db.zero_dates,
    };
    let mut sampler = Sampler::new(keys, parts);
    // Chunk after chunk, like the reader: each statement is an index range scan of
    // `chunk_rows` keys, never one statement over the whole table.
    let mut cursor: Option<Vec<KeyValue>> = None;
    loop {
        let read = match &mut conn {
            Conn::Pg(c) => pg::chunk(c, keys, &select, &columns, cursor.as_deref(), &mut rows, &mut sampler).await?,
            Conn::My(c) => mysql::chunk(c, keys, &select, &kinds, cursor.as_deref(), &mut rows, &mut sampler).await?,
            Conn::Lite(c) => sqlite::chunk(c, keys, &select, &kinds, cursor.as_deref(), &mut rows, &mut sampler).await?,
        };
        sampler.flush(&mut rows)?;
        match read {
            Some(n) if n >= keys.chunk_rows => cursor = sampler.last.clone(),
            _ => break,
        }
    }
    Ok(Splits { points: sampler.points(parts), estimate: Some(sampler.seen), method: "sampled keys" })
}

/// The histogram bounds of the (single) key column from `pg_stats`, in order, as key
/// values of its kind: the array is cast to the column's own array type on the server,
/// so each bound arrives in binary like a row of the table. `None` when there is no
/// histogram (never analyzed, or every value is one of the most common ones).
async fn pg_histogram(c: &mut pg::PgConn, spec: &TableSpec, kind: &Kind) -> Result<Option<Vec<Vec<KeyValue>>>, DbError> {
    let found: Option<(String, String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, format_type(a.atttypid, a.atttypmod) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
         JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname \
         WHERE c.oid = to_regclass($1) AND s.histogram_bounds IS NOT NULL LIMIT 1",
    )
    .bind(from_item(spec))
    .bind(&spec.key[0])
    .fetch_optional(c.conn())
    .await
    .map_err(|e| spec.driver("cannot read the key's statistics", &e))?;
    let Some((schema, table, ty)) = found else { return Ok(None) };
    let lit = |s: &str| pg::literal(&KeyValue::Text(s.to_owned()), &Kind::Text);
    // `ty` is `format_type`'s, which quotes what needs quoting. A table with inheritance
    // children (or partitions) is read with them: prefer the statistics that include them.
    let sql = format!(
        "COPY (SELECT h.b FROM unnest((SELECT s.histogram_bounds::text::{ty}[] FROM pg_stats s \
         WHERE s.schemaname = {} AND s.tablename = {} AND s.attname = {} AND s.histogram_bounds IS NOT NULL \
         ORDER BY s.inherited DESC LIMIT 1)) WITH ORDINALITY AS h(b, i) ORDER BY h.i) TO STDOUT (FORMAT binary)",
        lit(&schema),
        lit(&table),
        lit(&spec.key[0])
    );
    pg::copy_keys(c, spec, &sql, std::slice::from_ref(kind), "cannot read the key's statistics").await.map(Some)
}

/// Round `a / b` for cut positions (`a` and `b` are small enough not to overflow u128).
fn div_round(a: u128, b: u128) -> u128 {
    (2 * a + b) / (2 * b)
}

/// Evenly spaced interior histogram bounds: the bounds cut the sampled rows into
/// `len - 1` buckets of equal population, so the cut after `i/parts` of the rows is the
/// bound nearest bucket `i * buckets / parts`. Neither end bound: the first range would
/// hold only the minimum, the last only rows added after the `ANALYZE`.
fn pick_bounds(bounds: &[Vec<KeyValue>], parts: usize) -> Vec<Vec<KeyValue>> {
    let buckets = bounds.len().saturating_sub(1);
    let mut points: Vec<Vec<KeyValue>> = Vec::new();
    let mut last = 0;
    for i in 1..parts {
        let at = div_round(i as u128 * buckets as u128, parts as u128) as usize;
        if at <= last || at >= buckets || points.last() == Some(&bounds[at]) {
            continue;
        }
        points.push(bounds[at].clone());
        last = at;
    }
    points
}

/// Decoded rows between samples: the builders are emptied this often, or when their
/// keys pass [`SAMPLE_BYTES`].
const SAMPLE_BATCH: usize = 8192;
const SAMPLE_BYTES: usize = 16 << 20;
/// Keys kept per part asked for, at most: a cut lands at most half a stride from where it
/// should, and the stride stays below `2 * rows / (KEEP_PER_PART * parts)`, so a range is
/// off by less than `1 / KEEP_PER_PART` of its ideal size.
const KEEP_PER_PART: usize = 32;

/// Keeps the keys of rows `stride`, `2 * stride`, … of a scan in key order, doubling the
/// stride (and dropping every other key) whenever it holds too many: one pass, memory
/// bounded by the parts asked for, and the exact row count at the end, with no count and
/// no estimate beforehand (MySQL's `TABLE_ROWS` can be off by half).
struct Sampler<'s> {
    spec: &'s TableSpec,
    cap: usize,
    stride: u64,
    /// `kept[j]` is the key of row `(j + 1) * stride`.
    kept: Vec<Vec<KeyValue>>,
    /// Rows sampled so far.
    seen: u64,
    /// Key of the last row sampled: where the next chunk starts.
    last: Option<Vec<KeyValue>>,
}

impl<'s> Sampler<'s> {
    fn new(spec: &'s TableSpec, parts: usize) -> Self {
        Sampler { spec, cap: parts.saturating_mul(KEEP_PER_PART).max(2), stride: 1, kept: Vec::new(), seen: 0, last: None }
    }

    /// Samples the rows collected in `rows` and empties it.
    fn flush(&mut self, rows: &mut Rows) -> Result<(), DbError> {
        let n = rows.rows;
        if n == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = rows.builders.iter_mut().map(|b| b.finish_checked().0).collect();
        for (a, name) in arrays.iter().zip(&self.spec.key) {
            if a.null_count() > 0 {
                let row = self.seen + (0..n).find(|&i| a.is_null(i)).unwrap_or(0) as u64 + 1;
                return Err(self.spec.error(
                    ErrorClass::Configuration,
                    format!("key column `{name}` holds a NULL or a value that cannot be read (row {row} in key order); keyset reading needs a non-null key, or resume = \"restart_table\""),
                ));
            }
        }
        let key = |i: usize| -> Vec<KeyValue> { arrays.iter().map(|a| KeyValue::of(a.as_ref(), i).expect("non-null key")).collect() };
        for i in 0..n {
            if (self.seen + i as u64 + 1).is_multiple_of(self.stride) {
                self.kept.push(key(i));
                if self.kept.len() >= self.cap {
                    // Keep the keys at multiples of twice the stride: every other one.
                    let mut j = 0;
                    self.kept.retain(|_| {
                        j += 1;
                        j % 2 == 0
                    });
                    self.stride *= 2;
                }
            }
        }
        self.last = Some(key(n - 1));
        self.seen += n as u64;
        rows.rows = 0;
        rows.bytes = 0;
        rows.bad.clear();
        Ok(())
    }

    /// The kept keys nearest the ideal cuts: the last rows of `parts` equal ranges.
    fn points(&self, parts: usize) -> Vec<Vec<KeyValue>> {
        let (n, s) = (u128::from(self.seen), u128::from(self.stride));
        let mut points = Vec::new();
        let mut last = 0;
        for i in 1..parts {
            let cut = div_round(i as u128 * n, parts as u128);
            let j = div_round(cut, s);
            // A cut at the last row would leave the last range empty.
            if j <= last || j > self.kept.len() as u128 || j * s >= n {
                continue;
            }
            points.push(self.kept[j as usize - 1].clone());
            last = j;
        }
        points
    }
}

impl RowSink for Sampler<'_> {
    fn after_row(&mut self, rows: &mut Rows) -> Result<bool, DbError> {
        if rows.rows >= SAMPLE_BATCH || rows.bytes >= SAMPLE_BYTES {
            self.flush(rows)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
