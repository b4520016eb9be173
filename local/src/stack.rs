//! The local stack: every function in-process behind local stand-ins for API Gateway (HTTP
//! and WebSocket), SQS, the schedules, DynamoDB (in memory unless `AWS_ENDPOINT_URL` points
//! at an emulator) and a private `redis-server` (unless `REDIS_URL` is set).
//!
//! The handlers are the functions' own (`heartbeat_ingest::handle`, `ws_push::handle`, …),
//! so what runs here is what runs in Lambda; only the transports are local.

use crate::queue::{LocalQueue, QueueConfig, run_event_source};
use crate::{LocalWebSocketApi, Route, WebSocketApiConfig, WebSocketRoutes};
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use presence::auth::{Authenticator, DevTokenSigner, Identity};
use presence::config::{ConfigError, Env, RedisSettings, SessionSettings};
use presence::consume::Consumer;
use presence::expiry::Sweeper;
use presence::facilities::{DynamoFacilityStore, FacilityStore, MemoryFacilityStore};
use presence::hub::registry::{
    ConnectionRegistry, DynamoConnectionRegistry, MemoryConnectionRegistry,
};
use presence::hub::{ApiGatewayManagement, DefaultPolicy, Hub, HubSettings};
use presence::ids::{FacilityId, RegionId, SessionId, UserId};
use presence::ingest::Ingest;
use presence::protocol::{HeartbeatBody, HeartbeatState};
use presence::rollup::{Rollup, RollupSettings};
use presence::sessions::{RedisConnection, SessionStore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Concurrent consumers of the heartbeat queue (Lambda scales an SQS trigger the same way).
const CONSUMER_CONCURRENCY: usize = 4;

/// The development secret: tokens from `/dev/token` and the sample events are signed with it.
pub const DEV_SECRET: &str = "presence-local-development-secret";
/// The sample regions, facilities and users.
pub const SAMPLE_DIRECTORY: &str = include_str!("../sample/directory.json");

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("redis: {0}")]
    Redis(String),
    #[error("cannot listen on {what} port {port}: {source}")]
    Listen {
        what: &'static str,
        port: u16,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// Ports and files.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// `--http-port` (default 3000): the HTTP API and the dashboard.
    pub http_port: u16,
    /// `--ws-port` (default 3001): the WebSocket API and its `@connections` API.
    pub ws_port: u16,
    /// The dashboard's files.
    pub web_dir: PathBuf,
    /// Reads the allocator's figures for `/dev/stats` (the binary knows its allocator).
    pub heap: Option<fn() -> Option<HeapStats>>,
}

/// Memory as the allocator sees it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeapStats {
    /// Live allocations.
    pub allocated: u64,
    /// Pages the allocator holds in memory.
    pub resident: u64,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            http_port: 3000,
            ws_port: 3001,
            web_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web")),
            heap: None,
        }
    }
}

/// Schedule periods and local-only settings.
#[derive(Debug, Clone)]
struct Timings {
    /// `EXPIRY_SCHEDULE_SECONDS` (60): how often session-expiry is invoked.
    expiry_period: Duration,
    /// `SWEEP_WINDOW_SECONDS` (55 here): how long each invocation keeps sweeping.
    sweep_window: Duration,
    /// `ROLLUP_SCHEDULE_SECONDS` (60): how often facility-rollup is invoked.
    rollup_period: Duration,
}

/// The sample directory (`GET /dev/directory`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Directory {
    pub regions: Vec<DirRegion>,
    pub users: Vec<DirUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirRegion {
    pub id: RegionId,
    pub name: String,
    pub facilities: Vec<DirFacility>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirFacility {
    pub id: FacilityId,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirUser {
    pub id: UserId,
    pub name: String,
    pub facility: FacilityId,
    pub region: RegionId,
}

/// A running local stack.
pub struct LocalStack {
    pub http_url: String,
    pub ws: LocalWebSocketApi,
    pub redis_url: String,
    pub heartbeat_dead_letters: Arc<LocalQueue>,
    pub push_dead_letters: Arc<LocalQueue>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The private redis-server (killed on drop), when `REDIS_URL` was unset.
    _redis: Option<tokio::process::Child>,
}

impl std::fmt::Debug for LocalStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStack")
            .field("http_url", &self.http_url)
            .field("ws", &self.ws)
            .finish()
    }
}

/// The three WebSocket routes wired to the real ws-connect, ws-disconnect and ws-message
/// handlers over a [`Hub`] (set once it exists: the hub needs the API's endpoint first).
#[derive(Debug, Default)]
pub struct HubRoutes {
    pub hub: OnceLock<Hub>,
}

impl HubRoutes {
    /// The API these routes expect, as `template.yaml` defines it: `$default` with a route
    /// response (ws-message's replies are its response bodies). Limits are `base`'s.
    pub fn api_config(base: WebSocketApiConfig) -> WebSocketApiConfig {
        WebSocketApiConfig {
            default_route_response: true,
            ..base
        }
    }
}

#[async_trait::async_trait]
impl WebSocketRoutes for HubRoutes {
    async fn invoke(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let Some(hub) = self.hub.get() else {
            return presence::hub::route_response(503, Some(("unavailable", "starting".into())));
        };
        let now = presence::now_ms();
        match route {
            Route::Connect => ws_connect::handle(hub, event, now).await,
            Route::Disconnect => ws_disconnect::handle(hub, event, now).await,
            Route::Default => ws_message::handle(hub, event, now).await,
        }
    }
}

struct AppState {
    ingest: Ingest,
    signer: DevTokenSigner,
    directory: Directory,
    websocket_url: String,
    web_dir: PathBuf,
    interval: Duration,
    simulations: Mutex<HashMap<RegionId, (usize, tokio::task::JoinHandle<()>)>>,
    stats: Stats,
}

/// What `/dev/stats` reports: queue depths, registered connections and the heap.
struct Stats {
    registry: Option<Arc<MemoryConnectionRegistry>>,
    /// The in-memory facilities table: its history items are data kept, not a leak.
    facilities: Option<Arc<MemoryFacilityStore>>,
    queues: Vec<(&'static str, Arc<LocalQueue>)>,
    heap: Option<fn() -> Option<HeapStats>>,
}

fn schedule_event(rule: &str) -> EventBridgeEvent {
    serde_json::from_value(serde_json::json!({
        "version": "0", "id": format!("local-{}", presence::now_ms()), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "000000000000", "region": "local",
        "resources": [format!("arn:aws:events:local:000000000000:rule/{rule}")], "detail": {}
    }))
    .expect("a scheduled event")
}

async fn start_redis() -> Result<(tokio::process::Child, String), StackError> {
    let port = crate::redis_server::free_port().map_err(|e| StackError::Redis(e.to_string()))?;
    let child = tokio::process::Command::from(crate::redis_server::command(port))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            StackError::Redis(format!(
                "cannot start redis-server (install it, or set REDIS_URL): {e}"
            ))
        })?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((child, format!("redis://127.0.0.1:{port}")));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(StackError::Redis(
        "redis-server did not start listening".into(),
    ))
}

impl LocalStack {
    /// Starts everything; returns once every port listens.
    pub async fn start(env: &Env, options: StackOptions) -> Result<Self, StackError> {
        let mut sessions = SessionSettings::from_env(env)?;
        if env.get("REDIS_URL").is_none() && env.get("LOSS_HOLD_SECONDS").is_none() {
            // A private redis-server is always new: nothing was lost, nothing to hold.
            sessions.loss_hold = Duration::ZERO;
        }
        let timings = Timings {
            expiry_period: env.seconds_or("EXPIRY_SCHEDULE_SECONDS", 60, 1..=3600)?,
            sweep_window: env.seconds_or("SWEEP_WINDOW_SECONDS", 55, 0..=840)?,
            rollup_period: env.seconds_or("ROLLUP_SCHEDULE_SECONDS", 60, 1..=3600)?,
        };
        let secret = env.get("JWT_SECRET").unwrap_or(DEV_SECRET).to_owned();
        let auth = Authenticator::from_env(&Env::from_pairs([("JWT_SECRET", secret.as_str())]))?;
        let directory: Directory = serde_json::from_str(SAMPLE_DIRECTORY)
            .map_err(|e| StackError::Setup(format!("sample directory: {e}")))?;

        // Redis: given, or a private server.
        let (redis_child, redis_url) = match env.get("REDIS_URL") {
            Some(_) => (None, RedisSettings::from_env(env)?.url),
            None => {
                let (child, url) = start_redis().await?;
                (Some(child), url)
            }
        };
        let redis = RedisSettings {
            url: redis_url.clone(),
            cluster: env.parse_or("REDIS_CLUSTER", false)?,
        };
        let conn = RedisConnection::connect(&redis)
            .await
            .map_err(|e| StackError::Redis(e.to_string()))?;
        let store = SessionStore::new(conn, &sessions);

        // Queues with SQS semantics and their dead-letter queues.
        let heartbeat_dlq = LocalQueue::new(QueueConfig::new("heartbeats-dlq"), None);
        let push_dlq = LocalQueue::new(QueueConfig::new("push-dlq"), None);
        let mut hq = QueueConfig::new("heartbeats");
        hq.visibility_timeout = Duration::from_secs(10);
        let heartbeats = LocalQueue::new(hq, Some(heartbeat_dlq.clone()));
        let mut pq = QueueConfig::new("push");
        pq.visibility_timeout = Duration::from_secs(10);
        pq.batch_size = 10;
        pq.batching_window = Duration::ZERO;
        let push = LocalQueue::new(pq, Some(push_dlq.clone()));

        // Tables: in memory, or on an emulator.
        let endpoint = env.get("AWS_ENDPOINT_URL").map(str::to_owned);
        let sdk =
            presence::aws::local_sdk_config(endpoint.as_deref().unwrap_or("http://127.0.0.1:1"))
                .await;
        let memory_registry = endpoint
            .is_none()
            .then(|| Arc::new(MemoryConnectionRegistry::new()));
        let memory_facilities = endpoint
            .is_none()
            .then(|| Arc::new(MemoryFacilityStore::new()));
        let (registry, facilities): (Arc<dyn ConnectionRegistry>, Arc<dyn FacilityStore>) =
            match (&memory_registry, &memory_facilities) {
                (Some(memory), Some(table)) => (memory.clone(), table.clone()),
                _ => {
                    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
                    let connections = env
                        .get("CONNECTIONS_TABLE")
                        .unwrap_or("presence-connections")
                        .to_owned();
                    let facilities_table = env
                        .get("FACILITIES_TABLE")
                        .unwrap_or("presence-facilities")
                        .to_owned();
                    presence::hub::registry::create_table(&ddb, &connections)
                        .await
                        .map_err(|e| StackError::Setup(e.to_string()))?;
                    presence::facilities::create_table(&ddb, &facilities_table)
                        .await
                        .map_err(|e| StackError::Setup(e.to_string()))?;
                    (
                        Arc::new(DynamoConnectionRegistry::new(ddb.clone(), connections)),
                        Arc::new(DynamoFacilityStore::new(
                            ddb,
                            facilities_table,
                            Duration::from_secs(90 * 86_400),
                        )),
                    )
                }
            };

        // The WebSocket API first: the hub posts to its management endpoint.
        let routes = Arc::new(HubRoutes::default());
        let ws_addr = SocketAddr::from(([127, 0, 0, 1], options.ws_port));
        let ws_config = HubRoutes::api_config(WebSocketApiConfig {
            idle_timeout: env.seconds_or("WS_IDLE_TIMEOUT_SECONDS", 600, 1..=7200)?,
            max_connection: env.seconds_or("WS_MAX_CONNECTION_SECONDS", 7200, 1..=86_400)?,
            ..WebSocketApiConfig::default()
        });
        let ws = LocalWebSocketApi::start(ws_addr, ws_config, routes.clone())
            .await
            .map_err(|source| StackError::Listen {
                what: "WebSocket",
                port: options.ws_port,
                source,
            })?;
        let ingest = Ingest::new(
            auth.clone(),
            heartbeats.clone(),
            sessions.heartbeat_interval.as_secs(),
        );
        let gateway_sdk = presence::aws::local_sdk_config(&ws.management_endpoint()).await;
        let hub = Hub::new(
            auth,
            Arc::new(DefaultPolicy),
            registry,
            Arc::new(ApiGatewayManagement::new(
                &gateway_sdk,
                &ws.management_endpoint(),
            )),
            store.clone(),
            push.clone(),
            ingest.clone(),
            HubSettings::default(),
        );
        let _ = routes.hub.set(hub.clone());

        // Event source mappings and schedules.
        let mut tasks = Vec::new();
        // Lambda runs several consumers of a busy queue at once; so does the stack.
        for _ in 0..CONSUMER_CONCURRENCY {
            let consumer = Consumer::new(store.clone(), push.clone());
            tasks.push(run_event_source(heartbeats.clone(), move |event| {
                let consumer = consumer.clone();
                async move { heartbeat_consumer::handle(&consumer, event, presence::now_ms()).await }
            }));
        }
        let push_hub = hub.clone();
        tasks.push(run_event_source(push.clone(), move |event| {
            let hub = push_hub.clone();
            async move { ws_push::handle(&hub, event, presence::now_ms()).await }
        }));
        let sweeper = Sweeper::new(store.clone(), push.clone());
        let window = timings.sweep_window.min(timings.expiry_period);
        let expiry_period = timings.expiry_period;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(expiry_period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                session_expiry::handle(
                    &sweeper,
                    schedule_event("session-expiry"),
                    window,
                    &presence::now_ms,
                )
                .await;
            }
        }));
        let rollup = Rollup::new(store, facilities, push.clone(), RollupSettings::default());
        let rollup_period = timings.rollup_period;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(rollup_period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = facility_rollup::handle(
                    &rollup,
                    schedule_event("facility-rollup"),
                    presence::now_ms(),
                )
                .await
                {
                    tracing::error!(error = %e, "rollup failed");
                }
            }
        }));

        // The HTTP API.
        let state = Arc::new(AppState {
            ingest,
            signer: DevTokenSigner::new(secret.as_bytes()),
            directory,
            websocket_url: ws.websocket_url(),
            web_dir: options.web_dir.clone(),
            interval: sessions.heartbeat_interval,
            simulations: Mutex::new(HashMap::new()),
            stats: Stats {
                registry: memory_registry,
                facilities: memory_facilities,
                queues: vec![
                    ("heartbeats", heartbeats.clone()),
                    ("heartbeats-dlq", heartbeat_dlq.clone()),
                    ("push", push.clone()),
                    ("push-dlq", push_dlq.clone()),
                ],
                heap: options.heap,
            },
        });
        let app = Router::new()
            .route("/v1/heartbeats", post(heartbeats_route))
            .route("/dev/config", get(config_route))
            .route("/dev/directory", get(directory_route))
            .route("/dev/token", get(token_route))
            .route("/dev/stats", get(stats_route))
            .route(
                "/dev/simulation",
                get(simulation_status)
                    .post(simulation_start)
                    .delete(simulation_stop),
            )
            .fallback(get(static_route))
            .with_state(state.clone());
        let http_addr = SocketAddr::from(([127, 0, 0, 1], options.http_port));
        let listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(|source| StackError::Listen {
                what: "HTTP",
                port: options.http_port,
                source,
            })?;
        let http_url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| StackError::Setup(e.to_string()))?
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.push(tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));

        Ok(Self {
            http_url,
            ws,
            redis_url,
            heartbeat_dead_letters: heartbeat_dlq,
            push_dead_letters: push_dlq,
            tasks,
            http_shutdown: Some(tx),
            _redis: redis_child,
        })
    }

    /// The lines printed when ready.
    pub fn banner(&self) -> String {
        format!(
            "Presence local stack ready\n  dashboard:   {http}/\n  heartbeats:  POST {http}/v1/heartbeats\n  dev token:   {http}/dev/token?user=nurse-ann&facility=st-olav-icu&region=trondelag\n  websocket:   {ws}?token=<JWT>\n  management:  {mgmt}/@connections/{{id}}\n  redis:       {redis}\n",
            http = self.http_url,
            ws = self.ws.websocket_url(),
            mgmt = self.ws.management_endpoint(),
            redis = self.redis_url,
        )
    }

    /// Stops serving, closes every socket (their `$disconnect` runs), stops the tasks and the
    /// private redis-server.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.http_shutdown.take() {
            let _ = tx.send(());
        }
        self.ws.shutdown().await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

async fn heartbeats_route(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    // Read a little past the limit so the handler can answer 413 itself.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        let body =
            presence::protocol::ErrorBody::new("body_too_large", "body is too large").to_json();
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    };
    let mut lreq = lambda_http::http::Request::builder()
        .method(parts.method)
        .uri(parts.uri);
    for (k, v) in &parts.headers {
        lreq = lreq.header(k, v);
    }
    let Ok(lreq) = lreq.body(lambda_http::Body::from(bytes.to_vec())) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let resp = heartbeat_ingest::handle(&state.ingest, lreq, presence::now_ms()).await;
    let (parts, body) = resp.into_parts();
    let mut out = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    out.body(axum::body::Body::from(body.to_vec()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn config_route(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(serde_json::json!({
        "websocket_url": state.websocket_url, "heartbeat_url": "/v1/heartbeats",
        "heartbeat_interval_s": state.interval.as_secs(),
    }))
    .into_response()
}

async fn stats_route(State(state): State<Arc<AppState>>) -> Response {
    let queues: serde_json::Map<String, serde_json::Value> = state
        .stats
        .queues
        .iter()
        .map(|(name, q)| {
            (
                (*name).to_owned(),
                serde_json::json!({ "visible": q.visible(), "in_flight": q.in_flight() }),
            )
        })
        .collect();
    axum::Json(serde_json::json!({
        "connections": state.stats.registry.as_ref().map(|r| r.connection_count()),
        "connection_sample": state.stats.registry.as_ref().map(|r| {
            r.sample(5).into_iter().map(|c| serde_json::json!({"id": c.id, "user": c.user, "connected_ms": c.connected_ms})).collect::<Vec<_>>()
        }),
        "queues": queues,
        "heap": state.stats.heap.and_then(|read| read()),
        "history_items": state.stats.facilities.as_ref().map(|f| f.history_len()),
    }))
    .into_response()
}

async fn directory_route(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(&state.directory).into_response()
}

fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        presence::protocol::ErrorBody::new(code, message).to_json(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    user: Option<String>,
    facility: Option<String>,
    region: Option<String>,
}

async fn token_route(State(state): State<Arc<AppState>>, Query(q): Query<TokenQuery>) -> Response {
    let parse = || -> Result<Identity, String> {
        let user = q.user.as_deref().ok_or("user is required")?;
        let known = state.directory.users.iter().find(|u| u.id.as_str() == user);
        let facility = q
            .facility
            .clone()
            .or_else(|| known.map(|u| u.facility.to_string()))
            .ok_or("facility is required")?;
        let region = q
            .region
            .clone()
            .or_else(|| known.map(|u| u.region.to_string()))
            .ok_or("region is required")?;
        Ok(Identity {
            user: UserId::parse(user).map_err(|e| e.to_string())?,
            facility: FacilityId::parse(&facility).map_err(|e| e.to_string())?,
            region: RegionId::parse(&region).map_err(|e| e.to_string())?,
        })
    };
    match parse() {
        Ok(identity) => axum::Json(serde_json::json!({ "token": state.signer.sign(&identity, presence::now_ms() / 1000 + 12 * 3600) })).into_response(),
        Err(message) => json_error(StatusCode::BAD_REQUEST, "bad_request", message),
    }
}

#[derive(Debug, Deserialize)]
struct SimulationRequest {
    region: RegionId,
    #[serde(default = "default_sim_users")]
    users: usize,
}

fn default_sim_users() -> usize {
    5
}

#[derive(Debug, Deserialize)]
struct RegionQuery {
    region: Option<String>,
}

async fn simulation_status(State(state): State<Arc<AppState>>) -> Response {
    let sims = state.simulations.lock().expect("simulations lock");
    let regions: HashMap<String, usize> =
        sims.iter().map(|(r, (n, _))| (r.to_string(), *n)).collect();
    axum::Json(serde_json::json!({ "regions": regions })).into_response()
}

async fn simulation_start(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let req: SimulationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("expected {{\"region\", \"users\"}}: {e}"),
            );
        }
    };
    if !(1..=200).contains(&req.users) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "users must be 1-200",
        );
    }
    let Some(region) = state
        .directory
        .regions
        .iter()
        .find(|r| r.id == req.region)
        .cloned()
    else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown region {}", req.region),
        );
    };
    let task = tokio::spawn(simulate(
        state.ingest.clone(),
        region,
        req.users,
        state.interval,
    ));
    let mut sims = state.simulations.lock().expect("simulations lock");
    if let Some((_, old)) = sims.insert(req.region.clone(), (req.users, task)) {
        old.abort();
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "region": req.region, "users": req.users })),
    )
        .into_response()
}

async fn simulation_stop(
    State(state): State<Arc<AppState>>,
    Query(q): Query<RegionQuery>,
) -> Response {
    let mut sims = state.simulations.lock().expect("simulations lock");
    let stopped: Vec<RegionId> = match q.region.as_deref().map(RegionId::parse) {
        Some(Ok(r)) => sims
            .remove(&r)
            .map(|(_, t)| {
                t.abort();
                r
            })
            .into_iter()
            .collect(),
        Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        None => sims
            .drain()
            .map(|(r, (_, t))| {
                t.abort();
                r
            })
            .collect(),
    };
    axum::Json(serde_json::json!({ "stopped": stopped })).into_response()
}

/// A tiny xorshift generator: simulated users need variety, not security.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Simulated users of a region: each goes online at a random facility for a while
/// (heartbeating at the interval), then ends its session, rests, and starts again.
async fn simulate(ingest: Ingest, region: DirRegion, users: usize, interval: Duration) {
    let tasks: Vec<_> = (0..users)
        .map(|i| {
            let ingest = ingest.clone();
            let region = region.clone();
            tokio::spawn(async move {
                let mut dice =
                    Dice::new(presence::now_ms() as u64 ^ ((i as u64 + 1) * 0x9E37_79B9_7F4A_7C15));
                let user = UserId::parse(&format!("sim-{}-{i}", region.id)).expect("valid id");
                let mut round = 0u32;
                loop {
                    tokio::time::sleep(Duration::from_millis(1000 + dice.below(6000))).await;
                    let facility =
                        &region.facilities[dice.below(region.facilities.len() as u64) as usize];
                    let identity = Identity {
                        user: user.clone(),
                        facility: facility.id.clone(),
                        region: region.id.clone(),
                    };
                    round += 1;
                    let session = SessionId::parse(&format!("sim-{i}-{round}")).expect("valid id");
                    let beats = 1 + dice.below(4);
                    for _ in 0..beats {
                        let body = HeartbeatBody {
                            session_id: session.clone(),
                            state: HeartbeatState::Active,
                        };
                        let _ = ingest.enqueue(&identity, body, presence::now_ms()).await;
                        tokio::time::sleep(interval.min(Duration::from_secs(5))).await;
                    }
                    let body = HeartbeatBody {
                        session_id: session,
                        state: HeartbeatState::Ended,
                    };
                    let _ = ingest.enqueue(&identity, body, presence::now_ms()).await;
                }
            })
        })
        .collect();
    // Aborting this task aborts the users with it.
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _guard = AbortAll(tasks);
    std::future::pending::<()>().await;
}

async fn static_route(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let safe = path.split('/').all(|seg| {
        !seg.is_empty()
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if !safe {
        return StatusCode::NOT_FOUND.into_response();
    }
    let file = state.web_dir.join(path);
    let Ok(bytes) = tokio::fs::read(&file).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut resp = bytes.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
