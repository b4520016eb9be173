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

mod load;
mod probe;

use futures::{SinkExt, StreamExt};
use load::*;
use presence::auth::{DevTokenSigner, Identity};
use presence::ids::{FacilityId, RegionId, UserId};
use probe::*;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
        let r = rss_kib(pid);
        let stats = fetch_stats(&http).await;
        let (sent, acked) = (counters.sent.load(Ordering::Relaxed), applied(&stats));
        let live = stats["heap"]["allocated"].as_u64().unwrap_or(0) / 1024;
        rss.push((started.elapsed().as_secs(), r));
        heap.push((live, stats["history_items"].as_u64().unwrap_or(0)));
        let cpu = cpu_seconds(pid);
        eprintln!(
            "soak: {:>4}s  open {:>6}  sent {:>7.0}/s  applied {:>7.0}/s  reconnects {:>6}  errors {:>5}  stack RSS {:>7} KiB  heap {:>7} KiB  history {:>6}  stack CPU {:>3.0} %",
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
    let acked = applied(&fetch_stats(&http).await);
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
        "  heartbeats applied   {acked} ({:.0}/s; ws-message invocations, /dev/stats billing)",
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

/// Frames ws-message served, from the stack's billing counters: heartbeat frames are one-way,
/// so there is no acknowledgement to count (the watchers' few pings are included).
fn applied(stats: &serde_json::Value) -> u64 {
    stats["billing"]["lambda_invocations"]["ws-message"]
        .as_u64()
        .unwrap_or(0)
}
