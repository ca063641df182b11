//! Connecting to AWS: the standard configuration chain, the endpoint each client will
//! really use (vetted before anything is sent), retries, and the runtime that drives
//! the SDK under ehrlift's synchronous traits.

use std::future::Future;
use std::sync::OnceLock;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::ProvideCredentials;
use aws_types::service_config::ServiceConfigKey;

/// How to reach AWS. Everything not set here comes from the standard AWS chain
/// (environment, shared config and credentials files and their profiles, SSO,
/// `credential_process`, web identity, ECS and EC2 instance metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region (`us-east-1`); else `AWS_REGION` or the profile's region.
    pub region: Option<String>,
    /// Endpoint of S3 and KMS (a local test server, a VPC endpoint); else the standard
    /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL_KMS` / `AWS_ENDPOINT_URL` variables or
    /// the profile's `endpoint_url`, else AWS's own endpoints.
    pub endpoint_url: Option<String>,
    /// Address buckets as `https://endpoint/bucket/key` rather than
    /// `https://bucket.endpoint/key` (most S3-compatible test servers need it).
    pub path_style: bool,
    /// Allow a plain `http://` endpoint. Off by default: object contents and data keys
    /// would cross the network unencrypted. Only for a test server on this machine.
    pub allow_insecure_endpoint: bool,
}

/// An AWS service ehrlift talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    S3,
    Kms,
}

impl Service {
    /// The SDK's service id, as used by `AWS_ENDPOINT_URL_<ID>` and profile `services`.
    fn id(self) -> &'static str {
        match self {
            Service::S3 => "S3",
            Service::Kms => "KMS",
        }
    }
}

/// Attempts per SDK call when neither the environment nor the profile says otherwise
/// (the SDK's own default is 3).
const SDK_MAX_ATTEMPTS: u32 = 5;
/// The SDK's default attempt count: when loaded, nobody chose another.
const SDK_DEFAULT_ATTEMPTS: u32 = 3;

/// The loaded configuration: the SDK's shared config plus the retry policy to apply.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    sdk: SdkConfig,
    retry: RetryConfig,
    settings: AwsSettings,
}

/// Loads the standard AWS configuration chain with `settings` on top and checks that it
/// has a region and credentials. Errors are configuration refusals, as text.
pub(crate) fn load(settings: &AwsSettings) -> Result<Loaded, String> {
    block_on(load_async(settings.clone()))
}

async fn load_async(settings: AwsSettings) -> Result<Loaded, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint.clone());
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err("no AWS region configured: set region in [destination], or AWS_REGION, or a region in the AWS profile".into());
    }
    let Some(provider) = sdk.credentials_provider() else {
        return Err("no AWS credentials provider is configured".into());
    };
    if let Err(e) = provider.provide_credentials().await {
        return Err(format!(
            "no AWS credentials found; tried, in order: environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), \
             the shared config and credentials files (profile {}; static keys, SSO, credential_process, assume-role), \
             web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS container endpoint and EC2 instance metadata (IMDS): {}",
            std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into()),
            error_chain(&e)
        ));
    }
    // Standard mode (or adaptive when AWS_RETRY_MODE / the profile says so), with more
    // attempts than the SDK's default unless someone chose a number.
    let mut retry = sdk.retry_config().cloned().unwrap_or_else(RetryConfig::standard);
    if retry.max_attempts() == SDK_DEFAULT_ATTEMPTS {
        retry = retry.with_max_attempts(SDK_MAX_ATTEMPTS);
    }
    Ok(Loaded { sdk, retry, settings })
}

/// An error and its sources, by their `Display` only (the SDK's `DisplayErrorContext`
/// appends a `Debug` dump, too long for a configuration message).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Loaded {
    /// The endpoint the client of `service` will use: the settings', else the
    /// service-specific and global variables and profile keys the SDK itself reads,
    /// with where it came from. `None` means AWS's own (https) endpoints.
    fn endpoint(&self, service: Service) -> Option<(String, &'static str)> {
        if let Some(e) = &self.settings.endpoint_url {
            return Some((e.clone(), "endpoint_url in the settings"));
        }
        let key = ServiceConfigKey::builder()
            .service_id(service.id())
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("service id, env and profile are all set");
        if let Some(e) = self.sdk.service_config().and_then(|c| c.load_config(key)) {
            return Some((e, "AWS_ENDPOINT_URL_* / AWS_ENDPOINT_URL or the AWS profile"));
        }
        self.sdk.endpoint_url().map(|e| (e.to_owned(), "AWS_ENDPOINT_URL or the AWS profile"))
    }

    /// Refuses a plain-http endpoint unless the settings allow it.
    fn vet_endpoint(&self, service: Service) -> Result<Option<String>, String> {
        let Some((endpoint, from)) = self.endpoint(service) else { return Ok(None) };
        let scheme = endpoint.split("://").next().unwrap_or_default().to_ascii_lowercase();
        if scheme == "http" && !self.settings.allow_insecure_endpoint {
            return Err(format!(
                "the {} endpoint {endpoint} (from {from}) is plain http://: records and keys would cross the network \
                 unencrypted, so ehrlift refuses it. Use an https:// endpoint, or set allow_insecure_endpoint = true \
                 for a test server on this machine",
                service.id()
            ));
        }
        if scheme != "http" && scheme != "https" {
            return Err(format!("the {} endpoint {endpoint} (from {from}) is not an http(s) URL", service.id()));
        }
        Ok(Some(endpoint))
    }

    /// An S3 client on the vetted endpoint.
    pub(crate) fn s3(&self) -> Result<aws_sdk_s3::Client, String> {
        let endpoint = self.vet_endpoint(Service::S3)?;
        let mut b =
            aws_sdk_s3::config::Builder::from(&self.sdk).retry_config(self.retry.clone()).force_path_style(self.settings.path_style);
        if let Some(e) = endpoint {
            b = b.endpoint_url(e);
        }
        Ok(aws_sdk_s3::Client::from_conf(b.build()))
    }

    /// A KMS client on the vetted endpoint.
    pub(crate) fn kms(&self) -> Result<aws_sdk_kms::Client, String> {
        let endpoint = self.vet_endpoint(Service::Kms)?;
        let mut b = aws_sdk_kms::config::Builder::from(&self.sdk).retry_config(self.retry.clone());
        if let Some(e) = endpoint {
            b = b.endpoint_url(e);
        }
        Ok(aws_sdk_kms::Client::from_conf(b.build()))
    }

    /// The region in use, for messages.
    pub(crate) fn region(&self) -> String {
        self.sdk.region().map(|r| r.to_string()).unwrap_or_default()
    }
}

/// The runtime that drives every SDK call of this process. One for all stores and key
/// wrappers: it is never dropped, so no drop can happen inside an async context, and
/// many stores (tests, several destinations) share two worker threads.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ehrlift-aws")
            .enable_all()
            .build()
            .expect("cannot start the AWS runtime threads")
    })
}

/// A handle to spawn upload tasks on.
pub(crate) fn handle() -> tokio::runtime::Handle {
    runtime().handle().clone()
}

/// Runs `f` to completion from synchronous code. Called from inside another tokio
/// runtime (where blocking on ours would panic), it blocks a helper thread instead.
pub(crate) fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(|| runtime().block_on(f)).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    } else {
        runtime().block_on(f)
    }
}

/// Sleeps before retry `attempt` (1-based): exponential from `base_ms`, with jitter
/// so that parallel retries spread out.
pub(crate) async fn backoff(attempt: u32, base_ms: u64) {
    let exp = base_ms.saturating_mul(1 << attempt.min(6));
    let mut r = [0u8; 2];
    let jitter = match getrandom::fill(&mut r) {
        Ok(()) => u64::from(u16::from_le_bytes(r)) % (exp / 2 + 1),
        Err(_) => 0,
    };
    tokio::time::sleep(std::time::Duration::from_millis(exp / 2 + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(endpoint: &str, allow: bool) -> Loaded {
        let settings = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(endpoint.into()),
            path_style: true,
            allow_insecure_endpoint: allow,
        };
        let sdk = SdkConfig::builder().region(Region::new("us-east-1")).endpoint_url(endpoint).build();
        Loaded { sdk, retry: RetryConfig::standard(), settings }
    }

    #[test]
    fn plain_http_endpoints_are_refused_unless_allowed() {
        let e = loaded("http://127.0.0.1:9", false).vet_endpoint(Service::S3).unwrap_err();
        assert!(e.contains("http://127.0.0.1:9") && e.contains("allow_insecure_endpoint"), "{e}");
        assert_eq!(loaded("http://127.0.0.1:9", true).vet_endpoint(Service::Kms).unwrap().as_deref(), Some("http://127.0.0.1:9"));
        assert!(loaded("https://s3.example", false).vet_endpoint(Service::S3).is_ok());
        assert!(loaded("ftp://x", true).vet_endpoint(Service::S3).is_err());
    }
}
