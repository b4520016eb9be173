//! Fan-out: one `facility.status` event to 10 000 WebSocket connections of one region through
//! `Hub::push` (what ws-push runs): the registry resolves the region's connections, posts go
//! through the real `aws-sdk-apigatewaymanagement` client to the local WebSocket API's
//! `@connections` endpoint at the hub's bounded concurrency, and 1 % extra connection ids that
//! the API does not know (stale: their `$disconnect` was lost) answer 410 and must be deleted
//! from the registry. The time is from the call until the last client has read the frame
//! (and `push` has returned).
//!
//! Reference, same run: the same frame posted straight through the management client to the
//! same live connections, at the same concurrency, without the hub (no registry, no 410s).
//!
//! The clients run in a child process (`presence-bench __fanout-clients …`) when the binary
//! is known: 10 000 client and 10 000 server sockets would not fit one process's descriptor
//! limit. Each client reads every frame; the child reports, per round, when all of them had
//! the event.

use crate::report::{Figure, On, Report, Target};
use crate::{BenchError, Options, Outcome, Progress, median, now_us};
use futures::{SinkExt, StreamExt};
use presence::auth::{DevTokenSigner, Identity};
use presence::config::Env;
use presence::hub::registry::{Connection, ConnectionRegistry, MemoryConnectionRegistry};
use presence::hub::{ApiGatewayManagement, ConnectionGateway, Hub, HubPorts, HubSettings};
use presence::ids::{FacilityId, RegionId, UserId};
use presence::ledger::MemoryPartitionLedger;
use presence::protocol::{FacilityStatus, PushMessage, Status, StatusEvent};
use presence::queue::MemoryQueue;
use presence::wiring::SessionPorts;
use presence_local::stack::HubRoutes;
use presence_local::{LocalWebSocketApi, WebSocketApiConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The argument that turns `presence-bench` into the fan-out's client process.
pub const CLIENT_ARG: &str = "__fanout-clients";

const SECRET: &str = "presence-bench-fanout-secret-0123456789";
const REGION: &str = "fanout";

/// Sizes of one fan-out run.
#[derive(Debug, Clone)]
pub struct Config {
    pub connections: usize,
    /// Stale ids per push, as a share of `connections`.
    pub stale_share: f64,
    pub reps: usize,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        Self {
            connections: if quick { 200 } else { 10_000 },
            stale_share: 0.01,
            reps: if quick { 2 } else { 3 },
        }
    }
}

fn event(version: u64) -> PushMessage {
    PushMessage::Status(StatusEvent {
        status: FacilityStatus {
            facility_id: FacilityId::parse("fan-event").expect("valid id"),
            region: RegionId::parse(REGION).expect("valid id"),
            status: Status::Online,
            since_ms: presence::now_ms(),
            version,
            online_sessions: 1,
        },
    })
}

/// The client side: `connections` sockets; after they are all open it says `ready N`, then
/// for each round r = 1..=rounds, once every socket has read the event with version r (or
/// 60 s passed), `round r COUNT LAST_RECEIVE_US`.
async fn clients(url: String, connections: usize, rounds: u64, out: mpsc::UnboundedSender<String>) {
    let signer = DevTokenSigner::new(SECRET.as_bytes());
    let exp = presence::now_ms() / 1000 + 3600;
    // version → (sockets that read it, latest receive time)
    let seen: Arc<Mutex<HashMap<u64, (usize, i64)>>> = Arc::default();
    let open = futures::stream::iter(0..connections)
        .map(|i| {
            let identity = Identity {
                user: UserId::parse(&format!("fu{i}")).expect("valid id"),
                facility: FacilityId::parse(&format!("ff{}", i % 100)).expect("valid id"),
                region: RegionId::parse(REGION).expect("valid id"),
            };
            let url = format!("{url}?token={}", signer.sign(&identity, exp));
            async move {
                for attempt in 0..5 {
                    match tokio_tungstenite::connect_async(&url).await {
                        Ok((ws, _)) => return Some(ws),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50 << attempt)).await,
                    }
                }
                None
            }
        })
        .buffer_unordered(128);
    let sockets: Vec<_> = open.collect().await;
    let mut opened = 0usize;
    let mut readers = Vec::new();
    for ws in sockets.into_iter().flatten() {
        opened += 1;
        let seen = seen.clone();
        readers.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            while let Some(Ok(msg)) = stream.next().await {
                let t = now_us();
                match msg {
                    Message::Text(text) => {
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                            continue;
                        };
                        if v["type"] == "facility.status" {
                            let version = v["version"].as_u64().unwrap_or(0);
                            let mut seen = seen.lock().expect("seen lock");
                            let e = seen.entry(version).or_insert((0, 0));
                            e.0 += 1;
                            e.1 = e.1.max(t);
                        }
                    }
                    Message::Ping(p) => {
                        let _ = sink.send(Message::Pong(p)).await;
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }));
    }
    let _ = out.send(format!("ready {opened}"));
    for round in 1..=rounds {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let (count, last) = seen
                .lock()
                .expect("seen lock")
                .get(&round)
                .copied()
                .unwrap_or((0, 0));
            if count >= opened || Instant::now() >= until {
                let _ = out.send(format!("round {round} {count} {last}"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Stay connected until told to stop (stdin closes, or the channel is dropped).
    out.closed().await;
    for r in readers {
        r.abort();
    }
}

/// `presence-bench __fanout-clients URL CONNECTIONS ROUNDS`: the clients in their own process,
/// reporting on stdout; exits when stdin closes.
pub async fn client_main(args: &[String]) -> i32 {
    let (Some(url), Some(n), Some(rounds)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse().ok()),
        args.get(2).and_then(|r| r.parse().ok()),
    ) else {
        eprintln!("usage: presence-bench {CLIENT_ARG} URL CONNECTIONS ROUNDS");
        return 2;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(clients(url.clone(), n, rounds, tx));
    let mut stdout = tokio::io::stdout();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    if stdout.write_all(format!("{line}\n").as_bytes()).await.is_err()
                        || stdout.flush().await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            input = stdin.next_line() => {
                if !matches!(input, Ok(Some(_))) {
                    break;
                }
            }
        }
    }
    task.abort();
    0
}

/// The clients, in a child process or in this one.
enum Clients {
    Child {
        child: tokio::process::Child,
        lines: Box<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
    },
    Local {
        rx: mpsc::UnboundedReceiver<String>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Clients {
    async fn start(
        exe: Option<&std::path::Path>,
        url: &str,
        connections: usize,
        rounds: u64,
    ) -> Result<Self, BenchError> {
        match exe {
            Some(exe) => {
                let mut child = tokio::process::Command::new(exe)
                    .args([
                        CLIENT_ARG,
                        url,
                        &connections.to_string(),
                        &rounds.to_string(),
                    ])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()?;
                let stdout = child.stdout.take().ok_or("no child stdout")?;
                Ok(Self::Child {
                    child,
                    lines: Box::new(BufReader::new(stdout).lines()),
                })
            }
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(clients(url.to_owned(), connections, rounds, tx));
                Ok(Self::Local { rx, task })
            }
        }
    }

    async fn line(&mut self, wait: Duration) -> Result<String, BenchError> {
        let next = async {
            match self {
                Self::Child { lines, .. } => lines.next_line().await.ok().flatten(),
                Self::Local { rx, .. } => rx.recv().await,
            }
        };
        tokio::time::timeout(wait, next)
            .await
            .map_err(|_| "the clients did not answer in time")?
            .ok_or_else(|| "the clients stopped".into())
    }

    async fn stop(self) {
        match self {
            Self::Child { mut child, .. } => {
                drop(child.stdin.take());
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
            Self::Local { rx, task } => {
                drop(rx);
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
        }
    }
}

/// Parses `round R COUNT LAST_US`.
fn parse_round(line: &str, round: u64) -> Result<(usize, i64), BenchError> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    match parts.as_slice() {
        ["round", r, count, last] if r.parse::<u64>().ok() == Some(round) => {
            Ok((count.parse()?, last.parse()?))
        }
        _ => Err(format!("unexpected line from the clients: {line:?}").into()),
    }
}

pub async fn run(options: &Options, report: &mut Report, progress: &Progress) -> Outcome {
    let mut cfg = Config::new(options.quick);
    // Descriptors: the server side needs one per connection, plus the clients' when they run
    // in this process.
    let per_connection = if options.client_exe.is_some() { 1 } else { 2 };
    let limit = report.nofile_limit.max(crate::raise_nofile_limit());
    let fits = (limit.saturating_sub(512) / per_connection) as usize;
    if fits < cfg.connections {
        progress.say(format!(
            "the open-file limit ({limit}) fits {fits} connections, not {}: scaling down",
            cfg.connections
        ));
        report.note(format!(
            "fanout: scaled down to {fits} connections by the open-file limit {limit} (raise `ulimit -Hn`)."
        ));
        cfg.connections = fits;
    }
    let stale = ((cfg.connections as f64 * cfg.stale_share).round() as usize).max(1);

    let redis = crate::redis_server::RedisServer::start()?;
    let routes = Arc::new(HubRoutes::default());
    let api = LocalWebSocketApi::start(
        "127.0.0.1:0".parse()?,
        HubRoutes::api_config(WebSocketApiConfig::default()),
        routes.clone(),
    )
    .await?;
    let sdk = presence::aws::local_sdk_config(&api.management_endpoint()).await;
    let gateway = Arc::new(ApiGatewayManagement::new(&sdk, &api.management_endpoint()));
    let registry = Arc::new(MemoryConnectionRegistry::new());
    let settings_hub = HubSettings::default();
    let config = presence::hub::HubConfig::from_env(&Env::from_pairs([
        ("REDIS_URL", redis.url()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("CONNECTIONS_TABLE", "bench-connections".to_owned()),
        ("FACILITIES_TABLE", "bench-facilities".to_owned()),
        ("WEBSOCKET_ENDPOINT", api.management_endpoint()),
        ("PUSH_QUEUE_URL", "http://127.0.0.1:1/push".to_owned()),
        // One event's fan-out is measured: no coalescing window between the pushes.
        ("STATUS_COALESCE_MS", "0".to_owned()),
        ("MESSAGES_TABLE", "bench-messages".to_owned()),
    ]))?;
    let hub = Hub::new(
        &config,
        redis.engine_connection().await?,
        HubPorts {
            registry: registry.clone(),
            gateway: gateway.clone(),
            messages: Arc::new(presence::messages::MemoryMessageStore::new(
                config.retention,
            )),
            sessions: SessionPorts {
                push: Arc::new(MemoryQueue::new()),
                ledger: Arc::new(MemoryPartitionLedger::new()),
            },
        },
    )
    .with_settings(settings_hub);
    routes.serve(hub.clone());

    let rounds = cfg.reps as u64 + 1;
    progress.say(format!(
        "opening {} WebSocket connections ({}); {} stale ids per push",
        cfg.connections,
        if options.client_exe.is_some() {
            "client process"
        } else {
            "in this process"
        },
        stale
    ));
    let t = Instant::now();
    let mut clients = Clients::start(
        options.client_exe.as_deref(),
        &api.websocket_url(),
        cfg.connections,
        rounds,
    )
    .await?;
    let result = measure(
        &cfg,
        stale,
        &hub,
        registry.as_ref(),
        gateway.as_ref(),
        &api,
        &mut clients,
        t,
        report,
        progress,
        settings_hub.fanout_concurrency,
    )
    .await;
    clients.stop().await;
    api.shutdown().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    cfg: &Config,
    stale: usize,
    hub: &Hub,
    registry: &MemoryConnectionRegistry,
    gateway: &ApiGatewayManagement,
    api: &LocalWebSocketApi,
    clients: &mut Clients,
    opening: Instant,
    report: &mut Report,
    progress: &Progress,
    concurrency: usize,
) -> Result<(), BenchError> {
    let ready = clients.line(Duration::from_secs(300)).await?;
    let opened: usize = ready
        .strip_prefix("ready ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected line from the clients: {ready:?}"))?;
    progress.say(format!(
        "{} of {} connections open in {:.1} s",
        opened,
        cfg.connections,
        opening.elapsed().as_secs_f64()
    ));
    report.timed(
        "fanout",
        "open WebSocket connections ($connect → registry)",
        opened,
        opening.elapsed().as_secs_f64(),
        "",
    );
    if opened < cfg.connections * 99 / 100 {
        return Err(format!("only {opened} of {} connections opened", cfg.connections).into());
    }
    let region = RegionId::parse(REGION)?;
    let registered = registry.region_connections(&region).await?.len();
    if registered != opened {
        return Err(format!("{registered} connections registered, {opened} open").into());
    }

    let mut times = Vec::new();
    for round in 1..=cfg.reps as u64 {
        // Stale connections: registered, unknown to the API (their `$disconnect` was lost).
        let stale_ids: Vec<String> = (0..stale)
            .map(|i| format!("stale{round}x{i}AAAA"))
            .collect();
        for (i, id) in stale_ids.iter().enumerate() {
            registry
                .register(&Connection {
                    id: id.clone(),
                    user: UserId::parse(&format!("gone{i}"))?,
                    facility: FacilityId::parse("ff0")?,
                    region: region.clone(),
                    session_id: None,
                    // Connected an hour ago: a stale connection is an old one (the hub
                    // skips a 410 from a connection still connecting).
                    connected_ms: presence::now_ms() - 3_600_000,
                    hidden: false,
                    grant: Default::default(),
                })
                .await?;
        }
        let start_us = now_us();
        let delivered = hub.push(&event(round), presence::now_ms()).await?;
        let pushed_us = now_us();
        let line = clients.line(Duration::from_secs(180)).await?;
        let (count, last_us) = parse_round(&line, round)?;
        let secs = (last_us.max(pushed_us) - start_us) as f64 / 1e6;
        let mut left = 0;
        for id in &stale_ids {
            if registry.get(id).await?.is_some() {
                left += 1;
            }
        }
        progress.say(format!(
            "push {round}: {} delivered, {} gone (410) and deleted, {} failed; all {} clients had it after {:.0} ms (push returned after {:.0} ms); stale left in the registry: {}",
            delivered.delivered,
            delivered.gone.len(),
            delivered.failed.len(),
            count,
            secs * 1e3,
            (pushed_us - start_us) as f64 / 1e3,
            left
        ));
        report.timed(
            "fanout",
            "Hub::push of one status event",
            delivered.delivered,
            secs,
            format!(
                "gone {} failed {} received {} stale left {}",
                delivered.gone.len(),
                delivered.failed.len(),
                count,
                left
            ),
        );
        if count < opened
            || delivered.delivered < opened
            || delivered.gone.len() != stale
            || left > 0
        {
            return Err(format!(
                "push {round}: {count} of {opened} clients received it, {} delivered, {} of {stale} stale deleted, {left} left",
                delivered.delivered,
                delivered.gone.len()
            )
            .into());
        }
        times.push(secs * 1e3);
    }

    // Reference: the same frame straight through the management client, no hub.
    let ids = api.connection_ids();
    let round = cfg.reps as u64 + 1;
    let frame = match event(round) {
        PushMessage::Status(e) => serde_json::to_string(&e)?,
        PushMessage::Deliver(_) | PushMessage::Member(_) => unreachable!("a status event"),
    };
    let start_us = now_us();
    let failed: usize = futures::stream::iter(ids.iter())
        .map(|id| {
            let frame = frame.as_bytes();
            async move { gateway.post(id, frame).await.is_err() as usize }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    let posted_us = now_us();
    let line = clients.line(Duration::from_secs(180)).await?;
    let (count, last_us) = parse_round(&line, round)?;
    let raw = (last_us.max(posted_us) - start_us) as f64 / 1e3;
    progress.say(format!(
        "reference: {} raw PostToConnection calls ({} failed), all {} clients had it after {:.0} ms",
        ids.len(),
        failed,
        count,
        raw
    ));
    report.timed(
        "fanout",
        "raw PostToConnection, same frame, no hub",
        ids.len(),
        raw / 1e3,
        format!("failed {failed} received {count}"),
    );

    let hub_ms = median(&times);
    report.figure(
        Figure::new(
            "fanout",
            format!(
                "one event to {} sockets, {} stale deleted (median of {})",
                opened,
                stale,
                times.len()
            ),
            hub_ms,
            "ms",
        )
        .against("raw posts, no hub", raw, "ms")
        .target(Target::AtMost(On::Value, 2000.0)),
    );
    report.note(format!(
        "fanout: Hub::push at the hub's default concurrency ({concurrency} posts in flight) through aws-sdk-apigatewaymanagement to the local @connections API; pushes {:?} ms.",
        times.iter().map(|t| t.round() as i64).collect::<Vec<_>>()
    ));
    Ok(())
}
