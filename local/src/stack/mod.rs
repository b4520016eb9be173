//! The local stack: every function in-process behind local stand-ins for API Gateway (HTTP
//! and WebSocket), SQS, the schedules, DynamoDB (in memory unless `AWS_ENDPOINT_URL` points
//! at an emulator) and a private `redis-server` (unless `REDIS_URL` is set).
//!
//! The handlers are the functions' own (`heartbeat_ingest::handle`, `ws_push::handle`, …),
//! and so are their configurations and constructors ([`settings`]): what runs here is what
//! runs in Lambda; only the transports are local.
//!
//! # Layout
//!
//! - here: [`LocalStack::start`], the wiring.
//! - [`settings`]: each function's `Config` from the environment, with the stand-ins.
//! - `http`: the HTTP API (heartbeats, history, admin) and the development routes;
//!   `simulation`: simulated users.
//! - [`directory`]: the sample regions, facilities and users.
//! - [`HubRoutes`]: the WebSocket routes wired to the ws-* handlers.
//! - [`billing`]: what AWS would bill for all of it ([`LocalStack::billing`], `/dev/stats`).

mod admin_http;
pub mod billing;
pub mod directory;
mod http;
mod routes;
pub mod settings;
mod simulation;
mod tables;

use billing::MeteredQueue;
pub use billing::{Billing, Function, Meter};
pub use routes::{HubRoutes, ONE_WAY_ROUTES};
use tables::Tables;

pub use directory::{DirFacility, DirRegion, DirUser, Directory, SAMPLE_DIRECTORY};
pub use settings::{DEFAULT_ADMIN_API_KEY, DEV_SECRET, LocalSettings, StandIns};

use crate::queue::{LocalQueue, QueueConfig, run_event_source};
use crate::{LocalWebSocketApi, WebSocketApiConfig};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use presence::auth::DevTokenSigner;
use presence::config::{ConfigError, Env};
use presence::facilities::MemoryFacilityStore;
use presence::hub::registry::MemoryConnectionRegistry;
use presence::hub::{ApiGatewayManagement, Hub, HubPorts};
use presence::sessions::RedisConnection;
use presence::wiring::SessionPorts;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Concurrent consumers of the heartbeat queue (Lambda scales an SQS trigger the same way).
const CONSUMER_CONCURRENCY: usize = 4;

/// Concurrent ws-push invocations. The push queue's mapping sets no maximum concurrency, and
/// Lambda adds pollers while a queue has a backlog; an invocation that waits out a region's
/// coalescing window (up to `STATUS_COALESCE_MS`) holds one, so a stack with many busy regions
/// needs several.
const PUSH_CONCURRENCY: usize = 16;

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

/// A running local stack.
pub struct LocalStack {
    pub http_url: String,
    pub ws: LocalWebSocketApi,
    pub redis_url: String,
    pub heartbeat_dead_letters: Arc<LocalQueue>,
    pub push_dead_letters: Arc<LocalQueue>,
    settings: LocalSettings,
    /// What AWS would bill.
    meter: Arc<Meter>,
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

/// Runs `tick` every `period`, as an EventBridge schedule invokes a function.
fn every<F, Fut>(period: Duration, mut tick: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            tick().await;
        }
    })
}

impl LocalStack {
    /// Starts everything; returns once every port listens.
    pub async fn start(env: &Env, options: StackOptions) -> Result<Self, StackError> {
        // Redis: given, or a private server.
        let (redis_child, redis_url) = match env.get("REDIS_URL") {
            Some(url) => (None, url.to_owned()),
            None => {
                let (child, url) = crate::redis_server::spawn()
                    .await
                    .map_err(|e| StackError::Redis(e.to_string()))?;
                (Some(child), url)
            }
        };

        // Every service's billed units, as AWS meters them.
        let meter = Meter::new();

        // The WebSocket API first: the hub posts to its management endpoint.
        let routes = Arc::new(HubRoutes::metered(meter.clone()));
        let ws_addr = SocketAddr::from(([127, 0, 0, 1], options.ws_port));
        let base = WebSocketApiConfig::default();
        let probe = LocalSettings::from_env(
            env,
            &StandIns {
                redis_url: redis_url.clone(),
                management_endpoint: "http://127.0.0.1:1/local".into(),
                queue_base_url: "http://127.0.0.1:1/queues".into(),
            },
        )?;
        let ws_config = HubRoutes::api_config(WebSocketApiConfig {
            idle_timeout: probe.ws_idle_timeout,
            max_connection: probe.ws_max_connection,
            drop_disconnect_rate: probe.ws_drop_disconnect_rate,
            ..base
        });
        let ws = LocalWebSocketApi::start(ws_addr, ws_config, routes.clone())
            .await
            .map_err(|source| StackError::Listen {
                what: "WebSocket",
                port: options.ws_port,
                source,
            })?;
        meter.attach_websocket(ws.meter());
        let settings = LocalSettings::from_env(
            env,
            &StandIns {
                redis_url: redis_url.clone(),
                management_endpoint: ws.management_endpoint(),
                queue_base_url: format!("{}/queues", ws.management_endpoint()),
            },
        )?;

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
        // What the functions send through: the queues, metered as SQS calls.
        let heartbeat_port = MeteredQueue::new(heartbeats.clone(), meter.clone());
        let push_port = MeteredQueue::new(push.clone(), meter.clone());

        let tables = Tables::open(&settings).await?.metered(&meter);
        let redis = RedisConnection::connect(&settings.consumer.redis)
            .await
            .map_err(|e| StackError::Redis(e.to_string()))?;
        let session_ports = SessionPorts {
            push: push_port.clone(),
            ledger: tables.ledger.clone(),
        };

        // Each function's service, built by its own constructor from its own configuration.
        let ingest = heartbeat_ingest::service(&settings.ingest, heartbeat_port.clone());
        let gateway_sdk = presence::aws::local_sdk_config(&ws.management_endpoint()).await;
        let hub = Hub::new(
            &settings.hub,
            redis.clone(),
            HubPorts {
                registry: tables.registry.clone(),
                gateway: Arc::new(ApiGatewayManagement::new(
                    &gateway_sdk,
                    &settings.hub.websocket_endpoint,
                )),
                messages: tables.messages.clone(),
                sessions: session_ports.clone(),
            },
        );
        routes.serve(hub.clone());

        // Event source mappings and schedules.
        let mut tasks = Vec::new();
        // Lambda runs several consumers of a busy queue at once; so does the stack.
        for _ in 0..CONSUMER_CONCURRENCY {
            let consumer =
                heartbeat_consumer::service(&settings.consumer, redis.clone(), &session_ports);
            let meter = meter.clone();
            tasks.push(run_event_source(heartbeats.clone(), move |event| {
                let consumer = consumer.clone();
                let meter = meter.clone();
                async move {
                    meter
                        .sqs_batch(
                            Function::HeartbeatConsumer,
                            event,
                            move |event| async move {
                                heartbeat_consumer::handle(&consumer, event, presence::now_ms())
                                    .await
                            },
                        )
                        .await
                }
            }));
        }
        // ...and several ws-push invocations of a busy push queue (one waiting out a region's
        // coalescing window must not hold up the others).
        for _ in 0..PUSH_CONCURRENCY {
            let hub = hub.clone();
            let push_meter = meter.clone();
            tasks.push(run_event_source(push.clone(), move |event| {
                let hub = hub.clone();
                let meter = push_meter.clone();
                async move {
                    meter
                        .sqs_batch(Function::WsPush, event, move |event| async move {
                            ws_push::handle(&hub, event, presence::now_ms()).await
                        })
                        .await
                }
            }));
        }
        let sweeper = session_expiry::service(&settings.expiry, redis.clone(), &session_ports);
        let window = settings.expiry.sweep_window.min(settings.expiry_period);
        let expiry_meter = meter.clone();
        tasks.push(every(settings.expiry_period, move || {
            let sweeper = sweeper.clone();
            let meter = expiry_meter.clone();
            async move {
                let event = schedule_event("session-expiry");
                let sweep = session_expiry::handle(&sweeper, event, window, &presence::now_ms);
                meter.invoke(Function::SessionExpiry, sweep).await;
            }
        }));
        let rollup_ports = facility_rollup::Ports {
            push: push_port.clone(),
            facilities: tables.facilities.clone(),
            ledger: tables.ledger.clone(),
        };
        let rollup = facility_rollup::service(&settings.rollup, redis, &rollup_ports);
        let rollup_meter = meter.clone();
        tasks.push(every(settings.rollup_period, move || {
            let rollup = rollup.clone();
            let meter = rollup_meter.clone();
            async move {
                let event = schedule_event("facility-rollup");
                let run = facility_rollup::handle(&rollup, event, presence::now_ms());
                if let Err(e) = meter.invoke(Function::FacilityRollup, run).await {
                    tracing::error!(error = %e, "rollup failed");
                }
            }
        }));

        // The HTTP API.
        let signer = settings
            .signing_secret()
            .map(|s| DevTokenSigner::new(s.as_bytes()));
        let history = history_read::service(
            &settings.history,
            &history_read::Ports {
                facilities: tables.facilities.clone(),
            },
        );
        // admin-api's service on the same hub: what it publishes and whom it disconnects are
        // the WebSocket routes' connections.
        let admin = admin_api::service(hub.clone());
        let state = Arc::new(http::AppState {
            ingest,
            history,
            admin,
            admin_key: settings.admin_api_key.clone(),
            signer,
            directory: Directory::sample()
                .map_err(|e| StackError::Setup(format!("sample directory: {e}")))?,
            websocket_url: ws.websocket_url(),
            web_dir: options.web_dir.clone(),
            interval: settings.ingest.sessions.heartbeat_interval,
            simulations: Mutex::new(HashMap::new()),
            meter: meter.clone(),
            stats: Stats {
                registry: tables.memory_registry,
                facilities: tables.memory_facilities,
                queues: vec![
                    ("heartbeats", heartbeats.clone()),
                    ("heartbeats-dlq", heartbeat_dlq.clone()),
                    ("push", push.clone()),
                    ("push-dlq", push_dlq.clone()),
                ],
                heap: options.heap,
            },
        });
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
        let app = http::router(state);
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
            settings,
            meter,
            tasks,
            http_shutdown: Some(tx),
            _redis: redis_child,
        })
    }

    /// Every function's configuration, as the stack read it.
    pub fn settings(&self) -> &LocalSettings {
        &self.settings
    }

    /// What AWS would have billed for everything the stack did so far (the `billing` of
    /// `/dev/stats`); diff two snapshots with [`Billing::since`] to cost an operation.
    pub fn billing(&self) -> Billing {
        self.meter.billing()
    }

    /// The lines printed when ready.
    pub fn banner(&self) -> String {
        format!(
            "Presence local stack ready\n  dashboard:   {http}/\n  heartbeats:  POST {http}/v1/heartbeats\n  dev token:   {http}/dev/token?user=nurse-ann&facility=st-olav-icu&region=trondelag\n  websocket:   {ws}?token=<JWT>\n  admin:       {http}/v1/admin/... (header x-presence-admin-key: $ADMIN_API_KEY)\n  management:  {mgmt}/@connections/{{id}}\n  redis:       {redis}\n",
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
