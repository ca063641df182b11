//! Opening a destination: the local directory, or an S3 prefix written with SSE-KMS.

use ehrlift_aws::{AwsSettings, S3Settings};
use ehrlift_load::{ObjectStore, open_store};
use ehrlift_mapping::{CloudSettings, Plan};

use crate::PipelineError;

/// Flags that override the plan's `[destination]` for one command.
#[derive(Debug, Clone, Default)]
pub struct DestOverrides {
    /// `--dest URL`.
    pub url: Option<String>,
    /// `--kms-key KEY_ID_OR_ARN`.
    pub kms_key: Option<String>,
    /// `--endpoint-url URL`.
    pub endpoint_url: Option<String>,
}

/// AWS settings of S3 calls from the plan's `[destination]` and the flags.
pub fn s3_settings(cloud: &CloudSettings, o: &DestOverrides) -> AwsSettings {
    AwsSettings {
        region: cloud.region.clone(),
        endpoint_url: o.endpoint_url.clone().or_else(|| cloud.endpoint_url.clone()),
        path_style: cloud.path_style,
        allow_insecure_endpoint: cloud.allow_insecure_endpoint,
    }
}

/// AWS settings of KMS calls: the plan's region; the endpoint from the standard
/// `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL` (the `[destination]` endpoint is S3's).
pub fn kms_settings(cloud: &CloudSettings) -> AwsSettings {
    AwsSettings {
        region: cloud.region.clone(),
        endpoint_url: None,
        path_style: false,
        allow_insecure_endpoint: cloud.allow_insecure_endpoint,
    }
}

/// Opens a destination URL: `file://PATH` (or a bare path, relative to the working
/// directory) or `s3://BUCKET/PREFIX`. An S3 destination writes only with a KMS key.
pub fn open_destination(url: &str, project: &str, cloud: &CloudSettings, o: &DestOverrides) -> Result<Box<dyn ObjectStore>, PipelineError> {
    if url.starts_with("s3://") {
        ehrlift_mapping::check_s3_url(url).map_err(PipelineError::Config)?;
        let kms_key = o.kms_key.clone().or_else(|| cloud.kms_key.clone()).unwrap_or_default();
        let settings = S3Settings {
            allow_non_kms_bucket: cloud.allow_non_kms_bucket,
            part_size: cloud.multipart_part_mib as usize * 1024 * 1024,
            upload_concurrency: cloud.upload_concurrency as usize,
            ..S3Settings::new(kms_key, project)
        };
        return Ok(Box::new(ehrlift_aws::open_s3(url, settings, &s3_settings(cloud, o))?));
    }
    if url.contains("://") && !url.starts_with("file://") {
        return Err(PipelineError::Config(format!("unsupported destination `{url}`; expected file://PATH or s3://BUCKET/PREFIX")));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    let abs = std::path::absolute(path).map_err(|e| PipelineError::Config(format!("destination `{url}`: {e}")))?;
    Ok(open_store(&format!("file://{}", abs.display()))?)
}

/// The destination of `plan`: `--dest` or the plan's `[destination] url`. An S3
/// destination opened without a KMS key reads (`status`, `reidentify`) but refuses every
/// write, and its preflight (the first thing `run` does) says which setting is missing.
pub fn plan_destination(plan: &Plan, o: &DestOverrides) -> Result<Box<dyn ObjectStore>, PipelineError> {
    let url = o.url.clone().or_else(|| plan.destination.clone()).ok_or_else(|| {
        PipelineError::Config("no destination: set [destination] url in the plan or pass --dest file://PATH or s3://BUCKET/PREFIX".into())
    })?;
    open_destination(&url, &plan.project, &plan.cloud, o)
}
