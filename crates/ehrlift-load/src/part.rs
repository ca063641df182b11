//! Parquet parts: one object per part, zstd, dictionary where it pays, hashed as written.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use sha2::{Digest, Sha256};

use crate::store::{ObjectStore, ObjectWriter, StoreError};

/// Knobs of Parquet parts.
#[derive(Debug, Clone, Copy)]
pub struct PartSettings {
    /// Rows per row group.
    pub row_group_rows: usize,
    /// zstd level.
    pub zstd_level: i32,
}

/// A finished part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPart {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Rows in it.
    pub rows: u64,
}

/// Counts and hashes the bytes on their way to the object.
struct Hashing {
    inner: Box<dyn ObjectWriter>,
    hasher: Sha256,
    bytes: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams record batches into one Parquet object.
pub struct PartWriter {
    key: String,
    writer: ArrowWriter<Hashing>,
    rows: u64,
}

fn parquet_err(key: &str, e: parquet::errors::ParquetError) -> StoreError {
    let source = match e {
        parquet::errors::ParquetError::External(e) => match e.downcast::<io::Error>() {
            Ok(io) => *io,
            Err(e) => io::Error::other(e.to_string()),
        },
        other => io::Error::other(other.to_string()),
    };
    StoreError::Io { op: "write parquet", key: key.to_owned(), source }
}

impl PartWriter {
    /// Starts a part at `key` with `schema`.
    pub fn create(store: &dyn ObjectStore, key: &str, schema: Arc<Schema>, settings: PartSettings) -> Result<Self, StoreError> {
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(settings.zstd_level).expect("validated zstd level")))
            .set_max_row_group_row_count(Some(settings.row_group_rows))
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("ehrlift {}", env!("CARGO_PKG_VERSION")))
            .build();
        let inner = store.writer(key)?;
        let sink = Hashing { inner, hasher: Sha256::new(), bytes: 0 };
        let writer = ArrowWriter::try_new(sink, schema, Some(props)).map_err(|e| parquet_err(key, e))?;
        Ok(PartWriter { key: key.to_owned(), writer, rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(|e| parquet_err(&self.key, e))
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the footer and commits the object.
    pub fn finish(self) -> Result<WrittenPart, StoreError> {
        let PartWriter { key, writer, rows } = self;
        let sink = writer.into_inner().map_err(|e| parquet_err(&key, e))?;
        let Hashing { inner, hasher, bytes } = sink;
        inner.commit()?;
        Ok(WrittenPart { key, bytes, sha256: hex::encode(hasher.finalize()), rows })
    }

    /// Discards the part.
    pub fn abort(self) {
        if let Ok(sink) = self.writer.into_inner() {
            sink.inner.abort();
        }
    }
}
