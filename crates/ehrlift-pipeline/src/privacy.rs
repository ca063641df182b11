//! The run's privacy setup: the project key (checked against the one the destination
//! was written with), the surrogate vault, and each table's compiled rules.
//!
//! Layout at the destination:
//! - `_ehrlift/keys.json`: provider and id of the key the destination was first
//!   written with ([`KeysRecord`]); a run with another key is refused;
//! - `_ehrlift/keys/project-key.json`: with `provider = "aws-kms"`, the project key
//!   wrapped by KMS ([`WrappedProjectKey`]), unwrapped with `Decrypt` at run start;
//! - `_ehrlift/vault/<run>-<attempt>-<n>.seg`: sealed vault segments, each written
//!   before the commit record of the part whose surrogates it holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use base64::Engine as _;
use chrono::NaiveDate;
use ehrlift_core::{KeyContext, KeyError, KeyProvider, KeyWrapper, ProjectKey};
use ehrlift_deid::PrivacyContext;
use ehrlift_deid::vault::Vault;
use ehrlift_kms::{LocalKeyring, LocalWrapper};
use ehrlift_load::{ObjectStore, ProjectKeyEntry};
use ehrlift_mapping::{KeysConfig, Plan, Rule};
use serde::{Deserialize, Serialize};

use crate::PipelineError;
use crate::replay::{get_json, put_json};

/// Key of the destination's key record.
pub const KEYS_RECORD: &str = "_ehrlift/keys.json";
/// Prefix of vault segments.
pub const VAULT_PREFIX: &str = "_ehrlift/vault/";
/// Key of the vault's durable entry count ([`VaultRecord`]).
pub const VAULT_RECORD: &str = "_ehrlift/vault.json";
/// Segments beyond which a run starts by compacting the vault into one.
const COMPACT_AFTER: usize = 32;
/// New entries (32 bytes each) beyond which the vault is flushed without waiting for
/// the part to commit, so a large part never holds them all in memory twice.
const FLUSH_AFTER: usize = 128 * 1024;

/// `_ehrlift/keys.json`: which key the destination's pseudonyms, tokens, shifts and
/// surrogates were made with. Ids only; never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysRecord {
    /// Format version.
    pub format: u32,
    /// Project name.
    pub project: String,
    /// Provider (`local`).
    pub provider: String,
    /// Key id.
    pub key_id: String,
    /// RFC 3339 time of the first run with the key.
    pub created_at: String,
}

/// `_ehrlift/vault.json`: how many entries the vault's segments held after the last
/// flush. A vault that opens with fewer lost a segment: refused, because its values would
/// silently get new surrogates and stop joining with what was written before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultRecord {
    /// Format version.
    pub format: u32,
    /// Entries durable in the segments.
    pub entries: u64,
}

/// The vault's segments against its record, without the key: segment headers carry
/// their entry counts in the clear. `None` when the destination has no vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultCheck {
    /// Segments found.
    pub segments: usize,
    /// Entries the segments' headers hold (compaction overlap counts twice).
    pub in_segments: u64,
    /// Entries `_ehrlift/vault.json` records as durable.
    pub recorded: u64,
}

impl VaultCheck {
    /// Whether every recorded entry can still be in a segment.
    pub fn ok(&self) -> bool {
        self.in_segments >= self.recorded
    }
}

/// Checks the vault at `store` (for `verify`).
pub fn check_vault(store: &dyn ObjectStore) -> Result<Option<VaultCheck>, PipelineError> {
    let Some(record) = get_json::<VaultRecord>(store, VAULT_RECORD)? else { return Ok(None) };
    let segments = read_segments(store)?;
    let in_segments = segments.iter().map(|(_, bytes)| Vault::entries_in(bytes)).sum();
    Ok(Some(VaultCheck { segments: segments.len(), in_segments, recorded: record.entries }))
}

/// Every vault segment at `store`, as (key, bytes).
fn read_segments(store: &dyn ObjectStore) -> Result<Vec<(String, Vec<u8>)>, PipelineError> {
    let mut segments = Vec::new();
    for o in store.list(VAULT_PREFIX)? {
        if let Some(bytes) = store.get(&o.key)? {
            segments.push((o.key, bytes));
        }
    }
    Ok(segments)
}

/// Key of the KMS-wrapped project key at the destination.
pub const WRAPPED_PROJECT_KEY: &str = "_ehrlift/keys/project-key.json";

/// `_ehrlift/keys/project-key.json`: the project key as a KMS data key, wrapped. The
/// plaintext exists only in memory, after `Decrypt` with the same context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedProjectKey {
    /// Format version.
    pub format: u32,
    /// Project name.
    pub project: String,
    /// ARN of the KMS key that wrapped it.
    pub kms_key_arn: String,
    /// Public id of the project key (`aws-kms:` and 16 hex digits).
    pub key_id: String,
    /// The encryption context it was wrapped with (names only).
    pub context: KeyContext,
    /// The KMS ciphertext blob, base64.
    pub wrapped: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// A project key kept KMS-wrapped at the destination (`[keys] provider = "aws-kms"`).
struct KmsProjectKey<'a> {
    project: String,
    kms: ehrlift_aws::KmsWrapper,
    store: &'a dyn ObjectStore,
}

impl std::fmt::Debug for KmsProjectKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsProjectKey").field("project", &self.project).field("at", &self.location()).finish_non_exhaustive()
    }
}

impl KmsProjectKey<'_> {
    fn context(&self) -> KeyContext {
        [("ehrlift:project".to_owned(), self.project.clone()), ("ehrlift:purpose".to_owned(), "project-key".to_owned())].into()
    }

    fn corrupt(&self, message: impl Into<String>) -> KeyError {
        KeyError::Corrupt { path: self.location().into(), message: message.into() }
    }

    /// A destination failure while reading or writing the wrapped key: transient when
    /// the store's error is (a retry resumes), else a configuration error.
    fn store_error(&self, e: ehrlift_load::StoreError) -> KeyError {
        let transient = e.class() == ehrlift_core::ErrorClass::Transient;
        KeyError::Service { provider: "aws-kms", key: self.location(), message: e.to_string(), transient }
    }
}

impl KeyProvider for KmsProjectKey<'_> {
    fn name(&self) -> &'static str {
        "aws-kms"
    }

    fn location(&self) -> String {
        format!("{}/{WRAPPED_PROJECT_KEY}", self.store.url())
    }

    fn load(&self) -> Result<Option<ProjectKey>, KeyError> {
        let io = |e| self.store_error(e);
        let Some(bytes) = self.store.get(WRAPPED_PROJECT_KEY).map_err(io)? else { return Ok(None) };
        let rec: WrappedProjectKey = serde_json::from_slice(&bytes).map_err(|_| self.corrupt("not a wrapped ehrlift project key"))?;
        if rec.project != self.project {
            return Err(self.corrupt(format!("holds the key of project `{}`, not `{}`", rec.project, self.project)));
        }
        let wrapped =
            base64::engine::general_purpose::STANDARD.decode(&rec.wrapped).map_err(|_| self.corrupt("`wrapped` is not base64"))?;
        let secret = self.kms.unwrap(&wrapped, &rec.context).map_err(|e| match e {
            KeyError::Unwrap { message, .. } => KeyError::Unwrap { what: format!("the project key at {}", self.location()), message },
            other => other,
        })?;
        let key = ProjectKey::new("aws-kms", secret);
        if key.id() != rec.key_id {
            return Err(self.corrupt(format!("`key_id` {} does not match the unwrapped key (the record was edited)", rec.key_id)));
        }
        Ok(Some(key))
    }

    fn create(&self) -> Result<ProjectKey, KeyError> {
        let context = self.context();
        let dk = self.kms.generate(&context)?;
        let key = ProjectKey::new("aws-kms", dk.plaintext);
        let rec = WrappedProjectKey {
            format: 1,
            project: self.project.clone(),
            kms_key_arn: self.kms.key_ref(),
            key_id: key.id().to_owned(),
            context,
            wrapped: base64::engine::general_purpose::STANDARD.encode(&dk.wrapped),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let bytes = serde_json::to_vec_pretty(&rec).expect("the record serializes");
        match self.store.put_new(WRAPPED_PROJECT_KEY, &bytes) {
            Ok(()) => Ok(key),
            Err(ehrlift_load::StoreError::Conflict { .. }) => Err(KeyError::Exists { path: self.location().into() }),
            Err(e) => Err(self.store_error(e)),
        }
    }
}

/// The KMS client of a plan whose `[keys] provider = "aws-kms"`.
fn kms_of(plan: &Plan, key_id: &str) -> Result<ehrlift_aws::KmsWrapper, PipelineError> {
    Ok(ehrlift_aws::KmsWrapper::new(key_id, &crate::dest::kms_settings(&plan.cloud))?)
}

/// The key provider a plan names. An `aws-kms` project key lives at the destination,
/// so it needs `store`.
pub fn key_provider<'a>(plan: &Plan, store: Option<&'a dyn ObjectStore>) -> Result<Box<dyn KeyProvider + 'a>, PipelineError> {
    match &plan.keys {
        KeysConfig::Local { path } => Ok(Box::new(LocalKeyring::new(path, &plan.project))),
        KeysConfig::AwsKms { key_id } => {
            let store = store.ok_or_else(|| {
                PipelineError::Config(format!(
                    "the project key of `{}` is kept KMS-wrapped at its destination: give the destination (--dest, or [destination] url)",
                    plan.project
                ))
            })?;
            Ok(Box::new(KmsProjectKey { project: plan.project.clone(), kms: kms_of(plan, key_id)?, store }))
        }
    }
}

/// What wraps `plan`'s data keys (Parquet column keys): KMS under `[keys] key_id`, or the
/// local keyring under a key derived from the project key.
pub(crate) fn key_wrapper(plan: &Plan, key: &ProjectKey) -> Result<Arc<dyn KeyWrapper>, PipelineError> {
    Ok(match &plan.keys {
        KeysConfig::Local { .. } => Arc::new(LocalWrapper::new(key)),
        KeysConfig::AwsKms { key_id } => Arc::new(kms_of(plan, key_id)?),
    })
}

/// Checks, before anything is written, that the plan's KMS key (if any) exists, is
/// enabled and lets this identity make and unwrap data keys. One line per check.
pub fn check_keys(plan: &Plan) -> Result<Vec<String>, PipelineError> {
    match &plan.keys {
        KeysConfig::Local { path } => Ok(vec![format!("project key in the local keyring at {}", path.display())]),
        KeysConfig::AwsKms { key_id } => {
            let arn = kms_of(plan, key_id)?.check_usable(&plan.project)?;
            Ok(vec![format!("project key wrapped by KMS key {arn}: GenerateDataKey and Decrypt allowed")])
        }
    }
}

/// Whether any rule of `plan` is keyed, a database table resumes by key (its cursor
/// is sealed with the project key), or a table is encrypted (its column keys are
/// wrapped under the project key or KMS), so the run needs the project key.
pub fn needs_key(plan: &Plan) -> bool {
    plan.rules().any(|r| matches!(r, Rule::Pseudonym { .. } | Rule::Surrogate { .. } | Rule::Tokenize { .. } | Rule::ShiftDate { .. }))
        || plan.tables.iter().any(|m| m.db.as_ref().is_some_and(|d| d.resume == ehrlift_mapping::Resume::Keyset))
        || plan.tables.iter().any(ehrlift_mapping::Mapping::encrypted)
}

/// The project key for `plan`, never created: for `reidentify` and tools. With a
/// `store`, the key must be the one the destination was written with.
pub fn load_project_key(plan: &Plan, store: Option<&dyn ObjectStore>) -> Result<ProjectKey, PipelineError> {
    let provider = key_provider(plan, store)?;
    if let Some(s) = store
        && let Some(record) = get_json::<KeysRecord>(s, KEYS_RECORD)?
    {
        return recorded_key(&record, provider.as_ref(), s);
    }
    provider.load()?.ok_or_else(|| {
        PipelineError::Config(format!("no project key at {}: the plan's keyring does not hold this project's key", provider.location()))
    })
}

/// The key `record` names, from `provider`: missing or different is an error, never a new key.
fn recorded_key(record: &KeysRecord, provider: &dyn KeyProvider, store: &dyn ObjectStore) -> Result<ProjectKey, PipelineError> {
    let key = provider.load()?.ok_or_else(|| {
        PipelineError::Config(format!(
            "destination {} was written with key {}, and that key is not at {}: restore the key file from your backup. ehrlift will not make a new key for this destination, because every pseudonym, token, date shift and surrogate would change",
            store.url(),
            record.key_id,
            provider.location()
        ))
    })?;
    if record.key_id != key.id() {
        return Err(PipelineError::Config(format!(
            "destination {} was written with key {} but the keyring at {} holds key {}; pseudonyms, tokens, date shifts and surrogates would not match. Restore the original key file, or write to a new destination",
            store.url(),
            record.key_id,
            provider.location(),
            key.id()
        )));
    }
    Ok(key)
}

/// The key for a run into `store`: the recorded one, or (first run) a key loaded or
/// created in the keyring. A missing key for a destination that has a record is an
/// error, never a silent new key. Writes nothing to the destination; the second value
/// says whether the key record is still to be written.
fn run_key(plan: &Plan, store: &dyn ObjectStore) -> Result<(ProjectKey, bool), PipelineError> {
    let provider = key_provider(plan, Some(store))?;
    match get_json::<KeysRecord>(store, KEYS_RECORD)? {
        Some(record) => Ok((recorded_key(&record, provider.as_ref(), store)?, false)),
        None => {
            let key = match provider.load()? {
                Some(k) => k,
                None => match provider.create() {
                    Ok(k) => {
                        tracing::info!(key_id = %k.id(), location = %provider.location(), "created a new project key; back it up");
                        k
                    }
                    // Another run of the project created it a moment ago.
                    Err(ehrlift_core::KeyError::Exists { .. }) => provider.load()?.ok_or_else(|| {
                        PipelineError::Config(format!("key file {} appeared and vanished while being created", provider.location()))
                    })?,
                    Err(e) => return Err(e.into()),
                },
            };
            Ok((key, true))
        }
    }
}

/// Writes the destination's key record once: if another process (a shard starting at the
/// same moment) wrote it first, it must name the same key.
fn write_keys_record(store: &dyn ObjectStore, record: &KeysRecord) -> Result<(), PipelineError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(|e| PipelineError::Internal(format!("serialize {KEYS_RECORD}: {e}")))?;
    match store.put_new(KEYS_RECORD, &bytes) {
        Err(ehrlift_load::StoreError::Conflict { .. }) => match get_json::<KeysRecord>(store, KEYS_RECORD)? {
            Some(theirs) if theirs.key_id == record.key_id && theirs.provider == record.provider => Ok(()),
            _ => Err(PipelineError::Config(format!(
                "another run recorded a different project key at {} while this one started; the plan's keyring must be the same for every shard",
                store.url()
            ))),
        },
        other => Ok(other?),
    }
}

/// Where new vault entries go: one segment per committed part that assigned any.
pub(crate) struct VaultSink {
    pub vault: Arc<Vault>,
    prefix: String,
    next: AtomicU32,
    /// Entries durable in segments (opened plus flushed).
    durable: AtomicU64,
    /// Whether flushes update `_ehrlift/vault.json`. Shards do not (each sees only its
    /// own flushes); `finalize` records the merged vault's count.
    record: bool,
}

impl VaultSink {
    /// Flushes when many entries are pending; called after every batch.
    pub(crate) fn flush_if_large(&self, store: &dyn ObjectStore) -> Result<(), PipelineError> {
        if self.vault.pending_len() >= FLUSH_AFTER { self.flush(store) } else { Ok(()) }
    }

    /// Writes the entries assigned since the last flush, durably, before the caller
    /// commits the part that uses them. Names are unique per attempt, so a segment of
    /// an interrupted attempt (whose entries a committed part may use) is never replaced.
    pub(crate) fn flush(&self, store: &dyn ObjectStore) -> Result<(), PipelineError> {
        if let Some(seg) = self.vault.take_pending() {
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            store.put(&format!("{}{n:06}.seg", self.prefix), &seg)?;
            let added = Vault::entries_in(&seg);
            let entries = self.durable.fetch_add(added, Ordering::SeqCst) + added;
            if self.record {
                put_json(store, VAULT_RECORD, &VaultRecord { format: 1, entries })?;
            }
        }
        Ok(())
    }

    /// Entries durable in the vault's segments.
    pub(crate) fn entries(&self) -> u64 {
        self.durable.load(Ordering::SeqCst)
    }
}

/// The privacy side of one run.
pub(crate) struct RunPrivacy {
    pub ctx: PrivacyContext,
    /// Wraps the column keys of encrypted tables.
    pub wrapper: Option<Arc<dyn KeyWrapper>>,
    /// The project key's provider and where it is kept, for the manifest.
    pub project_key: Option<ProjectKeyEntry>,
    pub vault: Option<VaultSink>,
    /// Seals database keyset cursors (a key value may be PHI) in checkpoints and manifests.
    pub cursor_seal: Option<ehrlift_extract::sql::CursorSeal>,
}

/// What [`prepare`] found: the key and the opened vault, checked, nothing written yet.
pub(crate) struct Prepared {
    key: Option<ProjectKey>,
    write_record: bool,
    vault: Option<(Vault, Vec<String>)>,
}

/// Loads (or, on a destination's first keyed run, creates in the keyring) the project
/// key, checks it against the destination's record, and opens and checks the vault:
/// every refusal happens here, before the run touches the destination.
pub(crate) fn prepare(plan: &Plan, store: &dyn ObjectStore) -> Result<Prepared, PipelineError> {
    if !needs_key(plan) {
        return Ok(Prepared { key: None, write_record: false, vault: None });
    }
    let (key, write_record) = run_key(plan, store)?;
    let vault = if ehrlift_deid::needs_vault(plan) {
        let segments = read_segments(store)?;
        let listed: Vec<String> = segments.iter().map(|(k, _)| k.clone()).collect();
        let vault = Vault::open(ehrlift_deid::vault_keys(&key), segments)
            .map_err(|e| PipelineError::Config(format!("surrogate vault at {}{VAULT_PREFIX}: {e}", store.url())))?;
        if let Some(r) = get_json::<VaultRecord>(store, VAULT_RECORD)?
            && (vault.len() as u64) < r.entries
        {
            return Err(PipelineError::Config(format!(
                "surrogate vault at {}{VAULT_PREFIX} holds {} entries but {} were written: a segment was deleted or replaced. Restore `{VAULT_PREFIX}` from a backup; ehrlift will not give values that already have a surrogate a new one",
                store.url(),
                vault.len(),
                r.entries
            )));
        }
        Some((vault, listed))
    } else {
        None
    };
    Ok(Prepared { key: Some(key), write_record, vault })
}

impl Prepared {
    /// Records the key at the destination on its first keyed run, compacts the vault
    /// when it has many segments, and builds the run's privacy context. A shard
    /// (`Some(index)`) writes vault segments of its own names, never compacts (other
    /// shards read the segments meanwhile) and sweeps only its own leftovers.
    pub(crate) fn finish(
        self,
        plan: &Plan,
        store: &dyn ObjectStore,
        run_id: &str,
        attempt: u32,
        reference_date: NaiveDate,
        shard: Option<u32>,
    ) -> Result<RunPrivacy, PipelineError> {
        let Some(key) = self.key else {
            return Ok(RunPrivacy {
                ctx: PrivacyContext::new(None, &plan.privacy, reference_date, None),
                wrapper: None,
                project_key: None,
                vault: None,
                cursor_seal: None,
            });
        };
        if self.write_record {
            let record = KeysRecord {
                format: 1,
                project: plan.project.clone(),
                provider: key.provider().to_owned(),
                key_id: key.id().to_owned(),
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            write_keys_record(store, &record)?;
        }
        let vault = match self.vault {
            Some((vault, listed)) => {
                let prefix = match shard {
                    None => {
                        store.sweep_incomplete(VAULT_PREFIX)?;
                        format!("{VAULT_PREFIX}{run_id}-{attempt:03}-")
                    }
                    Some(i) => {
                        store.sweep_incomplete(&format!("{VAULT_PREFIX}{run_id}-s{i:04}-"))?;
                        format!("{VAULT_PREFIX}{run_id}-s{i:04}-{attempt:03}-")
                    }
                };
                if listed.len() > COMPACT_AFTER && shard.is_none() {
                    store.put(&format!("{prefix}compact.seg"), &vault.seal_all())?;
                    for k in &listed {
                        store.delete(k)?;
                    }
                    tracing::info!(segments = listed.len(), entries = vault.len(), "compacted the surrogate vault");
                }
                tracing::info!(entries = vault.len(), "surrogate vault opened");
                let durable = AtomicU64::new(vault.len() as u64);
                Some(VaultSink { vault: Arc::new(vault), prefix, next: AtomicU32::new(1), durable, record: shard.is_none() })
            }
            None => None,
        };
        let cursor_seal = Some(ehrlift_extract::sql::CursorSeal::new(&key.derive("ehrlift/cursor/v1")));
        let wrapper = if plan.tables.iter().any(ehrlift_mapping::Mapping::encrypted) { Some(key_wrapper(plan, &key)?) } else { None };
        let project_key = Some(ProjectKeyEntry {
            provider: key.provider().to_owned(),
            key_id: key.id().to_owned(),
            wrapping_key: match &plan.keys {
                KeysConfig::AwsKms { .. } => get_json::<WrappedProjectKey>(store, WRAPPED_PROJECT_KEY)?.map(|r| r.kms_key_arn),
                KeysConfig::Local { .. } => None,
            },
            wrapped_key: matches!(plan.keys, KeysConfig::AwsKms { .. }).then(|| WRAPPED_PROJECT_KEY.to_owned()),
        });
        let ctx = PrivacyContext::new(Some(key), &plan.privacy, reference_date, vault.as_ref().map(|v| v.vault.clone()));
        Ok(RunPrivacy { ctx, wrapper, project_key, vault, cursor_seal })
    }
}
