//! Parquet modular encryption of a table's objects: one data key for the footer (and
//! every column without a key of its own) and one per `rule = "encrypt"` column, made
//! at the start of each attempt at the table and wrapped by KMS or the local keyring.
//!
//! Each key's wrapped form travels in the Parquet file as its key metadata, a small
//! JSON document ([`ColumnKeyMetadata`]) naming the provider, the wrapping key and the
//! context, so an authorized reader needs only access to that key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ehrlift_core::{KeyContext, KeyWrapper, ProjectKey};
use ehrlift_load::{ColumnKey, KeyUnwrap, ModularEncryption, PartEncryption, WrappedKeyId};
use ehrlift_mapping::{CloudSettings, Mapping, Rule};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::PipelineError;

/// The key metadata stored with each encrypted Parquet column and footer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnKeyMetadata {
    /// Format version (1).
    pub ehrlift: u32,
    /// `local` or `aws-kms`.
    pub provider: String,
    /// The wrapping key: a local project key id, or a KMS key ARN.
    pub wrapping_key: String,
    /// What the key is bound to: project, table, and `footer` or `column:NAME`.
    pub context: KeyContext,
    /// The wrapped data key, base64.
    pub wrapped: String,
}

/// The keys of one table for one attempt.
pub(crate) struct TableKeys {
    pub encryption: PartEncryption,
    pub entry: ModularEncryption,
}

fn wrapped_id(wrapped: &[u8]) -> String {
    ehrlift_load::sha256_hex(wrapped)[..16].to_owned()
}

/// Makes the footer key and each encrypted column's key of `m`; `None` when the table is
/// not encrypted.
pub(crate) fn table_keys(wrapper: &dyn KeyWrapper, project: &str, m: &Mapping) -> Result<Option<TableKeys>, PipelineError> {
    if !m.encrypted() {
        return Ok(None);
    }
    let mut ids = Vec::new();
    let mut make = |name: String| -> Result<ColumnKey, PipelineError> {
        let context: KeyContext = [
            ("ehrlift:project".to_owned(), project.to_owned()),
            ("ehrlift:table".to_owned(), m.table.clone()),
            ("ehrlift:key".to_owned(), name.clone()),
        ]
        .into();
        let dk = wrapper.generate(&context)?;
        let meta = ColumnKeyMetadata {
            ehrlift: 1,
            provider: wrapper.provider().to_owned(),
            wrapping_key: wrapper.key_ref(),
            context,
            wrapped: base64::engine::general_purpose::STANDARD.encode(&dk.wrapped),
        };
        ids.push(WrappedKeyId { name, id: wrapped_id(&dk.wrapped) });
        Ok(ColumnKey { key: dk.plaintext, metadata: serde_json::to_vec(&meta).expect("key metadata serializes") })
    };
    let footer = make("footer".to_owned())?;
    let mut columns = Vec::new();
    for c in m.columns.iter().filter(|c| c.rule == Rule::Encrypt) {
        columns.push((c.name.clone(), make(format!("column:{}", c.name))?));
    }
    Ok(Some(TableKeys {
        encryption: PartEncryption { footer, columns },
        entry: ModularEncryption { provider: wrapper.provider().to_owned(), wrapping_key: wrapper.key_ref(), keys: ids },
    }))
}

/// How `ehrlift read` unwraps the keys of encrypted objects: KMS keys through the
/// standard AWS chain (region and insecure-endpoint permission from `cloud`); local keys
/// with `local_key`, the project key of the reader's plan, when given.
pub fn key_unwrapper(cloud: &CloudSettings, local_key: Option<ProjectKey>) -> Arc<KeyUnwrap> {
    let kms_settings = crate::dest::kms_settings(cloud);
    let local = local_key.map(|k| (k.id().to_owned(), ehrlift_kms::LocalWrapper::new(&k)));
    let kms: Mutex<HashMap<String, ehrlift_aws::KmsWrapper>> = Mutex::new(HashMap::new());
    Arc::new(move |bytes: &[u8]| -> Result<Zeroizing<[u8; 32]>, String> {
        let meta: ColumnKeyMetadata =
            serde_json::from_slice(bytes).map_err(|_| "the key metadata is not ehrlift's (written by another tool?)".to_owned())?;
        let what = meta.context.get("ehrlift:key").cloned().unwrap_or_else(|| "a key".into());
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(&meta.wrapped)
            .map_err(|_| format!("the {what} key metadata is damaged (wrapped key not base64)"))?;
        match meta.provider.as_str() {
            "aws-kms" => {
                let mut cache = kms.lock().expect("kms clients");
                if !cache.contains_key(&meta.wrapping_key) {
                    let w = ehrlift_aws::KmsWrapper::new(&meta.wrapping_key, &kms_settings)
                        .map_err(|e| format!("the {what} key is wrapped by KMS key {}: {e}", meta.wrapping_key))?;
                    cache.insert(meta.wrapping_key.clone(), w);
                }
                cache[&meta.wrapping_key]
                    .unwrap(&wrapped, &meta.context)
                    .map_err(|e| format!("the {what} key is wrapped by KMS key {}: {e}", meta.wrapping_key))
            }
            "local" => match &local {
                Some((id, w)) if *id == meta.wrapping_key => w.unwrap(&wrapped, &meta.context).map_err(|e| format!("the {what} key: {e}")),
                Some((id, _)) => {
                    Err(format!("the {what} key is wrapped by local project key {}, and the plan's keyring holds {id}", meta.wrapping_key))
                }
                None => Err(format!(
                    "the {what} key is wrapped by local project key {}: pass --plan with the plan whose keyring holds it",
                    meta.wrapping_key
                )),
            },
            other => Err(format!("the {what} key is wrapped by unknown provider `{other}`")),
        }
    })
}
