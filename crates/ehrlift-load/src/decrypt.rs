//! Reading a whole Parquet object held in memory, encrypted (Parquet modular encryption)
//! or not.
//!
//! Keys are recovered from the key metadata stored in the file by a caller-given
//! [`KeyUnwrap`], once per distinct metadata. A reader missing one column's key can
//! still read the other columns: parquet leaves that column's metadata sealed and only
//! fails when its pages are read, so [`project`] checks the chosen columns up front.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use parquet::errors::ParquetError;
use parquet::file::column_crypto_metadata::ColumnCryptoMetaData;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use zeroize::Zeroizing;

/// Unwraps a key from the metadata stored in the file; the error text is shown to the user.
pub type KeyUnwrap = dyn Fn(&[u8]) -> Result<Zeroizing<[u8; 32]>, String> + Send + Sync;

/// Why a Parquet object cannot be read. Names columns and keys, never values or key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes are not a Parquet file.
    #[error("the object is not a Parquet file: {0}")]
    NotParquet(String),
    /// The object is encrypted and no way to unwrap its keys was given.
    #[error(
        "the object is encrypted (Parquet modular encryption); reading it needs its key: give access to the key provider that wrapped its keys"
    )]
    KeyNeeded,
    /// The caller's unwrap failed for a key the read needs.
    #[error("cannot unwrap {key}: {message}")]
    KeyUnwrap {
        /// "the footer key", "the key of column 'x'", or "a column key".
        key: String,
        /// The unwrap's own message.
        message: String,
    },
    /// A key was unwrapped but does not decrypt what it should.
    #[error("{key} does not decrypt the object (a wrong key, or the object was altered)")]
    WrongKey {
        /// "the footer key" or "the key of column 'x'".
        key: String,
    },
    /// Chosen columns whose keys could not be unwrapped.
    #[error("cannot read column(s) {}: their key could not be unwrapped; select only other columns to read those", quoted(.0))]
    ColumnKeyUnavailable(Vec<String>),
    /// Chosen columns the object does not have.
    #[error("no column {} in the object; it has {}", quoted(.unknown), quoted(.available))]
    UnknownColumns {
        /// The names asked for and not found.
        unknown: Vec<String>,
        /// The object's columns.
        available: Vec<String>,
    },
    /// The object is damaged or uses something this reader does not support.
    #[error("cannot read the Parquet object: {0}")]
    Parquet(String),
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

/// Whether `bytes` is a Parquet file with an encrypted footer (magic `PARE`).
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && bytes.ends_with(b"PARE")
}

/// Opens a Parquet object held in memory, decrypting it with keys from `unwrap` when it is
/// encrypted. All columns are selected; use [`project`] to choose (and to check that the
/// chosen columns' keys are at hand).
pub fn open_parquet(bytes: Bytes, unwrap: Option<Arc<KeyUnwrap>>) -> Result<ParquetRecordBatchReaderBuilder<Bytes>, ReadError> {
    let magic = |b: &[u8]| b == b"PAR1" || b == b"PARE";
    if bytes.len() < 12 || !magic(&bytes[..4]) || !magic(&bytes[bytes.len() - 4..]) {
        return Err(ReadError::NotParquet("it lacks the Parquet magic bytes at its start and end".into()));
    }
    if is_encrypted(&bytes) && unwrap.is_none() {
        return Err(ReadError::KeyNeeded);
    }
    // The page index is not needed to read whole objects, and loading it would need every
    // column's key.
    let mut options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
    let retriever = unwrap.map(|unwrap| Arc::new(Retriever { unwrap, state: Mutex::default() }));
    if let Some(r) = &retriever {
        let props = FileDecryptionProperties::with_key_retriever(r.clone()).build().map_err(|e| ReadError::Parquet(e.to_string()))?;
        options = options.with_file_decryption_properties(props);
    }
    match ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options) {
        Ok(builder) => {
            if let Some(r) = &retriever {
                r.learn_columns(builder.metadata());
            }
            Ok(builder)
        }
        Err(e) => Err(classify(e, retriever.as_deref())),
    }
}

/// Selects the top-level columns named in `columns` (every column when it is empty),
/// and checks that their keys could be unwrapped.
pub fn project(
    builder: ParquetRecordBatchReaderBuilder<Bytes>,
    columns: &[String],
) -> Result<ParquetRecordBatchReaderBuilder<Bytes>, ReadError> {
    let fields = builder.schema().fields();
    let roots: Vec<usize> = if columns.is_empty() {
        (0..fields.len()).collect()
    } else {
        let unknown: Vec<String> = columns.iter().filter(|c| fields.find(c).is_none()).cloned().collect();
        if !unknown.is_empty() {
            return Err(ReadError::UnknownColumns { unknown, available: fields.iter().map(|f| f.name().clone()).collect() });
        }
        columns.iter().filter_map(|c| fields.find(c).map(|(i, _)| i)).collect()
    };
    // Parquet roots and Arrow fields line up one to one for files written from Arrow.
    let descr = builder.parquet_schema();
    let mut unreadable: Vec<String> = Vec::new();
    for rg in builder.metadata().row_groups() {
        for (leaf, chunk) in rg.columns().iter().enumerate() {
            let root = descr.get_column_root_idx(leaf);
            // A chunk keyed by its own column key whose metadata could not be decrypted
            // keeps the defaults: no real chunk starts at offset 0, where the magic is.
            let sealed = matches!(chunk.crypto_metadata(), Some(ColumnCryptoMetaData::ENCRYPTION_WITH_COLUMN_KEY(_)))
                && chunk.data_page_offset() == 0
                && chunk.compressed_size() == 0;
            let name = descr.column(leaf).path().string();
            if sealed && roots.contains(&root) && !unreadable.contains(&name) {
                unreadable.push(name);
            }
        }
    }
    if !unreadable.is_empty() {
        return Err(ReadError::ColumnKeyUnavailable(unreadable));
    }
    let mask = ProjectionMask::roots(descr, roots);
    Ok(builder.with_projection(mask))
}

/// Hands parquet the keys our caller unwraps, each unwrapped once.
struct Retriever {
    unwrap: Arc<KeyUnwrap>,
    state: Mutex<RetrieverState>,
}

#[derive(Default)]
struct RetrieverState {
    /// The metadata of the first key asked for: parquet asks for the footer key first.
    footer: Option<Vec<u8>>,
    /// Key metadata to the unwrapped key, or the unwrap's message.
    keys: HashMap<Vec<u8>, Result<Zeroizing<[u8; 32]>, String>>,
    /// Key metadata to the columns it keys, once the footer is read.
    columns: HashMap<Vec<u8>, Vec<String>>,
}

impl fmt::Debug for Retriever {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Retriever { .. }")
    }
}

impl RetrieverState {
    /// Names the key with `metadata` for messages.
    fn key_name(&self, metadata: &[u8]) -> String {
        if self.footer.as_deref() == Some(metadata) {
            return "the footer key".into();
        }
        match self.columns.get(metadata).map(Vec::as_slice) {
            Some([one]) => format!("the key of column '{one}'"),
            Some(many) if !many.is_empty() => format!("the key of columns {}", quoted(many)),
            _ => "a column key".into(),
        }
    }
}

impl Retriever {
    fn state(&self) -> std::sync::MutexGuard<'_, RetrieverState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records which columns each key metadata keys, for error messages.
    fn learn_columns(&self, meta: &ParquetMetaData) {
        let mut st = self.state();
        for chunk in meta.row_groups().iter().flat_map(|rg| rg.columns()) {
            if let Some(ColumnCryptoMetaData::ENCRYPTION_WITH_COLUMN_KEY(k)) = chunk.crypto_metadata() {
                let names = st.columns.entry(k.key_metadata.clone().unwrap_or_default()).or_default();
                let name = k.path_in_schema.join(".");
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }

    /// The unwrap's message for the footer key, if that is what failed.
    fn footer_failure(&self) -> Option<String> {
        let st = self.state();
        match st.keys.get(st.footer.as_ref()?)? {
            Err(message) => Some(message.clone()),
            Ok(_) => None,
        }
    }
}

impl KeyRetriever for Retriever {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        let mut st = self.state();
        if st.footer.is_none() {
            st.footer = Some(key_metadata.to_vec());
        }
        // Unwrapping under the lock keeps it to once per key even across threads.
        if !st.keys.contains_key(key_metadata) {
            let unwrapped = (self.unwrap)(key_metadata);
            st.keys.insert(key_metadata.to_vec(), unwrapped);
        }
        match &st.keys[key_metadata] {
            // parquet takes the key as a plain Vec and does not zeroize it.
            Ok(key) => Ok(key.to_vec()),
            Err(message) => Err(ParquetError::General(format!("cannot unwrap {}: {message}", st.key_name(key_metadata)))),
        }
    }
}

/// Turns parquet's error on opening into one that says what the user can do.
fn classify(e: ParquetError, retriever: Option<&Retriever>) -> ReadError {
    let text = e.to_string();
    if text.contains("unable to decrypt parquet footer") {
        return ReadError::WrongKey { key: "the footer key".into() };
    }
    if let Some(message) = retriever.and_then(Retriever::footer_failure) {
        return ReadError::KeyUnwrap { key: "the footer key".into(), message };
    }
    if let Some(rest) = text.split("Unable to decrypt column '").nth(1) {
        let column = rest.split('\'').next().unwrap_or_default();
        return ReadError::WrongKey { key: format!("the key of column '{column}'") };
    }
    if text.contains("encrypted footer but decryption properties were not provided") {
        return ReadError::KeyNeeded;
    }
    ReadError::Parquet(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::part::{ColumnKey, PartEncryption, PartSettings, PartWriter};
    use crate::store::LocalStore;
    use arrow_array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    fn key(byte: u8, metadata: &str) -> ColumnKey {
        ColumnKey { key: Zeroizing::new([byte; 32]), metadata: metadata.as_bytes().to_vec() }
    }

    /// Knows the keys `key(1, "footer")` and `key(2, "ssn-key")`, or only some of them.
    fn unwrap_with(known: &'static [&'static str]) -> Arc<KeyUnwrap> {
        Arc::new(move |metadata: &[u8]| {
            let id = std::str::from_utf8(metadata).map_err(|_| "unreadable key metadata".to_owned())?;
            match id {
                "footer" if known.contains(&id) => Ok(Zeroizing::new([1; 32])),
                "ssn-key" if known.contains(&id) => Ok(Zeroizing::new([2; 32])),
                _ => Err(format!("key `{id}` is not in the key ring")),
            }
        })
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("mrn", DataType::Utf8, false),
            Field::new("ward", DataType::Utf8, true),
            Field::new("ssn", DataType::Utf8, true),
            Field::new("dob", DataType::Date32, true),
        ]))
    }

    /// Distinctive values: `mrn` unique (no dictionary), `ward` few (dictionary).
    fn batch(from: i64, n: i64) -> RecordBatch {
        let ids = from..from + n;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("MRN-{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            )),
            Arc::new(StringArray::from_iter(ids.clone().map(|i| (i % 5 != 0).then(|| format!("Ward-Quixotic-{}", i % 7))))),
            Arc::new(StringArray::from_iter(ids.clone().map(|i| (i % 4 != 0).then(|| format!("SSN-{:09}", i * 7919 % 1_000_000_000))))),
            Arc::new(Date32Array::from_iter(ids.map(|i| (i % 6 != 0).then_some(-20_000 + (i * 37 % 30_000) as i32)))),
        ];
        RecordBatch::try_new(schema(), cols).unwrap()
    }

    const NO_DICT: &[&str] = &["mrn"];

    fn write(dir: &std::path::Path, name: &str, enc: Option<&PartEncryption>, workers: usize) -> Bytes {
        let store = LocalStore::new(dir.to_path_buf());
        let no_dictionary: Vec<String> = NO_DICT.iter().map(|s| s.to_string()).collect();
        let settings = PartSettings { row_group_rows: 700, zstd_level: 1, workers, no_dictionary: &no_dictionary, encryption: enc };
        let mut w = PartWriter::create(&store, name, schema(), settings).unwrap();
        for i in 0..5 {
            w.write(&batch(i * 333, 333)).unwrap();
        }
        w.finish().unwrap();
        Bytes::from(std::fs::read(dir.join(name)).unwrap())
    }

    fn uniform() -> PartEncryption {
        PartEncryption { footer: key(1, "footer"), columns: vec![] }
    }

    fn ssn_keyed() -> PartEncryption {
        PartEncryption { footer: key(1, "footer"), columns: vec![("ssn".into(), key(2, "ssn-key"))] }
    }

    fn read_all(builder: ParquetRecordBatchReaderBuilder<Bytes>) -> Vec<RecordBatch> {
        builder.build().unwrap().collect::<Result<Vec<_>, _>>().unwrap()
    }

    fn expected() -> RecordBatch {
        batch(0, 1665)
    }

    fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap()
    }

    /// The key metadata of every column chunk, by column.
    fn chunk_keys(builder: &ParquetRecordBatchReaderBuilder<Bytes>) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for rg in builder.metadata().row_groups() {
            for c in rg.columns() {
                assert!(c.bloom_filter_offset().is_none(), "no bloom filter in an encrypted part");
                let meta = match c.crypto_metadata() {
                    Some(ColumnCryptoMetaData::ENCRYPTION_WITH_COLUMN_KEY(k)) => {
                        String::from_utf8(k.key_metadata.clone().unwrap()).unwrap()
                    }
                    other => panic!("column {} is not keyed explicitly: {other:?}", c.column_path()),
                };
                out.push((c.column_path().string(), meta));
            }
        }
        out
    }

    #[test]
    fn every_column_is_keyed_with_the_footer_key_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "u.parquet", Some(&uniform()), 2);
        assert!(is_encrypted(&bytes) && bytes.starts_with(b"PARE"));
        let builder = open_parquet(bytes, Some(unwrap_with(&["footer"]))).unwrap();
        let keys = chunk_keys(&builder);
        assert_eq!(keys.len(), 5 * 3);
        assert!(keys.iter().all(|(_, m)| m == "footer"), "{keys:?}");
        assert_eq!(concat(&read_all(builder)), expected());
    }

    #[test]
    fn a_column_under_its_own_key_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "c.parquet", Some(&ssn_keyed()), 2);
        let builder = open_parquet(bytes, Some(unwrap_with(&["footer", "ssn-key"]))).unwrap();
        for (column, meta) in chunk_keys(&builder) {
            assert_eq!(meta, if column == "ssn" { "ssn-key" } else { "footer" });
        }
        assert_eq!(concat(&read_all(builder)), expected());
    }

    #[test]
    fn each_key_is_unwrapped_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "c.parquet", Some(&ssn_keyed()), 2);
        let calls = Arc::new(AtomicUsize::new(0));
        let inner = unwrap_with(&["footer", "ssn-key"]);
        let counted = calls.clone();
        let unwrap: Arc<KeyUnwrap> = Arc::new(move |m: &[u8]| {
            counted.fetch_add(1, Ordering::SeqCst);
            inner(m)
        });
        let rows: usize = read_all(open_parquet(bytes, Some(unwrap)).unwrap()).iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1665);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_reader_without_a_column_key_reads_only_the_other_columns() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "c.parquet", Some(&ssn_keyed()), 2);
        let open = || open_parquet(bytes.clone(), Some(unwrap_with(&["footer"]))).unwrap();

        // The sealed column's metadata, statistics included, stays sealed.
        let meta = open().metadata().clone();
        assert!(meta.row_group(0).column(3).statistics().is_none());
        assert!(meta.row_group(0).column(1).statistics().is_some());

        let e = project(open(), &["id".into(), "ssn".into()]).unwrap_err();
        assert!(matches!(&e, ReadError::ColumnKeyUnavailable(c) if c == &["ssn"]), "{e}");
        assert_eq!(e.to_string(), "cannot read column(s) 'ssn': their key could not be unwrapped; select only other columns to read those");
        assert!(matches!(project(open(), &[]), Err(ReadError::ColumnKeyUnavailable(_))));

        let got = concat(&read_all(project(open(), &["id".into(), "mrn".into(), "dob".into()]).unwrap()));
        assert_eq!(got, expected().project(&[0, 1, 4]).unwrap());

        // Unprojected, parquet itself fails when it reaches the column; the retriever's
        // message names the column and carries the unwrap's own text.
        let failure = open().build().unwrap().try_for_each(|b| b.map(|_| ())).unwrap_err().to_string();
        assert!(failure.contains("cannot unwrap the key of column 'ssn': key `ssn-key` is not in the key ring"), "{failure}");
    }

    #[test]
    fn without_an_unwrap_an_encrypted_object_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "u.parquet", Some(&uniform()), 1);
        let e = open_parquet(bytes, None).unwrap_err();
        assert!(matches!(e, ReadError::KeyNeeded));
        assert!(e.to_string().starts_with("the object is encrypted (Parquet modular encryption); reading it needs its key: "));
    }

    #[test]
    fn a_footer_key_that_does_not_unwrap_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "c.parquet", Some(&ssn_keyed()), 1);
        let e = open_parquet(bytes, Some(unwrap_with(&["ssn-key"]))).unwrap_err();
        assert_eq!(e.to_string(), "cannot unwrap the footer key: key `footer` is not in the key ring");
    }

    #[test]
    fn wrong_keys_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "c.parquet", Some(&ssn_keyed()), 1);
        let wrong = |bad: &'static str| -> Arc<KeyUnwrap> {
            Arc::new(move |m: &[u8]| {
                let id = std::str::from_utf8(m).unwrap();
                let right = if id == "footer" { 1 } else { 2 };
                Ok(Zeroizing::new([if id == bad { 9 } else { right }; 32]))
            })
        };
        let e = open_parquet(bytes.clone(), Some(wrong("footer"))).unwrap_err();
        assert_eq!(e.to_string(), "the footer key does not decrypt the object (a wrong key, or the object was altered)");
        let e = open_parquet(bytes, Some(wrong("ssn-key"))).unwrap_err();
        assert_eq!(e.to_string(), "the key of column 'ssn' does not decrypt the object (a wrong key, or the object was altered)");
    }

    #[test]
    fn damaged_and_foreign_objects_are_errors_not_panics() {
        let e = open_parquet(Bytes::from_static(b"id,name\n1,someone\n"), None).unwrap_err();
        assert!(matches!(e, ReadError::NotParquet(_)), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "u.parquet", Some(&uniform()), 1);
        let unwrap = || Some(unwrap_with(&["footer"]));
        // A flipped byte in the middle (column data) or just before the footer.
        for at in [bytes.len() / 2, bytes.len() - 20] {
            let mut bad = bytes.to_vec();
            bad[at] ^= 0x40;
            let result = open_parquet(Bytes::from(bad), unwrap()).and_then(|b| {
                b.build()
                    .map_err(|e| ReadError::Parquet(e.to_string()))?
                    .try_for_each(|b| b.map(|_| ()))
                    .map_err(|e| ReadError::Parquet(e.to_string()))
            });
            assert!(result.is_err(), "a damaged object must not read");
        }
        let truncated = bytes.slice(..bytes.len() - 100);
        assert!(open_parquet(truncated, unwrap()).is_err());
    }

    fn count(hay: &[u8], needle: &str) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
    }

    #[test]
    fn plaintext_values_appear_in_no_encrypted_byte() {
        // One row per row group keeps every page under zstd's smallest compressed
        // literal block, so a plaintext part shows each value in its data or dictionary
        // page as well as in the footer's min and max: the probe can see plaintext.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let no_dictionary = vec!["mrn".to_owned()];
        let tiny = |name: &str, encryption: Option<&PartEncryption>| {
            let settings = PartSettings { row_group_rows: 1, zstd_level: 1, workers: 3, no_dictionary: &no_dictionary, encryption };
            let mut w = PartWriter::create(&store, name, schema(), settings).unwrap();
            w.write(&batch(1, 6)).unwrap();
            w.finish().unwrap();
            std::fs::read(dir.path().join(name)).unwrap()
        };
        let rows = batch(1, 6);
        let strings = |c: usize| -> Vec<String> {
            let a = rows.column(c).as_any().downcast_ref::<StringArray>().unwrap();
            a.iter().flatten().map(str::to_owned).collect()
        };
        // Undictionaried values, dictionary values, and the column under its own key.
        let probes: Vec<String> = [strings(1), strings(2), strings(3)].concat();
        let plain = tiny("p.parquet", None);
        for p in &probes {
            assert!(count(&plain, p) >= 3, "{p} visible in its page and the footer of a plaintext part");
        }
        for (name, enc) in [("u.parquet", uniform()), ("c.parquet", ssn_keyed())] {
            let bytes = tiny(name, Some(&enc));
            assert!(bytes.starts_with(b"PARE") && bytes.ends_with(b"PARE"));
            for p in &probes {
                assert_eq!(count(&bytes, p), 0, "{p} in {name}");
            }
            for text in ["MRN-", "Ward-Quixotic", "SSN-", "ward", "ARROW:schema", "ehrlift"] {
                assert_eq!(count(&bytes, text), 0, "{text} in {name}: pages, schema and footer are all sealed");
            }
            let read = concat(&read_all(open_parquet(Bytes::from(bytes), Some(unwrap_with(&["footer", "ssn-key"]))).unwrap()));
            assert_eq!(read, rows);
        }
    }

    #[test]
    fn one_and_three_encoding_threads_decrypt_to_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let read = |bytes| concat(&read_all(open_parquet(bytes, Some(unwrap_with(&["footer", "ssn-key"]))).unwrap()));
        let one = read(write(dir.path(), "1.parquet", Some(&ssn_keyed()), 1));
        let three = read(write(dir.path(), "3.parquet", Some(&ssn_keyed()), 3));
        assert_eq!(one, three);
        assert_eq!(one, expected());
    }

    #[test]
    fn plaintext_objects_open_with_or_without_an_unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "p.parquet", None, 2);
        assert!(!is_encrypted(&bytes));
        assert_eq!(concat(&read_all(open_parquet(bytes.clone(), None).unwrap())), expected());
        let never: Arc<KeyUnwrap> = Arc::new(|_: &[u8]| panic!("a plaintext object needs no key"));
        assert_eq!(concat(&read_all(open_parquet(bytes, Some(never)).unwrap())), expected());
    }

    #[test]
    fn unknown_columns_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write(dir.path(), "p.parquet", None, 1);
        let e = project(open_parquet(bytes, None).unwrap(), &["id".into(), "nmae".into(), "zip".into()]).unwrap_err();
        assert_eq!(e.to_string(), "no column 'nmae', 'zip' in the object; it has 'id', 'mrn', 'ward', 'ssn', 'dob'");
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let enc = PartEncryption { footer: ColumnKey { key: Zeroizing::new([0xAB; 32]), metadata: b"k1".to_vec() }, columns: vec![] };
        let text = format!(
            "{enc:?} {:?}",
            PartSettings { row_group_rows: 1, zstd_level: 1, workers: 1, no_dictionary: &[], encryption: Some(&enc) }
        );
        assert!(!text.contains("171") && !text.to_lowercase().contains("ab, ab"), "{text}");
    }

    #[test]
    fn keys_for_columns_not_in_the_schema_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let enc = PartEncryption { footer: key(1, "footer"), columns: vec![("sssn".into(), key(2, "x"))] };
        let settings = PartSettings { row_group_rows: 10, zstd_level: 1, workers: 1, no_dictionary: &[], encryption: Some(&enc) };
        let e = PartWriter::create(&store, "x.parquet", schema(), settings).err().unwrap();
        assert_eq!(e.to_string(), "part `x.parquet`: encryption keys given for columns not in the schema: sssn");
        assert!(!dir.path().join("x.parquet").exists());
    }
}
