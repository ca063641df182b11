//! `ehrlift verify`: every object of the current run against its manifest.

use std::io::Read;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, RunState, RunStatus, STATE_KEY, manifest_key};
use crate::store::{ObjectStore, StoreError};

/// What is wrong with one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// In the manifest, not in the store.
    Missing,
    /// In the store under a data or quarantine prefix, not in the manifest.
    Extra,
    /// Size or SHA-256 differs from the manifest.
    Altered,
    /// Not encrypted at rest with SSE-KMS (S3).
    NotEncrypted,
    /// Encrypted with another KMS key than the manifest's (or the plan's).
    WrongKey,
}

/// One problem, naming the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Object key.
    pub key: String,
    /// What is wrong.
    pub kind: FindingKind,
}

/// Result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Run verified.
    pub run_id: String,
    /// Objects checked.
    pub objects_checked: usize,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// Rows the manifest records in data objects.
    pub rows: u64,
    /// The KMS key every object must be encrypted with (S3), as checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    /// Problems; empty means verified.
    pub findings: Vec<Finding>,
}

/// Why verify could not even start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No ehrlift run at this destination.
    #[error("no ehrlift run found at {0} (no _ehrlift/state.json)")]
    NoRun(String),
    /// The current run has no manifest yet.
    #[error(
        "run {0} has not finished; there is no manifest to verify yet (run `ehrlift run` again to resume it; a sharded run: its unfinished shards, then `ehrlift finalize`)"
    )]
    Unfinished(String),
    /// The state or manifest is not valid JSON of the expected shape.
    #[error("{key} is corrupt: {message}")]
    Corrupt {
        /// Object key.
        key: String,
        /// Parser message.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks every object the current run's manifest lists (exists, size, SHA-256), and
/// that no unlisted object sits under the run's tables or quarantine. On a store that
/// encrypts at rest (S3), every object must be SSE-KMS under the manifest's key, and
/// that key must be `expected_kms_key` (an ARN) when given.
pub fn verify(store: &dyn ObjectStore, expected_kms_key: Option<&str>) -> Result<VerifyReport, VerifyError> {
    let state: RunState = read_json(store, STATE_KEY)?.ok_or_else(|| VerifyError::NoRun(store.url()))?;
    if state.status == RunStatus::Running {
        return Err(VerifyError::Unfinished(state.run_id));
    }
    let key = manifest_key(&state.run_id);
    let manifest: Manifest = read_json(store, &key)?.ok_or_else(|| VerifyError::Corrupt { key: key.clone(), message: "missing".into() })?;
    let kms_key = manifest.destination_encryption.as_ref().map(|e| e.kms_key_arn.clone());
    let mut report = VerifyReport {
        run_id: manifest.run_id.clone(),
        objects_checked: 0,
        bytes_hashed: 0,
        rows: 0,
        kms_key_arn: kms_key.clone(),
        findings: Vec::new(),
    };
    if let Some(want) = expected_kms_key
        && kms_key.as_deref() != Some(want)
    {
        report.findings.push(Finding { key: manifest_key(&state.run_id), kind: FindingKind::WrongKey });
    }
    let at_rest = store.encryption().is_some() || kms_key.is_some();
    let mut buf = vec![0u8; 1 << 20];
    for obj in &manifest.objects {
        if at_rest {
            match store.object_encryption(&obj.key)? {
                Some(e) if e.algorithm != "aws:kms" => {
                    report.findings.push(Finding { key: obj.key.clone(), kind: FindingKind::NotEncrypted })
                }
                Some(e) if kms_key.is_some() && e.kms_key_id != kms_key => {
                    report.findings.push(Finding { key: obj.key.clone(), kind: FindingKind::WrongKey })
                }
                _ => {}
            }
        }
        report.objects_checked += 1;
        if obj.kind == crate::ObjectKind::Data {
            report.rows += obj.rows;
        }
        let Some(mut r) = store.reader(&obj.key)? else {
            report.findings.push(Finding { key: obj.key.clone(), kind: FindingKind::Missing });
            continue;
        };
        let mut h = Sha256::new();
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf).map_err(|source| StoreError::Io { op: "read", key: obj.key.clone(), source })?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        report.bytes_hashed += n;
        if n != obj.bytes || hex::encode(h.finalize()) != obj.sha256 {
            report.findings.push(Finding { key: obj.key.clone(), kind: FindingKind::Altered });
        }
    }
    let listed: std::collections::HashSet<&str> = manifest.objects.iter().map(|o| o.key.as_str()).collect();
    for t in &manifest.tables {
        for prefix in [format!("{}/", t.table), format!("_quarantine/{}/", t.table)] {
            for o in store.list(&prefix)? {
                if !listed.contains(o.key.as_str()) {
                    report.findings.push(Finding { key: o.key, kind: FindingKind::Extra });
                }
            }
        }
    }
    Ok(report)
}

/// Reads and parses a JSON object; `None` if absent.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(store: &dyn ObjectStore, key: &str) -> Result<Option<T>, VerifyError> {
    match store.get(key)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| VerifyError::Corrupt { key: key.to_owned(), message: e.to_string() }),
    }
}
