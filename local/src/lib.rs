//! Local stand-ins for AWS services: an **API Gateway WebSocket API** with its
//! **`@connections` management API**, serving Lambda WebSocket handlers in-process so they can
//! be exercised by real WebSocket clients and the real `aws-sdk-apigatewaymanagement` client.
//!
//! # Layout
//!
//! - this file: the public API — [`LocalWebSocketApi`] (binds one port, builds the router,
//!   shuts down), [`WebSocketApiConfig`], [`Route`] and [`WebSocketRoutes`] (the Lambda
//!   integrations) — and the state shared by every request: the registry of open connections
//!   and the shutdown signals.
//! - `upgrade`: `GET /{stage}`. Invokes `$connect` before answering the handshake; refuses with
//!   the integration's status or registers the connection and switches protocols.
//! - `connection`: one task per connection. Reads frames, feeds `$default` in order, enforces
//!   the idle timeout, the maximum connection duration and the frame/message limits, and ends
//!   with exactly one `$disconnect`, whatever closed it.
//! - `management`: `POST`/`GET`/`DELETE /{stage}/@connections/{id}`, with the statuses and
//!   `x-amzn-errortype` headers the SDK turns into typed errors.
//! - `event`: the Lambda events, shaped like API Gateway's.
//! - `ids`: connection/request ids and API Gateway's timestamp formats.
//! - `usage`: what API Gateway would bill ([`WebSocketMeter`], [`WebSocketUsage`]): messages
//!   both ways in 32 KB units, connection minutes, `@connections` calls.
//!
//! # Usage
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use presence_local::{LocalWebSocketApi, WebSocketApiConfig, WebSocketRoutes};
//! # async fn demo(routes: Arc<dyn WebSocketRoutes>) -> std::io::Result<()> {
//! let addr = "127.0.0.1:0".parse().unwrap();
//! let api = LocalWebSocketApi::start(addr, WebSocketApiConfig::default(), routes).await?;
//! // Browsers connect to `api.websocket_url()` + "?token=…"; handlers reply through
//! // aws-sdk-apigatewaymanagement with `endpoint_url(api.management_endpoint())`.
//! api.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Differences from API Gateway
//!
//! - Plain `ws://` and `http://`; no TLS, no custom domains, no SigV4 check on the management
//!   API (any credentials are accepted).
//! - The route selection expression is fixed: `$request.body.action`. Besides the three
//!   predefined routes, only one-way custom routes ([`WebSocketApiConfig::one_way_routes`],
//!   [`Route::Custom`]): a text frame that is a JSON object whose `action` is a string equal
//!   to a route key goes to that route and its integration's response is discarded; every
//!   other frame (binary, not JSON, not an object, another or no `action`) goes to
//!   `$default`. No two-way custom routes, no route request/response models, no
//!   authorizers (do authorization in `$connect`). `$default`'s route response is sent back
//!   to the caller only when [`WebSocketApiConfig::default_route_response`] is set (as the
//!   template's two-way `$default` route does); otherwise it is discarded, as in API Gateway.
//! - Message routes (`$default` and custom ones) are invoked sequentially per connection, in
//!   arrival order, one at a time whatever the route; API Gateway gives no ordering
//!   guarantee. Messages received before a close are delivered before `$disconnect`.
//! - `$disconnect` is always invoked (API Gateway: best effort), unless
//!   [`WebSocketApiConfig::drop_disconnect_rate`] drops a share of them on purpose.
//! - Close codes chosen by the server (API Gateway documents few of its own, so these are the
//!   standard codes for each cause): 1001 "Going away" for the idle timeout, the maximum
//!   connection duration and [`LocalWebSocketApi::shutdown`]; 1000 for `DeleteConnection`; 1009
//!   for an oversize frame or message; 1007 / 1002 for invalid UTF-8 / protocol errors. A client
//!   that vanished without a close frame is reported to `$disconnect` as 1006.
//! - `PostToConnection` answers 429 `LimitExceededException` when a connection has 256 frames
//!   waiting for a slow client, rather than API Gateway's account-level throttling.
//! - `requestContext.apiId` is `"local"`, `domainName` is `host:port` of this server. Header
//!   names in events are lowercase (API Gateway keeps the client's spelling; look them up
//!   case-insensitively). Connection ids use the URL-safe base64 alphabet.
//! - A `$connect` refusal answers with the integration's status, headers and body; a status
//!   that is not a valid final HTTP status (or a panicking integration) gives 502.

mod connection;
mod event;
mod ids;
mod management;
pub mod queue;
pub mod redis_server;
pub mod rng;
mod shared;
pub mod stack;
pub mod tables;

pub(crate) use shared::{LiveGuard, Shared};
mod upgrade;
mod usage;

pub use usage::{MESSAGE_UNIT_BYTES, WebSocketMeter, WebSocketUsage, message_units};

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::connection::Connection;
use crate::event::{ConnectionInfo, EventFactory};

/// Which route a WebSocket event goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// `$connect`: the handshake, before it is accepted.
    Connect,
    /// `$disconnect`: the connection has closed.
    Disconnect,
    /// `$default`: a message from the client that no custom route selected.
    Default,
    /// A custom route: a text frame that is a JSON object whose `action` is this key, one of
    /// [`WebSocketApiConfig::one_way_routes`] (route selection expression
    /// `$request.body.action`). One-way: its integration's response is discarded.
    Custom(String),
}

impl Route {
    /// The route key: `$connect`, `$disconnect`, `$default` or the custom route's key.
    pub fn route_key(&self) -> &str {
        match self {
            Route::Connect => "$connect",
            Route::Disconnect => "$disconnect",
            Route::Default => "$default",
            Route::Custom(key) => key,
        }
    }

    /// The `requestContext.eventType`: `CONNECT`, `DISCONNECT`, or `MESSAGE` (`$default` and
    /// custom routes).
    pub fn event_type(&self) -> &'static str {
        match self {
            Route::Connect => "CONNECT",
            Route::Disconnect => "DISCONNECT",
            Route::Default | Route::Custom(_) => "MESSAGE",
        }
    }
}

/// The Lambda integrations behind the API, invoked in-process.
#[async_trait::async_trait]
pub trait WebSocketRoutes: Send + Sync + 'static {
    /// Handles one event. For `$connect`, a non-2xx `status_code` refuses the connection with
    /// that HTTP status (and the response's body and headers); the answers of `$disconnect`
    /// and of custom routes are discarded, and so is `$default`'s unless
    /// [`WebSocketApiConfig::default_route_response`] is set, as in API Gateway.
    async fn invoke(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse;
}

/// Stage and limits of the API; the defaults are API Gateway's.
#[derive(Debug, Clone)]
pub struct WebSocketApiConfig {
    /// The stage, first path segment of every URL. Default `"local"`.
    pub stage: String,
    /// Largest frame a client may send. Default 32 KiB.
    pub max_frame_bytes: usize,
    /// Largest message a client may send, and largest `PostToConnection` body. Default 128 KiB.
    pub max_message_bytes: usize,
    /// A connection with no frame from the client for this long is closed. Default 10 min.
    pub idle_timeout: Duration,
    /// A connection is closed this long after it was accepted. Default 2 h.
    pub max_connection: Duration,
    /// Whether `$default` has a route response (two-way communication): the integration's
    /// response body is then sent back to the client. Default false, as in API Gateway.
    pub default_route_response: bool,
    /// Route keys of one-way custom routes (no route response). A text frame that is a JSON
    /// object whose `action` is a string equal to one of them goes to that route
    /// ([`Route::Custom`]) instead of `$default`, and the integration's response is never
    /// sent to the client. Default empty: every frame goes to `$default`.
    pub one_way_routes: Vec<String>,
    /// The share of `$disconnect` events that are not delivered, 0 to 1 (default 0): API
    /// Gateway documents `$disconnect` as best effort, so whatever relies on it must also
    /// work without it (`WS_DROP_DISCONNECT_RATE` in the local stack).
    pub drop_disconnect_rate: f64,
}

impl Default for WebSocketApiConfig {
    fn default() -> Self {
        Self {
            stage: "local".to_owned(),
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
            idle_timeout: Duration::from_secs(10 * 60),
            max_connection: Duration::from_secs(2 * 60 * 60),
            default_route_response: false,
            one_way_routes: Vec::new(),
            drop_disconnect_rate: 0.0,
        }
    }
}

/// How long `shutdown()` lets in-flight HTTP requests (a `$connect` being decided, a
/// management call) finish before cutting them off.
const SERVER_DRAIN: Duration = Duration::from_secs(5);

/// A running local WebSocket API. Dropping it without [`shutdown`](Self::shutdown) still stops
/// it, in the background.
pub struct LocalWebSocketApi {
    local_addr: SocketAddr,
    /// `host:port` clients use: the bound address, with loopback for an unspecified one.
    authority: String,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

impl fmt::Debug for LocalWebSocketApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalWebSocketApi")
            .field("local_addr", &self.local_addr)
            .field("stage", &self.shared.config.stage)
            .field("connections", &self.shared.registry().len())
            .finish_non_exhaustive()
    }
}

impl LocalWebSocketApi {
    /// Binds `addr` (port 0 picks a free port) and starts serving in background tokio tasks.
    ///
    /// Fails if the address cannot be bound or the stage is not a single non-empty path
    /// segment.
    pub async fn start(
        addr: SocketAddr,
        config: WebSocketApiConfig,
        routes: Arc<dyn WebSocketRoutes>,
    ) -> std::io::Result<Self> {
        let stage_ok = !config.stage.is_empty()
            && config
                .stage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !stage_ok {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "stage {:?} must be letters, digits, '-' or '_'",
                    config.stage
                ),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let authority = client_authority(local_addr);
        let shared = Shared::new(config, routes, authority.clone(), local_addr.port());

        let app = router(shared.clone());
        let mut stopping = shared.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopping.wait_for(|&stop| stop).await;
            });
            if let Err(error) = serve.await {
                error!(%error, "local WebSocket API server failed");
            }
        });
        info!(%local_addr, stage = %shared.config.stage, "local WebSocket API listening");
        Ok(Self {
            local_addr,
            authority,
            shared,
            server: Some(server),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://127.0.0.1:PORT/{stage}` — what browsers connect to (clients append their query
    /// string, e.g. `?token=…`).
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/{}", self.authority, self.shared.config.stage)
    }

    /// `http://127.0.0.1:PORT/{stage}` — the endpoint for `aws-sdk-apigatewaymanagement`, which
    /// appends `/@connections/{id}`.
    pub fn management_endpoint(&self) -> String {
        format!("http://{}/{}", self.authority, self.shared.config.stage)
    }

    /// The API's billing counters (clones share them; they outlive the API).
    pub fn meter(&self) -> WebSocketMeter {
        self.shared.meter.clone()
    }

    /// What the API metered so far, as API Gateway bills it.
    pub fn usage(&self) -> WebSocketUsage {
        self.shared.meter.usage()
    }

    /// Ids of the currently open connections.
    pub fn connection_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.shared.registry().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Stops accepting, closes every connection with 1001 "Going away" (each gets its
    /// `$disconnect`), and returns when all of that is done.
    pub async fn shutdown(mut self) {
        info!(local_addr = %self.local_addr, "local WebSocket API shutting down");
        self.shared.shutdown.send_replace(true);
        // Graceful: a `$connect` still being decided registers its connection before the server
        // task ends, so the wait below sees it.
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(SERVER_DRAIN, server).await.is_err() {
                abort.abort();
            }
        }
        let mut live = self.shared.live.subscribe();
        let _ = live.wait_for(|&count| count == 0).await;
    }
}

impl Drop for LocalWebSocketApi {
    fn drop(&mut self) {
        // Without `shutdown()`, still stop accepting and close connections in the background.
        self.shared.shutdown.send_replace(true);
    }
}

/// `host:port` for clients: connecting to an unspecified address means loopback.
fn client_authority(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}

/// One port serves both APIs: the handshake on `/{stage}` (and `/`), the management API on
/// `/{stage}/@connections/{id}` (and `/@connections/{id}`).
fn router(shared: Arc<Shared>) -> Router {
    let stage = &shared.config.stage;
    let connections = post(management::post_to_connection)
        .get(management::get_connection)
        .delete(management::delete_connection);
    Router::new()
        .route("/", get(upgrade::handle))
        .route(&format!("/{stage}"), get(upgrade::handle))
        .route("/@connections/{connection_id}", connections.clone())
        .route(
            &format!("/{stage}/@connections/{{connection_id}}"),
            connections,
        )
        .fallback(management::not_found)
        .with_state(shared)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Accepts everything and answers 200.
    struct Accept;

    #[async_trait::async_trait]
    impl WebSocketRoutes for Accept {
        async fn invoke(
            &self,
            _route: Route,
            _event: ApiGatewayWebsocketProxyRequest,
        ) -> ApiGatewayProxyResponse {
            let mut response = ApiGatewayProxyResponse::default();
            response.status_code = 200;
            response
        }
    }

    /// Shared state without a server, for handler-level tests.
    pub(crate) fn shared() -> Arc<Shared> {
        Shared::new(
            WebSocketApiConfig::default(),
            Arc::new(Accept),
            "127.0.0.1:1".to_owned(),
            1,
        )
    }

    #[test]
    fn unspecified_addresses_become_loopback_for_clients() {
        assert_eq!(
            client_authority("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080"
        );
        assert_eq!(client_authority("[::]:8080".parse().unwrap()), "[::1]:8080");
        assert_eq!(
            client_authority("192.0.2.1:8080".parse().unwrap()),
            "192.0.2.1:8080"
        );
    }
}
