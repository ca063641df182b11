//! Progress on stderr: indicatif bars on a terminal, periodic log lines elsewhere.
//! Log lines printed while bars are drawn suspend the bars, so the two never fight.

use std::collections::HashMap;
use std::io::{self, IsTerminal};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ehrlift_core::{Reporter, TableEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

/// The terminal: bars or not.
#[derive(Clone)]
pub struct Ui {
    multi: Option<MultiProgress>,
}

impl Ui {
    pub fn new(bars: bool) -> Self {
        Ui { multi: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8))) }
    }

    pub fn bars(&self) -> bool {
        self.multi.is_some()
    }

    pub fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

/// stderr, suspending bars while a log line is written.
impl io::Write for Ui {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.multi {
            Some(m) => m.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Ui {
    type Writer = Ui;
    fn make_writer(&'a self) -> Ui {
        self.clone()
    }
}

/// Logs go to stderr, plain or JSON; `EHRLIFT_LOG` (tracing's filter syntax) overrides `-v`.
pub fn init_tracing(json: bool, verbose: u8, ui: Ui) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("EHRLIFT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let layer = tracing_subscriber::fmt::layer().with_writer(ui).with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        // Each line lists the spans it happened in: `{"name":"run","run_id":…}` and, inside
        // a table's work, `{"name":"table","table":…}`, for log stacks to group by.
        registry.with(layer.json().flatten_event(true).with_current_span(false).with_span_list(true)).init();
    } else {
        // People read the fields the events carry: ehrlift's own run and table spans would
        // repeat them on every line (other spans, like the AWS SDK's at -vv, still show).
        let ours = |m: &tracing::Metadata<'_>| m.is_span() && m.target().starts_with("ehrlift") && matches!(m.name(), "run" | "table");
        registry.with(layer.with_ansi(stderr_is_terminal()).compact().with_filter(filter_fn(move |m| !ours(m)))).init();
    }
}

/// One bar per table: bytes when the total is known, rows otherwise.
pub struct BarReporter {
    ui: Ui,
    /// Per table: its bar, and whether the bar counts rows (databases) rather than bytes.
    bars: Mutex<HashMap<String, (ProgressBar, bool)>>,
}

impl BarReporter {
    pub fn new(ui: Ui) -> Self {
        BarReporter { ui, bars: Mutex::new(HashMap::new()) }
    }
}

impl Reporter for BarReporter {
    fn event(&self, event: TableEvent) {
        let Some(multi) = &self.ui.multi else { return };
        let mut bars = self.bars.lock().expect("bars lock");
        match event {
            TableEvent::Started { table, total_bytes, done_bytes, done_rows, total_rows } => {
                // Files: a bar over bytes; databases: over the planner's row estimate.
                let by_rows = total_bytes.is_none() && total_rows.is_some_and(|r| r > 0);
                let (total, done) = if by_rows { (total_rows, done_rows) } else { (total_bytes, done_bytes) };
                let bar = match total {
                    Some(total) => {
                        let b = multi.add(ProgressBar::new(total));
                        b.set_style(
                            ProgressStyle::with_template("{prefix:>16.bold} [{bar:28.cyan/blue}] {percent:>3}% {msg} eta {eta}")
                                .expect("template")
                                .progress_chars("=> "),
                        );
                        b.set_position(done);
                        b
                    }
                    None => {
                        let b = multi.add(ProgressBar::new_spinner());
                        b.set_style(ProgressStyle::with_template("{prefix:>16.bold} {spinner} {msg} {elapsed}").expect("template"));
                        b
                    }
                };
                bar.set_prefix(table.clone());
                bar.enable_steady_tick(Duration::from_millis(250));
                bars.insert(table, (bar, by_rows));
            }
            TableEvent::Progress { table, rows, quarantined, bytes } => {
                if let Some((b, by_rows)) = bars.get(&table) {
                    if b.length().is_some() {
                        // An estimate can be low: the bar stops at its end rather than overflow.
                        b.set_position(if *by_rows { rows.min(b.length().unwrap_or(rows)) } else { bytes });
                    }
                    let rate = rows as f64 / b.elapsed().as_secs_f64().max(0.001);
                    b.set_message(format!("{rows} rows ({rate:.0}/s), {quarantined} quarantined"));
                }
            }
            TableEvent::Finished { table, rows_read, rows_written, rows_quarantined, elapsed } => {
                if let Some((b, _)) = bars.remove(&table) {
                    b.finish_and_clear();
                    multi.remove(&b);
                }
                let _ = multi.println(format!(
                    "{table:>16} done: {rows_read} read, {rows_written} written, {rows_quarantined} quarantined in {:.1}s",
                    elapsed.as_secs_f64()
                ));
            }
            TableEvent::Failed { table, message } => {
                if let Some((b, _)) = bars.remove(&table) {
                    b.abandon();
                }
                let _ = multi.println(format!("{table:>16} FAILED: {message}"));
            }
            TableEvent::Skipped { table } => {
                let _ = multi.println(format!("{table:>16} already complete"));
            }
            TableEvent::PartCommitted { .. } => {}
            _ => {}
        }
    }
}

/// Periodic log lines (plain or JSON through tracing) for batch jobs.
pub struct LogReporter {
    every: Duration,
    clocks: Mutex<HashMap<String, Clock>>,
}

/// When a table started, when it last logged, and its total bytes (or estimated rows) if known.
struct Clock {
    start: Instant,
    logged: Instant,
    total: Option<u64>,
    total_rows: Option<u64>,
}

impl LogReporter {
    pub fn new(every: Duration) -> Self {
        LogReporter { every, clocks: Mutex::new(HashMap::new()) }
    }
}

impl Reporter for LogReporter {
    fn event(&self, event: TableEvent) {
        match event {
            TableEvent::Started { table, total_bytes, done_bytes, done_rows, total_rows } => {
                tracing::info!(%table, total_bytes, done_bytes, done_rows, total_rows, "table started");
                let now = Instant::now();
                self.clocks.lock().expect("lock").insert(table, Clock { start: now, logged: now, total: total_bytes, total_rows });
            }
            TableEvent::Progress { table, rows, quarantined, bytes } => {
                let mut clocks = self.clocks.lock().expect("lock");
                if let Some(c) = clocks.get_mut(&table)
                    && c.logged.elapsed() >= self.every
                {
                    c.logged = Instant::now();
                    let rows_per_s = (rows as f64 / c.start.elapsed().as_secs_f64().max(0.001)).round() as u64;
                    let percent = match (c.total, c.total_rows) {
                        (Some(t), _) if t > 0 => Some((bytes * 100 / t).min(100)),
                        (None, Some(r)) if r > 0 => Some((rows * 100 / r).min(100)),
                        _ => None,
                    };
                    tracing::info!(%table, rows, rows_per_s, quarantined, bytes, percent, "progress");
                }
            }
            TableEvent::PartCommitted { table, key, rows } => tracing::debug!(%table, %key, rows, "part committed"),
            TableEvent::Finished { table, rows_read, rows_written, rows_quarantined, elapsed } => {
                tracing::info!(%table, rows_read, rows_written, rows_quarantined, seconds = elapsed.as_secs_f64(), "table finished");
            }
            TableEvent::Failed { table, message } => tracing::error!(%table, "{message}"),
            TableEvent::Skipped { table } => tracing::info!(%table, "table already complete"),
            _ => {}
        }
    }
}
