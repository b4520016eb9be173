//! Storm: a region-wide outage through the whole local stack. `facilities` facilities of one
//! region are online (one leader socket each, `?session_id=`, hidden with `visibility false`
//! so it gets only its own facility's statuses); once the region is quiet, `watchers` visible
//! sockets of the region connect, then every leader says `heartbeat` `state: "ended"`, the
//! sends spread evenly over one second. Measured at each watcher:
//!
//! - the frames carrying statuses it received (`facility.status` or a coalesced
//!   `facility.statuses`), from the storm's start until the end of the run;
//! - the time from the storm's start until it holds the final state, offline, of every
//!   facility (a status applies only when its version is newer than the one held, as
//!   `FacilityBoard` does);
//! - and, at the local WebSocket API, the `@connections` calls per second at the peak (1 s
//!   sliding windows, sampled every 50 ms), against API Gateway's account throttle.
//!
//! Reference, same run: the same storm with `STATUS_COALESCE_MS=0` (every flip its own frame
//! to every socket), with fewer watchers in full mode (500 × 500 frames already take tens of
//! seconds locally).
//!
//! The clients run in this process: `watchers` + `facilities` client sockets and as many
//! server sockets must fit the open-file limit (20 000 fits 5 000 + 500 twice); when they do
//! not, the watchers are scaled down and a note says so.

use crate::report::{Figure, On, Report, Target};
use crate::{BenchError, Options, Outcome, Progress, now_us, quantile};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use presence::auth::{DevTokenSigner, Identity};
use presence::ids::{FacilityId, RegionId, UserId};
use presence_local::stack::{DEV_SECRET, LocalStack};
use serde::Deserialize;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const REGION: &str = "storm";

/// API Gateway's default account-level throttle (steady-state requests per second, shared by
/// every API of the account and region), which `PostToConnection` calls count against.
pub const ACCOUNT_THROTTLE_PER_S: f64 = 10_000.0;

/// Sizes of one storm run.
#[derive(Debug, Clone)]
pub struct Config {
    pub watchers: usize,
    pub facilities: usize,
    /// The leaders' `ended` frames are spread evenly over this long.
    pub storm_ms: u64,
    /// The reference (`STATUS_COALESCE_MS=0`) storm's watchers (same facilities).
    pub reference_watchers: usize,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                watchers: 200,
                facilities: 50,
                storm_ms: 1000,
                reference_watchers: 200,
            }
        } else {
            Self {
                watchers: 5000,
                facilities: 500,
                storm_ms: 1000,
                reference_watchers: 500,
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A server frame, only what a watcher needs (typed and borrowed: 5 000 clients parse in
/// this process, beside the stack). The same two shapes `presence::protocol::statuses_in`
/// reads: `facility.status` (itself) and `facility.statuses` (`statuses`).
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    facility_id: Option<&'a str>,
    #[serde(borrow)]
    status: Option<&'a str>,
    version: Option<u64>,
    #[serde(borrow)]
    statuses: Option<Vec<Entry<'a>>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    facility_id: &'a str,
    #[serde(borrow)]
    status: &'a str,
    version: u64,
}

/// The statuses of a frame as `(facility, offline, version)`; `None` when it carries none.
fn statuses_of(text: &str) -> Option<Vec<(&str, bool, u64)>> {
    let frame: Frame = serde_json::from_str(text).ok()?;
    match frame.kind {
        "facility.status" => Some(vec![(
            frame.facility_id?,
            frame.status? == "offline",
            frame.version?,
        )]),
        "facility.statuses" => Some(
            frame
                .statuses?
                .into_iter()
                .map(|e| (e.facility_id, e.status == "offline", e.version))
                .collect(),
        ),
        _ => None,
    }
}

fn identity(user: &str, facility: &str) -> Identity {
    Identity {
        user: UserId::parse(user).expect("valid id"),
        facility: FacilityId::parse(facility).expect("valid id"),
        region: RegionId::parse(REGION).expect("valid id"),
    }
}

fn facility_name(j: usize) -> String {
    format!("sf{j}")
}

/// What one watcher saw.
#[derive(Debug, Default)]
struct Watcher {
    /// Facilities whose newest held status is online / offline.
    online: AtomicUsize,
    offline: AtomicUsize,
    /// Frames carrying statuses.
    frames: AtomicU32,
    /// When it first held every facility offline (µs since the epoch), 0 until then.
    final_us: AtomicI64,
}

/// Reads every frame of `ws` into `watcher`'s board until the socket ends.
async fn watch(mut ws: Ws, facilities: usize, watcher: Arc<Watcher>) {
    // Per facility: (version, offline) held.
    let mut board: Vec<(u64, bool)> = vec![(0, false); facilities];
    while let Some(Ok(msg)) = ws.next().await {
        let recv_us = now_us();
        let Message::Text(text) = msg else { continue };
        let Some(statuses) = statuses_of(&text) else {
            continue;
        };
        watcher.frames.fetch_add(1, Ordering::Relaxed);
        for (facility, offline, version) in statuses {
            let Some(j) = facility
                .strip_prefix("sf")
                .and_then(|j| j.parse::<usize>().ok())
                .filter(|j| *j < facilities)
            else {
                continue;
            };
            let held = &mut board[j];
            if version <= held.0 {
                continue;
            }
            if held.0 > 0 {
                if held.1 {
                    watcher.offline.fetch_sub(1, Ordering::Relaxed);
                } else {
                    watcher.online.fetch_sub(1, Ordering::Relaxed);
                }
            }
            *held = (version, offline);
            if offline {
                watcher.offline.fetch_add(1, Ordering::Relaxed);
            } else {
                watcher.online.fetch_add(1, Ordering::Relaxed);
            }
        }
        if watcher.offline.load(Ordering::Relaxed) == facilities
            && watcher.final_us.load(Ordering::Relaxed) == 0
        {
            watcher.final_us.store(recv_us, Ordering::Relaxed);
        }
    }
}

/// Opens `url` with a few retries.
async fn connect(url: String) -> Result<Ws, BenchError> {
    let mut last = None;
    for attempt in 0..5 {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    Err(format!(
        "cannot connect: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
    .into())
}

/// What one storm measured.
#[derive(Debug)]
struct Storm {
    coalesce_ms: u64,
    watchers: usize,
    facilities: usize,
    /// Status frames per watcher.
    frames: Vec<f64>,
    /// Storm start → final state, ms, sorted, for the watchers that reached it.
    final_ms: Vec<f64>,
    missing: usize,
    peak_posts_per_s: f64,
    posts: u64,
    /// How long sending the `ended` frames took, ms.
    spread_ms: f64,
    /// Storm start → the last watcher's final state (or the end of the wait), s.
    seconds: f64,
}

impl Storm {
    fn frames_max(&self) -> f64 {
        self.frames.iter().copied().fold(0.0, f64::max)
    }

    fn frames_mean(&self) -> f64 {
        self.frames.iter().sum::<f64>() / self.frames.len().max(1) as f64
    }

    /// The slowest watcher's time; infinite when one never got there.
    fn final_max(&self) -> f64 {
        if self.missing > 0 {
            f64::INFINITY
        } else {
            self.final_ms.last().copied().unwrap_or(f64::INFINITY)
        }
    }

    fn describe(&self) -> String {
        format!(
            "frames per socket max {:.0}, mean {:.2}; final state p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms{}; {} posts, peak {:.0}/s; ended frames sent over {:.0} ms",
            self.frames_max(),
            self.frames_mean(),
            quantile(&self.final_ms, 0.5),
            quantile(&self.final_ms, 0.99),
            self.final_ms.last().copied().unwrap_or(f64::NAN),
            if self.missing > 0 {
                format!(", {} watchers MISSING it", self.missing)
            } else {
                String::new()
            },
            self.posts,
            self.peak_posts_per_s,
            self.spread_ms
        )
    }
}

pub async fn run(options: &Options, report: &mut Report, progress: &Progress) -> Outcome {
    let mut cfg = Config::new(options.quick);
    // Client and server side of every watcher, leader and probe, plus the stack's own.
    let limit = report.nofile_limit.max(crate::raise_nofile_limit());
    let fits = (limit.saturating_sub(1024) / 2) as usize;
    let fits_watchers = fits.saturating_sub(cfg.facilities + 1);
    if fits_watchers < cfg.watchers {
        progress.say(format!(
            "the open-file limit ({limit}) fits {fits_watchers} watchers, not {}: scaling down",
            cfg.watchers
        ));
        report.note(format!(
            "storm: scaled down to {fits_watchers} watchers by the open-file limit {limit} (raise `ulimit -Hn`)."
        ));
        cfg.watchers = fits_watchers;
        cfg.reference_watchers = cfg.reference_watchers.min(fits_watchers);
    }
    if cfg.watchers == 0 {
        return Err("the open-file limit leaves no room for watchers".into());
    }

    let coalesced = storm(&cfg, cfg.watchers, 750, progress).await?;
    progress.say(format!("coalesced (750 ms): {}", coalesced.describe()));
    let reference = storm(&cfg, cfg.reference_watchers, 0, progress).await?;
    progress.say(format!(
        "reference (STATUS_COALESCE_MS=0, {} watchers): {}",
        reference.watchers,
        reference.describe()
    ));

    for s in [&coalesced, &reference] {
        let variant = |what: &str| {
            format!(
                "{what}, STATUS_COALESCE_MS={}, {} sockets × {} facilities",
                s.coalesce_ms, s.watchers, s.facilities
            )
        };
        report.run(
            "storm",
            variant("status frames per socket (rate: mean)"),
            s.watchers as u64,
            s.seconds,
            s.frames_mean(),
            format!("max {:.0}", s.frames_max()),
        );
        report.run(
            "storm",
            variant("storm start → final state at every socket (rate: p99 ms)"),
            s.final_ms.len() as u64,
            s.seconds,
            quantile(&s.final_ms, 0.99),
            format!(
                "p50 {:.0} ms; max {:.0} ms; missing {}",
                quantile(&s.final_ms, 0.5),
                s.final_ms.last().copied().unwrap_or(f64::NAN),
                s.missing
            ),
        );
        report.run(
            "storm",
            variant("@connections calls (rate: peak per s, 1 s window)"),
            s.posts,
            s.seconds,
            s.peak_posts_per_s,
            format!("ended frames sent over {:.0} ms", s.spread_ms),
        );
    }

    let (n, w) = (coalesced.facilities, coalesced.watchers);
    report.figure(
        Figure::new(
            "storm",
            format!(
                "status frames per socket, {n} facilities offline within 1 s, {w} sockets (max; mean {:.2})",
                coalesced.frames_mean()
            ),
            coalesced.frames_max(),
            "frames",
        )
        .against(
            format!(
                "STATUS_COALESCE_MS=0, {} sockets, max",
                reference.watchers
            ),
            reference.frames_max(),
            "frames",
        )
        .target(Target::AtMost(On::Value, 5.0)),
    );
    report.figure(
        Figure::new(
            "storm",
            format!(
                "storm start → final state of all {n} at every socket, max (p50 {:.0}, p99 {:.0} ms{})",
                quantile(&coalesced.final_ms, 0.5),
                quantile(&coalesced.final_ms, 0.99),
                if coalesced.missing > 0 {
                    format!(", {} missing", coalesced.missing)
                } else {
                    String::new()
                }
            ),
            coalesced.final_max(),
            "ms",
        )
        .against(
            format!(
                "STATUS_COALESCE_MS=0, {} sockets, max",
                reference.watchers
            ),
            reference.final_max(),
            "ms",
        )
        .target(Target::AtMost(On::Value, 3000.0)),
    );
    report.figure(
        Figure::new(
            "storm",
            format!(
                "peak @connections calls/s during the storm ({} in all)",
                coalesced.posts
            ),
            coalesced.peak_posts_per_s,
            "posts/s",
        )
        .against(
            "API Gateway account throttle",
            ACCOUNT_THROTTLE_PER_S,
            "req/s",
        )
        .target(Target::AtMost(On::Value, ACCOUNT_THROTTLE_PER_S)),
    );
    report.note(format!(
        "storm: {n} facilities of one region (one leader socket each, hidden) say `ended` spread over {} ms, watched by {w} visible sockets of the region on the local stack; STATUS_COALESCE_MS=750 against 0 ({} sockets). Uncoalesced it takes {:.0}× the frames per socket; the peak call rate is what the local stack reached on {} cores (clients in the same process), bounded above by frames × sockets.",
        cfg.storm_ms,
        reference.watchers,
        reference.frames_mean() / coalesced.frames_mean().max(f64::MIN_POSITIVE),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    ));
    Ok(())
}

/// One storm on a fresh local stack.
async fn storm(
    cfg: &Config,
    watchers: usize,
    coalesce_ms: u64,
    progress: &Progress,
) -> Result<Storm, BenchError> {
    let stack = crate::stack::start(&[
        ("SESSION_TTL_SECONDS", "600".to_owned()),
        ("HEARTBEAT_INTERVAL_SECONDS", "120".to_owned()),
        ("STATUS_COALESCE_MS", coalesce_ms.to_string()),
    ])
    .await?;
    let result = measure(cfg, watchers, coalesce_ms, &stack, progress).await;
    stack.shutdown().await;
    result
}

async fn measure(
    cfg: &Config,
    watchers: usize,
    coalesce_ms: u64,
    stack: &LocalStack,
    progress: &Progress,
) -> Result<Storm, BenchError> {
    let n = cfg.facilities;
    let signer = DevTokenSigner::new(DEV_SECRET.as_bytes());
    let exp = presence::now_ms() / 1000 + 3600;
    let url = stack.ws.websocket_url();
    let mut tasks = Vec::new();

    // A probe watcher tells when every facility is online and the region is quiet.
    let probe = Arc::new(Watcher::default());
    let ws = connect(format!(
        "{url}?token={}",
        signer.sign(&identity("sprobe", "swprobe"), exp)
    ))
    .await?;
    tasks.push(tokio::spawn(watch(ws, n, probe.clone())));

    // The leaders: each facility's session rides its socket, which then hides.
    let t = std::time::Instant::now();
    let leaders: Vec<Result<Ws, BenchError>> = futures::stream::iter(0..n)
        .map(|j| {
            let url = format!(
                "{url}?token={}&session_id=ss{j}",
                signer.sign(&identity(&format!("sl{j}"), &facility_name(j)), exp)
            );
            async move {
                let mut ws = connect(url).await?;
                ws.send(Message::text(
                    serde_json::json!({"action": "visibility", "visible": false}).to_string(),
                ))
                .await?;
                Ok(ws)
            }
        })
        .buffered(32)
        .collect()
        .await;
    let mut sinks: Vec<SplitSink<Ws, Message>> = Vec::with_capacity(n);
    for ws in leaders {
        let (sink, mut stream) = ws?.split();
        sinks.push(sink);
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(_)) = stream.next().await {}
        }));
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(120);
    while probe.online.load(Ordering::Relaxed) < n {
        if tokio::time::Instant::now() >= until {
            return Err(format!(
                "only {} of {n} facilities online after 120 s",
                probe.online.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.say(format!(
        "STATUS_COALESCE_MS={coalesce_ms}: {n} facilities online in {:.1} s ({} status frames at the probe)",
        t.elapsed().as_secs_f64(),
        probe.frames.load(Ordering::Relaxed)
    ));
    // Quiet: no status frame for a whole window and then some.
    let mut last = probe.frames.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(coalesce_ms + 500)).await;
        let now = probe.frames.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }

    // The watchers, connected once the region is quiet: every status frame they get is the
    // storm's.
    let t = std::time::Instant::now();
    let opened: Vec<Result<Ws, BenchError>> = futures::stream::iter(0..watchers)
        .map(|i| {
            connect(format!(
                "{url}?token={}",
                signer.sign(
                    &identity(&format!("sw{i}"), &format!("swf{}", i % 100)),
                    exp
                )
            ))
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let board: Vec<Arc<Watcher>> = (0..watchers).map(|_| Arc::default()).collect();
    for (ws, w) in opened.into_iter().zip(&board) {
        tasks.push(tokio::spawn(watch(ws?, n, w.clone())));
    }
    progress.say(format!(
        "{watchers} watchers connected in {:.1} s; the storm: {n} `ended` frames over {} ms",
        t.elapsed().as_secs_f64(),
        cfg.storm_ms
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Calls to the management API, sampled.
    let samples: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let sampler = {
        let samples = samples.clone();
        let meter = stack.ws.meter();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                let calls = meter.usage().management_calls;
                samples
                    .lock()
                    .expect("samples lock")
                    .push((now_us(), calls));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let calls_before = stack.ws.meter().usage().management_calls;

    // The storm.
    let ended =
        Message::text(serde_json::json!({"action": "heartbeat", "state": "ended"}).to_string());
    let start_us = now_us();
    let start = tokio::time::Instant::now();
    for (j, sink) in sinks.iter_mut().enumerate() {
        tokio::time::sleep_until(
            start + Duration::from_micros(j as u64 * cfg.storm_ms * 1000 / n as u64),
        )
        .await;
        sink.send(ended.clone()).await?;
    }
    let spread_ms = start.elapsed().as_secs_f64() * 1e3;

    // Until every watcher holds the final state (or the wait ends), then a window more for
    // any late frame.
    let limit = Duration::from_secs(90 + (watchers * n / 5000) as u64);
    loop {
        let done = board
            .iter()
            .filter(|w| w.final_us.load(Ordering::Relaxed) > 0)
            .count();
        if done == watchers || start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(coalesce_ms.max(250) + 1000)).await;
    sampler.abort();
    let posts = stack.ws.meter().usage().management_calls - calls_before;

    let frames: Vec<f64> = board
        .iter()
        .map(|w| f64::from(w.frames.load(Ordering::Relaxed)))
        .collect();
    let mut final_ms: Vec<f64> = board
        .iter()
        .map(|w| w.final_us.load(Ordering::Relaxed))
        .filter(|t| *t > 0)
        .map(|t| (t - start_us) as f64 / 1e3)
        .collect();
    final_ms.sort_by(f64::total_cmp);
    let missing = watchers - final_ms.len();

    // The busiest second from the storm's start on.
    let samples = samples.lock().expect("samples lock").clone();
    let mut peak = 0.0f64;
    for (i, &(t0, c0)) in samples.iter().enumerate() {
        if t0 < start_us - 100_000 {
            continue;
        }
        if let Some(&(t1, c1)) = samples[i..].iter().find(|(t, _)| *t >= t0 + 1_000_000) {
            peak = peak.max((c1 - c0) as f64 / ((t1 - t0) as f64 / 1e6));
        }
    }

    for sink in &mut sinks {
        let _ = sink.close().await;
    }
    for t in tasks {
        t.abort();
    }
    Ok(Storm {
        coalesce_ms,
        watchers,
        facilities: n,
        frames,
        final_ms,
        missing,
        peak_posts_per_s: peak,
        posts,
        spread_ms,
        seconds,
    })
}
