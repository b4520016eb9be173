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
//! - [`groups`]: group names and the join policy.
//! - [`messages`]: client actions and server messages.
//! - [`registry`]: connections and memberships (DynamoDB).
//! - [`gateway`]: posting to connections (API Gateway management API).
//! - [`cache`]: connections this instance has read, so `$default` reads the table once per
//!   connection rather than once per frame.
//! - [`Hub`] (here): `$connect`, `$disconnect`, `$default` and push fan-out.

pub mod cache;
pub mod gateway;
pub mod groups;
pub mod messages;
pub mod registry;
pub mod setup;

pub use gateway::{ApiGatewayManagement, ConnectionGateway, PostError};
pub use groups::{DefaultPolicy, Group, GroupPolicy};
pub use messages::{ClientAction, ServerMessage};
pub use registry::{Connection, ConnectionRegistry, DynamoConnectionRegistry};

use crate::auth::{AuthError, Authenticator, Identity};
use crate::flips::publish_flips;
use crate::ids::{SessionId, UserId};
use crate::ingest::Ingest;
use crate::protocol::{
    HeartbeatBody, HeartbeatState, PushMessage, QUEUE_MESSAGE_VERSION, QueueMessage, StatusEvent,
    Target,
};
use crate::queue::PushPublisher;
use crate::sessions::SessionStore;
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// A 410 from a connection younger than this means "not connected yet", not "gone".
pub const CONNECTING_GRACE_MS: i64 = 10_000;

/// Fan-out limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
    }
}

/// A `$connect` or push failure, mapped to a status by the function edge.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
}

impl HubError {
    /// The HTTP status the `$connect` route answers (refusing the upgrade when not 2xx).
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => 401,
            Self::BadRequest(_) => 400,
            Self::Unavailable(_) => 503,
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
    store: SessionStore,
    publisher: Arc<dyn PushPublisher>,
    ingest: Ingest,
    settings: HubSettings,
    /// Per connection: a burst of 20 frames refilled at 10 a second (per function instance).
    limiter: Arc<crate::ratelimit::RateLimiter>,
    connections: Arc<cache::ConnectionCache>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("policy", &self.policy)
            .field("settings", &self.settings)
            .finish()
    }
}

/// API Gateway connection ids are short base64-like strings.
fn valid_connection_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b))
}

impl Hub {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        auth: Authenticator,
        policy: Arc<dyn GroupPolicy>,
        registry: Arc<dyn ConnectionRegistry>,
        gateway: Arc<dyn ConnectionGateway>,
        store: SessionStore,
        publisher: Arc<dyn PushPublisher>,
        ingest: Ingest,
        settings: HubSettings,
    ) -> Self {
        Self {
            auth,
            policy,
            registry,
            gateway,
            store,
            publisher,
            ingest,
            settings,
            limiter: Arc::new(crate::ratelimit::RateLimiter::new(20, 10.0)),
            connections: Arc::new(cache::ConnectionCache::new(
                settings.cached_connections,
                i64::try_from(settings.connection_cache_ttl.as_millis()).unwrap_or(i64::MAX),
            )),
        }
    }

    /// Replaces the per-connection frame limit (`burst` frames, refilled at `per_second`).
    pub fn with_rate_limit(mut self, burst: u32, per_second: f64) -> Self {
        self.limiter = Arc::new(crate::ratelimit::RateLimiter::new(burst, per_second));
        self
    }

    pub fn registry(&self) -> &Arc<dyn ConnectionRegistry> {
        &self.registry
    }

    /// `$connect`: verify `token`, register the connection and, with `session_id`, put that
    /// session online at once.
    pub async fn connect(
        &self,
        connection_id: &str,
        token: Option<&str>,
        session_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Connection, HubError> {
        let identity = self.auth.verify(token.ok_or(AuthError::Missing)?)?;
        if !valid_connection_id(connection_id) {
            return Err(HubError::BadRequest("connection id is malformed".into()));
        }
        let session_id = session_id
            .map(SessionId::parse)
            .transpose()
            .map_err(|e| HubError::BadRequest(e.to_string()))?;
        let connection = Connection {
            id: connection_id.to_owned(),
            user: identity.user.clone(),
            facility: identity.facility.clone(),
            region: identity.region.clone(),
            session_id: session_id.clone(),
            connected_ms: now_ms,
        };
        self.registry
            .register(&connection)
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        if let Some(sid) = &session_id {
            if let Err(e) = self
                .apply_session(&connection, sid, HeartbeatState::Active, now_ms)
                .await
            {
                // Refuse the socket rather than show a presence we could not record.
                let _ = self.registry.remove(connection_id).await;
                return Err(HubError::Unavailable(e));
            }
        }
        Ok(connection)
    }

    /// `$disconnect` (or a connection found gone): remove it and end its session.
    /// Idempotent; an unknown connection is fine.
    pub async fn disconnect(
        &self,
        connection_id: &str,
        now_ms: i64,
    ) -> Result<Option<Connection>, HubError> {
        self.connections.forget(connection_id);
        self.limiter.forget(connection_id);
        let removed = self
            .registry
            .remove(connection_id)
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        if let Some(c) = &removed {
            if let Some(sid) = &c.session_id {
                self.apply_session(c, sid, HeartbeatState::Ended, now_ms)
                    .await
                    .map_err(HubError::Unavailable)?;
            }
        }
        Ok(removed)
    }

    async fn apply_session(
        &self,
        c: &Connection,
        sid: &SessionId,
        state: HeartbeatState,
        now_ms: i64,
    ) -> Result<(), String> {
        let msg = QueueMessage {
            v: QUEUE_MESSAGE_VERSION,
            session_id: sid.clone(),
            user_id: c.user.clone(),
            facility_id: c.facility.clone(),
            region: c.region.clone(),
            at_ms: now_ms,
            state,
        };
        let p = self.store.partitioner().partition_of(&c.facility);
        let applied = self
            .store
            .apply(p, now_ms, std::slice::from_ref(&msg))
            .await
            .map_err(|e| e.to_string())?;
        let flips: Vec<_> = applied.flips.into_iter().map(|f| (p, f)).collect();
        publish_flips(&self.store, self.publisher.as_ref(), &flips).await;
        Ok(())
    }

    /// The connection `$default` serves: from the cache, else from the registry.
    async fn connection(&self, id: &str, now_ms: i64) -> Result<Option<Connection>, HubError> {
        if let Some(c) = self.connections.get(id, now_ms) {
            return Ok(Some(c));
        }
        let found = self
            .registry
            .get(id)
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        if let Some(c) = &found {
            self.connections.put(c, now_ms);
        }
        Ok(found)
    }

    /// `$default`: one client frame. Returns the reply to the caller (an `error` frame for a
    /// bad frame or a refused action), which the route response carries back on the same
    /// connection; frames for anyone else (the user's other devices, a group) are posted.
    /// `Err` only when the backend failed before the frame could be looked at.
    pub async fn message(
        &self,
        connection_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<ServerMessage, HubError> {
        let Some(connection) = self.connection(connection_id, now_ms).await? else {
            return Ok(ServerMessage::error(
                "unknown_connection",
                "reconnect: this connection is not registered",
                None,
                None,
            ));
        };
        if !self.limiter.allow(connection_id, now_ms) {
            return Ok(ServerMessage::error(
                "rate_limited",
                "too many frames on this connection; slow down",
                None,
                None,
            ));
        }
        let (action, reference) = match messages::parse_frame(body) {
            Ok(parsed) => parsed,
            Err(e) => {
                return Ok(ServerMessage::error(
                    e.code,
                    e.message,
                    e.action,
                    e.reference,
                ));
            }
        };
        let name = action_name(&action);
        match self
            .dispatch(&connection, action, reference.clone(), now_ms)
            .await
        {
            Ok(reply) => Ok(reply),
            Err((code, message)) => Ok(ServerMessage::error(
                code,
                message,
                Some(name.to_owned()),
                reference,
            )),
        }
    }

    async fn dispatch(
        &self,
        c: &Connection,
        action: ClientAction,
        reference: Option<Value>,
        now_ms: i64,
    ) -> Result<ServerMessage, (&'static str, String)> {
        let identity = Identity {
            user: c.user.clone(),
            facility: c.facility.clone(),
            region: c.region.clone(),
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "backend failure in a WebSocket action");
            (
                "unavailable",
                "the service is unavailable; retry shortly".to_owned(),
            )
        };
        match action {
            ClientAction::Ping => Ok(ServerMessage::Pong { reference }),
            ClientAction::Heartbeat { session_id, state } => {
                let accepted = self
                    .ingest
                    .enqueue(&identity, HeartbeatBody { session_id, state }, now_ms)
                    .await
                    .map_err(|e| match e {
                        crate::ingest::IngestError::RateLimited => ("rate_limited", e.to_string()),
                        other => unavailable(&other),
                    })?;
                Ok(ServerMessage::HeartbeatAck {
                    interval_s: accepted.interval_s,
                    reference,
                })
            }
            ClientAction::Join { group } => {
                self.policy
                    .may_join(&identity, &group)
                    .map_err(|e| ("forbidden", e.to_string()))?;
                let name = group.to_string();
                let new = self
                    .registry
                    .join(&c.user, &name, now_ms)
                    .await
                    .map_err(|e| unavailable(&e))?;
                self.to_other_devices(
                    c,
                    ServerMessage::Joined {
                        group: name.clone(),
                        reference: None,
                    },
                    now_ms,
                )
                .await;
                if new {
                    let joined = ServerMessage::MemberJoined {
                        group: name.clone(),
                        user: c.user.clone(),
                    };
                    self.to_other_members(&group, &c.user, &joined, now_ms)
                        .await;
                }
                Ok(ServerMessage::Joined {
                    group: name,
                    reference,
                })
            }
            ClientAction::Leave { group } => {
                if group.is_automatic() {
                    return Err((
                        "forbidden",
                        groups::PolicyError::Automatic(group.to_string()).to_string(),
                    ));
                }
                let name = group.to_string();
                let was_member = self
                    .registry
                    .leave(&c.user, &name)
                    .await
                    .map_err(|e| unavailable(&e))?;
                if !was_member {
                    return Ok(ServerMessage::Left {
                        group: name,
                        reference,
                    });
                }
                self.to_other_devices(
                    c,
                    ServerMessage::Left {
                        group: name.clone(),
                        reference: None,
                    },
                    now_ms,
                )
                .await;
                let left = ServerMessage::MemberLeft {
                    group: name.clone(),
                    user: c.user.clone(),
                };
                self.to_other_members(&group, &c.user, &left, now_ms).await;
                Ok(ServerMessage::Left {
                    group: name,
                    reference,
                })
            }
            ClientAction::Send {
                group,
                data,
                others,
            } => {
                self.require_member(&identity, &group).await?;
                let name = group.to_string();
                let mut targets: Vec<String> = self
                    .group_connections(&group)
                    .await
                    .map_err(|e| unavailable(&e))?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                if others {
                    targets.retain(|id| *id != c.id);
                }
                let frame = ServerMessage::Message {
                    group: name.clone(),
                    from: c.user.clone(),
                    data,
                }
                .to_json();
                let report = self.deliver(&targets, &frame, now_ms).await;
                Ok(ServerMessage::Sent {
                    group: name,
                    delivered: report.delivered,
                    reference,
                })
            }
            ClientAction::Members { group } => {
                self.require_member(&identity, &group).await?;
                let users: BTreeSet<UserId> = match &group {
                    Group::Free(name) => self
                        .registry
                        .members(name)
                        .await
                        .map_err(|e| unavailable(&e))?
                        .into_iter()
                        .collect(),
                    other => self
                        .group_connections(other)
                        .await
                        .map_err(|e| unavailable(&e))?
                        .into_iter()
                        .map(|(_, u)| u)
                        .collect(),
                };
                Ok(ServerMessage::Members {
                    group: group.to_string(),
                    users: users.into_iter().collect(),
                    reference,
                })
            }
            ClientAction::Snapshot { region } => {
                let region = region.unwrap_or_else(|| c.region.clone());
                self.policy
                    .may_watch(&identity, &region)
                    .map_err(|e| ("forbidden", e.to_string()))?;
                let facilities = self
                    .store
                    .snapshot(&region)
                    .await
                    .map_err(|e| unavailable(&e))?;
                Ok(ServerMessage::Snapshot {
                    region,
                    facilities,
                    reference,
                })
            }
        }
    }

    async fn require_member(
        &self,
        who: &Identity,
        group: &Group,
    ) -> Result<(), (&'static str, String)> {
        let member = match group {
            Group::Free(name) => self
                .registry
                .is_member(&who.user, name)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "membership check failed");
                    (
                        "unavailable",
                        "the service is unavailable; retry shortly".to_owned(),
                    )
                })?,
            automatic => automatic.contains_by_identity(who),
        };
        if member {
            Ok(())
        } else {
            Err(("not_member", format!("you are not a member of {group}")))
        }
    }

    /// `to_others` to the user's other devices (the caller gets its own copy, with the
    /// `ref`, as the reply).
    async fn to_other_devices(&self, c: &Connection, to_others: ServerMessage, now_ms: i64) {
        match self.registry.user_connections(&c.user).await {
            Ok(ids) => {
                let others: Vec<String> = ids.into_iter().filter(|id| *id != c.id).collect();
                self.deliver(&others, &to_others.to_json(), now_ms).await;
            }
            Err(e) => tracing::error!(error = %e, "user's devices not found"),
        }
    }

    /// `message` to the group's connections of every user but `except`. The membership
    /// change it announces has happened already, so a failure is logged, not returned.
    async fn to_other_members(
        &self,
        group: &Group,
        except: &UserId,
        message: &ServerMessage,
        now_ms: i64,
    ) {
        match self.group_connections(group).await {
            Ok(members) => {
                let targets: Vec<String> = members
                    .into_iter()
                    .filter(|(_, u)| u != except)
                    .map(|(id, _)| id)
                    .collect();
                self.deliver(&targets, &message.to_json(), now_ms).await;
            }
            Err(e) => tracing::error!(error = %e, %group, "group members not found"),
        }
    }

    /// The connections of a group with their users.
    pub async fn group_connections(
        &self,
        group: &Group,
    ) -> Result<Vec<(String, UserId)>, registry::RegistryError> {
        match group {
            Group::User(u) => Ok(self
                .registry
                .user_connections(u)
                .await?
                .into_iter()
                .map(|id| (id, u.clone()))
                .collect()),
            Group::Facility(f) => self.registry.facility_connections(f).await,
            Group::Region(r) => self.registry.region_connections(r).await,
            Group::Free(name) => {
                let users = self.registry.members(name).await?;
                let registry = &self.registry;
                let per_user: Vec<Result<Vec<(String, UserId)>, _>> = futures::stream::iter(users)
                    .map(|u| async move {
                        registry
                            .user_connections(&u)
                            .await
                            .map(|ids| ids.into_iter().map(|id| (id, u.clone())).collect())
                    })
                    .buffer_unordered(self.settings.member_concurrency)
                    .collect()
                    .await;
                let mut all = Vec::new();
                for r in per_user {
                    all.extend(r?);
                }
                Ok(all)
            }
        }
    }

    /// Posts `frame` to each connection at bounded concurrency, retrying throttling with
    /// backoff; a gone connection is disconnected (registry and session) on the spot.
    pub async fn deliver(&self, connection_ids: &[String], frame: &str, now_ms: i64) -> Delivered {
        // Owned ids: the futures must not borrow the caller's slice (they may run on a spawned task).
        let unique: BTreeSet<String> = connection_ids.iter().cloned().collect();
        let results: Vec<(String, Result<(), PostError>)> = futures::stream::iter(unique)
            .map(|id| async move {
                let result = self.post_with_retry(&id, frame.as_bytes()).await;
                (id, result)
            })
            .buffer_unordered(self.settings.fanout_concurrency)
            .collect()
            .await;
        let mut report = Delivered::default();
        for (id, result) in results {
            match result {
                Ok(()) => report.delivered += 1,
                Err(PostError::Gone) => {
                    // API Gateway also answers 410 for a connection whose `$connect` has not
                    // finished yet: a young connection is skipped, not deleted.
                    match self.registry.get(&id).await {
                        Ok(Some(c)) if now_ms - c.connected_ms < CONNECTING_GRACE_MS => {
                            tracing::debug!(connection = %id, "410 from a connection still connecting");
                            continue;
                        }
                        _ => {}
                    }
                    if let Err(e) = self.disconnect(&id, now_ms).await {
                        tracing::error!(connection = %id, error = %e, "gone connection not cleaned up");
                    }
                    report.gone.push(id);
                }
                Err(e) => {
                    tracing::warn!(connection = %id, error = %e, "post failed");
                    report.failed.push(id);
                }
            }
        }
        report
    }

    async fn post_with_retry(&self, id: &str, data: &[u8]) -> Result<(), PostError> {
        let mut delay = self.settings.retry_delay;
        let mut attempt = 1;
        loop {
            match self.gateway.post(id, data).await {
                Err(PostError::Retryable(e)) if attempt < self.settings.post_attempts => {
                    tracing::debug!(connection = %id, attempt, error = %e, "post retried");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// ws-push: one push-queue message. Status events go to `region:{r}` and `facility:{f}`.
    pub async fn push(&self, message: &PushMessage, now_ms: i64) -> Result<Delivered, HubError> {
        let unavailable = |e: registry::RegistryError| HubError::Unavailable(e.to_string());
        match message {
            PushMessage::Status(event) => {
                let StatusEvent { status } = event;
                let mut targets: BTreeMap<String, ()> = BTreeMap::new();
                for g in [
                    Group::Region(status.region.clone()),
                    Group::Facility(status.facility_id.clone()),
                ] {
                    for (id, _) in self.group_connections(&g).await.map_err(unavailable)? {
                        targets.insert(id, ());
                    }
                }
                let ids: Vec<String> = targets.into_keys().collect();
                Ok(self
                    .deliver(
                        &ids,
                        &serde_json::to_string(event).expect("event serializes"),
                        now_ms,
                    )
                    .await)
            }
            PushMessage::Deliver(d) => {
                let mut ids: Vec<String> = match &d.to {
                    Target::Connection(id) => vec![id.clone()],
                    Target::User(u) => self
                        .registry
                        .user_connections(u)
                        .await
                        .map_err(unavailable)?,
                    Target::Group(g) => self
                        .group_connections(g)
                        .await
                        .map_err(unavailable)?
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect(),
                };
                if let Some(except) = &d.except {
                    ids.retain(|id| id != except);
                }
                let frame = match &d.data {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok(self.deliver(&ids, &frame, now_ms).await)
            }
        }
    }
}

fn action_name(a: &ClientAction) -> &'static str {
    match a {
        ClientAction::Heartbeat { .. } => "heartbeat",
        ClientAction::Join { .. } => "join",
        ClientAction::Leave { .. } => "leave",
        ClientAction::Send { .. } => "send",
        ClientAction::Members { .. } => "members",
        ClientAction::Snapshot { .. } => "snapshot",
        ClientAction::Ping => "ping",
    }
}

/// The connection id of a WebSocket event, or the 400 response a route gives without one.
pub fn connection_id(
    event: &aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest,
) -> Result<&str, aws_lambda_events::event::apigw::ApiGatewayProxyResponse> {
    event
        .request_context
        .connection_id
        .as_deref()
        .ok_or_else(|| {
            route_response(
                400,
                Some(("bad_request", "event lacks a connection id".into())),
            )
        })
}

/// A WebSocket route's response: the status (a non-2xx at `$connect` refuses the upgrade)
/// with a JSON error body when it failed.
pub fn route_response(
    status: u16,
    error: Option<(&str, String)>,
) -> aws_lambda_events::event::apigw::ApiGatewayProxyResponse {
    let mut r = aws_lambda_events::event::apigw::ApiGatewayProxyResponse::default();
    r.status_code = i64::from(status);
    if let Some((code, message)) = error {
        r.body = Some(aws_lambda_events::encodings::Body::Text(
            crate::protocol::ErrorBody::new(code, message).to_json(),
        ));
        r.headers.insert(
            "content-type",
            "application/json".parse().expect("static header"),
        );
    }
    r
}
