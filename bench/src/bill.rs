//! The monthly bill from measurement: every billed unit (WebSocket messages, connection
//! minutes, HTTP requests, Lambda invocations and GB-seconds, SQS requests, DynamoDB units,
//! `@connections` calls) is counted by the local stack's meter
//! ([`LocalStack::billing`], diffed with [`Billing::since`]) while real WebSocket and HTTP
//! clients perform one browser **activity** many times over; the per-activity units are then
//! scaled by a stated workload and priced with stated us-east-1 list prices.
//!
//! Activities (each isolated by diffing the counters around it, after the pipeline went
//! quiet, and averaged over its repetitions):
//!
//! 1. a tab opening: a leader (`?session_id=`) or a follower, each asking `snapshot`; a hidden
//!    one then says `visibility false`;
//! 2. a tab closing (`$disconnect`), and the last tab's `ended` beacon (`POST /v1/heartbeats`);
//! 3. one backstop `heartbeat` frame from a warm leader socket;
//! 4. a follower's keepalive (a one-way `visibility` frame repeating its state), and a `ping`
//!    (the straightforward design's keepalive);
//! 5. one flip delivered in a region of 100 facilities × 15 sockets, 30 % visible, and the
//!    same with every socket visible (the flip's own cause, measured in an empty region, is
//!    subtracted);
//! 6. one chat message to a group of 10 members;
//! 7. one session-expiry run and one facility-rollup run (each in a stack of its own, so that
//!    its GB-seconds are its alone), and what a flip adds to the next rollup run;
//! 8. one HTTP heartbeat through ingest → SQS → consumer (the straightforward design's).
//!
//! The designs compared (this design at the template's defaults, its 120 s profile, the
//! straightforward design, Azure SignalR Standard + Functions) are priced from the same
//! measured units. `bill.md` in the output directory has the prices, the units, the workload
//! and the bills; a full run into `bench/results` also rewrites the block between
//! `<!-- bill:begin -->` and `<!-- bill:end -->` in `docs/deploy.md` with it.

use crate::report::{Figure, On, Report, Target, fmt_num};
use crate::{BenchError, Options, Outcome, Progress};
use futures::{SinkExt, StreamExt};
use presence::auth::{DevTokenSigner, Identity};
use presence::config::Env;
use presence::ids::{FacilityId, RegionId, UserId};
use presence_local::stack::{Billing, DEV_SECRET, LocalStack, StackOptions};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// List prices (USD) used by the bill; every one is printed in `bill.md`.
pub mod prices {
    /// Lambda, arm64, per GB-second.
    pub const LAMBDA_GB_S: f64 = 0.000_013_333_4;
    /// Lambda, per request.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// API Gateway WebSocket, per message (32 KB units), first billion a month.
    pub const WS_MESSAGE: f64 = 1.00 / 1e6;
    /// API Gateway WebSocket, per message beyond the first billion a month.
    pub const WS_MESSAGE_AFTER: f64 = 0.80 / 1e6;
    pub const WS_MESSAGE_TIER: f64 = 1e9;
    /// API Gateway WebSocket, per connection-minute.
    pub const WS_CONNECTION_MINUTE: f64 = 0.25 / 1e6;
    /// API Gateway HTTP API, per request, first 300 million a month; after.
    pub const HTTP_REQUEST: f64 = 1.00 / 1e6;
    pub const HTTP_REQUEST_AFTER: f64 = 0.90 / 1e6;
    pub const HTTP_REQUEST_TIER: f64 = 300e6;
    /// SQS standard, per request (64 KB chunks).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// DynamoDB on demand, per write / read request unit.
    pub const DDB_WRITE: f64 = 0.625 / 1e6;
    pub const DDB_READ: f64 = 0.125 / 1e6;
    /// NAT gateway, per GB processed (the `@connections` posts leave the VPC through it).
    pub const NAT_GB: f64 = 0.045;
    /// CloudWatch Logs, per GB ingested.
    pub const LOGS_GB: f64 = 0.50;
    /// Azure SignalR Service Standard: per unit (1 000 concurrent connections) and month.
    pub const SIGNALR_UNIT_MONTH: f64 = 49.0;
    pub const SIGNALR_UNIT_CONNECTIONS: f64 = 1000.0;
    /// Messages included per unit per day; price per million beyond (2 KB units, both ways).
    pub const SIGNALR_INCLUDED_PER_UNIT_DAY: f64 = 1e6;
    pub const SIGNALR_MESSAGE_EXTRA: f64 = 1.00 / 1e6;
    /// Azure Functions consumption plan: per execution, per GB-s; 128 MB × 100 ms each.
    pub const AZ_FUNCTION_EXECUTION: f64 = 0.20 / 1e6;
    pub const AZ_FUNCTION_GB_S: f64 = 0.000_016;
    pub const AZ_FUNCTION_GB: f64 = 0.128;
    pub const AZ_FUNCTION_S: f64 = 0.1;
    /// Fixed infrastructure from `docs/deploy.md` (not measured): NAT gateway hours and its
    /// address (730 × ($0.045 + $0.005) = $36.50), the SQS interface endpoint in 2 zones
    /// ($14.60), the ElastiCache 100 MB minimum ($6.13), 15 metrics and 6 alarms ($5.10),
    /// one secret ($0.40).
    pub const FIXED_MONTH: f64 = 36.50 + 14.60 + 6.13 + 5.10 + 0.40;
}

/// Hours in the month the bill covers.
pub const MONTH_HOURS: f64 = 730.0;
/// What session-expiry sweeps of every minute in AWS (`template.yaml` `SWEEP_WINDOW_SECONDS`).
pub const AWS_SWEEP_SECONDS: f64 = 55.0;
/// Bytes of one `@connections` post through the NAT gateway (stated, not measured).
pub const MANAGEMENT_POST_BYTES: f64 = 1536.0;

/// Billed units, per occurrence of an activity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Units {
    pub ws_messages: f64,
    pub connection_minutes: f64,
    pub http_requests: f64,
    pub invocations: BTreeMap<String, f64>,
    pub gb_s: f64,
    pub sqs: f64,
    pub rru: f64,
    pub wru: f64,
    pub management: f64,
}

impl Units {
    /// A counter diff over `n` occurrences (connection minutes left out: they are measured
    /// on their own, per socket-hour).
    pub fn per(b: &Billing, n: f64) -> Self {
        let n = n.max(1.0);
        Self {
            ws_messages: b.websocket_messages as f64 / n,
            connection_minutes: 0.0,
            http_requests: b.http_requests as f64 / n,
            invocations: b
                .lambda_invocations
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| (k.clone(), *v as f64 / n))
                .collect(),
            gb_s: b.lambda_gb_seconds / n,
            sqs: b.sqs_requests as f64 / n,
            rru: b.dynamodb_read_units / n,
            wru: b.dynamodb_write_units / n,
            management: b.management_api_calls as f64 / n,
        }
    }

    pub fn invocation(&self, name: &str) -> f64 {
        self.invocations.get(name).copied().unwrap_or(0.0)
    }

    pub fn invocations_total(&self) -> f64 {
        self.invocations.values().sum()
    }

    /// `self += other × times`.
    pub fn add(&mut self, other: &Units, times: f64) {
        self.ws_messages += other.ws_messages * times;
        self.connection_minutes += other.connection_minutes * times;
        self.http_requests += other.http_requests * times;
        for (k, v) in &other.invocations {
            *self.invocations.entry(k.clone()).or_default() += v * times;
        }
        self.gb_s += other.gb_s * times;
        self.sqs += other.sqs * times;
        self.rru += other.rru * times;
        self.wru += other.wru * times;
        self.management += other.management * times;
    }

    /// `self − other`, each unit at least 0 (what a flip adds beyond its cause).
    pub fn minus(&self, other: &Units) -> Units {
        let d = |a: f64, b: f64| (a - b).max(0.0);
        Units {
            ws_messages: d(self.ws_messages, other.ws_messages),
            connection_minutes: d(self.connection_minutes, other.connection_minutes),
            http_requests: d(self.http_requests, other.http_requests),
            invocations: self
                .invocations
                .iter()
                .map(|(k, v)| (k.clone(), d(*v, other.invocation(k))))
                .filter(|(_, v)| *v > 0.0)
                .collect(),
            gb_s: d(self.gb_s, other.gb_s),
            sqs: d(self.sqs, other.sqs),
            rru: d(self.rru, other.rru),
            wru: d(self.wru, other.wru),
            management: d(self.management, other.management),
        }
    }

    /// Its price at first-tier prices (for per-activity figures; the monthly bill applies the
    /// tiers to the month's totals).
    pub fn price(&self) -> f64 {
        use prices::*;
        self.ws_messages * WS_MESSAGE
            + self.connection_minutes * WS_CONNECTION_MINUTE
            + self.http_requests * HTTP_REQUEST
            + self.invocations_total() * LAMBDA_REQUEST
            + self.gb_s * LAMBDA_GB_S
            + self.sqs * SQS_REQUEST
            + self.rru * DDB_READ
            + self.wru * DDB_WRITE
    }
}

/// What was measured, per activity.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub open_leader: Units,
    pub open_follower: Units,
    pub hide: Units,
    pub close_leader: Units,
    pub close_follower: Units,
    pub ended: Units,
    pub heartbeat: Units,
    pub keepalive: Units,
    pub ping: Units,
    /// A flip's own cause (a `heartbeat` frame starting or ending a session), in an empty region.
    pub flip_cause: Units,
    /// One flip delivered in the region, 30 % visible / all visible (cause subtracted).
    pub flip_hidden: Units,
    pub flip_visible: Units,
    pub chat: Units,
    pub http_heartbeat: Units,
    pub expiry_run: Units,
    pub rollup_run: Units,
    /// What a pending flip adds to the next rollup run (its status and history writes).
    pub rollup_per_flip: Units,
    /// session-expiry's sweep window in the measuring stack, s.
    pub expiry_window_s: f64,
    /// Connection minutes billed per socket-minute open (1.0 expected).
    pub connection_minutes_per_socket_minute: f64,
    pub region_sockets: usize,
    pub visible_sockets: usize,
    /// Status frames received per flip, all sockets of the region.
    pub frames_per_flip_hidden: f64,
    pub frames_per_flip_visible: f64,
    /// Repetitions behind each activity.
    pub reps: BTreeMap<&'static str, usize>,
}

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    /// Leader and follower tabs opened (each).
    pub opens: usize,
    /// Frames per socket for the heartbeat / keepalive / ping activities.
    pub frames_each: usize,
    pub chat_messages: usize,
    pub http_sessions: usize,
    pub http_rounds: usize,
    pub region_facilities: usize,
    pub flips: usize,
    pub flip_spacing: Duration,
    pub schedule_runs: usize,
    pub rollup_flips: usize,
    pub quiet: Duration,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                opens: 6,
                frames_each: 2,
                chat_messages: 4,
                http_sessions: 10,
                http_rounds: 2,
                region_facilities: 4,
                flips: 2,
                flip_spacing: Duration::from_millis(850),
                schedule_runs: 1,
                rollup_flips: 10,
                // Longer than the coalescing window (750 ms): a sender waiting to flush a
                // region's statuses changes no counter until it does.
                quiet: Duration::from_millis(1_000),
            }
        } else {
            Self {
                quick,
                opens: 40,
                frames_each: 5,
                chat_messages: 20,
                http_sessions: 50,
                http_rounds: 5,
                region_facilities: 100,
                flips: 10,
                flip_spacing: Duration::from_millis(1000),
                schedule_runs: 3,
                rollup_flips: 50,
                // Longer than the coalescing window (750 ms), as in quick mode.
                quiet: Duration::from_millis(1_000),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A browser tab's socket: frames other than status events come out of `rx`; status frames
/// are only counted.
struct Tab {
    sink: futures::stream::SplitSink<Ws, Message>,
    rx: mpsc::UnboundedReceiver<serde_json::Value>,
    reader: tokio::task::JoinHandle<()>,
}

struct Clients {
    ws_url: String,
    http_url: String,
    signer: DevTokenSigner,
    exp: i64,
    /// Status frames received by every tab.
    status_frames: Arc<AtomicU64>,
}

fn identity(user: &str, facility: &str, region: &str) -> Result<Identity, BenchError> {
    Ok(Identity {
        user: UserId::parse(user).map_err(|e| format!("{user}: {e}"))?,
        facility: FacilityId::parse(facility).map_err(|e| format!("{facility}: {e}"))?,
        region: RegionId::parse(region).map_err(|e| format!("{region}: {e}"))?,
    })
}

impl Clients {
    fn new(stack: &LocalStack) -> Self {
        Self {
            ws_url: stack.ws.websocket_url(),
            http_url: stack.http_url.clone(),
            signer: DevTokenSigner::new(DEV_SECRET.as_bytes()),
            exp: presence::now_ms() / 1000 + 3600,
            status_frames: Arc::default(),
        }
    }

    fn token(&self, user: &str, facility: &str, region: &str) -> Result<String, BenchError> {
        Ok(self
            .signer
            .sign(&identity(user, facility, region)?, self.exp))
    }

    async fn open(
        &self,
        user: &str,
        facility: &str,
        region: &str,
        session: Option<&str>,
    ) -> Result<Tab, BenchError> {
        let token = self.token(user, facility, region)?;
        let url = match session {
            Some(s) => format!("{}?token={token}&session_id={s}", self.ws_url),
            None => format!("{}?token={token}", self.ws_url),
        };
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let frames = self.status_frames.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if presence::protocol::statuses_in(&v).is_empty() {
                    let _ = tx.send(v);
                } else {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Tab { sink, rx, reader })
    }

    /// `POST /v1/heartbeats` for `session` (`state` `active` or `ended`), expecting 202.
    async fn post(
        &self,
        client: &mut crate::http::HttpClient,
        token: &str,
        session: &str,
        state: &str,
    ) -> Result<(), BenchError> {
        let body = serde_json::json!({"session_id": session, "state": state}).to_string();
        let (status, text) = client.post_json("/v1/heartbeats", token, &body).await?;
        if status != 202 {
            return Err(format!("heartbeat answered {status}: {text}").into());
        }
        Ok(())
    }
}

impl Tab {
    async fn send(&mut self, frame: serde_json::Value) -> Result<(), BenchError> {
        self.sink.send(Message::text(frame.to_string())).await?;
        Ok(())
    }

    /// The next frame of type `kind` (others are skipped; `error` fails).
    async fn expect(&mut self, kind: &str) -> Result<serde_json::Value, BenchError> {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(v)) if v["type"] == kind => return Ok(v),
                Ok(Some(v)) if v["type"] == "error" => {
                    return Err(format!("expected {kind}, got {v}").into());
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Err(format!("socket closed waiting for {kind}").into()),
                Err(_) => return Err(format!("no {kind} within 10 s").into()),
            }
        }
    }

    /// Asks for a snapshot and waits for it.
    async fn snapshot(&mut self) -> Result<serde_json::Value, BenchError> {
        self.send(serde_json::json!({"action": "snapshot"})).await?;
        self.expect("snapshot").await
    }

    /// Closes the socket (its `$disconnect` runs) and waits for the server's close.
    async fn close(mut self) {
        let _ = self.sink.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        self.reader.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Counters.

/// The counters without the ones that move by themselves (connection minutes).
fn moving(b: &Billing) -> Billing {
    Billing {
        connection_minutes: 0.0,
        ..b.clone()
    }
}

/// Waits until the counters stopped changing for `quiet` (at most 30 s); returns them.
async fn settle(stack: &LocalStack, quiet: Duration) -> Billing {
    let start = Instant::now();
    let mut last = stack.billing();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = stack.billing();
        if moving(&now) != moving(&last) {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet || start.elapsed() > Duration::from_secs(30) {
            return now;
        }
    }
}

/// Waits until `function` was invoked at least `count` times (at most `limit`).
async fn invoked(
    stack: &LocalStack,
    function: &str,
    count: u64,
    limit: Duration,
) -> Result<Billing, BenchError> {
    let until = Instant::now() + limit;
    loop {
        let b = stack.billing();
        if b.invocations(function) >= count {
            return Ok(b);
        }
        if Instant::now() > until {
            return Err(
                format!("{function} was not invoked {count} times within {limit:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn base_env(extra: &[(&str, &str)]) -> Env {
    let mut pairs: Vec<(String, String)> = vec![
        ("PARTITIONS".into(), "16".into()),
        ("LOSS_HOLD_SECONDS".into(), "0".into()),
    ];
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Env::from_pairs(pairs)
}

async fn start(env: &Env) -> Result<LocalStack, BenchError> {
    Ok(LocalStack::start(
        env,
        StackOptions {
            http_port: 0,
            ws_port: 0,
            ..StackOptions::default()
        },
    )
    .await?)
}

// ---------------------------------------------------------------------------------------
// Measuring.

/// Activities 1–6 and 8, in one stack whose schedules ran once at start and then not again.
async fn measure_activities(
    cfg: &Config,
    m: &mut Measured,
    progress: &Progress,
) -> Result<(), BenchError> {
    let env = base_env(&[
        ("EXPIRY_SCHEDULE_SECONDS", "3600"),
        ("ROLLUP_SCHEDULE_SECONDS", "3600"),
        ("SWEEP_WINDOW_SECONDS", "1"),
    ]);
    let stack = start(&env).await?;
    let result = activities(cfg, &stack, m, progress).await;
    stack.shutdown().await;
    result
}

async fn activities(
    cfg: &Config,
    stack: &LocalStack,
    m: &mut Measured,
    progress: &Progress,
) -> Result<(), BenchError> {
    let c = Clients::new(stack);
    invoked(stack, "session-expiry", 1, Duration::from_secs(10)).await?;
    invoked(stack, "facility-rollup", 1, Duration::from_secs(10)).await?;
    let (region, facility) = ("bill-act", "bill-act-f0");
    // An anchor session keeps the facility online: opening and closing tabs flips nothing.
    let mut anchor = c.open("anchor", facility, region, Some("anchor-s")).await?;
    anchor.snapshot().await?;
    let n = cfg.opens;
    let q = cfg.quiet;

    // 1. Tab opens.
    let b0 = settle(stack, q).await;
    let mut leaders = Vec::new();
    for i in 0..n {
        let mut t = c
            .open(&format!("al{i}"), facility, region, Some(&format!("ls{i}")))
            .await?;
        t.snapshot().await?;
        leaders.push(t);
    }
    let b1 = settle(stack, q).await;
    m.open_leader = Units::per(&b1.since(&b0), n as f64);
    let mut followers = Vec::new();
    for i in 0..n {
        let mut t = c.open(&format!("af{i}"), facility, region, None).await?;
        t.snapshot().await?;
        followers.push(t);
    }
    let b2 = settle(stack, q).await;
    m.open_follower = Units::per(&b2.since(&b1), n as f64);
    for t in leaders.iter_mut().chain(followers.iter_mut()) {
        t.send(serde_json::json!({"action": "visibility", "visible": false}))
            .await?;
    }
    let b3 = settle(stack, q).await;
    m.hide = Units::per(&b3.since(&b2), 2.0 * n as f64);
    progress.say(format!(
        "tab open: leader {:.2} msgs, follower {:.2}, hide {:.2}",
        m.open_leader.ws_messages, m.open_follower.ws_messages, m.hide.ws_messages
    ));

    // 3. Backstop heartbeats from warm leader sockets; connection minutes meanwhile.
    let sockets = stack.ws.connection_ids().len() as f64;
    let t0 = Instant::now();
    for round in 0..cfg.frames_each {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        for t in &mut leaders {
            t.send(serde_json::json!({"action": "heartbeat"})).await?;
        }
    }
    let b4 = settle(stack, q).await;
    let frames = (n * cfg.frames_each) as f64;
    m.heartbeat = Units::per(&b4.since(&b3), frames);
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    m.connection_minutes_per_socket_minute =
        (b4.connection_minutes - b3.connection_minutes) / (sockets * minutes);

    // 4. Follower keepalives (the state it already said), and pings.
    for round in 0..cfg.frames_each {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        for t in &mut followers {
            t.send(serde_json::json!({"action": "visibility", "visible": false}))
                .await?;
        }
    }
    let b5 = settle(stack, q).await;
    m.keepalive = Units::per(&b5.since(&b4), frames);
    for _ in 0..cfg.frames_each {
        for t in &mut followers {
            t.send(serde_json::json!({"action": "ping"})).await?;
            t.expect("pong").await?;
        }
    }
    let b6 = settle(stack, q).await;
    m.ping = Units::per(&b6.since(&b5), frames);
    progress.say(format!(
        "heartbeat frame {:.2} msgs {:.2} invocations; keepalive {:.2} msgs; ping {:.2} msgs",
        m.heartbeat.ws_messages,
        m.heartbeat.invocations_total(),
        m.keepalive.ws_messages,
        m.ping.ws_messages
    ));

    // 6. Chat: 10 members join (not counted), then one sends.
    let members = 10usize;
    {
        let mut group: Vec<&mut Tab> = leaders
            .iter_mut()
            .take(members / 2)
            .chain(followers.iter_mut().take(members - members / 2))
            .collect();
        for t in group.iter_mut() {
            t.send(serde_json::json!({"action": "join", "group": "chat:bill"}))
                .await?;
            t.expect("joined").await?;
        }
        let b7 = settle(stack, q).await;
        for i in 0..cfg.chat_messages {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
            group[0]
                .send(serde_json::json!({"action": "send", "group": "chat:bill", "data": {"text": "hello, group"}}))
                .await?;
            group[0].expect("sent").await?;
        }
        let b8 = settle(stack, q).await;
        m.chat = Units::per(&b8.since(&b7), cfg.chat_messages as f64);
    }

    // 2. Tab closes, then the sessions' `ended` beacons.
    let b9 = settle(stack, q).await;
    for t in leaders {
        t.close().await;
    }
    let b10 = settle(stack, q).await;
    m.close_leader = Units::per(&b10.since(&b9), n as f64);
    for t in followers {
        t.close().await;
    }
    let b11 = settle(stack, q).await;
    m.close_follower = Units::per(&b11.since(&b10), n as f64);
    let mut http = crate::http::HttpClient::connect(&c.http_url).await?;
    for i in 0..n {
        let token = c.token(&format!("al{i}"), facility, region)?;
        c.post(&mut http, &token, &format!("ls{i}"), "ended")
            .await?;
    }
    let b12 = settle(stack, q).await;
    m.ended = Units::per(&b12.since(&b11), n as f64);

    // 8. HTTP heartbeats of live sessions (started first, not counted), in one burst so the
    //    consumer gets batches as under load.
    let hs: Vec<(String, String)> = (0..cfg.http_sessions)
        .map(|i| {
            c.token(&format!("ah{i}"), facility, region)
                .map(|t| (t, format!("hs{i}")))
        })
        .collect::<Result<_, _>>()?;
    for (token, session) in &hs {
        c.post(&mut http, token, session, "active").await?;
    }
    let b13 = settle(stack, q).await;
    let senders = 8usize;
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let share: Vec<(String, String)> =
                hs.iter().skip(s).step_by(senders).cloned().collect();
            let base = c.http_url.clone();
            let rounds = cfg.http_rounds;
            tokio::spawn(async move {
                let mut client = crate::http::HttpClient::connect(&base).await?;
                for _ in 0..rounds {
                    for (token, session) in &share {
                        let body = serde_json::json!({"session_id": session}).to_string();
                        let (status, text) =
                            client.post_json("/v1/heartbeats", token, &body).await?;
                        if status != 202 {
                            return Err::<(), BenchError>(
                                format!("heartbeat answered {status}: {text}").into(),
                            );
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in futures::future::join_all(tasks).await {
        t??;
    }
    let b14 = settle(stack, q).await;
    m.http_heartbeat = Units::per(
        &b14.since(&b13),
        (cfg.http_sessions * cfg.http_rounds) as f64,
    );
    progress.say(format!(
        "ended {:.2} HTTP; HTTP heartbeat: {:.2} SQS, {:.3} consumer invocations",
        m.ended.http_requests,
        m.http_heartbeat.sqs,
        m.http_heartbeat.invocation("heartbeat-consumer")
    ));
    anchor.close().await;

    // 5. Flips in a region of realistic size.
    flips(cfg, stack, &c, m, progress).await?;
    m.reps = BTreeMap::from([
        ("open", n),
        ("hide", 2 * n),
        ("close", n),
        ("ended", n),
        ("frames", n * cfg.frames_each),
        ("chat", cfg.chat_messages),
        ("http", cfg.http_sessions * cfg.http_rounds),
        ("flips", cfg.flips),
    ]);
    Ok(())
}

/// Alternately starts and ends a session on `flipper` (one flip each), spaced beyond the
/// coalescing window.
async fn flip_series(flipper: &mut Tab, cfg: &Config, series: &str) -> Result<(), BenchError> {
    for i in 0..cfg.flips {
        let session = format!("fl-{series}-{}", i / 2);
        let frame = if i % 2 == 0 {
            serde_json::json!({"action": "heartbeat", "session_id": session})
        } else {
            serde_json::json!({"action": "heartbeat", "session_id": session, "state": "ended"})
        };
        flipper.send(frame).await?;
        tokio::time::sleep(cfg.flip_spacing).await;
    }
    Ok(())
}

async fn flips(
    cfg: &Config,
    stack: &LocalStack,
    c: &Clients,
    m: &mut Measured,
    progress: &Progress,
) -> Result<(), BenchError> {
    let q = cfg.quiet;
    // The cause alone: the same frames in a region with no other socket.
    let mut lone = c
        .open("flip-lone", "bill-empty-f0", "bill-empty", None)
        .await?;
    lone.snapshot().await?;
    let b0 = settle(stack, q).await;
    flip_series(&mut lone, cfg, "lone").await?;
    let b1 = settle(stack, q).await;
    m.flip_cause = Units::per(&b1.since(&b0), cfg.flips as f64);
    lone.close().await;

    // The region: facilities × 10 users × 1.5 tabs; the first tab of a user is its browser's
    // leader (except in facility 0, whose presence the flipper alone carries); 70 % hidden.
    let region = "bill-big";
    let mut specs = Vec::new();
    for f in 0..cfg.region_facilities {
        for u in 0..10 {
            for tab in 0..(1 + usize::from(u % 2 == 0)) {
                let user = format!("b{f}u{u}");
                let session = (tab == 0 && f != 0).then(|| format!("bs{f}u{u}"));
                specs.push((user, format!("bill-big-f{f}"), session));
            }
        }
    }
    progress.say(format!("opening {} sockets in one region", specs.len()));
    let opened: Vec<Result<Tab, BenchError>> = futures::stream::iter(specs.iter())
        .map(|(user, facility, session)| c.open(user, facility, region, session.as_deref()))
        .buffered(32)
        .collect()
        .await;
    let mut tabs = opened.into_iter().collect::<Result<Vec<_>, _>>()?;
    let hidden: Vec<usize> = (0..tabs.len()).filter(|i| i % 10 < 7).collect();
    for &i in &hidden {
        tabs[i]
            .send(serde_json::json!({"action": "visibility", "visible": false}))
            .await?;
    }
    m.region_sockets = tabs.len() + 1;
    m.visible_sockets = tabs.len() - hidden.len() + 1;
    let mut flipper = c.open("flip-big", "bill-big-f0", region, None).await?;
    flipper.snapshot().await?;

    let frames0 = c.status_frames.load(Ordering::Relaxed);
    let b2 = settle(stack, q).await;
    let frames1 = c.status_frames.load(Ordering::Relaxed);
    flip_series(&mut flipper, cfg, "hidden").await?;
    let b3 = settle(stack, q).await;
    let frames2 = c.status_frames.load(Ordering::Relaxed);
    m.flip_hidden = Units::per(&b3.since(&b2), cfg.flips as f64).minus(&m.flip_cause);
    m.frames_per_flip_hidden = (frames2 - frames1) as f64 / cfg.flips as f64;
    let _ = frames0;

    for &i in &hidden {
        tabs[i]
            .send(serde_json::json!({"action": "visibility", "visible": true}))
            .await?;
    }
    let b4 = settle(stack, q).await;
    let frames3 = c.status_frames.load(Ordering::Relaxed);
    flip_series(&mut flipper, cfg, "visible").await?;
    let b5 = settle(stack, q).await;
    let frames4 = c.status_frames.load(Ordering::Relaxed);
    m.flip_visible = Units::per(&b5.since(&b4), cfg.flips as f64).minus(&m.flip_cause);
    m.frames_per_flip_visible = (frames4 - frames3) as f64 / cfg.flips as f64;
    progress.say(format!(
        "flip in a region of {} sockets: {:.0} msgs ({:.0} frames received) with {} visible, {:.0} msgs with all visible",
        m.region_sockets,
        m.flip_hidden.ws_messages,
        m.frames_per_flip_hidden,
        m.visible_sockets,
        m.flip_visible.ws_messages
    ));
    flipper.close().await;
    futures::stream::iter(tabs)
        .for_each_concurrent(64, Tab::close)
        .await;
    Ok(())
}

/// Activity 7: one session-expiry run (its own stack: sweeping back to back), one idle
/// facility-rollup run and what a flip adds to it (another stack).
async fn measure_schedules(
    cfg: &Config,
    m: &mut Measured,
    progress: &Progress,
) -> Result<(), BenchError> {
    let window: u64 = if cfg.quick { 1 } else { 2 };
    let window_s = window.to_string();
    let env = base_env(&[
        ("EXPIRY_SCHEDULE_SECONDS", window_s.as_str()),
        ("SWEEP_WINDOW_SECONDS", window_s.as_str()),
        ("ROLLUP_SCHEDULE_SECONDS", "3600"),
    ]);
    let stack = start(&env).await?;
    let result = async {
        invoked(&stack, "facility-rollup", 1, Duration::from_secs(10)).await?;
        let first = invoked(&stack, "session-expiry", 1, Duration::from_secs(10)).await?;
        let c0 = first.invocations("session-expiry");
        let b0 = invoked(&stack, "session-expiry", c0 + 1, Duration::from_secs(10)).await?;
        let runs = cfg.schedule_runs as u64;
        let b1 = invoked(
            &stack,
            "session-expiry",
            c0 + 1 + runs,
            Duration::from_secs(10 * runs),
        )
        .await?;
        Ok::<_, BenchError>(Units::per(&b1.since(&b0), runs as f64))
    }
    .await;
    stack.shutdown().await;
    m.expiry_run = result?;
    m.expiry_window_s = window as f64;

    let env = base_env(&[
        ("EXPIRY_SCHEDULE_SECONDS", "3600"),
        ("SWEEP_WINDOW_SECONDS", "1"),
        ("ROLLUP_SCHEDULE_SECONDS", if cfg.quick { "1" } else { "2" }),
    ]);
    let stack = start(&env).await?;
    let result = rollups(cfg, &stack).await;
    stack.shutdown().await;
    (m.rollup_run, m.rollup_per_flip) = result?;
    progress.say(format!(
        "session-expiry run ({window} s window): {:.3} GB-s; rollup run {:.4} GB-s, {:.2} WRU; per flip {:.2} WRU",
        m.expiry_run.gb_s, m.rollup_run.gb_s, m.rollup_run.wru, m.rollup_per_flip.wru
    ));
    Ok(())
}

async fn rollups(cfg: &Config, stack: &LocalStack) -> Result<(Units, Units), BenchError> {
    let q = Duration::from_millis(200);
    let limit = Duration::from_secs(10);
    invoked(stack, "session-expiry", 1, limit).await?;
    let b = invoked(stack, "facility-rollup", 1, limit).await?;
    let c0 = b.invocations("facility-rollup");
    let b0 = invoked(stack, "facility-rollup", c0 + 1, limit).await?;
    let runs = cfg.schedule_runs as u64;
    let b1 = invoked(stack, "facility-rollup", c0 + 1 + runs, limit * runs as u32).await?;
    let idle = Units::per(&b1.since(&b0), runs as f64);

    // Flips pending: new sessions in as many facilities, right after a run; then the next run.
    let c = Clients::new(stack);
    let mut http = crate::http::HttpClient::connect(&c.http_url).await?;
    for attempt in 0..4 {
        let after = b1.invocations("facility-rollup") + 1 + attempt * 2;
        invoked(stack, "facility-rollup", after, limit).await?;
        for i in 0..cfg.rollup_flips {
            let token = c.token(
                &format!("ru{attempt}x{i}"),
                &format!("bill-roll-{attempt}x{i}"),
                "bill-roll",
            )?;
            c.post(&mut http, &token, &format!("rs{attempt}x{i}"), "active")
                .await?;
        }
        let before = settle(stack, q).await;
        if before.invocations("facility-rollup") != after {
            continue; // a run took part of the flips; try again
        }
        let done = invoked(stack, "facility-rollup", after + 1, limit).await?;
        let with = Units::per(&done.since(&before), 1.0);
        let mut extra = Units::default();
        extra.add(&with.minus(&idle), 1.0 / cfg.rollup_flips as f64);
        // The run's invocation is the schedule's, not the flips'.
        extra.invocations.clear();
        return Ok((idle, extra));
    }
    Err("no rollup run found the pending flips alone".into())
}

// ---------------------------------------------------------------------------------------
// The workload, the designs, the bills.

/// Who is online and how they behave (docs/deploy.md's workload).
/// The chat add-on's rate: messages per user-hour, to groups of 10.
pub const CHAT_PER_USER_HOUR: f64 = 2.0;

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub users: f64,
    pub tabs_per_user: f64,
    pub users_per_facility: f64,
    pub facilities_per_region: f64,
    pub flips_per_facility_hour: f64,
    pub visible_share: f64,
    pub session_hours: f64,
    pub reconnect_hours: f64,
    /// A follower's keepalive (or a straightforward tab's ping) every this many minutes.
    pub keepalive_minutes: f64,
    pub chat_per_user_hour: f64,
    pub chat_group: f64,
}

impl Workload {
    pub fn new(users: f64) -> Self {
        Self {
            users,
            tabs_per_user: 1.5,
            users_per_facility: 10.0,
            facilities_per_region: 100.0,
            flips_per_facility_hour: 0.25,
            visible_share: 0.3,
            session_hours: 8.0,
            reconnect_hours: 2.0,
            keepalive_minutes: 8.0,
            // docs/deploy.md's workload, which the targets are set on, has no chat; chat is
            // priced as an add-on (`with_chat`), the same for every design.
            chat_per_user_hour: 0.0,
            chat_group: 10.0,
        }
    }

    /// The same workload plus chat: `CHAT_PER_USER_HOUR` messages per user-hour.
    pub fn with_chat(users: f64) -> Self {
        Self {
            chat_per_user_hour: CHAT_PER_USER_HOUR,
            ..Self::new(users)
        }
    }

    pub fn tabs(&self) -> f64 {
        self.users * self.tabs_per_user
    }

    pub fn flips_per_hour(&self) -> f64 {
        self.users / self.users_per_facility * self.flips_per_facility_hour
    }
}

/// A way of doing it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Design {
    /// This design with a backstop interval (s).
    This {
        interval_s: f64,
    },
    Straightforward,
    Azure,
}

impl Design {
    pub fn name(&self) -> String {
        match self {
            Design::This { interval_s } if *interval_s == 60.0 => {
                "this design, template defaults (60 s, TTL 150 s)".into()
            }
            Design::This { interval_s } => format!(
                "this design, {interval_s:.0} s backstop (TTL {:.0} s)",
                interval_s + 90.0
            ),
            Design::Straightforward => "straightforward (HTTP heartbeat per tab every 30 s)".into(),
            Design::Azure => "Azure SignalR Standard + Functions".into(),
        }
    }
}

/// How often each measured activity happens in a month, and its units.
pub fn activities_per_month<'m>(
    d: Design,
    w: &Workload,
    m: &'m Measured,
) -> Vec<(&'static str, f64, &'m Units)> {
    let h = MONTH_HOURS;
    let tabs = w.tabs();
    let leaders = w.users;
    let followers = tabs - leaders;
    let reopen = h / w.reconnect_hours;
    let keepalives = 60.0 / w.keepalive_minutes * h;
    let flips = w.flips_per_hour() * h;
    let chat = w.users * w.chat_per_user_hour * h;
    let mut v = Vec::new();
    match d {
        Design::This { interval_s } => {
            v.push((
                "backstop heartbeat frames (leaders)",
                leaders * 3600.0 / interval_s * h,
                &m.heartbeat,
            ));
            v.push(("follower keepalives", followers * keepalives, &m.keepalive));
            v.push(("leader tab opens", leaders * reopen, &m.open_leader));
            v.push(("follower tab opens", followers * reopen, &m.open_follower));
            v.push((
                "hidden tabs' visibility false",
                tabs * (1.0 - w.visible_share) * reopen,
                &m.hide,
            ));
            v.push(("leader tab closes", leaders * reopen, &m.close_leader));
            v.push(("follower tab closes", followers * reopen, &m.close_follower));
            v.push((
                "session ends (ended beacon)",
                w.users / w.session_hours * h,
                &m.ended,
            ));
            v.push(("flips delivered (30 % visible)", flips, &m.flip_hidden));
            v.push(("flip causes (heartbeat frame)", flips, &m.flip_cause));
        }
        Design::Straightforward | Design::Azure => {
            v.push((
                "HTTP heartbeats (every tab, 30 s)",
                tabs * 120.0 * h,
                &m.http_heartbeat,
            ));
            v.push(("tab pings (keepalive)", tabs * keepalives, &m.ping));
            v.push(("tab opens", tabs * reopen, &m.open_follower));
            v.push(("tab closes", tabs * reopen, &m.close_follower));
            v.push((
                "tab sessions end (ended)",
                tabs / w.session_hours * h,
                &m.ended,
            ));
            v.push(("flips delivered (every socket)", flips, &m.flip_visible));
        }
    }
    v.push((
        "flips persisted (next rollup run)",
        flips,
        &m.rollup_per_flip,
    ));
    v.push(("chat messages to groups of 10", chat, &m.chat));
    v.push(("facility-rollup runs (1 a minute)", 60.0 * h, &m.rollup_run));
    v
}

/// The month's units of a design, session-expiry's sweeping and connection minutes included.
pub fn month_units(d: Design, w: &Workload, m: &Measured) -> Units {
    let mut u = Units::default();
    for (_, times, units) in activities_per_month(d, w, m) {
        u.add(units, times);
    }
    u.add(&expiry_per_run(m), 60.0 * MONTH_HOURS);
    u.connection_minutes += w.tabs() * 60.0 * MONTH_HOURS * m.connection_minutes_per_socket_minute;
    u
}

/// One AWS session-expiry run: the measured run scaled from the local window to 55 s.
pub fn expiry_per_run(m: &Measured) -> Units {
    let mut u = m.expiry_run.clone();
    u.gb_s = m.expiry_run.gb_s / m.expiry_window_s.max(1e-9) * AWS_SWEEP_SECONDS;
    u
}

/// One priced line of a bill.
#[derive(Debug, Clone)]
pub struct Line {
    pub item: String,
    pub quantity: String,
    pub dollars: f64,
}

fn tiered(q: f64, first: f64, tier: f64, after: f64) -> f64 {
    q.min(tier) * first + (q - tier).max(0.0) * after
}

fn millions(v: f64) -> String {
    if v >= 1e6 {
        format!("{} M", fmt_num(v / 1e6))
    } else {
        fmt_num(v)
    }
}

/// KB of CloudWatch Logs per invocation, as docs/deploy.md states them (with
/// `LambdaSystemLogLevel=WARN`): a 1 KB summary per consumer batch and scheduled run, 0.5 KB
/// per connect and disconnect, 0.4 KB per push; nothing for the others.
fn log_kb(function: &str) -> f64 {
    match function {
        "heartbeat-consumer" | "session-expiry" | "facility-rollup" => 1.0,
        "ws-connect" | "ws-disconnect" => 0.5,
        "ws-push" => 0.4,
        _ => 0.0,
    }
}

/// The month's bill of a design: its lines and the total.
pub fn bill(d: Design, w: &Workload, m: &Measured) -> (Vec<Line>, f64) {
    use prices::*;
    let u = month_units(d, w, m);
    let mut lines = Vec::new();
    if d == Design::Azure {
        let tabs = w.tabs();
        let units = (tabs / SIGNALR_UNIT_CONNECTIONS).ceil();
        lines.push(Line {
            item: format!(
                "SignalR Standard units ({} connections each, $49 a month)",
                fmt_num(SIGNALR_UNIT_CONNECTIONS)
            ),
            quantity: fmt_num(units),
            dollars: units * SIGNALR_UNIT_MONTH,
        });
        // Messages: the same frames as the straightforward design's sockets, less the pings
        // (SignalR keeps its connections alive itself).
        let mut msgs = u.ws_messages;
        let pings = w.tabs() * 60.0 / w.keepalive_minutes * MONTH_HOURS * m.ping.ws_messages;
        msgs -= pings;
        let included = units * SIGNALR_INCLUDED_PER_UNIT_DAY * MONTH_HOURS / 24.0;
        lines.push(Line {
            item: format!(
                "SignalR messages (measured frames as 2 KB units; {} M included)",
                fmt_num(included / 1e6)
            ),
            quantity: millions(msgs),
            dollars: (msgs - included).max(0.0) * SIGNALR_MESSAGE_EXTRA,
        });
        let executions = u.http_requests;
        lines.push(Line {
            item: "Functions executions (heartbeats and ended, HTTP-triggered)".into(),
            quantity: millions(executions),
            dollars: executions * AZ_FUNCTION_EXECUTION,
        });
        let gb_s = executions * AZ_FUNCTION_GB * AZ_FUNCTION_S;
        lines.push(Line {
            item: "Functions duration (128 MB × 100 ms each)".into(),
            quantity: format!("{} GB-s", millions(gb_s)),
            dollars: gb_s * AZ_FUNCTION_GB_S,
        });
    } else {
        lines.push(Line {
            item: "API Gateway WebSocket messages".into(),
            quantity: millions(u.ws_messages),
            dollars: tiered(u.ws_messages, WS_MESSAGE, WS_MESSAGE_TIER, WS_MESSAGE_AFTER),
        });
        lines.push(Line {
            item: "API Gateway connection minutes".into(),
            quantity: millions(u.connection_minutes),
            dollars: u.connection_minutes * WS_CONNECTION_MINUTE,
        });
        lines.push(Line {
            item: "API Gateway HTTP API requests".into(),
            quantity: millions(u.http_requests),
            dollars: tiered(
                u.http_requests,
                HTTP_REQUEST,
                HTTP_REQUEST_TIER,
                HTTP_REQUEST_AFTER,
            ),
        });
        lines.push(Line {
            item: "Lambda requests".into(),
            quantity: millions(u.invocations_total()),
            dollars: u.invocations_total() * LAMBDA_REQUEST,
        });
        lines.push(Line {
            item: "Lambda duration (arm64, 256 MB)".into(),
            quantity: format!("{} GB-s", millions(u.gb_s)),
            dollars: u.gb_s * LAMBDA_GB_S,
        });
        lines.push(Line {
            item: "SQS requests".into(),
            quantity: millions(u.sqs),
            dollars: u.sqs * SQS_REQUEST,
        });
        lines.push(Line {
            item: "DynamoDB writes".into(),
            quantity: format!("{} WRU", millions(u.wru)),
            dollars: u.wru * DDB_WRITE,
        });
        lines.push(Line {
            item: "DynamoDB reads".into(),
            quantity: format!("{} RRU", millions(u.rru)),
            dollars: u.rru * DDB_READ,
        });
        let nat_gb = u.management * MANAGEMENT_POST_BYTES / 1e9;
        lines.push(Line {
            item: "NAT data: measured `@connections` calls × 1.5 KB (estimate)".into(),
            quantity: format!("{} GB", fmt_num(nat_gb)),
            dollars: nat_gb * NAT_GB,
        });
        let logs_gb: f64 = u
            .invocations
            .iter()
            .map(|(f, n)| n * log_kb(f) * 1024.0 / 1e9)
            .sum();
        lines.push(Line {
            item: "CloudWatch logs: measured invocations × stated KB each (estimate)".into(),
            quantity: format!("{} GB", fmt_num(logs_gb)),
            dollars: logs_gb * LOGS_GB,
        });
        lines.push(Line {
            item: "fixed infrastructure, not measured (NAT hours, SQS endpoint, cache minimum, metrics, secret)".into(),
            quantity: "stated".into(),
            dollars: FIXED_MONTH,
        });
    }
    let total = lines.iter().map(|l| l.dollars).sum();
    (lines, total)
}

/// The designs compared.
pub const DESIGNS: [Design; 4] = [
    Design::This { interval_s: 60.0 },
    Design::This { interval_s: 120.0 },
    Design::Straightforward,
    Design::Azure,
];

/// Intervals of the detection-time table.
pub const INTERVALS: [f64; 4] = [30.0, 60.0, 120.0, 300.0];

/// $ per million backstop heartbeat frames.
pub fn heartbeat_per_million(m: &Measured) -> f64 {
    m.heartbeat.price() * 1e6
}

// ---------------------------------------------------------------------------------------
// Markdown.

fn units_row(s: &mut String, name: &str, n: usize, u: &Units) {
    let inv: Vec<String> = u
        .invocations
        .iter()
        .map(|(k, v)| format!("{k} {}", fmt_num(*v)))
        .collect();
    let _ = writeln!(
        s,
        "| {name} | {n} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
        fmt_num(u.ws_messages),
        fmt_num(u.http_requests),
        if inv.is_empty() {
            "–".into()
        } else {
            inv.join(", ")
        },
        fmt_num(u.gb_s),
        fmt_num(u.sqs),
        fmt_num(u.rru),
        fmt_num(u.wru),
        fmt_num(u.management),
        u.price() * 1e6,
    );
}

/// `bill.md`: prices, measured units, workload, bills, interval table.
pub fn markdown(m: &Measured, quick: bool) -> String {
    use prices::*;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "_Generated by `cargo run --release -p presence-bench -- --only bill` ({} run); every quantity below comes from the local stack's billing counters, except the lines marked as stated or estimated._\n",
        if quick { "quick" } else { "full" }
    );
    let _ = writeln!(s, "#### Prices used\n");
    let _ = writeln!(
        s,
        "- AWS us-east-1, on demand, no free tier: Lambda arm64 $0.0000133334 per GB-s and $0.20 per million requests (256 MB functions); API Gateway WebSocket $1.00 per million messages (first billion a month, $0.80 after) and $0.25 per million connection minutes; HTTP API $1.00 per million requests (first 300 million, $0.90 after); SQS $0.40 per million requests; DynamoDB on demand $0.625 per million WRU, $0.125 per million RRU; NAT data $0.045 per GB; CloudWatch Logs $0.50 per GB.\n- Fixed, not measured (docs/deploy.md): NAT gateway and address $36.50, SQS endpoint $14.60, ElastiCache minimum $6.13, metrics and alarms $5.10, secret $0.40 = ${:.2} a month.\n- Azure: SignalR Service Standard $49 per unit-month (≈ $1.61 a unit-day) for 1 000 concurrent connections and 1 000 000 messages a unit-day included, $1.00 per million beyond (2 KB units, both ways); Functions consumption plan $0.20 per million executions and $0.000016 per GB-s, each heartbeat 128 MB × 100 ms; no free grants.\n",
        FIXED_MONTH
    );
    let _ = writeln!(s, "#### Measured units per activity\n");
    let _ = writeln!(
        s,
        "Each row is the counters' difference around the activity, divided by its repetitions (n), after the pipeline went quiet. $/M: one million of them at first-tier prices. Flip rows: one flip's delivery in a region of {} sockets ({} visible), its cause (a `heartbeat` frame, measured alone in an empty region) subtracted; {:.0} and {:.0} status frames reached the sockets per flip. Connection minutes: {:.3} billed per socket-minute open.\n",
        m.region_sockets,
        m.visible_sockets,
        m.frames_per_flip_hidden,
        m.frames_per_flip_visible,
        m.connection_minutes_per_socket_minute
    );
    let _ = writeln!(
        s,
        "| activity | n | WS msgs | HTTP | invocations | GB-s | SQS | RRU | WRU | @connections | $/M |\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    let r = |k: &str| m.reps.get(k).copied().unwrap_or(0);
    units_row(
        &mut s,
        "leader tab opens (`session_id`, `snapshot`)",
        r("open"),
        &m.open_leader,
    );
    units_row(
        &mut s,
        "follower tab opens (`snapshot`)",
        r("open"),
        &m.open_follower,
    );
    units_row(
        &mut s,
        "hidden tab says `visibility false`",
        r("hide"),
        &m.hide,
    );
    units_row(
        &mut s,
        "leader tab closes (`$disconnect`)",
        r("close"),
        &m.close_leader,
    );
    units_row(&mut s, "follower tab closes", r("close"), &m.close_follower);
    units_row(&mut s, "`ended` beacon (HTTP)", r("ended"), &m.ended);
    units_row(
        &mut s,
        "backstop `heartbeat` frame (warm leader)",
        r("frames"),
        &m.heartbeat,
    );
    units_row(
        &mut s,
        "follower keepalive (`visibility`, same state)",
        r("frames"),
        &m.keepalive,
    );
    units_row(
        &mut s,
        "`ping` (straightforward keepalive)",
        r("frames"),
        &m.ping,
    );
    units_row(
        &mut s,
        "flip cause (`heartbeat` frame starting/ending a session)",
        r("flips"),
        &m.flip_cause,
    );
    units_row(
        &mut s,
        "flip delivered, 30 % visible",
        r("flips"),
        &m.flip_hidden,
    );
    units_row(
        &mut s,
        "flip delivered, every socket visible",
        r("flips"),
        &m.flip_visible,
    );
    units_row(
        &mut s,
        "flip persisted by the next rollup run",
        1,
        &m.rollup_per_flip,
    );
    units_row(&mut s, "chat message to 10 members", r("chat"), &m.chat);
    units_row(
        &mut s,
        "HTTP heartbeat → SQS → consumer",
        r("http"),
        &m.http_heartbeat,
    );
    units_row(
        &mut s,
        &format!(
            "session-expiry run, {:.0} s window locally",
            m.expiry_window_s
        ),
        1,
        &m.expiry_run,
    );
    units_row(&mut s, "facility-rollup run, idle", 1, &m.rollup_run);
    let _ = writeln!(
        s,
        "\nsession-expiry in AWS sweeps {AWS_SWEEP_SECONDS:.0} s of every minute: its GB-s per run are the local run's × {AWS_SWEEP_SECONDS:.0} / {:.0} = {} GB-s, 60 runs an hour; facility-rollup runs once a minute.\n",
        m.expiry_window_s,
        fmt_num(expiry_per_run(m).gb_s)
    );
    let w = Workload::new(1.0);
    let _ = writeln!(s, "#### Workload\n");
    let _ = writeln!(
        s,
        "N users online around the clock for a month of {MONTH_HOURS:.0} h; {} tabs per user, one WebSocket each (one leader tab per browser = per user); {} users per facility, {} facilities per region (1 500 sockets); {} flips per facility-hour; {:.0} % of tabs visible; {:.0}-hour sessions (a start and an `ended` per user per {:.0} h); every tab reopens at API Gateway's {:.0}-hour limit (a close and an open); followers' keepalive every {:.0} min (straightforward tabs: a `ping`). This is `docs/deploy.md`'s workload, the one the targets are set on: it has no chat ({} messages per user-hour); chat is priced below as an add-on of {CHAT_PER_USER_HOUR} messages per user-hour to groups of {:.0}, the same for every design. Straightforward: a session per tab, an HTTP heartbeat per tab every 30 s, an `ended` per tab session, every status event to every socket of the region. Azure: the same load; SignalR units for the concurrent connections, the straightforward design's measured frames (pings excepted) as SignalR messages, heartbeats and `ended` as HTTP-triggered Functions.\n",
        w.tabs_per_user,
        w.users_per_facility,
        w.facilities_per_region,
        w.flips_per_facility_hour,
        w.visible_share * 100.0,
        w.session_hours,
        w.session_hours,
        w.reconnect_hours,
        w.keepalive_minutes,
        w.chat_per_user_hour,
        w.chat_group
    );
    let _ = writeln!(s, "#### The monthly bill\n");
    for users in [10_000.0, 100_000.0] {
        let w = Workload::new(users);
        let bills: Vec<(Vec<Line>, f64)> = DESIGNS.iter().map(|d| bill(*d, &w, m)).collect();
        let _ = writeln!(s, "**{} online users**\n", fmt_num(users));
        for (d, (lines, total)) in DESIGNS.iter().zip(&bills) {
            let _ = writeln!(
                s,
                "_{}_ — **${}** a month, ${:.3} per user\n\n| line item | quantity | $ |\n|---|---:|---:|",
                d.name(),
                fmt_num(*total),
                total / users
            );
            for l in lines {
                let _ = writeln!(s, "| {} | {} | {:.2} |", l.item, l.quantity, l.dollars);
            }
            let _ = writeln!(s);
        }
    }
    let _ = writeln!(
        s,
        "#### Chat add-on\n\n{CHAT_PER_USER_HOUR} messages per user-hour to groups of 10, measured per message (table above), added to the bills above:\n\n| design | 10 000 users | 100 000 users |\n|---|---:|---:|"
    );
    for d in DESIGNS {
        let plain = |u: f64| bill(d, &Workload::new(u), m).1;
        let chat = |u: f64| bill(d, &Workload::with_chat(u), m).1;
        let _ = writeln!(
            s,
            "| {} | +{} → {} | +{} → {} |",
            d.name(),
            fmt_num(chat(10_000.0) - plain(10_000.0)),
            fmt_num(chat(10_000.0)),
            fmt_num(chat(100_000.0) - plain(100_000.0)),
            fmt_num(chat(100_000.0))
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "#### Interval against detection time, 100 000 users\n");
    let _ = writeln!(
        s,
        "A browser that vanishes without a `$disconnect` shows offline at TTL + ≤ 2 s (TTL = interval + 90 s).\n\n| backstop interval | TTL | vanished browser detected within | $ a month |\n|---:|---:|---:|---:|"
    );
    let w = Workload::new(100_000.0);
    for interval in INTERVALS {
        let (_, total) = bill(
            Design::This {
                interval_s: interval,
            },
            &w,
            m,
        );
        let _ = writeln!(
            s,
            "| {interval:.0} s | {:.0} s | {:.0} s | {} |",
            interval + 90.0,
            interval + 92.0,
            fmt_num(total)
        );
    }
    let _ = writeln!(
        s,
        "\nNot in the model: DynamoDB storage and point-in-time recovery, ElastiCache ECPUs, data transfer out, the SQS endpoint's per-GB data, X-Ray; for Azure, the status fan-out's own compute and any presence store."
    );
    s
}

// ---------------------------------------------------------------------------------------
// docs/deploy.md.

pub const BEGIN: &str = "<!-- bill:begin -->";
pub const END: &str = "<!-- bill:end -->";

/// `docs/deploy.md`.
pub fn deploy_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md")
}

/// The text between the markers (after the begin marker's line), or `None`.
pub fn block(doc: &str) -> Option<&str> {
    let start = doc.find(BEGIN)? + BEGIN.len();
    let start = start + doc[start..].find('\n')? + 1;
    let end = start + doc[start..].find(END)?;
    Some(&doc[start..end])
}

/// `doc` with the block replaced by `md`.
pub fn with_block(doc: &str, md: &str) -> Option<String> {
    let start = doc.find(BEGIN)? + BEGIN.len();
    let start = start + doc[start..].find('\n')? + 1;
    let end = start + doc[start..].find(END)?;
    Some(format!("{}{}{}", &doc[..start], md, &doc[end..]))
}

fn rewrite_deploy_md(path: &Path, md: &str) -> Result<(), BenchError> {
    let doc = std::fs::read_to_string(path)?;
    let new = with_block(&doc, md)
        .ok_or_else(|| format!("{}: no {BEGIN} … {END} block", path.display()))?;
    std::fs::write(path, new)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------

pub async fn run(options: &Options, report: &mut Report, progress: &Progress) -> Outcome {
    let cfg = Config::new(options.quick);
    let mut m = Measured::default();
    measure_activities(&cfg, &mut m, progress).await?;
    measure_schedules(&cfg, &mut m, progress).await?;

    // Per-heartbeat figures (the backstop frame).
    let hb = &m.heartbeat;
    for (name, value, target) in [
        (
            "WebSocket messages per backstop heartbeat",
            hb.ws_messages,
            1.0,
        ),
        (
            "ws-message invocations per backstop heartbeat",
            hb.invocation("ws-message"),
            1.0,
        ),
        ("DynamoDB reads per backstop heartbeat (RRU)", hb.rru, 0.0),
        (
            "management calls per backstop heartbeat",
            hb.management,
            0.0,
        ),
        ("SQS requests per backstop heartbeat", hb.sqs, 0.1),
    ] {
        report.figure(
            Figure::new("bill", name, value, "units").target(Target::AtMost(On::Value, target)),
        );
    }
    let per_m = heartbeat_per_million(&m);
    report.figure(
        Figure::new("bill", "backstop heartbeat, $ per million", per_m, "$/M")
            .against("one WebSocket message", prices::WS_MESSAGE * 1e6, "$/M")
            .target(Target::AtMost(On::Ratio, 1.3)),
    );

    let mut totals = BTreeMap::new();
    for users in [10_000.0, 100_000.0] {
        let w = Workload::new(users);
        for (i, d) in DESIGNS.iter().enumerate() {
            let (_, total) = bill(*d, &w, &m);
            totals.insert((users as u64, i), total);
            report.run(
                "bill",
                format!("{}, {} users", d.name(), fmt_num(users)),
                users as u64,
                MONTH_HOURS * 3600.0,
                total,
                "rate column: $ a month",
            );
        }
    }
    let t = |users: u64, i: usize| totals[&(users, i)];
    for users in [10_000u64, 100_000] {
        let label = fmt_num(users as f64);
        let mut defaults = Figure::new(
            "bill",
            format!("{} users, defaults (60 s), all-in", label),
            t(users, 0),
            "$/month",
        )
        .against("straightforward", t(users, 2), "$/month");
        let mut profile = Figure::new(
            "bill",
            format!("{} users, 120 s profile, all-in", label),
            t(users, 1),
            "$/month",
        )
        .against("straightforward", t(users, 2), "$/month");
        if users == 100_000 {
            defaults = defaults.target(Target::AtMost(On::Value, 8500.0));
            profile = profile.target(Target::AtMost(On::Value, 6000.0));
        }
        report.figure(defaults);
        report.figure(profile);
        let mut azure = Figure::new(
            "bill",
            format!(
                "{} users, defaults against Azure SignalR + Functions",
                label
            ),
            t(users, 0),
            "$/month",
        )
        .against("Azure SignalR Standard + Functions", t(users, 3), "$/month");
        if users == 100_000 {
            azure = azure.target(Target::AtMost(On::Ratio, 1.0));
        }
        report.figure(azure);
        let chat = bill(DESIGNS[0], &Workload::with_chat(users as f64), &m).1;
        report.figure(
            Figure::new(
                "bill",
                format!("{label} users, defaults with chat ({CHAT_PER_USER_HOUR} messages per user-hour)"),
                chat,
                "$/month",
            )
            .against(
                "Azure SignalR + Functions, same chat",
                bill(DESIGNS[3], &Workload::with_chat(users as f64), &m).1,
                "$/month",
            ),
        );
        progress.say(format!(
            "{label} users: defaults ${:.0}, 120 s ${:.0}, straightforward ${:.0}, Azure ${:.0} a month",
            t(users, 0),
            t(users, 1),
            t(users, 2),
            t(users, 3)
        ));
    }

    let md = markdown(&m, options.quick);
    std::fs::create_dir_all(&options.out)?;
    std::fs::write(options.out.join("bill.md"), &md)?;
    report.note(format!(
        "bill: the measured units, the workload and the monthly bills are in {}.",
        {
            let file = options.out.join("bill.md");
            // Relative to the workspace when inside it: the summary is committed.
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            match (file.canonicalize(), root.canonicalize()) {
                (Ok(f), Ok(r)) => f.strip_prefix(&r).map(Path::to_path_buf).unwrap_or(f),
                _ => file,
            }
            .display()
            .to_string()
        }
    ));
    let full_out = crate::default_out(false);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !options.quick && same(&options.out, &full_out) {
        rewrite_deploy_md(&deploy_md(), &md)?;
        progress.say("rewrote the bill block in docs/deploy.md");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_round_trip() {
        let doc = format!("a\n{BEGIN}\nold\n{END}\nb\n");
        assert_eq!(block(&doc), Some("old\n"));
        let new = with_block(&doc, "new\n").unwrap();
        assert_eq!(block(&new), Some("new\n"));
        assert!(new.starts_with("a\n") && new.ends_with(&format!("{END}\nb\n")));
    }

    #[test]
    fn tiers_apply() {
        assert!((tiered(2e9, 1.0, 1e9, 0.8) - 1.8e9).abs() < 1.0);
        assert!((tiered(5.0, 1.0, 1e9, 0.8) - 5.0).abs() < 1e-9);
    }
}
