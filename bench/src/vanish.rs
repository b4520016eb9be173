//! Vanish: browsers that disappear (process killed, network gone) without a close frame and
//! without any `$disconnect` (`WS_DROP_DISCONNECT_RATE=1`: the local WebSocket API drops
//! every one, as API Gateway may) must still go offline at their deadline, last heartbeat +
//! `SESSION_TTL_SECONDS`, through session-expiry's sweep, within 2 s of it.
//!
//! Each browser is a leader socket (`?session_id=`, its own facility) that sends one-way
//! `heartbeat` frames every `HEARTBEAT_INTERVAL_SECONDS` (first one at a random phase) and,
//! at a random moment, drops its TCP stream: the `WebSocketStream` is dropped, so no close
//! frame is sent. Each browser also says `visibility false` after connecting, so ws-push
//! never posts other facilities' statuses to it: a post to a vanished socket is answered
//! 410 locally (API Gateway would notice much later), and a 410 ends the session on the
//! spot, which is a different path (faster, not the one measured here).
//!
//! One watcher per region records when its facility's offline status arrived and its
//! `since_ms`. Per browser: lateness = (offline received) − (last heartbeat sent + TTL), and
//! `since_ms` − (last heartbeat sent + TTL), which must be within a few ms (the server stamps
//! the heartbeat's receive time; the `$connect` of a browser that vanished before its first
//! frame counts as its last heartbeat).

use crate::report::{Figure, On, Report, Target};
use crate::{BenchError, Options, Outcome, Progress, now_us, quantile};
use futures::{SinkExt, StreamExt};
use presence::auth::{DevTokenSigner, Identity};
use presence::ids::{FacilityId, RegionId, UserId};
use presence_local::rng::Rng;
use presence_local::stack::{DEV_SECRET, LocalStack};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// `since_ms` may differ from the client's last send + TTL by this much (network and clock
/// resolution only; a session ended some other way is off by seconds).
const SINCE_TOLERANCE_MS: f64 = 250.0;

/// Sizes of one vanish run.
#[derive(Debug, Clone)]
pub struct Config {
    pub browsers: usize,
    pub regions: usize,
    pub ttl_s: u64,
    pub interval_s: u64,
    /// Each browser vanishes at a uniformly random moment in this range after all connected.
    pub vanish_from_s: f64,
    pub vanish_to_s: f64,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                browsers: 30,
                regions: 1,
                // Above 5 s, the sweeper's longest pause.
                ttl_s: 6,
                interval_s: 2,
                vanish_from_s: 0.5,
                vanish_to_s: 4.0,
            }
        } else {
            Self {
                browsers: 300,
                regions: 5,
                ttl_s: 10,
                interval_s: 4,
                vanish_from_s: 1.0,
                vanish_to_s: 21.0,
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn identity(user: &str, facility: &str, region: &str) -> Identity {
    Identity {
        user: UserId::parse(user).expect("valid id"),
        facility: FacilityId::parse(facility).expect("valid id"),
        region: RegionId::parse(region).expect("valid id"),
    }
}

/// A facility's offline status as a watcher first saw it.
#[derive(Debug, Clone, Copy)]
struct Offline {
    since_ms: i64,
    recv_us: i64,
}

/// One browser's life: heartbeats every `interval`, the first after `phase`; `vanish` after
/// the moment `start` gives it drops the socket without a close frame. Returns when it last
/// told the server it was alive (µs; its `$connect` if no heartbeat frame went out) and how
/// many heartbeat frames it sent.
async fn live(
    mut ws: Ws,
    connected_us: i64,
    phase: Duration,
    interval: Duration,
    vanish_after: Duration,
    mut start: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
) -> Result<(i64, usize), BenchError> {
    ws.send(Message::text(
        serde_json::json!({"action": "visibility", "visible": false}).to_string(),
    ))
    .await?;
    let beat = Message::text(serde_json::json!({"action": "heartbeat"}).to_string());
    let mut last_us = connected_us;
    let mut beats = 0usize;
    let mut next = tokio::time::Instant::now() + phase;
    // Until the clock starts, a day away.
    let mut vanish = tokio::time::Instant::now() + Duration::from_secs(86_400);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(vanish) => break,
            changed = start.changed() => {
                if changed.is_err() {
                    return Err("the vanish clock was dropped".into());
                }
                if let Some(s) = *start.borrow_and_update() {
                    vanish = s + vanish_after;
                }
            }
            _ = tokio::time::sleep_until(next), if next < vanish => {
                let t = now_us();
                ws.send(beat.clone()).await?;
                last_us = t;
                beats += 1;
                next += interval;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) if text.contains("\"error\"") => {
                    return Err(format!("a browser was answered {text}").into());
                }
                Some(Ok(_)) => {}
                _ => return Err("a browser's socket ended before it vanished".into()),
            },
        }
    }
    // Vanish: the TCP stream goes away with the socket, without a close frame; the local API
    // drops the `$disconnect` (WS_DROP_DISCONNECT_RATE=1).
    drop(ws);
    Ok((last_us, beats))
}

pub async fn run(options: &Options, report: &mut Report, progress: &Progress) -> Outcome {
    let cfg = Config::new(options.quick);
    let stack = crate::stack::start(&[
        ("SESSION_TTL_SECONDS", cfg.ttl_s.to_string()),
        ("HEARTBEAT_INTERVAL_SECONDS", cfg.interval_s.to_string()),
        ("WS_DROP_DISCONNECT_RATE", "1".to_owned()),
    ])
    .await?;
    progress.say(format!(
        "local stack up ({}), $disconnect dropped always; TTL {} s, heartbeat frames every {} s",
        stack.ws.websocket_url(),
        cfg.ttl_s,
        cfg.interval_s
    ));
    let result = measure(&cfg, &stack, report, progress).await;
    stack.shutdown().await;
    result
}

async fn measure(
    cfg: &Config,
    stack: &LocalStack,
    report: &mut Report,
    progress: &Progress,
) -> Result<(), BenchError> {
    let signer = DevTokenSigner::new(DEV_SECRET.as_bytes());
    let exp = presence::now_ms() / 1000 + 3600;
    let url = stack.ws.websocket_url();
    let offline: Arc<Mutex<HashMap<String, Offline>>> = Arc::default();
    let online: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();

    // One watcher per region.
    let mut readers = Vec::new();
    for r in 0..cfg.regions {
        let token = signer.sign(
            &identity(&format!("vwatch{r}"), &format!("vw{r}"), &format!("vr{r}")),
            exp,
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={token}")).await?;
        let (offline, online) = (offline.clone(), online.clone());
        readers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let recv_us = now_us();
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                for s in presence::protocol::statuses_in(&v) {
                    let facility = s["facility_id"].as_str().unwrap_or_default().to_owned();
                    if s["status"] != "offline" {
                        online.lock().expect("online lock").insert(facility);
                        continue;
                    }
                    let since_ms = s["since_ms"].as_i64().unwrap_or_default();
                    offline
                        .lock()
                        .expect("offline lock")
                        .entry(facility)
                        .or_insert(Offline { since_ms, recv_us });
                }
            }
        }));
    }

    // The browsers connect (each session goes online at its `$connect`).
    let mut rng = Rng::new(0x7a_15_4e_d0);
    let connected: Vec<Result<(Ws, i64), BenchError>> = futures::stream::iter(0..cfg.browsers)
        .map(|i| {
            let token = signer.sign(
                &identity(
                    &format!("vu{i}"),
                    &format!("vf{i}"),
                    &format!("vr{}", i % cfg.regions),
                ),
                exp,
            );
            let url = format!("{url}?token={token}&session_id=vs{i}");
            async move {
                let (ws, _) = tokio_tungstenite::connect_async(url).await?;
                Ok((ws, now_us()))
            }
        })
        .buffered(32)
        .collect()
        .await;
    let interval = Duration::from_secs(cfg.interval_s);
    let (clock, start_rx) = tokio::sync::watch::channel(None);
    let mut lives = Vec::with_capacity(cfg.browsers);
    for c in connected {
        let (ws, connected_us) = c?;
        let phase = Duration::from_secs_f64(rng.unit() * cfg.interval_s as f64);
        let vanish = Duration::from_secs_f64(
            cfg.vanish_from_s + rng.unit() * (cfg.vanish_to_s - cfg.vanish_from_s),
        );
        lives.push(tokio::spawn(live(
            ws,
            connected_us,
            phase,
            interval,
            vanish,
            start_rx.clone(),
        )));
    }
    // The vanishing starts once the watchers saw every facility online and the region is
    // quiet (the online statuses' fan-out does not delay the offline ones).
    let t = std::time::Instant::now();
    let until = t + Duration::from_secs(120);
    loop {
        let seen = online.lock().expect("online lock").len();
        if seen >= cfg.browsers {
            break;
        }
        if std::time::Instant::now() >= until {
            return Err(format!(
                "only {seen} of {} browsers online after 120 s",
                cfg.browsers
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.say(format!(
        "the watchers saw all {} facilities online after {:.1} s",
        cfg.browsers,
        t.elapsed().as_secs_f64()
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let start = tokio::time::Instant::now();
    clock.send_replace(Some(start));
    progress.say(format!(
        "{} browsers online in {} regions; each vanishes at a random moment {:.1}–{:.1} s from now",
        cfg.browsers, cfg.regions, cfg.vanish_from_s, cfg.vanish_to_s
    ));
    let mut last_beat_us = Vec::with_capacity(cfg.browsers);
    let mut beats = 0usize;
    for l in lives {
        let (last, n) = l.await??;
        last_beat_us.push(last);
        beats += n;
    }
    progress.say(format!(
        "all {} browsers vanished ({beats} heartbeat frames sent); waiting for their deadlines",
        cfg.browsers
    ));

    // Until every facility is offline, or well past the last deadline.
    let ttl_us = cfg.ttl_s as i64 * 1_000_000;
    let latest_deadline = last_beat_us.iter().max().copied().unwrap_or_default() + ttl_us;
    let give_up_us = latest_deadline + 10_000_000;
    loop {
        let seen = offline.lock().expect("offline lock").len();
        if seen >= cfg.browsers || now_us() >= give_up_us {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.abort();
    }

    let seen = offline.lock().expect("offline lock").clone();
    let mut late_ms = Vec::new();
    let mut since_off_ms: Vec<f64> = Vec::new();
    let mut early = 0usize;
    for (i, last) in last_beat_us.iter().enumerate() {
        let Some(o) = seen.get(&format!("vf{i}")) else {
            continue;
        };
        let deadline_us = last + ttl_us;
        let late = (o.recv_us - deadline_us) as f64 / 1e3;
        // Before the deadline by more than the clocks' slack: not the sweep (a 410, or a
        // `$disconnect` that was not dropped).
        if late < -SINCE_TOLERANCE_MS {
            early += 1;
        }
        late_ms.push(late);
        since_off_ms.push((o.since_ms * 1000 - deadline_us) as f64 / 1e3);
    }
    let missing = cfg.browsers - late_ms.len();
    late_ms.sort_by(f64::total_cmp);
    let since_worst = since_off_ms.iter().map(|d| d.abs()).fold(0.0, f64::max);
    let since_mean = since_off_ms.iter().sum::<f64>() / since_off_ms.len().max(1) as f64;
    progress.say(format!(
        "offline beyond last heartbeat + TTL: {} events, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; since_ms − (last heartbeat + TTL): mean {:+.1} ms, worst |{:.1}| ms{}{}",
        late_ms.len(),
        quantile(&late_ms, 0.5),
        quantile(&late_ms, 0.99),
        late_ms.last().copied().unwrap_or(f64::NAN),
        since_mean,
        since_worst,
        if early > 0 {
            format!(", {early} offline BEFORE their deadline")
        } else {
            String::new()
        },
        if missing > 0 {
            format!(", {missing} MISSING")
        } else {
            String::new()
        }
    ));
    if late_ms.is_empty() {
        return Err(format!("no vanished browser went offline ({missing} missing)").into());
    }
    let seconds = start.elapsed().as_secs_f64();
    report.run(
        "vanish",
        "vanished browser: offline beyond last heartbeat + TTL (rate: p99 ms)",
        late_ms.len() as u64,
        seconds,
        quantile(&late_ms, 0.99),
        format!(
            "p50 {:.0} ms; max {:.0} ms; missing {missing}; early {early}; TTL {} s; heartbeat frames every {} s",
            quantile(&late_ms, 0.5),
            late_ms.last().copied().unwrap_or(f64::NAN),
            cfg.ttl_s,
            cfg.interval_s
        ),
    );
    report.run(
        "vanish",
        "since_ms − (last heartbeat + TTL) (rate: worst |ms|)",
        since_off_ms.len() as u64,
        seconds,
        since_worst,
        format!("mean {since_mean:+.1} ms; tolerance {SINCE_TOLERANCE_MS} ms"),
    );
    let ttl_ms = cfg.ttl_s as f64 * 1e3;
    report.figure(
        Figure::new(
            "vanish",
            format!(
                "vanished browser (no close, no $disconnect) → offline, beyond TTL, p99 (p50 {:.0}, max {:.0} ms, n={}{}{})",
                quantile(&late_ms, 0.5),
                late_ms.last().copied().unwrap_or(f64::NAN),
                late_ms.len(),
                if missing > 0 {
                    format!(", {missing} missing")
                } else {
                    String::new()
                },
                if early > 0 {
                    format!(", {early} early")
                } else {
                    String::new()
                }
            ),
            if missing > 0 || early > 0 {
                f64::INFINITY
            } else {
                quantile(&late_ms, 0.99)
            },
            "ms",
        )
        .against("SESSION_TTL_SECONDS", ttl_ms, "ms")
        .target(Target::AtMost(On::Value, 2000.0)),
    );
    report.figure(
        Figure::new(
            "vanish",
            format!(
                "offline since_ms vs last heartbeat + TTL, worst |Δ| (mean {since_mean:+.1} ms)"
            ),
            since_worst,
            "ms",
        )
        .target(Target::AtMost(On::Value, SINCE_TOLERANCE_MS)),
    );
    report.note(format!(
        "vanish: {} browsers in {} regions (one watcher socket each), each a leader socket with its own session and facility, heartbeat frames every {} s, SESSION_TTL_SECONDS={}; each drops its TCP stream (no close frame) at a random moment and WS_DROP_DISCONNECT_RATE=1 drops every $disconnect, so only the deadline sweep takes it offline. Browsers are hidden (`visibility false`) so no post to a vanished socket answers 410 and ends it early.",
        cfg.browsers, cfg.regions, cfg.interval_s, cfg.ttl_s
    ));
    Ok(())
}
