//! `presence-soak`: a long run of the local stack under load (not part of CI).
//!
//! ```text
//! presence-soak [--minutes 10] [--sockets 10000] [--rate 10000] [--churn 0.01] [--bin PATH]
//! ```
//!
//! It starts the real `presence-local` binary as a child process (so its memory is measured
//! alone, and the file descriptors of both sides fit the per-process limit), then opens
//! `--sockets` WebSocket connections, each with its own session bound at `$connect`, sends
//! `--rate` heartbeats a second over them in total, and every second drops `--churn` of the
//! sockets (half with a close frame, half by vanishing) and reconnects them. One watcher per
//! region records every `facility.status` event. It prints progress every 10 s and, at the
//! end: heartbeat throughput, the stack's memory over time, flips lost (a watcher's last
//! version behind the live snapshot), and connections left registered after every client
//! has gone.

use futures::{SinkExt, StreamExt};
use presence::auth::{DevTokenSigner, Identity};
use presence::ids::{FacilityId, RegionId, UserId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

const REGIONS: usize = 10;
const FACILITIES: usize = 500;

#[derive(Debug, Clone)]
struct Options {
    minutes: f64,
    sockets: usize,
    rate: f64,
    churn: f64,
    bin: String,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        minutes: 10.0,
        sockets: 10_000,
        rate: 10_000.0,
        churn: 0.01,
        bin: default_bin(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = |n: &str| args.next().ok_or(format!("{n} needs a value"));
        match a.as_str() {
            "--minutes" => {
                o.minutes = v("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?
            }
            "--sockets" => {
                o.sockets = v("--sockets")?
                    .parse()
                    .map_err(|e| format!("--sockets: {e}"))?
            }
            "--rate" => o.rate = v("--rate")?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--churn" => o.churn = v("--churn")?.parse().map_err(|e| format!("--churn: {e}"))?,
            "--bin" => o.bin = v("--bin")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn default_bin() -> String {
    let me = std::env::current_exe().unwrap_or_default();
    me.with_file_name("presence-local")
        .to_string_lossy()
        .into_owned()
}

/// 10 000 clients with tungstenite's 128 KiB default buffers would need 2.5 GiB.
fn small_buffers() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // fields after the parenthesised command name: state is field 3, utime 14, stime 15
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    ticks as f64 / 100.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Aborts the task when dropped: a client task aborted mid-run takes its reader (and with
/// it the socket) down too.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    open: AtomicUsize,
    reconnects: AtomicU64,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn identity(i: usize) -> Identity {
    let f = i % FACILITIES;
    Identity {
        user: UserId::parse(&format!("soak-user-{i}")).expect("id"),
        facility: FacilityId::parse(&format!("soak-fac-{f}")).expect("id"),
        region: RegionId::parse(&format!("soak-reg-{}", f % REGIONS)).expect("id"),
    }
}

/// One client: connect with its session, heartbeat at its share of the rate, sometimes drop.
async fn client(
    i: usize,
    ws_url: String,
    token: String,
    period: Duration,
    churn_per_s: f64,
    stop: Arc<tokio::sync::Notify>,
    c: Arc<Counters>,
) {
    let mut seed = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut roll = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1_000_000) as f64 / 1_000_000.0
    };
    let url = format!("{ws_url}?token={token}&session_id=soak-{i}");
    loop {
        let Ok((ws, _)) =
            tokio_tungstenite::connect_async_with_config(&url, Some(small_buffers()), false)
                .await
                .map_err(|e| {
                    if c.errors.load(Ordering::Relaxed) < 3 {
                        eprintln!("soak: connect failed: {e}");
                    }
                })
        else {
            c.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        c.open.fetch_add(1, Ordering::Relaxed);
        let (mut tx, mut rx) = ws.split();
        let counters = c.clone();
        let reader = AbortOnDrop(tokio::spawn(async move {
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(t) = m {
                    if t.contains("\"type\":\"heartbeat\"") {
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                    } else if t.contains("\"type\":\"error\"")
                        && counters.errors.fetch_add(1, Ordering::Relaxed) < 3
                    {
                        eprintln!("soak: error frame {t}");
                    }
                }
            }
        }));
        // stagger the first beat over the period
        tokio::time::sleep(period.mul_f64(roll())).await;
        let mut tick = tokio::time::interval(period);
        let drop_chance = churn_per_s * period.as_secs_f64();
        let vanished = loop {
            tokio::select! {
                _ = stop.notified() => {
                    let _ = tx.send(Message::Close(None)).await;
                    drop(reader);
                    c.open.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                _ = tick.tick() => {
                    let frame = format!("{{\"action\":\"heartbeat\",\"session_id\":\"soak-{i}\"}}");
                    if tx.send(Message::text(frame)).await.is_err() {
                        break false;
                    }
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    if roll() < drop_chance {
                        break roll() < 0.5;
                    }
                }
            }
        };
        if !vanished {
            let _ = tx.send(Message::Close(None)).await;
        }
        // A vanishing client just drops its socket: no close frame.
        drop(tx);
        drop(reader);
        c.open.fetch_sub(1, Ordering::Relaxed);
        c.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200 + (roll() * 1000.0) as u64)).await;
    }
}

/// A watcher of one region: the last version seen per facility. It pings every minute, as
/// a page does, so API Gateway's 10-minute idle timeout does not close it; a watcher whose
/// socket ends anyway is counted in `lost`.
async fn watcher(
    ws: Ws,
    seen: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    lost: Arc<AtomicUsize>,
) {
    let (mut tx, mut rx) = ws.split();
    let mut ping = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            m = rx.next() => {
                let Some(Ok(m)) = m else { break };
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else { continue };
                if v["type"] == "facility.status" {
                    let f = v["facility_id"].as_str().unwrap_or_default().to_owned();
                    let version = v["version"].as_u64().unwrap_or(0);
                    let mut seen = seen.lock().expect("seen lock");
                    let e = seen.entry(f).or_default();
                    *e = (*e).max(version);
                }
            }
            _ = ping.tick() => {
                if tx.send(Message::text("{\"action\":\"ping\"}")).await.is_err() {
                    break;
                }
            }
        }
    }
    lost.fetch_add(1, Ordering::Relaxed);
    eprintln!("soak: a watcher's socket ended: flips after this are not seen");
}

async fn fetch_stats(http: &str) -> serde_json::Value {
    match tokio::process::Command::new("curl")
        .args(["-s", &format!("{http}/dev/stats")])
        .output()
        .await
    {
        Ok(out) => serde_json::from_slice(&out.stdout).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    eprintln!("soak: {o:?}");
    let mut child = match tokio::process::Command::new(&o.bin)
        .args(["--http-port", "0", "--ws-port", "0"])
        .env("RUST_LOG", "warn")
        .env("SESSION_TTL_SECONDS", "15")
        .env("HEARTBEAT_INTERVAL_SECONDS", "5")
        .env("EXPIRY_SCHEDULE_SECONDS", "60")
        .env("ROLLUP_SCHEDULE_SECONDS", "60")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "cannot start {}: {e} (build it: cargo build --release -p presence-local)",
                o.bin
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let pid = child.id().unwrap_or(0);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut http, mut ws_url) = (String::new(), String::new());
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(u) = line.trim().strip_prefix("dashboard:") {
            http = u.trim().trim_end_matches('/').to_owned();
        }
        if let Some(u) = line.trim().strip_prefix("websocket:") {
            ws_url = u.trim().trim_end_matches("?token=<JWT>").to_owned();
        }
        if !http.is_empty() && !ws_url.is_empty() {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    eprintln!("soak: stack at {http}, {ws_url}, pid {pid}");

    let signer = DevTokenSigner::new(presence_local::stack::DEV_SECRET.as_bytes());
    let exp = presence::now_ms() / 1000 + 24 * 3600;
    let seen = Arc::new(std::sync::Mutex::new(HashMap::<String, u64>::new()));
    let mut watchers = Vec::new();
    for r in 0..REGIONS {
        let id = Identity {
            user: UserId::parse(&format!("soak-watcher-{r}")).expect("id"),
            facility: FacilityId::parse("soak-watch-desk").expect("id"),
            region: RegionId::parse(&format!("soak-reg-{r}")).expect("id"),
        };
        let (ws, _) = tokio_tungstenite::connect_async_with_config(
            format!("{ws_url}?token={}", signer.sign(&id, exp)),
            Some(small_buffers()),
            false,
        )
        .await
        .expect("watcher connects");
        watchers.push(ws);
    }
    let watchers_lost = Arc::new(AtomicUsize::new(0));
    let watch_tasks: Vec<_> = watchers
        .into_iter()
        .map(|ws| tokio::spawn(watcher(ws, seen.clone(), watchers_lost.clone())))
        .collect();

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(tokio::sync::Notify::new());
    let period = Duration::from_secs_f64(o.sockets as f64 / o.rate);
    let mut clients = Vec::with_capacity(o.sockets);
    for i in 0..o.sockets {
        let token = signer.sign(&identity(i), exp);
        clients.push(tokio::spawn(client(
            i,
            ws_url.clone(),
            token,
            period,
            o.churn,
            stop.clone(),
            counters.clone(),
        )));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let started = Instant::now();
    let me = std::process::id();
    let (stack_cpu0, clients_cpu0) = (cpu_seconds(pid), cpu_seconds(me));
    let mut last_cpu = stack_cpu0;
    let total = Duration::from_secs_f64(o.minutes * 60.0);
    let mut rss = Vec::new();
    // (live heap KiB, history items stored)
    let mut heap: Vec<(u64, u64)> = Vec::new();
    let (mut last_sent, mut last_acked) = (0, 0);
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (sent, acked) = (
            counters.sent.load(Ordering::Relaxed),
            counters.acked.load(Ordering::Relaxed),
        );
        let r = rss_kib(pid);
        let stats = fetch_stats(&http).await;
        let live = stats["heap"]["allocated"].as_u64().unwrap_or(0) / 1024;
        rss.push((started.elapsed().as_secs(), r));
        heap.push((live, stats["history_items"].as_u64().unwrap_or(0)));
        let cpu = cpu_seconds(pid);
        eprintln!(
            "soak: {:>4}s  open {:>6}  sent {:>7.0}/s  acked {:>7.0}/s  reconnects {:>6}  errors {:>5}  stack RSS {:>7} KiB  heap {:>7} KiB  history {:>6}  stack CPU {:>3.0} %",
            started.elapsed().as_secs(),
            counters.open.load(Ordering::Relaxed),
            (sent - last_sent) as f64 / 10.0,
            (acked - last_acked) as f64 / 10.0,
            counters.reconnects.load(Ordering::Relaxed),
            counters.errors.load(Ordering::Relaxed),
            r,
            live,
            heap.last().map(|h| h.1).unwrap_or(0),
            (cpu - last_cpu) * 10.0
        );
        (last_sent, last_acked, last_cpu) = (sent, acked, cpu);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stack_cpu = (cpu_seconds(pid) - stack_cpu0) / elapsed * 100.0;
    let clients_cpu = (cpu_seconds(me) - clients_cpu0) / elapsed * 100.0;
    for _ in 0..3 {
        stop.notify_waiters();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for c in clients {
        c.abort();
    }
    // Sessions end at $disconnect; let the queues drain (the watchers must see the last
    // flips before they are compared with the live state), for at most two minutes.
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = fetch_stats(&http).await;
        let busy = ["heartbeats", "push"]
            .iter()
            .any(|q| s["queues"][q]["visible"] != 0 || s["queues"][q]["in_flight"] != 0);
        if !busy {
            break;
        }
    }
    let drained_at = started.elapsed().as_secs_f64() - elapsed;
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!(
        "soak: before the watchers leave: {}",
        fetch_stats(&http).await
    );
    for t in watch_tasks {
        t.abort(); // the watchers vanish too: their connections must be cleaned up as well
    }
    // Every end of a socket runs $disconnect; wait until the registry drains (or 30 s).
    let mut stats = serde_json::Value::Null;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stats = fetch_stats(&http).await;
        if stats["connections"] == 0 {
            break;
        }
    }
    let drained_after = started.elapsed().as_secs_f64() - elapsed;
    // the live snapshot per region, from a fresh socket
    let mut behind = 0usize;
    let mut facilities = 0usize;
    for r in 0..REGIONS {
        let id = Identity {
            user: UserId::parse(&format!("soak-checker-{r}")).expect("id"),
            facility: FacilityId::parse("soak-watch-desk").expect("id"),
            region: RegionId::parse(&format!("soak-reg-{r}")).expect("id"),
        };
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async_with_config(
            format!("{ws_url}?token={}", signer.sign(&id, exp)),
            Some(small_buffers()),
            false,
        )
        .await
        else {
            continue;
        };
        let _ = ws.send(Message::text("{\"action\":\"snapshot\"}")).await;
        while let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(10), ws.next()).await
        {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
            if v["type"] == "snapshot" {
                let seen = seen.lock().expect("seen lock");
                for f in v["facilities"].as_array().cloned().unwrap_or_default() {
                    facilities += 1;
                    let id = f["facility_id"].as_str().unwrap_or_default();
                    if seen.get(id).copied().unwrap_or(0) < f["version"].as_u64().unwrap_or(0) {
                        behind += 1;
                    }
                }
                break;
            }
        }
    }
    let sent = counters.sent.load(Ordering::Relaxed);
    let acked = counters.acked.load(Ordering::Relaxed);
    let first = rss.first().map(|x| x.1).unwrap_or(0);
    let last = rss.last().map(|x| x.1).unwrap_or(0);
    let max = rss.iter().map(|x| x.1).max().unwrap_or(0);
    println!(
        "soak summary ({:.1} min, {} sockets, churn {}/s)",
        elapsed / 60.0,
        o.sockets,
        o.churn
    );
    println!(
        "  heartbeats sent      {sent} ({:.0}/s)",
        sent as f64 / elapsed
    );
    println!(
        "  heartbeats acked     {acked} ({:.0}/s)",
        acked as f64 / elapsed
    );
    println!(
        "  reconnects           {}",
        counters.reconnects.load(Ordering::Relaxed)
    );
    println!(
        "  client errors        {}",
        counters.errors.load(Ordering::Relaxed)
    );
    println!("  stack RSS            first {first} KiB, last {last} KiB, max {max} KiB");
    // The first minute fills the caches and the schedules' first runs; after it, live memory
    // may grow only by what the in-memory facilities table stores (flips and session segments,
    // kept like DynamoDB keeps them for HISTORY_RETENTION_DAYS).
    let first_heap = heap.first().copied().unwrap_or_default();
    let settled = heap.get(6).copied().unwrap_or(first_heap);
    let last_heap = heap.last().copied().unwrap_or_default();
    let grown = last_heap.0 as f64 - settled.0 as f64;
    let stored = last_heap.1.saturating_sub(settled.1);
    println!(
        "  stack heap (live)    first {} KiB, after 1 min {} KiB, last {} KiB",
        first_heap.0, settled.0, last_heap.0
    );
    println!(
        "  after 1 min          heap {grown:+.0} KiB while {stored} history items were stored ({:.0} bytes per item)",
        if stored > 0 {
            grown * 1024.0 / stored as f64
        } else {
            0.0
        }
    );
    println!(
        "  CPU (of one core)    stack {stack_cpu:.0} %, clients {clients_cpu:.0} % (redis-server not counted)"
    );
    println!("  queues drained       {drained_at:.1} s after the clients stopped");
    println!(
        "  flips lost           {behind} of {facilities} facilities behind the live snapshot ({} of {REGIONS} watchers lost their socket)",
        watchers_lost.load(Ordering::Relaxed)
    );
    println!(
        "  connections left     {} (registered {drained_after:.1} s after the clients stopped)",
        stats["connections"]
    );
    println!("  queues               {}", stats["queues"]);
    if stats["connections"] != 0 {
        println!("  left, for example    {}", stats["connection_sample"]);
    }
    let _ = child.kill().await;
    std::process::ExitCode::SUCCESS
}
