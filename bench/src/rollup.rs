//! Rollup scaling: `Rollup::run` (facility-rollup's service) with 10 k, 100 k and 1 M live
//! sessions, against a full-scan rollup like the original's once-a-minute rescan (SCAN every
//! session hash, pipelined HGETALL, recount every facility).
//!
//! Sessions are created through the real engine (`SessionStore::apply`, large batches per
//! partition, flips published and acknowledged as the consumer does), in a fixed directory of
//! 10 000 facilities (100 regions): the directory does not grow with the number of users,
//! the sessions per facility do.
//!
//! **1 % flips** means: between two rollups, 1 % of the facilities change status — half go
//! online (their first session starts), half go offline (their last live session ends; such
//! a facility holds one session, as any facility does just before it empties). The flips
//! arrive through `Consumer::consume` (fast path: published and acknowledged), then one
//! `Rollup::run` is timed, which persists 1 % flips, their history and the ended sessions'
//! segments to the (in-memory) facilities table. Each rep uses fresh facilities.
//!
//! A second series, **1 % of sessions end** (session churn: 100 ends at 10 k, 10 000 at 1 M),
//! shows how the rollup follows the number of changes rather than the number of sessions.

use crate::directory::Directory;
use crate::redis_server::RedisServer;
use crate::report::{Figure, On, Report, Target};
use crate::{BenchError, Options, Outcome, Progress, median};
use presence::config::{Env, SessionSettings};
use presence::consume::{Consumer, Record};
use presence::facilities::MemoryFacilityStore;
use presence::protocol::{HeartbeatState, QueueMessage};
use presence::queue::MemoryQueue;
use presence::rollup::{Rollup, RollupReport, RollupSettings};
use presence::sessions::{Partition, SessionStore};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Sizes of one rollup run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Live sessions at each measured point, ascending.
    pub sizes: Vec<usize>,
    pub facilities: u32,
    pub regions: u32,
    /// Timed rollups (1 % flips each) per size.
    pub reps: usize,
    /// Full scans per size below 1 M (one at 1 M and above).
    pub scan_reps: usize,
    /// Heartbeats per script call while populating.
    pub chunk: usize,
}

impl Config {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                sizes: vec![1_000, 5_000],
                facilities: 1_000,
                regions: 10,
                reps: 2,
                scan_reps: 1,
                chunk: 1_000,
            }
        } else {
            Self {
                sizes: vec![10_000, 100_000, 1_000_000],
                facilities: 10_000,
                regions: 100,
                reps: 5,
                scan_reps: 3,
                chunk: 2_000,
            }
        }
    }
}

const FLIP_SERIES: &str = "rollup, 1 % of facilities flip";
const CHURN_SERIES: &str = "rollup, 1 % of sessions end";
const SCAN_SERIES: &str = "full scan (original design)";

/// A heartbeat of `session` (its user `u-<session>`) at facility number `facility`.
fn heartbeat(
    dir: &Directory,
    session: &str,
    facility: usize,
    at_ms: i64,
    ended: bool,
) -> QueueMessage {
    let state = if ended {
        HeartbeatState::Ended
    } else {
        HeartbeatState::Active
    };
    dir.heartbeat(session, &format!("u-{session}"), facility, at_ms, state)
}

/// The sessions of the "bulk" facilities (those that never flip in the timed runs): session
/// `b<k>` at bulk facility `k % count`, started in order of `k` and ended oldest first.
struct Bulk<'a> {
    dir: &'a Directory,
    /// The first bulk facility, and how many there are.
    base: usize,
    count: usize,
    live: VecDeque<u64>,
    next: u64,
}

impl Bulk<'_> {
    fn heartbeat(&self, k: u64, at_ms: i64, ended: bool) -> QueueMessage {
        let facility = self.base + (k as usize % self.count);
        heartbeat(self.dir, &format!("b{k}"), facility, at_ms, ended)
    }

    /// The first heartbeats of `n` new sessions.
    fn start(&mut self, n: usize, at_ms: i64) -> Vec<QueueMessage> {
        let keys = self.next..self.next + n as u64;
        self.next = keys.end;
        self.live.extend(keys.clone());
        keys.map(|k| self.heartbeat(k, at_ms, false)).collect()
    }

    /// The ending heartbeats of the `n` oldest live sessions (fewer if fewer are live).
    fn end(&mut self, n: usize, at_ms: i64) -> Vec<QueueMessage> {
        let ended: Vec<u64> = (0..n).filter_map(|_| self.live.pop_front()).collect();
        ended
            .iter()
            .map(|&k| self.heartbeat(k, at_ms, true))
            .collect()
    }
}

/// Applies heartbeats through `SessionStore::apply` in chunks, partitions concurrently, and
/// publishes the flips as the consumer does. Returns the number of flips.
async fn apply_all(
    store: &SessionStore,
    publisher: &MemoryQueue,
    messages: Vec<QueueMessage>,
    now_ms: i64,
    chunk: usize,
) -> Result<usize, BenchError> {
    let partitioner = store.partitioner();
    let mut groups: BTreeMap<Partition, Vec<QueueMessage>> = BTreeMap::new();
    for m in messages {
        groups
            .entry(partitioner.partition_of(&m.facility_id))
            .or_default()
            .push(m);
    }
    let results = futures::future::join_all(groups.into_iter().map(|(p, msgs)| async move {
        let mut flips = 0usize;
        for part in msgs.chunks(chunk) {
            let applied = store.apply(p, now_ms, part).await?;
            flips += applied.flips.len();
            let with_p: Vec<_> = applied.flips.into_iter().map(|f| (p, f)).collect();
            presence::flips::publish_flips(store, publisher, &with_p).await;
        }
        Ok::<_, BenchError>(flips)
    }))
    .await;
    publisher.drain();
    let mut flips = 0;
    for r in results {
        flips += r?;
    }
    Ok(flips)
}

/// Runs the rollup until it finds nothing left to do (untimed).
async fn drain(rollup: &Rollup) -> Result<(), BenchError> {
    for _ in 0..100 {
        let r = rollup.run(presence::now_ms()).await;
        check(&r)?;
        if r.history_entries == 0
            && r.statuses_written + r.statuses_stale == 0
            && r.republished == 0
        {
            return Ok(());
        }
    }
    Err("the rollup did not drain in 100 runs".into())
}

fn check(r: &RollupReport) -> Result<(), BenchError> {
    match r.errors.first() {
        Some(e) => Err(format!("rollup error: {e}").into()),
        None => Ok(()),
    }
}

/// The original design's rollup: SCAN every session hash, HGETALL each (pipelined per SCAN
/// page), count live sessions per facility and derive every facility's status. Returns
/// `(seconds, sessions read, facilities online)`.
pub async fn full_scan(
    conn: &mut redis::aio::MultiplexedConnection,
    now_ms: i64,
) -> Result<(f64, usize, usize), BenchError> {
    let start = Instant::now();
    let mut cursor: u64 = 0;
    let mut read = 0usize;
    let mut live: HashMap<String, u32> = HashMap::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("presence:{p*}:s:*")
            .arg("COUNT")
            .arg(5000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            let mut pipe = redis::pipe();
            for k in &keys {
                pipe.hgetall(k);
            }
            let hashes: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
            read += hashes.len();
            for h in hashes {
                let deadline: i64 = h.get("deadline").and_then(|d| d.parse().ok()).unwrap_or(0);
                if !h.contains_key("offline") && deadline > now_ms {
                    if let Some(f) = h.get("facility") {
                        *live.entry(f.clone()).or_default() += 1;
                    }
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    // The status of every facility follows from the counts; the original then wrote them.
    let online = live.values().filter(|&&n| n > 0).count();
    Ok((start.elapsed().as_secs_f64(), read, online))
}

fn label(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{} M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{} k", n / 1_000)
    } else {
        n.to_string()
    }
}

pub async fn run(options: &Options, report: &mut Report, progress: &Progress) -> Outcome {
    let cfg = Config::new(options.quick);
    // A long TTL: nothing expires while a million sessions are being created (no sweeper
    // runs here); the rollup's work does not depend on it.
    let settings = SessionSettings::from_env(&Env::from_pairs([
        ("SESSION_TTL_SECONDS", "3600"),
        ("HEARTBEAT_INTERVAL_SECONDS", "30"),
        ("PARTITIONS", "16"),
        ("LOSS_HOLD_SECONDS", "0"),
    ]))?;
    let redis = RedisServer::start()?;
    let store = SessionStore::new(redis.engine_connection().await?, &settings);
    let publisher = Arc::new(MemoryQueue::new());
    let facilities = Arc::new(MemoryFacilityStore::new());
    let rollup = Rollup::new(
        store.clone(),
        facilities.clone(),
        publisher.clone(),
        RollupSettings::default(),
    );
    let consumer = Consumer::new(store.clone(), publisher.clone());
    let mut scan_conn = redis.connection().await?;
    let dir = Directory::new(cfg.facilities, cfg.regions);

    // Facility layout: for every (size, rep) a set of facilities about to go offline (one
    // live session each, created now) and a set about to go online (no session yet); the
    // remaining "bulk" facilities hold everything else.
    let flips = (cfg.facilities as usize / 100).max(2);
    let half = flips / 2;
    let slots = cfg.sizes.len() * cfg.reps;
    let off_base = 0usize;
    let on_base = slots * half;
    let bulk_base = 2 * slots * half;
    let bulk_count = cfg.facilities as usize - bulk_base;
    if bulk_count < cfg.facilities as usize / 2 {
        return Err("too few facilities for the layout".into());
    }
    let now = presence::now_ms();
    let last_sessions: Vec<QueueMessage> = (0..slots * half)
        .map(|i| heartbeat(&dir, &format!("last{i}"), off_base + i, now, false))
        .collect();
    let mut total = last_sessions.len();
    apply_all(&store, &publisher, last_sessions, now, cfg.chunk).await?;

    let mut bulk = Bulk {
        dir: &dir,
        base: bulk_base,
        count: bulk_count,
        live: VecDeque::new(),
        next: 0,
    };
    let mut flip_ms_by_size = Vec::new();
    let mut churn_ms_by_size = Vec::new();
    let mut scan_ms_by_size = Vec::new();
    for (si, &size) in cfg.sizes.iter().enumerate() {
        // Grow to `size` live sessions.
        let add = size.saturating_sub(total);
        progress.say(format!(
            "creating {} sessions through the engine ({} → {} live)",
            add, total, size
        ));
        let t = Instant::now();
        let mut done = 0usize;
        while done < add {
            let step = (add - done).min(100_000);
            let now = presence::now_ms();
            let messages = bulk.start(step, now);
            apply_all(&store, &publisher, messages, now, cfg.chunk).await?;
            done += step;
            if add > 100_000 {
                progress.say(format!(
                    "  {} / {} sessions ({:.0} /s)",
                    done,
                    add,
                    done as f64 / t.elapsed().as_secs_f64()
                ));
            }
        }
        total += add;
        drain(&rollup).await?;
        let memory = redis.used_memory().await?;
        progress.say(format!(
            "{} live sessions; redis-server uses {:.0} MiB",
            total,
            memory as f64 / 1048576.0
        ));
        report.timed(
            "rollup",
            "populate through SessionStore::apply",
            add,
            t.elapsed().as_secs_f64(),
            format!("{total} live sessions; redis used_memory {memory} bytes"),
        );

        // Full scan (reference).
        let reps = if size >= 1_000_000 { 1 } else { cfg.scan_reps };
        let mut scans = Vec::new();
        for _ in 0..reps {
            let (secs, read, online) = full_scan(&mut scan_conn, presence::now_ms()).await?;
            progress.say(format!(
                "full scan at {}: {:.1} ms ({} session hashes read, {} facilities online)",
                label(size),
                secs * 1e3,
                read,
                online
            ));
            report.timed(
                "rollup",
                format!("full scan at {}", label(size)),
                read,
                secs,
                format!("{online} facilities online"),
            );
            report
                .rollup_points
                .push((SCAN_SERIES.into(), total as f64, secs * 1e3));
            scans.push(secs * 1e3);
        }
        scan_ms_by_size.push(median(&scans));

        // 1 % of facilities flip, then one timed rollup; fresh facilities each rep.
        let mut times = Vec::new();
        for rep in 0..cfg.reps {
            let slot = si * cfg.reps + rep;
            let now = presence::now_ms();
            let mut records = Vec::new();
            for j in 0..half {
                let i = slot * half + j;
                let end = heartbeat(&dir, &format!("last{i}"), off_base + i, now, true);
                let start = heartbeat(&dir, &format!("first{i}"), on_base + i, now, false);
                for m in [end, start] {
                    records.push(Record {
                        id: format!("r{}", records.len()),
                        body: m.to_json(),
                    });
                }
            }
            let applied = consumer.consume(records, now).await;
            if !applied.failed.is_empty() || applied.flips != 2 * half {
                return Err(format!(
                    "expected {} flips, got {} ({} failed records)",
                    2 * half,
                    applied.flips,
                    applied.failed.len()
                )
                .into());
            }
            publisher.drain();
            let t = Instant::now();
            let r = rollup.run(presence::now_ms()).await;
            let secs = t.elapsed().as_secs_f64();
            check(&r)?;
            // 2 × half flips and half segments journaled; 2 × half facilities persisted.
            if r.history_entries != 3 * half || r.statuses_written != 2 * half {
                return Err(format!(
                    "rollup persisted {} history entries and {} statuses; expected {} and {}",
                    r.history_entries,
                    r.statuses_written,
                    3 * half,
                    2 * half
                )
                .into());
            }
            progress.say(format!(
                "rollup at {}, {} facilities flipped: {:.2} ms",
                label(size),
                2 * half,
                secs * 1e3
            ));
            report.timed(
                "rollup",
                format!("rollup at {}, 1 % of facilities flip", label(size)),
                2 * half,
                secs,
                format!(
                    "history {} statuses {} republished {}",
                    r.history_entries, r.statuses_written, r.republished
                ),
            );
            times.push(secs * 1e3);
        }
        let flip_ms = median(&times);
        report
            .rollup_points
            .push((FLIP_SERIES.into(), total as f64, flip_ms));
        flip_ms_by_size.push(flip_ms);

        // 1 % of sessions end (churn), one timed rollup, then the sessions are replaced.
        let ends = (size / 100).max(1);
        let now = presence::now_ms();
        let ended = bulk.end(ends, now);
        let n_ended = ended.len();
        let churn_flips = apply_all(&store, &publisher, ended, now, cfg.chunk).await?;
        let t = Instant::now();
        let r = rollup.run(presence::now_ms()).await;
        let secs = t.elapsed().as_secs_f64();
        check(&r)?;
        progress.say(format!(
            "rollup at {}, {} sessions ended ({} facilities flipped): {:.2} ms, {} history entries",
            label(size),
            n_ended,
            churn_flips,
            secs * 1e3,
            r.history_entries
        ));
        report.timed(
            "rollup",
            format!("rollup at {}, 1 % of sessions end", label(size)),
            n_ended,
            secs,
            format!(
                "history {} statuses {} flips {}",
                r.history_entries, r.statuses_written, churn_flips
            ),
        );
        report
            .rollup_points
            .push((CHURN_SERIES.into(), total as f64, secs * 1e3));
        churn_ms_by_size.push(secs * 1e3);
        drain(&rollup).await?;
        // Back to `size` live sessions.
        let now = presence::now_ms();
        let messages = bulk.start(n_ended, now);
        apply_all(&store, &publisher, messages, now, cfg.chunk).await?;
        drain(&rollup).await?;
    }

    let (small, big) = (cfg.sizes[0], *cfg.sizes.last().expect("sizes"));
    let n = flip_ms_by_size.len();
    report.figure(
        Figure::new(
            "rollup",
            format!("rollup at {}, 1 % flips", label(big)),
            flip_ms_by_size[n - 1],
            "ms",
        )
        .target(Target::AtMost(On::Value, 50.0)),
    );
    report.figure(
        Figure::new(
            "rollup",
            format!("rollup at {} vs at {}", label(big), label(small)),
            flip_ms_by_size[n - 1],
            "ms",
        )
        .against(
            format!("rollup at {}", label(small)),
            flip_ms_by_size[0],
            "ms",
        )
        .target(Target::AtMost(On::Ratio, 2.0)),
    );
    report.figure(
        Figure::new(
            "rollup",
            format!("speed-up over full scan at {}", label(big)),
            flip_ms_by_size[n - 1],
            "ms",
        )
        .against("full scan", scan_ms_by_size[n - 1], "ms")
        .ratio(scan_ms_by_size[n - 1] / flip_ms_by_size[n - 1])
        .target(Target::AtLeast(On::Ratio, 100.0)),
    );
    report.figure(
        Figure::new(
            "rollup",
            format!(
                "rollup at {}, 1 % of sessions end ({} ends)",
                label(big),
                big / 100
            ),
            churn_ms_by_size[n - 1],
            "ms",
        )
        .against("full scan", scan_ms_by_size[n - 1], "ms")
        .ratio(scan_ms_by_size[n - 1] / churn_ms_by_size[n - 1]),
    );
    let rows: Vec<String> = cfg
        .sizes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{}: flips {:.2} ms, churn {:.2} ms, full scan {:.1} ms",
                label(*s),
                flip_ms_by_size[i],
                churn_ms_by_size[i],
                scan_ms_by_size[i]
            )
        })
        .collect();
    report.note(format!(
        "rollup: {} facilities; {} flips per rollup (medians of {} reps). {}.",
        cfg.facilities,
        flips,
        cfg.reps,
        rows.join("; ")
    ));
    Ok(())
}
