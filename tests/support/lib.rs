//! Test support: real servers on free ports, and the inputs and reads the tests share.
//!
//! - [`RedisServer`] starts a private `redis-server` per test and stops it on drop.
//! - [`aws_endpoint`] is a local AWS emulator (moto) for SQS and DynamoDB: the one named by
//!   `AWS_ENDPOINT_URL`, or one this test binary starts from `moto_server` on `PATH` and that
//!   stops when the test binary exits. [`Emulator`] is a private one a test may stop and
//!   restart; [`Clients`] are the SDK clients for either.
//! - Inputs: [`heartbeat`] messages, [`token`]s, [`heartbeat_request`]s, SQS batches
//!   ([`sqs_event`], [`consume`]); reads: [`session_record`], [`facility_status`],
//!   [`failed_ids`].

pub mod ws;

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A free TCP port on loopback (bound then released; racy only against other binders).
pub fn free_port() -> u16 {
    presence_local::redis_server::free_port().expect("a free loopback port")
}

fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not listen on port {port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed (and reaped) when dropped.
#[derive(Debug)]
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private `redis-server` without persistence.
#[derive(Debug)]
pub struct RedisServer {
    _child: KillOnDrop,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// A server on a given port (a cluster node needs port + 10000 free too).
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        let child = presence_local::redis_server::command(port)
            .args(extra)
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        wait_for_port(port, Duration::from_secs(10), "redis-server");
        Self {
            _child: KillOnDrop(child),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn settings(&self) -> presence::config::RedisSettings {
        presence::config::RedisSettings {
            url: self.url(),
            cluster: false,
        }
    }
}

/// The local AWS emulator's URL.
pub fn aws_endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
                if !url.is_empty() {
                    return url;
                }
            }
            let port = free_port();
            // A shell watches this test process and stops moto when it is gone, so no
            // emulator outlives the tests even though statics are never dropped.
            let script = format!(
                "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
                 while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill $m",
                pid = std::process::id()
            );
            // The watcher ends on its own when this process exits; nothing waits for it.
            #[allow(clippy::zombie_processes)]
            let _watcher = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .expect("sh is available");
            wait_for_port(
                port,
                Duration::from_secs(60),
                "moto_server (is it on PATH? the README's test command installs it)",
            );
            format!("http://127.0.0.1:{port}")
        })
        .clone()
}

/// SDK configuration for the emulator.
pub async fn sdk_config() -> aws_config::SdkConfig {
    presence::aws::local_sdk_config(&aws_endpoint()).await
}

/// A private emulator on `port`, stopped when dropped: for tests that take the endpoint away
/// and bring it back (on the same port, empty).
#[derive(Debug)]
pub struct Emulator {
    _child: KillOnDrop,
    pub port: u16,
}

impl Emulator {
    pub fn start_on(port: u16) -> Self {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server must be on PATH (the README's test command installs it)");
        wait_for_port(port, Duration::from_secs(60), "moto_server");
        Self {
            _child: KillOnDrop(child),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// SQS and DynamoDB clients for an emulator, and the configuration they were built from.
#[derive(Debug, Clone)]
pub struct Clients {
    pub sdk: aws_config::SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
}

impl Clients {
    /// Clients for the shared emulator, [`aws_endpoint`].
    pub async fn new() -> Self {
        Self::at(&aws_endpoint()).await
    }

    /// Clients for the emulator at `endpoint`.
    pub async fn at(endpoint: &str) -> Self {
        let sdk = presence::aws::local_sdk_config(endpoint).await;
        Self {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
        }
    }
}

/// A unique name for a queue or table, so tests sharing one emulator never collide.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        presence::now_ms() % 1_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The development secret the sample events' tokens are signed with.
pub use presence::auth::DEV_SECRET;

/// Creates the template's table `logical_id` (`FacilitiesTable`, `ConnectionsTable`) on the
/// emulator as `name`, exactly as template.yaml declares it.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, logical_id: &str, name: &str) {
    presence_local::tables::create_table(client, logical_id, name)
        .await
        .expect("create table from template.yaml");
}

/// The facilities table `table` through its DynamoDB adapter, keeping a day of history.
pub fn dynamo_facilities(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> std::sync::Arc<presence::facilities::DynamoFacilityStore> {
    std::sync::Arc::new(presence::facilities::DynamoFacilityStore::new(
        ddb.clone(),
        table,
        Duration::from_secs(86_400),
    ))
}

/// What the WebSocket functions use on the emulator, made fresh for one test: the connections
/// and facilities tables and the heartbeat and push queues (their names and URLs).
#[derive(Debug, Clone)]
pub struct HubResources {
    pub connections: String,
    pub facilities: String,
    pub messages: String,
    pub heartbeats: String,
    pub push: String,
}

impl HubResources {
    pub async fn create(clients: &Clients) -> Self {
        let connections = unique("connections");
        create_table(&clients.ddb, "ConnectionsTable", &connections).await;
        let facilities = unique("facilities");
        create_table(&clients.ddb, "FacilitiesTable", &facilities).await;
        let messages = unique("messages");
        create_table(&clients.ddb, "MessagesTable", &messages).await;
        Self {
            connections,
            facilities,
            messages,
            heartbeats: create_queue(&clients.sqs, &unique("heartbeats")).await,
            push: create_queue(&clients.sqs, &unique("push")).await,
        }
    }

    /// The functions' variables, as the template sets them: these resources on the shared
    /// emulator, Redis at `redis`, tokens signed with `secret`, the WebSocket API's management
    /// endpoint, and `extra`.
    pub fn env(
        &self,
        redis: &RedisServer,
        secret: &str,
        websocket_endpoint: String,
        extra: &[(&str, &str)],
    ) -> presence::config::Env {
        let mut vars = vec![
            ("REDIS_URL".to_owned(), redis.url()),
            ("JWT_SECRET".to_owned(), secret.to_owned()),
            ("CONNECTIONS_TABLE".to_owned(), self.connections.clone()),
            ("FACILITIES_TABLE".to_owned(), self.facilities.clone()),
            ("MESSAGES_TABLE".to_owned(), self.messages.clone()),
            ("WEBSOCKET_ENDPOINT".to_owned(), websocket_endpoint),
            ("HEARTBEAT_QUEUE_URL".to_owned(), self.heartbeats.clone()),
            ("PUSH_QUEUE_URL".to_owned(), self.push.clone()),
            ("AWS_ENDPOINT_URL".to_owned(), aws_endpoint()),
        ];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        presence::config::Env::from_pairs(vars)
    }
}

/// The hub as a WebSocket function builds it at cold start, from `env` (its variables), with
/// its ports through the SDK (`sdk`: the emulator's).
pub async fn hub_from_env(
    env: &presence::config::Env,
    sdk: &aws_config::SdkConfig,
) -> presence::hub::Hub {
    let config = presence::hub::HubConfig::from_env(env).expect("hub configuration");
    let redis = presence::sessions::RedisConnection::connect(&config.redis)
        .await
        .expect("connect to redis");
    let ports = presence::hub::HubPorts::aws(&config, sdk);
    presence::hub::Hub::new(&config, redis, ports)
}

/// Creates an SQS queue and returns its URL.
pub async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> String {
    client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url")
}

/// Receives every message currently in a queue (deleting them).
pub async fn drain_queue(client: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return bodies;
        }
        for m in msgs {
            bodies.push(m.body.clone().unwrap_or_default());
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
}

/// A heartbeat message for tests.
pub fn heartbeat(
    session: &str,
    user: &str,
    facility: &str,
    region: &str,
    at_ms: i64,
    ended: bool,
) -> presence::protocol::QueueMessage {
    use presence::ids::*;
    presence::protocol::QueueMessage {
        v: 1,
        session_id: SessionId::parse(session).unwrap(),
        user_id: UserId::parse(user).unwrap(),
        facility_id: FacilityId::parse(facility).unwrap(),
        region: RegionId::parse(region).unwrap(),
        at_ms,
        state: if ended {
            presence::protocol::HeartbeatState::Ended
        } else {
            presence::protocol::HeartbeatState::Active
        },
    }
}

/// `user` at `facility` in `region`, as a token names them.
pub fn identity(user: &str, facility: &str, region: &str) -> presence::auth::Identity {
    use presence::ids::*;
    presence::auth::Identity {
        user: UserId::parse(user).unwrap(),
        facility: FacilityId::parse(facility).unwrap(),
        region: RegionId::parse(region).unwrap(),
    }
}

/// A token for `user` at `facility` in `region`, signed with `secret`, valid for ten minutes.
pub fn token(secret: &[u8], user: &str, facility: &str, region: &str) -> String {
    presence::auth::DevTokenSigner::new(secret).sign(
        &identity(user, facility, region),
        presence::now_ms() / 1000 + 600,
    )
}

/// `POST /v1/heartbeats` as API Gateway hands it to heartbeat-ingest, with
/// `authorization: Bearer <token>` when there is a token.
pub fn heartbeat_request(
    token: Option<&str>,
    body: impl Into<lambda_http::Body>,
) -> lambda_http::Request {
    let mut request = lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://api.example/v1/heartbeats");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(body.into()).unwrap()
}

/// A session store on `redis` with the given TTL and partitions, and a partition ledger of
/// its own.
pub async fn store(
    redis: &RedisServer,
    ttl_s: u64,
    partitions: u16,
) -> presence::sessions::SessionStore {
    let settings = presence::config::SessionSettings {
        ttl: Duration::from_secs(ttl_s),
        heartbeat_interval: Duration::from_secs(ttl_s.saturating_sub(1).clamp(1, 30)),
        partitions,
        // Tests of the engine's rules start from a fresh Redis; the data-loss test sets its own.
        loss_hold: Duration::ZERO,
        disconnect_grace: Duration::from_secs(ttl_s.saturating_sub(1).min(10)),
    };
    let conn = presence::sessions::RedisConnection::connect(&redis.settings())
        .await
        .expect("connect to redis");
    // A ledger, as every function has: a fresh redis-server is a first start, not a loss.
    let ledger = std::sync::Arc::new(presence::ledger::MemoryPartitionLedger::new());
    presence::sessions::SessionStore::new(conn, &settings).with_ledger(ledger)
}

/// What the engine holds for session `session` at `facility`, if anything.
pub async fn session_record(
    store: &presence::sessions::SessionStore,
    facility: &str,
    session: &str,
) -> Option<presence::sessions::SessionRecord> {
    let facility = presence::ids::FacilityId::parse(facility).unwrap();
    let session = presence::ids::SessionId::parse(session).unwrap();
    store.session(&facility, &session).await.unwrap()
}

/// The engine's status of `facility`, if it was ever online.
pub async fn facility_status(
    store: &presence::sessions::SessionStore,
    facility: &str,
) -> Option<presence::protocol::FacilityStatus> {
    let facility = presence::ids::FacilityId::parse(facility).unwrap();
    store.facility(&facility).await.unwrap()
}

/// Feeds an SQS queue (on the emulator) to a batch handler the way Lambda's event source
/// mapping does: receive up to 10, invoke, delete what did not fail; failed records become
/// visible again after the queue's visibility timeout. Stops when dropped.
#[derive(Debug)]
pub struct SqsPump {
    task: tokio::task::JoinHandle<()>,
}

impl SqsPump {
    pub fn start<F, Fut>(client: aws_sdk_sqs::Client, url: String, handler: F) -> Self
    where
        F: Fn(aws_lambda_events::event::sqs::SqsEvent) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse> + Send,
    {
        let task = tokio::spawn(async move {
            loop {
                let out = match client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(0)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let msgs = out.messages.unwrap_or_default();
                if msgs.is_empty() {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    continue;
                }
                let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
                event.records = msgs
                    .iter()
                    .map(|m| {
                        let mut r = aws_lambda_events::event::sqs::SqsMessage::default();
                        r.message_id = m.message_id.clone();
                        r.body = m.body.clone();
                        r
                    })
                    .collect();
                let response = handler(event).await;
                let failed: std::collections::HashSet<String> = response
                    .batch_item_failures
                    .into_iter()
                    .map(|f| f.item_identifier)
                    .collect();
                for m in msgs {
                    if !failed.contains(m.message_id.as_deref().unwrap_or_default()) {
                        let _ = client
                            .delete_message()
                            .queue_url(&url)
                            .receipt_handle(m.receipt_handle.unwrap_or_default())
                            .send()
                            .await;
                    }
                }
            }
        });
        Self { task }
    }
}

impl Drop for SqsPump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An SQS event of `bodies`, with message ids `m0`, `m1`, … (as Lambda delivers a batch).
pub fn sqs_event(bodies: &[String]) -> aws_lambda_events::event::sqs::SqsEvent {
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(b.clone());
            m
        })
        .collect();
    event
}

/// Delivers `beats` to heartbeat-consumer's handler as one SQS batch (ids `m0`, `m1`, …)
/// received at `now_ms`.
pub async fn consume(
    consumer: &presence::consume::Consumer,
    beats: &[presence::protocol::QueueMessage],
    now_ms: i64,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    let bodies: Vec<String> = beats.iter().map(|b| b.to_json()).collect();
    heartbeat_consumer::handle(consumer, sqs_event(&bodies), now_ms).await
}

/// The message ids a batch response reports as failed, in its order.
pub fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`): the status and the
/// body. Enough for the local stack's HTTP API, with no extra dependency.
pub async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The whole local stack on free ports, with `env` (as `scripts/run.sh` would read it).
pub async fn local_stack(env: &[(&str, &str)]) -> presence_local::stack::LocalStack {
    let options = presence_local::stack::StackOptions {
        http_port: 0,
        ws_port: 0,
        ..presence_local::stack::StackOptions::default()
    };
    presence_local::stack::LocalStack::start(
        &presence::config::Env::from_pairs(env.iter().copied()),
        options,
    )
    .await
    .expect("the local stack starts")
}
