use std::time::Duration;

/// What happened to a table, for whoever shows progress.
///
/// Events carry counts and names only, never values.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TableEvent {
    /// Reading starts (or resumes). `total_bytes` is known for plain files.
    Started {
        /// Output table name.
        table: String,
        /// Total source bytes, if known, for a determinate bar.
        total_bytes: Option<u64>,
        /// Bytes already committed by an earlier attempt.
        done_bytes: u64,
        /// Rows already committed by an earlier attempt.
        done_rows: u64,
        /// The database's row estimate, when bytes are unknown (a database table).
        total_rows: Option<u64>,
    },
    /// More rows were read.
    Progress {
        /// Output table name.
        table: String,
        /// Rows read so far (including earlier attempts).
        rows: u64,
        /// Rows quarantined so far.
        quarantined: u64,
        /// Source bytes consumed so far.
        bytes: u64,
    },
    /// A part was committed.
    PartCommitted {
        /// Output table name.
        table: String,
        /// Object key of the part.
        key: String,
        /// Rows in it.
        rows: u64,
    },
    /// The table is done.
    Finished {
        /// Output table name.
        table: String,
        /// Rows read.
        rows_read: u64,
        /// Rows written.
        rows_written: u64,
        /// Rows quarantined.
        rows_quarantined: u64,
        /// Wall time of this attempt.
        elapsed: Duration,
    },
    /// The table stopped early (threshold, error); the message names no value.
    Failed {
        /// Output table name.
        table: String,
        /// What went wrong.
        message: String,
    },
    /// The table was already complete in the saved state.
    Skipped {
        /// Output table name.
        table: String,
    },
}

/// Receives progress; only the CLI draws it (bars on a terminal, log lines elsewhere).
pub trait Reporter: Send + Sync {
    /// Called from pipeline threads; must be cheap.
    fn event(&self, event: TableEvent);
}

/// A reporter that ignores everything (library users and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullReporter;

impl Reporter for NullReporter {
    fn event(&self, _event: TableEvent) {}
}
