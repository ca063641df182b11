use ehrlift_core::ErrorClass;
use ehrlift_extract::SourceError;
use ehrlift_load::StoreError;

/// Why a run stopped. Messages name tables, files, keys and columns, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The plan, the destination or the saved state does not allow the run.
    #[error("{0}")]
    Config(String),
    /// A source failed.
    #[error("table `{table}`: {source}")]
    Source {
        /// Output table.
        table: String,
        /// Cause.
        #[source]
        source: SourceError,
    },
    /// A database source failed (the message names source and table).
    #[error(transparent)]
    Database(#[from] ehrlift_extract::sql::DbError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Saved run metadata is unreadable or inconsistent.
    #[error("run metadata `{key}` is corrupt: {message}")]
    Corrupt {
        /// Object key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The project key could not be had.
    #[error(transparent)]
    Key(#[from] ehrlift_core::KeyError),
    /// Other shards of a sharded run have yet to finish: finalizing later can succeed.
    #[error("{0}")]
    Pending(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// The class of the error, for exit statuses.
    pub fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Config(_) => ErrorClass::Configuration,
            PipelineError::Pending(_) => ErrorClass::Transient,
            PipelineError::Key(e) => e.class(),
            PipelineError::Source { source, .. } => source.class(),
            PipelineError::Database(e) => e.class,
            PipelineError::Store(e) => e.class(),
            PipelineError::Corrupt { .. } | PipelineError::Internal(_) => ErrorClass::Internal,
        }
    }
}
