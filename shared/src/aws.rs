//! AWS SDK configuration, built once per cold start.
//!
//! Every client of a function is built from an [`SdkConfig`] that carries one process-wide
//! HTTPS client, so all of them share one connection pool. [`warm_up`] makes one cheap call
//! per endpoint a function uses while it starts: DNS, TCP and the TLS handshake then happen
//! during init, and the first request finds an open connection.

use crate::config::AwsSettings;
pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// The SDK configuration of a function in Lambda: region and credentials from the
/// environment variables Lambda sets (`AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), `AWS_ENDPOINT_URL` when set, and one shared
/// HTTPS client.
///
/// It deliberately skips the SDK's default provider chains (profiles, SSO, STS web
/// identity, IMDS, ECS): Lambda never needs them, and leaving them out keeps them out of the
/// binaries and out of the cold start. Tests and the local stack use [`local_sdk_config`].
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .map(Region::new);
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        ))
        .http_client(https_client());
    builder.set_region(region);
    if let Some(url) = &settings.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    builder.build()
}

/// The SDK's default HTTPS stack (hyper 1, rustls with aws-lc), built once per process so
/// that every client made by [`sdk_config`] shares its connections (a Lambda process runs
/// one Tokio runtime).
fn https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    static CLIENT: std::sync::OnceLock<aws_sdk_sqs::config::SharedHttpClient> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .build_https()
        })
        .clone()
}

/// A configuration for a local emulator: fixed region and dummy credentials, so nothing
/// reads the developer's AWS profile.
pub async fn local_sdk_config(endpoint_url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "local", "local", None, None, "local",
        ))
        .load()
        .await
}

/// One warm-up call to an endpoint a function uses, made by [`queue`], [`table`] or
/// [`connections`] (separate functions, so a binary links only the clients it warms).
pub struct WarmUp {
    endpoint: &'static str,
    call: Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
}

impl std::fmt::Debug for WarmUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmUp")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// How long one warm-up call may take; a slow endpoint delays the start by at most this.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a connection to each endpoint, concurrently. The calls use clients built from an
/// [`SdkConfig`] of [`sdk_config`], so the connections land in the pool the function's own
/// clients use. An answer of any kind, errors included, leaves an open connection behind;
/// only a failure to connect is logged, as a warning. Never fails the start: the first
/// request would connect anyway.
pub async fn warm_up(calls: Vec<WarmUp>) {
    let calls = calls
        .into_iter()
        .map(|WarmUp { endpoint, call }| async move {
            let started = Instant::now();
            let outcome = tokio::time::timeout(WARM_UP_TIMEOUT, call).await;
            let ms = started.elapsed().as_millis() as u64;
            match outcome {
                Ok(Ok(())) => tracing::debug!(endpoint, ms, "connection opened"),
                Ok(Err(e)) => tracing::warn!(endpoint, ms, error = %e, "warm-up failed to connect"),
                Err(_) => tracing::warn!(endpoint, ms, "warm-up timed out"),
            }
        });
    futures::future::join_all(calls).await;
}

/// SQS: `GetQueueAttributes` on `queue_url` (`sqs:GetQueueAttributes`).
pub fn queue(sdk: &SdkConfig, queue_url: &str) -> WarmUp {
    let client = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .retry_config(no_retries())
            .build(),
    );
    let call = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send();
    WarmUp {
        endpoint: "sqs",
        call: Box::pin(async move { answered(call.await) }),
    }
}

/// DynamoDB: `DescribeTable` on `table` (`dynamodb:DescribeTable`).
pub fn table(sdk: &SdkConfig, table: &str) -> WarmUp {
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .retry_config(no_retries())
            .build(),
    );
    let call = client.describe_table().table_name(table).send();
    WarmUp {
        endpoint: "dynamodb",
        call: Box::pin(async move { answered(call.await) }),
    }
}

/// The API Gateway management API at `endpoint`: `GetConnection` on a connection that does
/// not exist (`execute-api:ManageConnections`).
pub fn connections(sdk: &SdkConfig, endpoint: &str) -> WarmUp {
    let client = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .retry_config(no_retries())
            .build(),
    );
    let call = client
        .get_connection()
        .connection_id("cold-start-warm-up")
        .send();
    WarmUp {
        endpoint: "execute-api",
        call: Box::pin(async move { answered(call.await) }),
    }
}

fn no_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::disabled()
}

/// `Ok` when the service answered (even with an error), `Err` when no answer came (DNS,
/// connect, TLS, timeout).
fn answered<T, E, R>(result: Result<T, aws_sdk_sqs::error::SdkError<E, R>>) -> Result<(), String>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
    match result {
        Ok(_) | Err(SdkError::ServiceError(_)) => Ok(()),
        Err(e) => Err(DisplayErrorContext(&e).to_string()),
    }
}

/// An SDK error as one line: the service's error code and message where there is one (the
/// SDK's own `Display` says only "service error"). Every AWS SDK crate's `SdkError` is the
/// same type, so this serves SQS, DynamoDB and API Gateway alike.
pub fn describe_sdk_error<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(se) => format!(
            "{}: {}",
            se.code().unwrap_or("error"),
            se.message().unwrap_or("")
        ),
        None => format!(
            "{e}: {}",
            std::error::Error::source(e)
                .map(|s| s.to_string())
                .unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warm_up_never_fails_the_start() {
        // Nothing listens on port 9: every call fails to connect, quickly, and is only logged.
        let sdk = local_sdk_config("http://127.0.0.1:9").await;
        let started = Instant::now();
        warm_up(vec![
            queue(&sdk, "http://127.0.0.1:9/000000000000/q"),
            table(&sdk, "t"),
            connections(&sdk, "http://127.0.0.1:9/live"),
        ])
        .await;
        assert!(started.elapsed() <= WARM_UP_TIMEOUT + Duration::from_secs(1));
    }
}
