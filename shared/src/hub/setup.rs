//! The WebSocket functions' configuration and ports, once per cold start (the four
//! functions share them; the local stack builds the same [`Hub`] from the same
//! configuration with its stand-ins).

use super::JoinPolicy;
use super::{
    ApiGatewayManagement, ConnectionGateway, ConnectionRegistry, DynamoConnectionRegistry, Hub,
};
use crate::auth::Authenticator;
use crate::aws::{SdkConfig, WarmUp};
use crate::config::{AwsSettings, ConfigError, Env, RedisSettings, SessionSettings};
use crate::messages::{DynamoMessageStore, MessageStore, Retention};
use crate::sessions::RedisConnection;
use crate::wiring::SessionPorts;
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
    /// `FACILITIES_TABLE`: its partition ledger tells a first start from a data loss.
    pub facilities_table: String,
    /// `WEBSOCKET_ENDPOINT`: the management API, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    pub websocket_endpoint: String,
    /// `PUSH_QUEUE_URL`: where flips caused at connect and disconnect go.
    pub push_queue_url: String,
    /// `STATUS_COALESCE_MS` (default 750, 0..=5000; 0 turns coalescing off): ws-push sends a
    /// region's first status event at once, then gathers the region's events for this long
    /// into one frame (`facility.statuses`), so a region-wide outage costs each socket a few
    /// frames, not hundreds.
    pub coalesce_window: std::time::Duration,
    /// `MESSAGES_TABLE`: messages sent to groups, kept for history and recovery.
    pub messages_table: String,
    /// `MESSAGE_RETENTION_SECONDS` and `MESSAGE_RETENTION_COUNT`.
    pub retention: Retention,
    /// `JOIN_POLICY`: `open` (default) or `claim`.
    pub join_policy: JoinPolicy,
    /// `TOKEN_EXPIRY_GRACE_SECONDS` (default 60, 0..=3600): how long a socket whose token
    /// expired may still send `auth` before it is closed.
    pub token_grace: std::time::Duration,
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
            facilities_table: env.require("FACILITIES_TABLE")?,
            websocket_endpoint: env.require_url("WEBSOCKET_ENDPOINT", &urls)?,
            push_queue_url: env.require_url("PUSH_QUEUE_URL", &urls)?,
            coalesce_window: {
                let ms: u64 = env.parse_or("STATUS_COALESCE_MS", 750)?;
                if ms > 5000 {
                    return Err(ConfigError::Malformed {
                        name: "STATUS_COALESCE_MS",
                        reason: format!("{ms} is outside 0..=5000"),
                    });
                }
                std::time::Duration::from_millis(ms)
            },
            messages_table: env.require("MESSAGES_TABLE")?,
            retention: Retention::from_env(env)?,
            join_policy: JoinPolicy::from_env(env)?,
            token_grace: {
                let s: u64 = env.parse_or("TOKEN_EXPIRY_GRACE_SECONDS", 60)?;
                if s > 3600 {
                    return Err(ConfigError::Malformed {
                        name: "TOKEN_EXPIRY_GRACE_SECONDS",
                        reason: format!("{s} is outside 0..=3600"),
                    });
                }
                std::time::Duration::from_secs(s)
            },
        })
    }
}

/// What the hub talks to besides Redis.
#[derive(Clone)]
pub struct HubPorts {
    /// Connections and memberships (the connections table).
    pub registry: Arc<dyn ConnectionRegistry>,
    /// Posting to connections (the management API).
    pub gateway: Arc<dyn ConnectionGateway>,
    /// Messages sent to groups (the messages table).
    pub messages: Arc<dyn MessageStore>,
    /// The push queue and the partition ledger, for the sessions sockets carry.
    pub sessions: SessionPorts,
}

impl std::fmt::Debug for HubPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubPorts")
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl HubPorts {
    /// The ports in AWS, through the SDK.
    pub fn aws(config: &HubConfig, sdk: &SdkConfig) -> Self {
        Self {
            registry: Arc::new(DynamoConnectionRegistry::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.connections_table.clone(),
            )),
            gateway: Arc::new(ApiGatewayManagement::new(sdk, &config.websocket_endpoint)),
            messages: Arc::new(DynamoMessageStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.messages_table.clone(),
                config.retention,
            )),
            sessions: SessionPorts::aws(sdk, &config.push_queue_url, &config.facilities_table),
        }
    }
}

/// A WebSocket function, for [`build`]: which AWS endpoints it calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsFunction {
    /// ws-connect: the connections table, the push queue (flips of the session it starts).
    Connect,
    /// ws-disconnect: the connections table, the push queue.
    Disconnect,
    /// ws-message: the connections table, the push queue (flips of the sessions socket
    /// heartbeats carry), the management API.
    Message,
    /// ws-push: the connections table, the management API.
    Push,
}

impl WsFunction {
    /// Calls that open connections to the endpoints this function uses, from the raw
    /// variables (a missing one is skipped here and reported by [`HubConfig::from_env`]).
    fn warm_ups(self, env: &Env, sdk: &SdkConfig) -> Vec<WarmUp> {
        use crate::aws::{connections, queue, table};
        // Only the calls this function makes are built: a warm-up is a real request, and its
        // permission is granted only to the functions that use the endpoint.
        let var = |name| env.get(name);
        let table = || var("CONNECTIONS_TABLE").map(|t| table(sdk, t));
        let queue = |name| var(name).map(|q| queue(sdk, q));
        let api = || var("WEBSOCKET_ENDPOINT").map(|e| connections(sdk, e));
        match self {
            Self::Connect | Self::Disconnect => vec![table(), queue("PUSH_QUEUE_URL")],
            Self::Message => vec![table(), queue("PUSH_QUEUE_URL"), api()],
            Self::Push => vec![table(), api()],
        }
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Why a WebSocket function could not start.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// A WebSocket function's cold start in AWS: reads the configuration from `env` (after
/// `resolve` had its say: the token secret), connects to Redis and builds the AWS clients
/// while connections to the endpoints `function` calls are opened, so the first request
/// pays no DNS, TCP or TLS set-up. Generic over `resolve`, so only ws-connect links the
/// Secrets Manager client.
async fn cold_start<F, Fut>(env: Env, function: WsFunction, resolve: F) -> Result<Hub, BuildError>
where
    F: FnOnce(Env, SdkConfig) -> Fut,
    Fut: std::future::Future<Output = Result<Env, ConfigError>>,
{
    let sdk = crate::aws::sdk_config(&AwsSettings::from_env(&env)?).await;
    let warm_ups = function.warm_ups(&env, &sdk);
    let start = async {
        let config = HubConfig::from_env(&resolve(env, sdk.clone()).await?)?;
        let redis = RedisConnection::connect(&config.redis).await?;
        Ok::<_, BuildError>(Hub::new(&config, redis, HubPorts::aws(&config, &sdk)))
    };
    let (hub, ()) = tokio::join!(start, crate::aws::warm_up(warm_ups));
    hub
}

/// The cold start of ws-disconnect, ws-message and ws-push (see [`cold_start`]).
pub async fn build(env: Env, function: WsFunction) -> Result<Hub, BuildError> {
    cold_start(env, function, |env, _| async { Ok(env) }).await
}

/// The cold start of ws-connect, which verifies tokens: the secret named by
/// `JWT_SECRET_ARN` (when set) is read from Secrets Manager first, while the connections
/// are opened.
pub async fn build_reading_secret(env: Env, function: WsFunction) -> Result<Hub, BuildError> {
    cold_start(env, function, |env, sdk| async move {
        crate::auth::resolve_secret(env, &sdk).await
    })
    .await
}
