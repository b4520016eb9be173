//! Latency through the whole local stack (`presence_local::stack::LocalStack`: the functions'
//! own handlers behind the local HTTP API, WebSocket API, SQS-semantics queues, schedules and
//! a private `redis-server`), measured at real WebSocket clients:
//!
//! - **online**: from the moment a heartbeat `POST /v1/heartbeats` is sent for an offline
//!   facility until a socket watching its region receives `facility.status` online
//!   (ingest → heartbeat queue → consumer → Redis → push queue → ws-push → PostToConnection);
//! - **offline**: heartbeats then stop; from each session's deadline (its last heartbeat's
//!   receive time + `SESSION_TTL_SECONDS`, which is the event's `since_ms`) until the watcher
//!   receives `facility.status` offline (session-expiry's sweep → push queue → ws-push).
//!
//! Reference, same run: the round trip of a `ping` frame through the same WebSocket API
//! (`$default` → ws-message → PostToConnection `pong`), the floor of any pushed event.

use crate::report::{Figure, On, Report, Target};
use crate::{BenchError, Options, Outcome, Progress, now_us, quantile};
use futures::{SinkExt, StreamExt};
use presence::auth::{DevTokenSigner, Identity};
use presence::ids::{FacilityId, RegionId, UserId};
use presence_local::stack::{DEV_SECRET, LocalStack};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Sizes of one latency run.
#[derive(Debug, Clone)]
pub struct Config {
    pub regions: usize,
    pub facilities_per_region: usize,
    /// Heartbeats sent per second (each for another facility).
    pub rate_per_s: f64,
    pub ttl_s: u64,
    pub pings: usize,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                regions: 1,
                facilities_per_region: 6,
                rate_per_s: 20.0,
                ttl_s: 6,
                pings: 10,
            }
        } else {
            Self {
                regions: 10,
                facilities_per_region: 50,
                rate_per_s: 50.0,
                ttl_s: 6,
                pings: 40,
            }
        }
    }
}

/// A `facility.status` event as a watcher saw it.
#[derive(Debug, Clone)]
struct Seen {
    since_ms: i64,
    recv_us: i64,
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

/// Sends `ping` frames one after another, 150 ms apart (the hub allows a connection 10
/// frames a second after a burst of 20); returns each round trip in ms.
async fn pings(ws: &mut Ws, count: usize) -> Result<Vec<f64>, BenchError> {
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let t = now_us();
        ws.send(Message::text(
            serde_json::json!({"action": "ping", "ref": i}).to_string(),
        ))
        .await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: serde_json::Value = serde_json::from_str(&text)?;
                    if v["type"] == "pong" {
                        break;
                    }
                    if v["type"] == "error" {
                        return Err(format!("ping answered {text}").into());
                    }
                }
                Ok(Some(Ok(_))) => continue,
                _ => return Err("no pong within 5 s".into()),
            }
        }
        rtts.push((now_us() - t) as f64 / 1e3);
    }
    Ok(rtts)
}

pub async fn run(options: &Options, report: &mut Report, progress: &Progress) -> Outcome {
    let cfg = Config::new(options.quick);
    let stack = crate::stack::start(&[
        ("SESSION_TTL_SECONDS", cfg.ttl_s.to_string()),
        ("HEARTBEAT_INTERVAL_SECONDS", "1".to_owned()),
    ])
    .await?;
    progress.say(format!(
        "local stack up: {} and {}",
        stack.http_url,
        stack.ws.websocket_url()
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
    let seen: Arc<Mutex<HashMap<(String, String), Seen>>> = Arc::default();

    // One watcher per region (no session of its own), reading every frame.
    let mut readers = Vec::new();
    let mut ping_rtts = Vec::new();
    for r in 0..cfg.regions {
        let token = signer.sign(
            &identity(&format!("watch{r}"), &format!("wf{r}"), &format!("lr{r}")),
            exp,
        );
        let url = format!("{}?token={token}", stack.ws.websocket_url());
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        if r == 0 {
            ping_rtts = pings(&mut ws, cfg.pings).await?;
        }
        let seen = seen.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let recv_us = now_us();
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                for v in presence::protocol::statuses_in(&v) {
                    let key = (
                        v["facility_id"].as_str().unwrap_or_default().to_owned(),
                        v["status"].as_str().unwrap_or_default().to_owned(),
                    );
                    let since_ms = v["since_ms"].as_i64().unwrap_or_default();
                    seen.lock()
                        .expect("seen lock")
                        .entry(key)
                        .or_insert(Seen { since_ms, recv_us });
                }
            }
        }));
    }
    let mut sorted_pings = ping_rtts.clone();
    sorted_pings.sort_by(f64::total_cmp);
    progress.say(format!(
        "{} watchers connected; ping round trip p50 {:.2} ms, p99 {:.2} ms ({} pings)",
        cfg.regions,
        quantile(&sorted_pings, 0.5),
        quantile(&sorted_pings, 0.99),
        sorted_pings.len()
    ));
    report.run(
        "latency",
        "ping round trip",
        sorted_pings.len() as u64,
        sorted_pings.iter().sum::<f64>() / 1e3,
        quantile(&sorted_pings, 0.5),
        "rate column: p50 ms",
    );

    // One heartbeat per facility, paced; each facility is offline before it.
    struct Sample {
        facility: String,
        token: String,
        session: String,
        at: Duration,
    }
    let total = cfg.regions * cfg.facilities_per_region;
    let samples: Vec<Sample> = (0..total)
        .map(|i| {
            let (r, j) = (i % cfg.regions, i / cfg.regions);
            let facility = format!("lf{r}x{j}");
            Sample {
                token: signer.sign(
                    &identity(&format!("lu{i}"), &facility, &format!("lr{r}")),
                    exp,
                ),
                facility,
                session: format!("ls{i}"),
                at: Duration::from_secs_f64(i as f64 / cfg.rate_per_s),
            }
        })
        .collect();
    progress.say(format!(
        "sending {} heartbeats at {}/s over HTTP, one per facility",
        total, cfg.rate_per_s
    ));
    let senders = 4usize;
    let mut shares: Vec<Vec<Sample>> = (0..senders).map(|_| Vec::new()).collect();
    for (i, s) in samples.into_iter().enumerate() {
        shares[i % senders].push(s);
    }
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let base = stack.http_url.clone();
            tokio::spawn(async move {
                let mut client = crate::http::HttpClient::connect(&base).await?;
                let mut sent = Vec::new();
                for s in share {
                    tokio::time::sleep_until(start + s.at).await;
                    let t = now_us();
                    let body = serde_json::json!({"session_id": s.session}).to_string();
                    let (status, text) =
                        client.post_json("/v1/heartbeats", &s.token, &body).await?;
                    if status != 202 {
                        return Err::<_, BenchError>(
                            format!("heartbeat answered {status}: {text}").into(),
                        );
                    }
                    sent.push((s.facility, t));
                }
                Ok(sent)
            })
        })
        .collect();
    let mut sent: Vec<(String, i64)> = Vec::new();
    for t in futures::future::join_all(tasks).await {
        sent.extend(t??);
    }
    let sending_s = start.elapsed().as_secs_f64();

    // Online events.
    let wait_for = |status: &'static str, limit: Duration| {
        let seen = seen.clone();
        let facilities: Vec<String> = sent.iter().map(|(f, _)| f.clone()).collect();
        async move {
            let until = tokio::time::Instant::now() + limit;
            loop {
                let missing = {
                    let seen = seen.lock().expect("seen lock");
                    facilities
                        .iter()
                        .filter(|f| !seen.contains_key(&((*f).clone(), status.to_owned())))
                        .count()
                };
                if missing == 0 || tokio::time::Instant::now() >= until {
                    return missing;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let missing_online = wait_for("online", Duration::from_secs(10)).await;
    let mut online: Vec<f64> = {
        let seen = seen.lock().expect("seen lock");
        sent.iter()
            .filter_map(|(f, t)| {
                seen.get(&(f.clone(), "online".to_owned()))
                    .map(|s| (s.recv_us - t) as f64 / 1e3)
            })
            .collect()
    };
    online.sort_by(f64::total_cmp);
    progress.say(format!(
        "online: {} events, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
        online.len(),
        quantile(&online, 0.5),
        quantile(&online, 0.99),
        online.last().copied().unwrap_or(f64::NAN),
        if missing_online > 0 {
            format!(", {missing_online} MISSING")
        } else {
            String::new()
        }
    ));

    // Offline events: every session's deadline passes (heartbeats stopped).
    progress.say(format!(
        "waiting for the sessions' deadlines ({} s TTL) and the offline events",
        cfg.ttl_s
    ));
    let missing_offline = wait_for("offline", Duration::from_secs(cfg.ttl_s + 15)).await;
    let mut offline: Vec<f64> = {
        let seen = seen.lock().expect("seen lock");
        sent.iter()
            .filter_map(|(f, _)| {
                seen.get(&(f.clone(), "offline".to_owned()))
                    .map(|s| (s.recv_us - s.since_ms * 1000) as f64 / 1e3)
            })
            .collect()
    };
    offline.sort_by(f64::total_cmp);
    progress.say(format!(
        "offline after the deadline: {} events, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
        offline.len(),
        quantile(&offline, 0.5),
        quantile(&offline, 0.99),
        offline.last().copied().unwrap_or(f64::NAN),
        if missing_offline > 0 {
            format!(", {missing_offline} MISSING")
        } else {
            String::new()
        }
    ));
    for r in readers {
        r.abort();
    }
    if online.is_empty() || offline.is_empty() {
        return Err(format!(
            "no latency samples ({missing_online} online and {missing_offline} offline events missing)"
        )
        .into());
    }

    for (kind, v, secs) in [
        ("online", &online, sending_s),
        ("offline", &offline, sending_s),
    ] {
        report.timed(
            "latency",
            format!("{kind} events"),
            v.len(),
            secs,
            format!(
                "p50 {:.1} ms; p99 {:.1} ms; max {:.1} ms",
                quantile(v, 0.5),
                quantile(v, 0.99),
                v[v.len() - 1]
            ),
        );
        report
            .latency_samples
            .extend(v.iter().map(|ms| (kind, *ms)));
    }
    let ping99 = quantile(&sorted_pings, 0.99);
    let missing_note = |m: usize| {
        if m > 0 {
            format!(", {m} missing")
        } else {
            String::new()
        }
    };
    report.figure(
        Figure::new(
            "latency",
            format!(
                "heartbeat → online p99 (p50 {:.0}, max {:.0} ms, n={}{})",
                quantile(&online, 0.5),
                online[online.len() - 1],
                online.len(),
                missing_note(missing_online)
            ),
            if missing_online > 0 {
                f64::INFINITY
            } else {
                quantile(&online, 0.99)
            },
            "ms",
        )
        .against("ping round trip p99", ping99, "ms")
        .target(Target::AtMost(On::Value, 1000.0)),
    );
    report.figure(
        Figure::new(
            "latency",
            format!(
                "deadline → offline p99 (p50 {:.0}, max {:.0} ms, n={}{})",
                quantile(&offline, 0.5),
                offline[offline.len() - 1],
                offline.len(),
                missing_note(missing_offline)
            ),
            if missing_offline > 0 {
                f64::INFINITY
            } else {
                quantile(&offline, 0.99)
            },
            "ms",
        )
        .against("ping round trip p99", ping99, "ms")
        .target(Target::AtMost(On::Value, 2000.0)),
    );
    report.note(format!(
        "latency: {} facilities in {} regions, one watcher socket per region; SESSION_TTL_SECONDS={}, heartbeats at {}/s over HTTP; the sweeper wakes at the next deadline, at most once a second.",
        total, cfg.regions, cfg.ttl_s, cfg.rate_per_s
    ));
    Ok(())
}
