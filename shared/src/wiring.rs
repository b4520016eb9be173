//! The ports a function's service is assembled from, built once per cold start.
//!
//! Every function crate has one constructor, `service(&Config, RedisConnection, Ports)`,
//! called both by its `main.rs` (with [`SessionPorts::aws`]: SQS and DynamoDB through the
//! SDK) and by the local stack (with its stand-ins), so a setting tested locally is the one
//! deployed: both parse the function's `Config` from the same variables.

use crate::aws::WarmUp;
use crate::config::{AwsSettings, ConfigError, Env, RedisSettings, SessionSettings};
use crate::ledger::{DynamoPartitionLedger, PartitionLedger};
use crate::queue::{PushPublisher, SqsQueue};
use crate::sessions::{RedisConnection, SessionStore};
use aws_config::SdkConfig;
use std::sync::Arc;

/// What every pipeline function (heartbeat-consumer, session-expiry, facility-rollup) reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub sessions: SessionSettings,
    pub redis: RedisSettings,
    pub aws: AwsSettings,
    /// `PUSH_QUEUE_URL`: where flips go.
    pub push_queue_url: String,
    /// `FACILITIES_TABLE`: the partition ledger (and, for the rollup, status and history).
    pub facilities_table: String,
}

impl PipelineConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: SessionSettings::from_env(env)?,
            redis: RedisSettings::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
            push_queue_url: env.require_url("PUSH_QUEUE_URL", &["https://", "http://"])?,
            facilities_table: env.require("FACILITIES_TABLE")?,
        })
    }

    /// The push queue and the partition ledger, through the SDK.
    pub fn session_ports(&self, sdk: &SdkConfig) -> SessionPorts {
        SessionPorts::aws(sdk, &self.push_queue_url, &self.facilities_table)
    }

    /// [`cold_start`] with these settings.
    pub async fn cold_start<S>(
        &self,
        warm_ups: impl FnOnce(&SdkConfig) -> Vec<WarmUp>,
        service: impl FnOnce(RedisConnection, &SdkConfig) -> S,
    ) -> Result<S, redis::RedisError> {
        cold_start(&self.aws, &self.redis, warm_ups, service).await
    }
}

/// What a function that changes sessions talks to besides Redis.
#[derive(Clone)]
pub struct SessionPorts {
    /// Where flips go (the push queue).
    pub push: Arc<dyn PushPublisher>,
    /// Tells a partition's first epoch from a data loss (the facilities table).
    pub ledger: Arc<dyn PartitionLedger>,
}

impl std::fmt::Debug for SessionPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPorts")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl SessionPorts {
    /// The push queue at `push_queue_url` and the ledger in `facilities_table`, through the
    /// SDK.
    pub fn aws(sdk: &SdkConfig, push_queue_url: &str, facilities_table: &str) -> Self {
        Self {
            push: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), push_queue_url)),
            ledger: Arc::new(DynamoPartitionLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                facilities_table,
            )),
        }
    }

    /// The session engine on `redis`, asking this ledger about new epochs.
    pub fn store(&self, redis: RedisConnection, settings: &SessionSettings) -> SessionStore {
        SessionStore::new(redis, settings).with_ledger(self.ledger.clone())
    }
}

/// The cold start of a function that talks to Redis: the SDK configuration once, then Redis
/// (TLS included) connected while the connections `warm_ups` lists are opened, side by side;
/// then `service` builds the function's service from both.
pub async fn cold_start<S>(
    aws: &AwsSettings,
    redis: &RedisSettings,
    warm_ups: impl FnOnce(&SdkConfig) -> Vec<WarmUp>,
    service: impl FnOnce(RedisConnection, &SdkConfig) -> S,
) -> Result<S, redis::RedisError> {
    let sdk = crate::aws::sdk_config(aws).await;
    let (connection, ()) = tokio::join!(
        RedisConnection::connect(redis),
        crate::aws::warm_up(warm_ups(&sdk))
    );
    Ok(service(connection?, &sdk))
}

/// The reply to an SQS batch: the records to retry (SQS redelivers them, then dead-letters
/// them), by message id.
pub fn batch_response(
    failed: impl IntoIterator<Item = String>,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}
