//! Posting to WebSocket connections through API Gateway's management API.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::primitives::Blob;

/// Why a post failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PostError {
    /// The connection is gone (HTTP 410): delete it.
    #[error("connection is gone")]
    Gone,
    /// Throttling, 5xx, timeouts: worth retrying.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Anything else (too large, forbidden): retrying will not help.
    #[error("failed: {0}")]
    Fatal(String),
}

/// Sends frames to connections.
#[async_trait]
pub trait ConnectionGateway: Send + Sync {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError>;
    /// Closes a connection from the server side (API Gateway then delivers `$disconnect`);
    /// a connection already gone is fine.
    async fn close(&self, connection_id: &str) -> Result<(), PostError>;
}

/// The API Gateway management API (`WEBSOCKET_ENDPOINT`: `https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
#[derive(Debug, Clone)]
pub struct ApiGatewayManagement {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayManagement {
    /// A client for `endpoint`, built from the shared SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

fn classify<E, R>(
    e: aws_sdk_apigatewaymanagement::error::SdkError<E, R>,
    gone: impl Fn(&E) -> bool,
) -> PostError
where
    E: aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_apigatewaymanagement::error::SdkError;
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            if gone(err) {
                return PostError::Gone;
            }
            let code = err.code().unwrap_or("error").to_owned();
            let message = format!("{code}: {}", err.message().unwrap_or(""));
            if code == "LimitExceededException"
                || code.contains("Throttl")
                || code.contains("ServiceUnavailable")
                || code.contains("InternalServer")
            {
                PostError::Retryable(message)
            } else {
                PostError::Fatal(message)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PostError::Retryable(format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ))
        }
        _ => PostError::Fatal(e.to_string()),
    }
}

#[async_trait]
impl ConnectionGateway for ApiGatewayManagement {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        self.client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(e, |err| err.is_gone_exception()))
    }

    async fn close(&self, connection_id: &str) -> Result<(), PostError> {
        match self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map_err(|e| classify(e, |err| err.is_gone_exception()))
        {
            Ok(_) | Err(PostError::Gone) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
