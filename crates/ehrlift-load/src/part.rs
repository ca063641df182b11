//! Parquet parts: one object per part, zstd, dictionary where it pays, hashed as written.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use std::sync::mpsc;

use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, SchemaDescriptor};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{ObjectStore, ObjectWriter, StoreError};

/// Knobs of Parquet parts.
#[derive(Debug, Clone, Copy)]
pub struct PartSettings<'a> {
    /// Rows per row group.
    pub row_group_rows: usize,
    /// zstd level.
    pub zstd_level: i32,
    /// Threads encoding column chunks in parallel.
    pub workers: usize,
    /// Columns written without a dictionary.
    pub no_dictionary: &'a [String],
    /// Parquet modular encryption of the part, or `None` for a plaintext part (the
    /// quarantine writes plaintext parts).
    pub encryption: Option<&'a PartEncryption>,
}

/// An AES-256 key and the opaque metadata stored beside it in the file, from which a
/// reader recovers the key (a key id, or the key wrapped by a KMS).
#[derive(Clone)]
pub struct ColumnKey {
    /// The key bytes; zeroized when dropped.
    pub key: Zeroizing<[u8; 32]>,
    /// Stored in the file in the clear: it must not reveal the key.
    pub metadata: Vec<u8>,
}

impl std::fmt::Debug for ColumnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnKey").field("key", &"<redacted>").field("metadata_len", &self.metadata.len()).finish()
    }
}

/// Keys of an encrypted part (AES_GCM_V1, encrypted footer).
///
/// Every leaf column is encrypted: a column listed in `columns` with its own key, every
/// other column with the footer key. Bloom filters are never written, since parquet
/// leaves them unencrypted.
#[derive(Debug, Clone)]
pub struct PartEncryption {
    /// Encrypts the footer and every column without a key of its own.
    pub footer: ColumnKey,
    /// Column name to its own key. A top-level name keys all of its leaves; a dotted
    /// leaf path (`a.b`) keys that leaf.
    pub columns: Vec<(String, ColumnKey)>,
}

/// Builds parquet's encryption properties with an explicit key for every leaf: parquet
/// writes a leaf that has no key in plaintext once any column has a key of its own.
fn encryption_properties(enc: &PartEncryption, schema: &SchemaDescriptor) -> Result<Arc<FileEncryptionProperties>, String> {
    let leaves: Vec<_> = schema.columns().iter().map(|c| (c.path().string(), c.path().parts()[0].clone())).collect();
    let unknown: Vec<&str> = enc
        .columns
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !leaves.iter().any(|(path, root)| path == name || root == name))
        .collect();
    if !unknown.is_empty() {
        return Err(format!("encryption keys given for columns not in the schema: {}", unknown.join(", ")));
    }
    let mut builder = FileEncryptionProperties::builder(enc.footer.key.to_vec()).with_footer_key_metadata(enc.footer.metadata.clone());
    for (path, root) in &leaves {
        // A leaf's own path wins over its root's name.
        let key = enc
            .columns
            .iter()
            .find(|(name, _)| name == path)
            .or_else(|| enc.columns.iter().find(|(name, _)| name == root))
            .map_or(&enc.footer, |(_, key)| key);
        builder = builder.with_column_key_and_metadata(path, key.key.to_vec(), key.metadata.clone());
    }
    builder.build().map_err(|e| e.to_string())
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

/// Streams record batches into one Parquet object, encoding columns in parallel.
///
/// Each row group's column chunks are encoded by `workers` threads that each own a
/// share of the columns (parquet's `ArrowColumnWriter`), fed batch by batch, so the
/// encoded pages of only the open row group sit in memory. With [`PartEncryption`] the
/// column writers encrypt their pages as they encode them (the factory carries parquet's
/// file encryptor), so the parallel path writes the same sealed chunks as `ArrowWriter`.
pub struct PartWriter {
    key: String,
    file: SerializedFileWriter<Hashing>,
    factory: ArrowRowGroupWriterFactory,
    schema: Arc<Schema>,
    workers: Vec<Worker>,
    row_group_rows: usize,
    rows_in_group: usize,
    groups: usize,
    rows: u64,
}

/// One encoding thread and its channel.
struct Worker {
    jobs: mpsc::SyncSender<Job>,
    handle: std::thread::JoinHandle<()>,
}

enum Job {
    /// Encode these leaves (column index, leaf).
    Write(Vec<(usize, ArrowLeafColumn)>),
    /// Close the row group's writers, reply with their chunks, continue with `next`.
    Close { next: Vec<(usize, ArrowColumnWriter)>, reply: mpsc::Sender<Result<Vec<(usize, ArrowColumnChunk)>, ParquetError>> },
}

/// Deals leaf columns (or their writers) to `n` workers: leaf `i` always goes to worker
/// `i % n`, so every leaf reaches the worker that owns its writer.
fn deal<T>(items: impl IntoIterator<Item = T>, n: usize) -> Vec<Vec<(usize, T)>> {
    let mut shares: Vec<Vec<(usize, T)>> = (0..n).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % n].push((i, item));
    }
    shares
}

fn spawn_worker(mut writers: Vec<(usize, ArrowColumnWriter)>) -> Worker {
    let (jobs, rx) = mpsc::sync_channel::<Job>(1);
    let handle = std::thread::Builder::new().name("ehrlift-encode".into()).spawn(move || {
        let mut failed: Option<ParquetError> = None;
        for job in rx {
            match job {
                Job::Write(leaves) => {
                    if failed.is_none() {
                        for (i, leaf) in leaves {
                            let w = writers.iter_mut().find(|(j, _)| *j == i).map(|(_, w)| w).expect("leaf routed to its writer");
                            if let Err(e) = w.write(&leaf) {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                }
                Job::Close { next, reply } => {
                    let done = std::mem::replace(&mut writers, next);
                    let result = match failed.take() {
                        Some(e) => Err(e),
                        None => done.into_iter().map(|(i, w)| w.close().map(|c| (i, c))).collect(),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    });
    Worker { jobs, handle: handle.expect("spawn a Parquet encoding thread") }
}

/// Hands memory freed by a closed row group back to the OS. glibc keeps freed chunks
/// of the reader's and encoders' per-thread arenas otherwise, and peak RSS crept up with
/// the number of row groups (tests/bench/README.md has the figures).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns free pages to the OS; it is thread-safe and
        // touches no memory the program still uses.
        unsafe {
            malloc_trim(0);
        }
    }
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
    /// Starts a part at `key` with `schema`, encoding with up to `workers` threads.
    pub fn create(store: &dyn ObjectStore, key: &str, schema: Arc<Schema>, settings: PartSettings<'_>) -> Result<Self, StoreError> {
        let mut props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(settings.zstd_level).expect("validated zstd level")))
            .set_max_row_group_row_count(Some(settings.row_group_rows))
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(format!("ehrlift {}", env!("CARGO_PKG_VERSION")));
        for c in settings.no_dictionary {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), false);
        }
        let err = |e| parquet_err(key, e);
        let descr = match settings.encryption {
            Some(enc) => {
                let descr = ArrowSchemaConverter::new().convert(&schema).map_err(err)?;
                let file_props = encryption_properties(enc, &descr).map_err(|m| StoreError::Refused(format!("part `{key}`: {m}")))?;
                props = props.with_file_encryption_properties(file_props).set_bloom_filter_enabled(false);
                Some(descr)
            }
            None => None,
        };
        let props = props.build();
        // parquet writes bloom filters unencrypted: none may be on in an encrypted part.
        if let Some(c) = descr.iter().flat_map(|d| d.columns()).find(|c| props.bloom_filter_properties(c.path()).is_some()) {
            return Err(StoreError::Refused(format!("part `{key}`: a bloom filter is on for encrypted column {}", c.path())));
        }
        let inner = store.writer(key)?;
        let sink = Hashing { inner, hasher: Sha256::new(), bytes: 0 };
        // ArrowWriter sets up the file (magic, embedded Arrow schema); we take over its
        // serialized writer to encode row groups column-parallel.
        let (file, factory) =
            ArrowWriter::try_new(sink, schema.clone(), Some(props)).and_then(ArrowWriter::into_serialized_writer).map_err(err)?;
        let n = settings.workers.clamp(1, schema.fields().len().max(1));
        let workers = deal(factory.create_column_writers(0).map_err(err)?, n).into_iter().map(spawn_worker).collect();
        Ok(PartWriter {
            key: key.to_owned(),
            file,
            factory,
            schema,
            workers,
            row_group_rows: settings.row_group_rows,
            rows_in_group: 0,
            groups: 0,
            rows: 0,
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StoreError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (batch.num_rows() - offset).min(self.row_group_rows - self.rows_in_group);
            let slice = batch.slice(offset, take);
            let mut leaves = Vec::with_capacity(self.schema.fields().len());
            for (field, array) in self.schema.fields().iter().zip(slice.columns()) {
                leaves.extend(compute_leaves(field, array).map_err(|e| parquet_err(&self.key, e))?);
            }
            for (w, leaves) in self.workers.iter().zip(deal(leaves, self.workers.len())) {
                w.jobs.send(Job::Write(leaves)).map_err(|_| self.worker_died())?;
            }
            offset += take;
            self.rows_in_group += take;
            self.rows += take as u64;
            if self.rows_in_group == self.row_group_rows {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    fn worker_died(&self) -> StoreError {
        parquet_err(&self.key, ParquetError::General("a Parquet encoding thread stopped".into()))
    }

    /// Closes the open row group: collects every worker's chunks and appends them in order.
    fn flush_row_group(&mut self) -> Result<(), StoreError> {
        let err = |e| parquet_err(&self.key, e);
        let n = self.workers.len();
        let next = deal(self.factory.create_column_writers(self.groups + 1).map_err(err)?, n);
        let mut replies = Vec::with_capacity(n);
        for (w, next) in self.workers.iter().zip(next) {
            let (tx, rx) = mpsc::channel();
            w.jobs.send(Job::Close { next, reply: tx }).map_err(|_| self.worker_died())?;
            replies.push(rx);
        }
        let mut chunks = Vec::new();
        for rx in replies {
            chunks.extend(rx.recv().map_err(|_| self.worker_died())?.map_err(err)?);
        }
        chunks.sort_by_key(|(i, _)| *i);
        let mut group = self.file.next_row_group().map_err(err)?;
        for (_, chunk) in chunks {
            chunk.append_to_row_group(&mut group).map_err(err)?;
        }
        group.close().map_err(err)?;
        self.groups += 1;
        self.rows_in_group = 0;
        release_free_memory();
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the last row group and the footer, and commits the object.
    pub fn finish(mut self) -> Result<WrittenPart, StoreError> {
        if self.rows_in_group > 0 {
            self.flush_row_group()?;
        }
        let PartWriter { key, file, workers, rows, .. } = self;
        for w in workers {
            drop(w.jobs);
            let _ = w.handle.join();
        }
        let sink = file.into_inner().map_err(|e| parquet_err(&key, e))?;
        let Hashing { inner, hasher, bytes } = sink;
        inner.commit()?;
        Ok(WrittenPart { key, bytes, sha256: hex::encode(hasher.finalize()), rows })
    }

    /// Discards the part.
    pub fn abort(self) {
        for w in self.workers {
            drop(w.jobs);
            let _ = w.handle.join();
        }
        if let Ok(sink) = self.file.into_inner() {
            sink.inner.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{DataType, Field};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("s", DataType::Utf8, true)]));
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + n));
        let s: ArrayRef = Arc::new(StringArray::from_iter((from..from + n).map(|i| (i % 3 != 0).then(|| format!("v{}", i % 17)))));
        RecordBatch::try_new(schema, vec![ids, s]).unwrap()
    }

    fn write(store: &LocalStore, key: &str, workers: usize) -> WrittenPart {
        let b = batch(0, 1);
        let mut w = PartWriter::create(
            store,
            key,
            b.schema(),
            PartSettings { row_group_rows: 700, zstd_level: 1, workers, no_dictionary: &[], encryption: None },
        )
        .unwrap();
        for i in 0..5 {
            w.write(&batch(i * 333, 333)).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn columns_can_opt_out_of_dictionaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let b = batch(0, 1000);
        let off = ["id".to_owned()];
        let mut w = PartWriter::create(
            &store,
            "d.parquet",
            b.schema(),
            PartSettings { row_group_rows: 700, zstd_level: 1, workers: 2, no_dictionary: &off, encryption: None },
        )
        .unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        let f = std::fs::File::open(dir.path().join("d.parquet")).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(f).unwrap().metadata().clone();
        for g in meta.row_groups() {
            assert!(g.column(0).dictionary_page_offset().is_none(), "id has no dictionary");
            assert!(g.column(1).dictionary_page_offset().is_some(), "s keeps its dictionary");
        }
    }

    #[test]
    fn output_is_identical_whatever_the_number_of_encoding_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let one = write(&store, "a.parquet", 1);
        let three = write(&store, "b.parquet", 3);
        assert_eq!(one.sha256, three.sha256);
        assert_eq!(one.rows, 1665);
        let f = std::fs::File::open(dir.path().join("a.parquet")).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        let groups: Vec<i64> = reader.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        assert_eq!(groups, vec![700, 700, 265]);
        let ids: Vec<i64> = reader
            .build()
            .unwrap()
            .flat_map(|b| b.unwrap().column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(ids, (0..1665).collect::<Vec<_>>());
    }
}
