//! ehrlift sources: each turns a mapped table into a stream of raw Arrow batches
//! ([`ehrlift_core::SourceBatch`]) that know where to resume after themselves.
//!
//! Only the source columns a mapping reads are materialized, always as utf8;
//! typing is the mapping kernels' job, so every source shares one conversion path.

mod csv_source;
mod error;
mod files;
mod fixed_source;
mod hl7_source;
pub mod sql;

pub use csv_source::{CsvTableSource, SourceFile, list_files};
pub use error::SourceError;
pub use fixed_source::FixedTableSource;
pub use hl7_source::{Hl7TableSource, MAX_MESSAGE_BYTES};
