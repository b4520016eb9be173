//! heartbeat-ingest: authenticate, validate, enqueue, answer with the next interval.
//!
//! HTTP-framework free: the function crate passes the header, claims and body in and turns
//! the [`IngestError`] into a response with [`IngestError::status`] and
//! [`IngestError::body`].

use crate::auth::{AuthError, Authenticator, Identity};
use crate::protocol::{BodyError, ErrorBody, HeartbeatBody, QUEUE_MESSAGE_VERSION, QueueMessage};
use crate::queue::{HeartbeatQueue, QueueError};
use crate::ratelimit::RateLimiter;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Where the caller's identity comes from.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// Claims an API Gateway JWT authorizer already verified.
    Authorizer(&'a Map<String, Value>),
    /// The `Authorization` header, verified here.
    Bearer(Option<&'a str>),
}

/// Why a heartbeat was refused. `Display` is the message shown to the client.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    BadBody(#[from] BodyError),
    #[error("the queue is unavailable; retry shortly")]
    Unavailable(#[source] QueueError),
    #[error("too many heartbeats for this session; slow down")]
    RateLimited,
}

impl IngestError {
    /// The HTTP status for this error (docs/architecture.md, "HTTP API").
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => 401,
            Self::BadBody(BodyError::TooLarge(_)) => 413,
            Self::BadBody(_) => 400,
            Self::Unavailable(_) => 503,
            Self::RateLimited => 429,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::BadBody(BodyError::TooLarge(_)) => "body_too_large",
            Self::BadBody(_) => "bad_request",
            Self::Unavailable(_) => "unavailable",
            Self::RateLimited => "rate_limited",
        }
    }

    /// Seconds a client should wait before retrying, where that applies.
    pub fn retry_after_s(&self) -> Option<u32> {
        match self {
            Self::Unavailable(_) => Some(5),
            Self::RateLimited => Some(1),
            _ => None,
        }
    }

    /// The JSON error body; no internal detail (queue errors stay in the logs).
    pub fn body(&self) -> String {
        ErrorBody::new(self.code(), self.to_string()).to_json()
    }
}

/// The accepted heartbeat: what was enqueued and the interval to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub message: QueueMessage,
    pub interval_s: u64,
}

impl Accepted {
    /// `{"interval_s": N}`, the 202 body.
    pub fn body(&self) -> String {
        serde_json::json!({ "interval_s": self.interval_s }).to_string()
    }
}

/// The heartbeat ingest service.
#[derive(Clone)]
pub struct Ingest {
    auth: Authenticator,
    queue: Arc<dyn HeartbeatQueue>,
    interval_s: u64,
    /// Per session (user, facility, session id): a client sends one heartbeat per interval,
    /// so a burst of 10 refilled at one a second only stops floods.
    limiter: Arc<RateLimiter>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("auth", &self.auth)
            .field("interval_s", &self.interval_s)
            .finish()
    }
}

impl Ingest {
    pub fn new(auth: Authenticator, queue: Arc<dyn HeartbeatQueue>, interval_s: u64) -> Self {
        Self {
            auth,
            queue,
            interval_s,
            limiter: Arc::new(RateLimiter::new(10, 1.0)),
        }
    }

    /// Replaces the per-session limit (`burst` heartbeats, refilled at `per_second`).
    pub fn with_rate_limit(mut self, burst: u32, per_second: f64) -> Self {
        self.limiter = Arc::new(RateLimiter::new(burst, per_second));
        self
    }

    pub fn identify(&self, credentials: Credentials<'_>) -> Result<Identity, AuthError> {
        match credentials {
            Credentials::Authorizer(claims) => self.auth.from_claims(claims),
            Credentials::Bearer(header) => self.auth.verify_bearer(header),
        }
    }

    /// Authenticates, validates and enqueues one heartbeat received at `now_ms`.
    pub async fn accept(
        &self,
        credentials: Credentials<'_>,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Accepted, IngestError> {
        let identity = self.identify(credentials)?;
        let body = HeartbeatBody::parse(body)?;
        self.enqueue(&identity, body, now_ms).await
    }

    /// Enqueues a heartbeat for an already identified caller (the WebSocket path).
    pub async fn enqueue(
        &self,
        identity: &Identity,
        body: HeartbeatBody,
        now_ms: i64,
    ) -> Result<Accepted, IngestError> {
        let key = format!(
            "{}/{}/{}",
            identity.user, identity.facility, body.session_id
        );
        if !self.limiter.allow(&key, now_ms) {
            return Err(IngestError::RateLimited);
        }
        let message = QueueMessage {
            v: QUEUE_MESSAGE_VERSION,
            session_id: body.session_id,
            user_id: identity.user.clone(),
            facility_id: identity.facility.clone(),
            region: identity.region.clone(),
            at_ms: now_ms,
            state: body.state,
        };
        self.queue.send(&message).await.map_err(|e| {
            tracing::error!(error = %e, "heartbeat not enqueued");
            IngestError::Unavailable(e)
        })?;
        Ok(Accepted {
            message,
            interval_s: self.interval_s,
        })
    }
}
