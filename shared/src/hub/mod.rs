//! The WebSocket hub: connections, groups and pushes over API Gateway WebSockets.
//!
//! Every connection is in its user's, facility's and region's group; users join and leave
//! free groups for all their devices at once. The registry lives in DynamoDB
//! ([`registry`]), frames go out through the management API ([`gateway`]), and nothing is
//! kept in server memory but a short-lived cache of connections already read ([`cache`]), so
//! any function instance can serve any connection.
//!
//! # Layout
//!
//! - [`Hub`] (here): the service and its settings, built by [`setup`].
//! - `lifecycle`: `$connect` and `$disconnect`, and the session a socket carries.
//! - `actions`: `$default`, one client frame: parse, rate-limit, dispatch, reply.
//! - `messaging`: stored messages (`seq`, `history`), presence in groups (`presence`,
//!   `member.online`/`member.offline`), a token's lifetime on a live socket (`auth`).
//! - `admin`: what the team's backend does through the admin API (publish, disconnect a
//!   user, remove and ban members).
//! - `fanout`: group resolution and posting at bounded concurrency (retries, 410s), and
//!   ws-push's push-queue messages.
//! - [`error`]: hub and action errors, mapped to frame codes and statuses in one place.
//! - [`lambda`]: API Gateway event helpers.
//! - [`groups`]: the join policy (group names are wire types: [`crate::protocol::Group`]).
//! - [`messages`]: client actions and server messages.
//! - [`registry`]: connections and memberships (DynamoDB, and in memory).
//! - [`gateway`]: posting to connections (API Gateway management API).
//! - [`cache`]: connections this instance has read, so `$default` reads the table once per
//!   connection rather than once per frame.
//! - [`setup`]: configuration and ports, once per cold start (and for the local stack).

mod actions;
mod admin;
pub mod cache;
mod coalesce;
pub mod error;
mod fanout;
pub mod gateway;
pub mod groups;
pub mod lambda;
mod lifecycle;
pub mod messages;
mod messaging;
pub mod registry;
pub mod setup;

pub use error::{ActionError, HubError};
pub use gateway::{ApiGatewayManagement, ConnectionGateway, PostError};
pub use groups::{GroupPolicy, JoinPolicy};
pub use lambda::{connection_id, route_response};
pub use messages::{ClientAction, ServerMessage};
pub use messaging::{MAX_DATA_BYTES, MAX_HISTORY_REPLY_BYTES};
pub use registry::{Ban, Connection, ConnectionRegistry, DynamoConnectionRegistry};
pub use setup::{HubConfig, HubPorts};

pub use crate::protocol::Group;

use crate::auth::Authenticator;
use crate::messages::MessageStore;
use crate::queue::PushPublisher;
use crate::sessions::{RedisConnection, SessionStore};
use std::sync::Arc;
use std::time::Duration;

/// A 410 from a connection younger than this means "not connected yet", not "gone".
pub const CONNECTING_GRACE_MS: i64 = 10_000;

/// Fan-out and per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HubSettings {
    /// Posts in flight at once per fan-out.
    pub fanout_concurrency: usize,
    /// Attempts per post when API Gateway throttles or fails.
    pub post_attempts: u32,
    /// The first retry's delay; doubled each time.
    pub retry_delay: Duration,
    /// Members resolved to connections at once for a free group.
    pub member_concurrency: usize,
    /// Connections remembered by `$default` (0 reads the registry for every frame).
    pub cached_connections: usize,
    /// How long a remembered connection is used before it is read again.
    pub connection_cache_ttl: Duration,
    /// Frames a connection may send at once (per function instance)...
    pub frame_burst: u32,
    /// ...refilled at this rate per second.
    pub frames_per_second: f64,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            fanout_concurrency: 64,
            post_attempts: 4,
            retry_delay: Duration::from_millis(50),
            member_concurrency: 16,
            cached_connections: 50_000,
            // API Gateway closes every connection after 2 hours, and its item never changes.
            connection_cache_ttl: Duration::from_secs(2 * 60 * 60),
            frame_burst: 20,
            frames_per_second: 10.0,
        }
    }
}

/// What a fan-out did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub delivered: usize,
    /// Connections found gone (410) and deleted.
    pub gone: Vec<String>,
    /// Connections that still failed after retries.
    pub failed: Vec<String>,
}

/// The hub service, shared by the four WebSocket functions.
#[derive(Clone)]
pub struct Hub {
    auth: Authenticator,
    policy: Arc<dyn GroupPolicy>,
    registry: Arc<dyn ConnectionRegistry>,
    gateway: Arc<dyn ConnectionGateway>,
    /// Messages sent to groups, with their `seq` (history and recovery).
    messages: Arc<dyn MessageStore>,
    store: SessionStore,
    publisher: Arc<dyn PushPublisher>,
    settings: HubSettings,
    limiter: Arc<crate::ratelimit::RateLimiter>,
    connections: Arc<cache::ConnectionCache>,
    /// The interval clients are told (`snapshot`'s `interval_s`).
    interval_s: u64,
    /// How long a socket's session outlives the socket (`SocketOp::Linger`).
    disconnect_grace_ms: i64,
    /// ws-push's status coalescing window (0: off).
    coalesce_window: Duration,
    /// How long a socket whose token expired may still send `auth` before it is closed.
    token_grace_ms: i64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("policy", &self.policy)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Hub {
    /// The hub from its configuration, a Redis connection and its ports: the one
    /// constructor, used by the functions' cold start ([`setup::build`]) and the local stack.
    pub fn new(config: &HubConfig, redis: RedisConnection, ports: HubPorts) -> Self {
        let hub = Self {
            auth: config.auth.clone(),
            policy: Arc::new(config.join_policy),
            registry: ports.registry,
            gateway: ports.gateway,
            messages: ports.messages,
            store: ports.sessions.store(redis, &config.sessions),
            publisher: ports.sessions.push,
            settings: HubSettings::default(),
            limiter: Arc::new(crate::ratelimit::RateLimiter::new(0, 0.0)),
            connections: Arc::new(cache::ConnectionCache::new(0, 0)),
            interval_s: config.sessions.heartbeat_interval.as_secs(),
            disconnect_grace_ms: i64::try_from(config.sessions.disconnect_grace.as_millis())
                .unwrap_or(i64::MAX),
            coalesce_window: config.coalesce_window,
            token_grace_ms: i64::try_from(config.token_grace.as_millis()).unwrap_or(i64::MAX),
        };
        hub.with_settings(HubSettings::default())
    }

    /// Replaces the limits (and so resets the rate limiter and the connection cache).
    pub fn with_settings(mut self, settings: HubSettings) -> Self {
        self.settings = settings;
        self.limiter = Arc::new(crate::ratelimit::RateLimiter::new(
            settings.frame_burst,
            settings.frames_per_second,
        ));
        self.connections = Arc::new(cache::ConnectionCache::new(
            settings.cached_connections,
            i64::try_from(settings.connection_cache_ttl.as_millis()).unwrap_or(i64::MAX),
        ));
        self
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }
}
