//! AWS SDK configuration, built once per cold start.

use crate::config::AwsSettings;
use aws_config::{BehaviorVersion, SdkConfig};

/// The SDK configuration from the usual AWS environment (Lambda sets region and
/// credentials), pointed at `AWS_ENDPOINT_URL` when set.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
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
