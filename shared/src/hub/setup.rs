//! Building a [`Hub`] from the environment, once per cold start (the four WebSocket
//! functions share it).

use super::{ApiGatewayManagement, DefaultPolicy, DynamoConnectionRegistry, Hub, HubSettings};
use crate::auth::Authenticator;
use crate::config::{AwsSettings, ConfigError, Env, RedisSettings, SessionSettings};
use crate::ingest::Ingest;
use crate::queue::SqsQueue;
use crate::sessions::{RedisConnection, SessionStore};
use std::sync::Arc;

/// The WebSocket functions' configuration.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub sessions: SessionSettings,
    pub redis: RedisSettings,
    pub aws: AwsSettings,
    pub auth: Authenticator,
    /// `CONNECTIONS_TABLE`
    pub connections_table: String,
    /// `WEBSOCKET_ENDPOINT`: the management API, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    pub websocket_endpoint: String,
    /// `HEARTBEAT_QUEUE_URL`: heartbeats sent over the socket go the same way as HTTP ones.
    pub heartbeat_queue_url: String,
    /// `PUSH_QUEUE_URL`: where flips caused at connect and disconnect go.
    pub push_queue_url: String,
}

impl HubConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let urls = ["https://", "http://"];
        Ok(Self {
            sessions: SessionSettings::from_env(env)?,
            redis: RedisSettings::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
            auth: Authenticator::from_env(env)?,
            connections_table: env.require("CONNECTIONS_TABLE")?,
            websocket_endpoint: env.require_url("WEBSOCKET_ENDPOINT", &urls)?,
            heartbeat_queue_url: env.require_url("HEARTBEAT_QUEUE_URL", &urls)?,
            push_queue_url: env.require_url("PUSH_QUEUE_URL", &urls)?,
        })
    }
}

/// Connects to Redis and builds the AWS clients.
pub async fn build(config: HubConfig) -> Result<Hub, redis::RedisError> {
    let sdk = crate::aws::sdk_config(&config.aws).await;
    build_with(config, &sdk).await
}

/// Like [`build`], with a given SDK configuration (tests, the local stack).
pub async fn build_with(
    config: HubConfig,
    sdk: &aws_config::SdkConfig,
) -> Result<Hub, redis::RedisError> {
    let conn = RedisConnection::connect(&config.redis).await?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let ingest = Ingest::new(
        config.auth.clone(),
        Arc::new(SqsQueue::new(sqs.clone(), config.heartbeat_queue_url)),
        config.sessions.heartbeat_interval.as_secs(),
    );
    Ok(Hub::new(
        config.auth,
        Arc::new(DefaultPolicy),
        Arc::new(DynamoConnectionRegistry::new(
            aws_sdk_dynamodb::Client::new(sdk),
            config.connections_table,
        )),
        Arc::new(ApiGatewayManagement::new(sdk, &config.websocket_endpoint)),
        SessionStore::new(conn, &config.sessions),
        Arc::new(SqsQueue::new(sqs, config.push_queue_url)),
        ingest,
        HubSettings::default(),
    ))
}
