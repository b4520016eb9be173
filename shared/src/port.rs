//! How a port (queue, table, registry, gateway, ledger) reports a failed call to the
//! outside system behind it: the cause, and so whether trying again can help.
//!
//! Each port's error type is this enum (`QueueError`, `FacilityError`, `RegistryError`,
//! `LedgerError` are its names at each port), so a caller can back off on throttling, retry
//! a timeout and give up on a refusal without reading messages.

/// A failed call to an outside system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The service throttled the call: retry later, with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A timeout, a connection failure or a 5xx: retrying can help.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (validation, access denied, missing resource, too large): retrying
    /// the same call will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The reply, or an item it read, is not what this code wrote: a bug or a foreign item.
    #[error("unreadable: {0}")]
    Malformed(String),
}

impl PortError {
    /// Whether the same call may succeed later.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Unavailable(_))
    }

    /// Classifies an AWS SDK error (every SDK crate's `SdkError` is the same type).
    pub fn from_sdk<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_sdk_sqs::error::SdkError;
        let detail = crate::aws::describe_sdk_error(e);
        match e {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => Self::Unavailable(detail),
            SdkError::ServiceError(se) => {
                let code = se.err().code().unwrap_or("");
                if THROTTLING_CODES.contains(&code) {
                    Self::Throttled(detail)
                } else if UNAVAILABLE_CODES.contains(&code) {
                    Self::Unavailable(detail)
                } else {
                    Self::Refused(detail)
                }
            }
            _ => Self::Refused(detail),
        }
    }
}

/// Error codes AWS services answer when they throttle.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
    "SlowDown",
];

/// Error codes of a service-side failure worth retrying.
const UNAVAILABLE_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionInProgressException",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_and_outages_are_retryable() {
        assert!(PortError::Throttled("x".into()).retryable());
        assert!(PortError::Unavailable("x".into()).retryable());
        assert!(!PortError::Refused("x".into()).retryable());
        assert!(!PortError::Malformed("x".into()).retryable());
        assert_eq!(
            PortError::Refused("AccessDeniedException: no".into()).to_string(),
            "refused: AccessDeniedException: no"
        );
    }
}
