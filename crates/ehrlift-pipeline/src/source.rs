//! One open source of any kind, as `run` and `validate --sample/--full` read it.

use ehrlift_core::{Position, SourceBatch};
use ehrlift_extract::sql::SqlTableSource;
use ehrlift_extract::{CsvTableSource, FixedTableSource, Hl7TableSource, SourceFile};
use ehrlift_mapping::{Mapping, SourceKind};

use crate::PipelineError;

/// An open table source.
pub(crate) enum Source {
    Csv(Box<CsvTableSource>),
    Hl7(Box<Hl7TableSource>),
    Fixed(Box<FixedTableSource>),
    Sql(SqlTableSource),
}

impl Source {
    /// Opens a file source's table (CSV, HL7 or fixed-width, by the source's kind) at `resume`.
    pub(crate) fn files(kind: &SourceKind, m: &Mapping, files: Vec<SourceFile>, resume: Position) -> Self {
        match kind {
            SourceKind::Hl7 { .. } => Source::Hl7(Box::new(Hl7TableSource::open(m, files, resume))),
            SourceKind::FixedWidth { .. } => Source::Fixed(Box::new(FixedTableSource::open(m, files, resume))),
            _ => Source::Csv(Box::new(CsvTableSource::open(m, files, resume))),
        }
    }

    pub(crate) fn set_seq(&mut self, seq: u64) {
        match self {
            Source::Csv(s) => s.set_seq(seq),
            Source::Hl7(s) => s.set_seq(seq),
            Source::Fixed(s) => s.set_seq(seq),
            Source::Sql(s) => s.set_seq(seq),
        }
    }

    /// The database's row estimate (files: none).
    pub(crate) fn total_rows(&self) -> Option<u64> {
        match self {
            Source::Csv(_) | Source::Hl7(_) | Source::Fixed(_) => None,
            Source::Sql(s) => s.estimate(),
        }
    }

    /// Total bytes when every file is uncompressed.
    pub(crate) fn total_bytes(&self) -> Option<u64> {
        match self {
            Source::Csv(s) => s.total_bytes(),
            Source::Hl7(s) => s.total_bytes(),
            Source::Fixed(s) => s.total_bytes(),
            Source::Sql(_) => None,
        }
    }

    pub(crate) fn bytes_done(&self, pos: &Position) -> u64 {
        match self {
            Source::Csv(s) => s.bytes_done(pos),
            Source::Hl7(s) => s.bytes_done(pos),
            Source::Fixed(s) => s.bytes_done(pos),
            Source::Sql(_) => 0,
        }
    }

    /// HL7 messages or fixed-width records of other types passed over so far.
    pub(crate) fn skipped(&self) -> u64 {
        match self {
            Source::Hl7(s) => s.skipped(),
            Source::Fixed(s) => s.skipped(),
            _ => 0,
        }
    }

    pub(crate) fn next_batch(&mut self, table: &str, limit: usize) -> Result<Option<SourceBatch>, PipelineError> {
        let source_err = |e| PipelineError::Source { table: table.to_owned(), source: e };
        match self {
            Source::Csv(s) => s.next_batch(limit).map_err(source_err),
            Source::Hl7(s) => s.next_batch(limit).map_err(source_err),
            Source::Fixed(s) => s.next_batch(limit).map_err(source_err),
            Source::Sql(s) => Ok(s.next_batch(limit)?),
        }
    }
}
