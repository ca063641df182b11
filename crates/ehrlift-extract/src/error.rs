use std::path::PathBuf;

use ehrlift_core::ErrorClass;

/// A source failure that stops its table. Names files and columns, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The mapping does not match the files (missing, unclassified or duplicate columns).
    #[error("{file}: {message}")]
    Schema {
        /// The file whose header disagrees.
        file: PathBuf,
        /// What disagrees.
        message: String,
    },
    /// No file matches the table's globs.
    #[error("table `{table}`: no file matches {patterns} under {dir}")]
    NoFiles {
        /// Output table.
        table: String,
        /// The globs, joined.
        patterns: String,
        /// The directory they are relative to.
        dir: PathBuf,
    },
    /// A glob is malformed.
    #[error("bad file glob `{pattern}`: {message}")]
    Glob {
        /// The glob.
        pattern: String,
        /// Why.
        message: String,
    },
    /// Reading failed (I/O or a corrupt compressed stream).
    #[error("{file}: read failed near byte {byte}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// Approximate (decompressed) byte offset.
        byte: u64,
        /// The I/O error (carries no cell value).
        #[source]
        source: std::io::Error,
    },
}

impl SourceError {
    /// The class of the error, for exit statuses.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Schema { .. } | SourceError::NoFiles { .. } | SourceError::Glob { .. } => ErrorClass::Configuration,
            SourceError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => ErrorClass::Data,
            SourceError::Io { .. } => ErrorClass::Transient,
        }
    }
}
