//! Object stores. The local filesystem is the embedded default; S3 (crate
//! `ehrlift-aws`) implements the same trait.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ehrlift_core::ErrorClass;

/// A store failure. Names keys and paths, never contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The destination URL is not one ehrlift can write.
    #[error("unsupported destination `{0}`; expected file://PATH")]
    Unsupported(String),
    /// An object key is not acceptable (absolute, `..`, empty segment).
    #[error("invalid object key `{0}`")]
    InvalidKey(String),
    /// Another run holds the destination.
    #[error("another ehrlift run is using {0}; wait for it to finish (or stop it) and run again")]
    Locked(String),
    /// The destination refuses to be written as configured (a bucket without KMS default
    /// encryption, an unknown KMS key, an `http://` endpoint): nothing was written.
    #[error("{0}")]
    Refused(String),
    /// A conditional write lost: another runner wrote `key` first.
    #[error(
        "`{key}` was written by another ehrlift run at the same time; this run stops (only one runner of a plan may write a destination)"
    )]
    Conflict {
        /// Object key.
        key: String,
    },
    /// A remote store failed on one object; `transient` when a retry may cure it.
    #[error("{op} `{key}`: {message}")]
    Remote {
        /// What was being done.
        op: &'static str,
        /// Object key (or bucket).
        key: String,
        /// What the service said (never object contents).
        message: String,
        /// Whether a retry may help.
        transient: bool,
    },
    /// An I/O failure on one object.
    #[error("{op} `{key}`: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Object key.
        key: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// The class of the error, for exit statuses.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Unsupported(_) | StoreError::InvalidKey(_) | StoreError::Refused(_) => ErrorClass::Configuration,
            StoreError::Remote { transient: false, .. } => ErrorClass::Configuration,
            StoreError::Io { .. } | StoreError::Locked(_) | StoreError::Conflict { .. } | StoreError::Remote { .. } => {
                ErrorClass::Transient
            }
        }
    }
}

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the destination root, `/`-separated.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// Server-side encryption of one stored object, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectEncryption {
    /// `aws:kms`, `AES256`, or empty when the object is not encrypted at rest by the store.
    pub algorithm: String,
    /// KMS key id or ARN, when `aws:kms`.
    pub kms_key_id: Option<String>,
    /// Whether an S3 bucket key was used.
    pub bucket_key: bool,
}

/// How a destination encrypts what it stores, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DestinationEncryption {
    /// `aws:kms`.
    pub algorithm: String,
    /// ARN of the KMS key every object is written with.
    pub kms_key_arn: String,
    /// Whether objects use an S3 bucket key.
    pub bucket_key: bool,
    /// The bucket's default encryption as found by preflight (`aws:kms`, `AES256`, `none`).
    pub bucket_default: String,
    /// True when the plan allowed a bucket whose default is not `aws:kms`
    /// (`allow_non_kms_bucket`); every object ehrlift writes is still SSE-KMS.
    pub non_kms_bucket_allowed: bool,
}

/// A streaming write of one object that becomes visible only on `commit`.
pub trait ObjectWriter: Write + Send {
    /// Makes the object durable and visible under its key.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// Discards what was written.
    fn abort(self: Box<Self>);
}

/// Where objects live. Keys are relative, `/`-separated, without `..`.
pub trait ObjectStore: Send + Sync {
    /// The destination URL, for messages and manifests.
    fn url(&self) -> String;
    /// Starts writing `key`; nothing is visible until the writer commits.
    fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError>;
    /// Writes a small object whole.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let mut w = self.writer(key)?;
        if let Err(source) = w.write_all(bytes) {
            w.abort();
            return Err(StoreError::Io { op: "write", key: key.to_owned(), source });
        }
        w.commit()
    }
    /// Writes a small object whole only if `key` does not exist yet (S3 `If-None-Match: *`,
    /// a hard link locally): [`StoreError::Conflict`] if it does.
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Checks, before a run or `validate` writes anything, that the destination can be
    /// written as configured (reachable, encrypted, a probe object written and deleted).
    /// Returns one line per check passed, for reports; refusals are errors.
    fn preflight(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![format!("local directory {}", self.url())])
    }
    /// How the store encrypts objects, for the manifest; `None` for the local store.
    fn encryption(&self) -> Option<DestinationEncryption> {
        None
    }
    /// Server-side encryption of one object (S3 HeadObject); `None` if the store has no
    /// such notion (local) or the object is absent.
    fn object_encryption(&self, _key: &str) -> Result<Option<ObjectEncryption>, StoreError> {
        Ok(None)
    }
    /// Reads a small object whole; `None` if absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Opens an object for streaming reads; `None` if absent.
    fn reader(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>, StoreError>;
    /// Lists objects under `prefix` (a key prefix ending in `/`, or empty for all), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// Deletes an object; absent is fine.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Removes what killed writers left under `prefix` (temp files here; incomplete
    /// multipart uploads on S3). Returns how many were removed. A prefix ending in `/`
    /// is a folder; otherwise it is the start of keys (`t/slice-0003-`), so one slice's
    /// leftovers are swept without touching another process's writes beside them.
    fn sweep_incomplete(&self, prefix: &str) -> Result<usize, StoreError>;
    /// Takes the exclusive lock `key` (a lease object on S3, a file lock here), held
    /// until the guard drops; a second holder fails instead of interleaving with the first.
    fn lock(&self, key: &str) -> Result<Box<dyn std::any::Any + Send>, StoreError>;
    /// Takes the destination's exclusive run lock (`_ehrlift/run.lock`): a second
    /// unsharded run on the same destination fails instead of interleaving with the first.
    fn lock_run(&self) -> Result<Box<dyn std::any::Any + Send>, StoreError> {
        self.lock(LOCK_KEY)
    }
}

/// Key of the run lock of an unsharded run.
pub const LOCK_KEY: &str = "_ehrlift/run.lock";

/// Opens the store of a destination URL.
pub fn open_store(url: &str) -> Result<Box<dyn ObjectStore>, StoreError> {
    match url.strip_prefix("file://") {
        Some(p) if !p.is_empty() => Ok(Box::new(LocalStore::new(PathBuf::from(p)))),
        _ => Err(StoreError::Unsupported(url.to_owned())),
    }
}

/// A directory as an object store: writes go to a hidden temp file, are fsynced,
/// renamed into place and the directory fsynced, so an object is whole or absent.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// Suffix of in-flight writes; `list` skips them and `sweep_temp` removes them.
const TEMP_SUFFIX: &str = ".ehrlift-tmp";

impl LocalStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        LocalStore { root }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty() || key.starts_with('/') || key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(StoreError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(key))
    }

    fn list_into(&self, dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let ft = entry.file_type()?;
            if ft.is_dir() {
                self.list_into(&entry.path(), &key, out)?;
            } else if ft.is_file() && !name.ends_with(TEMP_SUFFIX) {
                out.push(ObjectMeta { key, size: entry.metadata()?.len() });
            }
        }
        Ok(())
    }

    fn sweep_temp(&self, prefix: &str) -> Result<usize, StoreError> {
        // A folder, or a folder and the start of names in it (temp files are `.<name>…`).
        let (dir, start) = match prefix.rsplit_once('/') {
            _ if prefix.is_empty() => (self.root.clone(), String::new()),
            Some((folder, "")) => (self.path(folder)?, String::new()),
            Some((folder, name)) => (self.path(folder)?, format!(".{name}")),
            None => (self.root.clone(), format!(".{prefix}")),
        };
        let mut removed = 0;
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() {
                    // Below a name prefix only names in the folder itself match.
                    if start.is_empty() {
                        stack.push(p);
                    }
                } else if name.ends_with(TEMP_SUFFIX) && (d != dir || name.starts_with(&start)) {
                    fs::remove_file(&p).map_err(|source| StoreError::Io {
                        op: "remove temp file",
                        key: p.display().to_string(),
                        source,
                    })?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl ObjectStore for LocalStore {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let path = self.path(key)?;
        let io_err = |source| StoreError::Io { op: "create", key: key.to_owned(), source };
        let dir = path.parent().expect("keys have a parent").to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err)?;
        let name = path.file_name().expect("keys have a file name").to_string_lossy().into_owned();
        let temp = dir.join(format!(".{name}.{}{TEMP_SUFFIX}", std::process::id()));
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&temp).map_err(io_err)?;
        Ok(Box::new(LocalWriter { file: io::BufWriter::with_capacity(1 << 20, file), temp, path, dir, key: key.to_owned() }))
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let io_err = |op: &'static str| move |source| StoreError::Io { op, key: key.to_owned(), source };
        let dir = path.parent().expect("keys have a parent").to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create"))?;
        let name = path.file_name().expect("keys have a file name").to_string_lossy().into_owned();
        let temp = dir.join(format!(".{name}.{}.new{TEMP_SUFFIX}", std::process::id()));
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })()
        .map_err(io_err("write"));
        // A hard link never replaces an existing name: the first writer wins.
        let linked = written.and_then(|()| match fs::hard_link(&temp, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Conflict { key: key.to_owned() }),
            Err(e) => Err(io_err("link")(e)),
        });
        let _ = fs::remove_file(&temp);
        linked?;
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory"))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.path(key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { op: "read", key: key.to_owned(), source }),
        }
    }

    fn reader(&self, key: &str) -> Result<Option<Box<dyn Read + Send>>, StoreError> {
        match File::open(self.path(key)?) {
            Ok(f) => Ok(Some(Box::new(io::BufReader::with_capacity(1 << 20, f)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { op: "open", key: key.to_owned(), source }),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let (dir, rel) = match prefix.trim_end_matches('/') {
            "" => (self.root.clone(), String::new()),
            p => (self.path(p)?, p.to_owned()),
        };
        let mut out = Vec::new();
        self.list_into(&dir, &rel, &mut out).map_err(|source| StoreError::Io { op: "list", key: prefix.to_owned(), source })?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { op: "delete", key: key.to_owned(), source }),
        }
    }

    fn sweep_incomplete(&self, prefix: &str) -> Result<usize, StoreError> {
        self.sweep_temp(prefix)
    }

    fn lock(&self, key: &str) -> Result<Box<dyn std::any::Any + Send>, StoreError> {
        let path = self.path(key)?;
        let io_err = |source| StoreError::Io { op: "lock", key: key.to_owned(), source };
        fs::create_dir_all(path.parent().expect("lock has a parent")).map_err(io_err)?;
        let file = OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked(self.url())),
            Err(fs::TryLockError::Error(e)) => Err(io_err(e)),
        }
    }
}

struct LocalWriter {
    file: io::BufWriter<File>,
    temp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    key: String,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let key = &self.key;
        let io_err = |op: &'static str| move |source| StoreError::Io { op, key: key.clone(), source };
        let file = self.file.into_inner().map_err(|e| e.into_error()).map_err(io_err("flush"))?;
        file.sync_all().map_err(io_err("fsync"))?;
        drop(file);
        fs::rename(&self.temp, &self.path).map_err(io_err("rename"))?;
        // The rename is durable only once the directory entry is.
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory"))?;
        Ok(())
    }

    fn abort(self: Box<Self>) {
        drop(self.file);
        let _ = fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_invisible_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("dest"));
        let mut w = store.writer("t/part-000001.parquet").unwrap();
        w.write_all(b"abc").unwrap();
        assert!(store.list("").unwrap().is_empty());
        w.commit().unwrap();
        assert_eq!(store.list("t/").unwrap(), vec![ObjectMeta { key: "t/part-000001.parquet".into(), size: 3 }]);
        let mut w = store.writer("t/x").unwrap();
        w.write_all(b"zz").unwrap();
        w.abort();
        assert_eq!(store.list("").unwrap().len(), 1);
        assert_eq!(store.get("t/part-000001.parquet").unwrap().unwrap(), b"abc");
        assert!(store.get("nope").unwrap().is_none());
    }

    #[test]
    fn put_new_never_replaces_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("d"));
        store.put_new("_ehrlift/c/1.json", b"first").unwrap();
        let e = store.put_new("_ehrlift/c/1.json", b"second").unwrap_err();
        assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
        assert_eq!(store.get("_ehrlift/c/1.json").unwrap().unwrap(), b"first");
        assert_eq!(store.list("").unwrap().len(), 1, "no temporary file is left");
    }

    #[test]
    fn rejects_escaping_keys() {
        let store = LocalStore::new("/tmp/x".into());
        for k in ["", "/abs", "a/../b", "a//b", "./a"] {
            assert!(matches!(store.writer(k), Err(StoreError::InvalidKey(_))), "{k}");
        }
    }

    #[test]
    fn a_sweep_by_name_prefix_leaves_other_slices_writes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        // Two killed writers side by side: slices 1 and 2 of table `t`, and one below.
        for key in ["t/slice-0001-part-000001.parquet", "t/slice-0002-part-000001.parquet", "t/sub/slice-0001-x"] {
            let mut w = store.writer(key).unwrap();
            w.write_all(b"x").unwrap();
            w.flush().unwrap();
            std::mem::forget(w);
        }
        let temps = |d: &str| {
            fs::read_dir(dir.path().join(d)).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(TEMP_SUFFIX)).count()
        };
        assert_eq!(store.sweep_incomplete("t/slice-0001-").unwrap(), 1);
        assert_eq!((temps("t"), temps("t/sub")), (1, 1), "slice 2's write and the sub-folder's are kept");
        assert_eq!(store.sweep_incomplete("t/").unwrap(), 2, "a folder prefix sweeps everything below it");
    }

    #[test]
    fn a_second_run_lock_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let guard = store.lock_run().unwrap();
        assert!(matches!(store.lock_run(), Err(StoreError::Locked(_))));
        drop(guard);
        store.lock_run().unwrap();
    }

    #[test]
    fn sweeps_leftover_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let mut w = store.writer("t/a").unwrap();
        w.write_all(b"x").unwrap();
        std::mem::forget(w); // as if the process died
        assert_eq!(store.sweep_incomplete("t/").unwrap(), 1);
        assert!(store.list("").unwrap().is_empty());
    }
}
