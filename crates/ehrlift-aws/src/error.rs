//! What an AWS call's failure means for ehrlift: its HTTP status and error code, whether
//! a retry may cure it, and the service's message (never a request or response body).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use ehrlift_load::StoreError;

/// Error codes that mean "slow down" or "try again" whatever their status.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "KMSInternalException",
    "DependencyTimeoutException",
    "ServiceUnavailable",
    "OperationAborted",
];

/// A failed AWS call, classified.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// HTTP status, when a response came back.
    pub status: Option<u16>,
    /// The service's error code (`NoSuchKey`, `PreconditionFailed`, `NotFoundException`).
    pub code: Option<String>,
    /// Whether a retry may help (throttling, 5xx, timeouts, connection failures).
    pub transient: bool,
    /// The SDK's description with the service's message.
    pub message: String,
}

impl Failure {
    /// Classifies an SDK error of any S3 or KMS operation.
    pub fn of<E>(err: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let transient = match err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => {
                matches!(status, Some(s) if s >= 500 || s == 429) || code.as_deref().is_some_and(|c| TRANSIENT_CODES.contains(&c))
            }
            _ => false,
        };
        Failure { status, code, transient, message: DisplayErrorContext(err).to_string() }
    }

    /// A failure outside the SDK (a body stream cut off, an answer missing a field).
    pub fn other(message: impl Into<String>, transient: bool) -> Failure {
        Failure { status: None, code: None, transient, message: message.into() }
    }

    /// The object (or upload, or KMS key) does not exist. A missing bucket is not this:
    /// it must not read as "object absent".
    pub fn is_not_found(&self) -> bool {
        match self.code.as_deref() {
            Some("NoSuchBucket") => false,
            Some("NoSuchKey" | "NotFound" | "NoSuchUpload" | "NotFoundException") => true,
            _ => self.status == Some(404),
        }
    }

    /// The bucket does not exist.
    pub fn is_no_such_bucket(&self) -> bool {
        self.code.as_deref() == Some("NoSuchBucket")
    }

    /// A conditional request lost (`If-None-Match`, `If-Match`).
    pub fn is_precondition_failed(&self) -> bool {
        self.status == Some(412) || self.code.as_deref() == Some("PreconditionFailed")
    }

    /// The identity may not do this.
    pub fn is_access_denied(&self) -> bool {
        self.status == Some(403) || matches!(self.code.as_deref(), Some("AccessDenied" | "AccessDeniedException"))
    }

    /// As a store error about `what` (an `s3://` URL of a bucket, object or prefix).
    pub fn store(self, op: &'static str, what: impl Into<String>) -> StoreError {
        StoreError::Remote { op, key: what.into(), message: self.message, transient: self.transient }
    }
}
