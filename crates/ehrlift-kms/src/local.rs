//! The local keyring: `<dir>/<project>.key`, a small TOML file holding the key in hex.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ehrlift_core::{KeyError, KeyProvider, ProjectKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

const HEADER: &str = "# ehrlift project key. Keep it secret and back it up: without it the pseudonyms, tokens,\n\
# date shifts and surrogate vault of this project cannot be reproduced or reversed.\n";

/// A keyring directory holding one key file per project.
#[derive(Debug, Clone)]
pub struct LocalKeyring {
    dir: PathBuf,
    project: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: u32,
    project: String,
    key_id: String,
    created_at: String,
    secret: String,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl LocalKeyring {
    /// The keyring at `dir` for `project`.
    pub fn new(dir: impl Into<PathBuf>, project: &str) -> Self {
        LocalKeyring { dir: dir.into(), project: project.to_owned() }
    }

    /// The key file's path. Characters other than letters, digits, `.`, `-` and `_`
    /// in the project name become `_`.
    pub fn path(&self) -> PathBuf {
        let safe: String =
            self.project.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
        self.dir.join(format!("{safe}.key"))
    }

    fn corrupt(&self, message: impl Into<String>) -> KeyError {
        KeyError::Corrupt { path: self.path(), message: message.into() }
    }

    fn parse(&self, text: &str) -> Result<ProjectKey, KeyError> {
        // toml's errors quote the offending line, which could hold the secret: say only that it failed.
        let file: KeyFile = toml::from_str(text)
            .map_err(|_| self.corrupt("not a valid ehrlift key file (TOML with format, project, key_id, created_at, secret)"))?;
        if file.format != 1 {
            return Err(self.corrupt(format!("unsupported key file format {}", file.format)));
        }
        if file.project != self.project {
            return Err(self.corrupt(format!("holds the key of project `{}`, not `{}`", file.project, self.project)));
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(file.secret.as_bytes(), secret.as_mut()).map_err(|_| self.corrupt("`secret` is not 64 hex digits"))?;
        let key = ProjectKey::new("local", secret);
        if key.id() != file.key_id {
            return Err(self.corrupt(format!("`key_id` {} does not match the secret (the file was edited or damaged)", file.key_id)));
        }
        Ok(key)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

impl KeyProvider for LocalKeyring {
    fn name(&self) -> &'static str {
        "local"
    }

    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn load(&self) -> Result<Option<ProjectKey>, KeyError> {
        let path = self.path();
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Insecure { path, mode });
        }
        let text = Zeroizing::new(fs::read_to_string(&path).map_err(io(&path))?);
        self.parse(&text).map(Some)
    }

    fn create(&self) -> Result<ProjectKey, KeyError> {
        let path = self.path();
        if !self.dir.exists() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(io(&self.dir))?;
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut()).map_err(|e| KeyError::Io { path: path.clone(), source: std::io::Error::other(e.to_string()) })?;
        let key = ProjectKey::new("local", secret.clone());
        let file = KeyFile {
            format: 1,
            project: self.project.clone(),
            key_id: key.id().to_owned(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            secret: hex::encode(secret.as_ref()),
        };
        let body = Zeroizing::new(format!("{HEADER}{}", toml::to_string(&file).expect("key file serializes")));
        // Written whole under a temporary name, then linked into place: another process
        // never reads a half-written key, and an existing key is never replaced.
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Io { path: path.clone(), source: std::io::Error::other(e.to_string()) })?;
        let tmp = self.dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("key"), hex::encode(nonce)));
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
        let written = f.write_all(body.as_bytes()).and_then(|()| f.sync_all()).map_err(io(&tmp));
        drop(f);
        let linked = written.and_then(|()| match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(KeyError::Exists { path: path.clone() }),
            Err(e) => Err(io(&path)(e)),
        });
        let _ = fs::remove_file(&tmp);
        linked?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::new(dir.path().join("keys"), "demo clinic");
        assert!(ring.load().unwrap().is_none());
        let made = ring.create().unwrap();
        let loaded = ring.load().unwrap().unwrap();
        assert_eq!(made.id(), loaded.id());
        assert_eq!(*made.derive("x"), *loaded.derive("x"));
        assert_eq!(fs::metadata(ring.path()).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(ring.path().ends_with("demo_clinic.key"));
        assert!(matches!(ring.create(), Err(KeyError::Exists { .. })));
    }

    #[test]
    fn concurrent_creation_makes_one_key_and_never_a_half_written_file() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let ring = LocalKeyring::new(dir.path(), "p");
            let results: Vec<_> = std::thread::scope(|s| {
                let makers: Vec<_> = (0..4).map(|_| s.spawn(|| ring.create().map(|k| k.id().to_owned()))).collect();
                // Readers see no key or the whole key, never a damaged one.
                for _ in 0..50 {
                    if let Err(e) = ring.load() {
                        panic!("a reader saw a partial key file: {e}");
                    }
                }
                makers.into_iter().map(|m| m.join().unwrap()).collect()
            });
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
            assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, KeyError::Exists { .. })));
            assert_eq!(ring.load().unwrap().unwrap().id(), results.iter().find_map(|r| r.as_ref().ok()).unwrap());
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
        }
    }

    #[test]
    fn readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::new(dir.path(), "p");
        ring.create().unwrap();
        fs::set_permissions(ring.path(), fs::Permissions::from_mode(0o644)).unwrap();
        let e = ring.load().unwrap_err();
        assert!(matches!(e, KeyError::Insecure { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"));
    }

    #[test]
    fn damaged_files_are_errors_that_never_quote_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::new(dir.path(), "p");
        ring.create().unwrap();
        let text = fs::read_to_string(ring.path()).unwrap();
        let secret_line = text.lines().find(|l| l.starts_with("secret")).unwrap().to_owned();
        let secret = secret_line.split('"').nth(1).unwrap().to_owned();
        // A flipped digit: the id no longer matches.
        let flipped = text.replace(&secret, &format!("{}{}", if secret.starts_with('0') { '1' } else { '0' }, &secret[1..]));
        fs::write(ring.path(), &flipped).unwrap();
        let e = ring.load().unwrap_err().to_string();
        assert!(e.contains("does not match") && !e.contains(&secret[1..]), "{e}");
        // Broken TOML on the secret's line.
        fs::write(ring.path(), text.replace(&secret_line, &format!("secret = {secret}"))).unwrap();
        let e = ring.load().unwrap_err().to_string();
        assert!(e.contains("not a valid ehrlift key file") && !e.contains(&secret), "{e}");
        // Another project's key.
        fs::write(ring.path(), text.replace("project = \"p\"", "project = \"q\"")).unwrap();
        assert!(ring.load().unwrap_err().to_string().contains("project `q`"));
    }
}
