//! Building a [`Hub`] from the environment, once per cold start (the four WebSocket
//! functions share it).

use super::{ApiGatewayManagement, DefaultPolicy, DynamoConnectionRegistry, Hub, HubSettings};
use crate::auth::Authenticator;
use crate::aws::WarmUp;
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

/// A WebSocket function, for [`build`]: which AWS endpoints it calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsFunction {
    /// ws-connect: the connections table, the push queue (flips of the session it starts).
    Connect,
    /// ws-disconnect: the connections table, the push queue.
    Disconnect,
    /// ws-message: the connections table, the heartbeat queue, the management API.
    Message,
    /// ws-push: the connections table, the management API.
    Push,
}

impl WsFunction {
    /// Calls that open connections to the endpoints this function uses, from the raw
    /// variables (a missing one is skipped here and reported by [`HubConfig::from_env`]).
    fn warm_ups(self, env: &Env, sdk: &aws_config::SdkConfig) -> Vec<WarmUp> {
        use crate::aws::{connections, queue, table};
        let var = |name| env.get(name);
        let table = var("CONNECTIONS_TABLE").map(|t| table(sdk, t));
        let push = var("PUSH_QUEUE_URL").map(|q| queue(sdk, q));
        let heartbeats = var("HEARTBEAT_QUEUE_URL").map(|q| queue(sdk, q));
        let api = var("WEBSOCKET_ENDPOINT").map(|e| connections(sdk, e));
        match self {
            Self::Connect | Self::Disconnect => vec![table, push],
            Self::Message => vec![table, heartbeats, api],
            Self::Push => vec![table, api],
        }
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Why a WebSocket function could not start.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// A WebSocket function's cold start in AWS: reads the configuration from `env`, connects to
/// Redis and builds the AWS clients while connections to the endpoints `function` calls are
/// opened, so the first request pays no DNS, TCP or TLS set-up. Functions that verify
/// tokens with a secret in Secrets Manager use [`build_reading_secret`].
pub async fn build(env: Env, function: WsFunction) -> Result<Hub, BuildError> {
    let sdk = crate::aws::sdk_config(&AwsSettings::from_env(&env)?).await;
    let warm_ups = function.warm_ups(&env, &sdk);
    let start = async {
        let config = HubConfig::from_env(&env)?;
        Ok::<_, BuildError>(build_with(config, &sdk).await?)
    };
    let (hub, ()) = tokio::join!(start, crate::aws::warm_up(warm_ups));
    hub
}

/// [`build`] for ws-connect, which verifies tokens: the secret named by `JWT_SECRET_ARN`
/// (when set) is read from Secrets Manager first, at the same time as the connections are
/// opened. (A separate function, so the other WebSocket functions do not link the Secrets
/// Manager client.)
pub async fn build_reading_secret(env: Env, function: WsFunction) -> Result<Hub, BuildError> {
    let sdk = crate::aws::sdk_config(&AwsSettings::from_env(&env)?).await;
    let warm_ups = function.warm_ups(&env, &sdk);
    let start = async {
        let env = crate::auth::resolve_secret(env, &sdk).await?;
        let config = HubConfig::from_env(&env)?;
        Ok::<_, BuildError>(build_with(config, &sdk).await?)
    };
    let (hub, ()) = tokio::join!(start, crate::aws::warm_up(warm_ups));
    hub
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
