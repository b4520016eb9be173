//! Benchmarks of Presence, each figure measured side by side with its reference in the same
//! run and reported as a ratio (see `BENCHMARKS.md` at the top of the repository).
//!
//! ```text
//! cargo run --release -p presence-bench -- [--quick] [--only throughput,rollup,latency,fanout,storm,vanish,bill] [--out DIR]
//! ```
//!
//! # Layout
//!
//! - [`throughput`]: heartbeats/s through `Consumer::consume` into a real `redis-server`,
//!   against `redis-benchmark -P 16 -t set` and against the original design's per-heartbeat
//!   check + MULTI/EXEC.
//! - [`rollup`]: `Rollup::run` with 10 k … 1 M live sessions and 1 % flips, against a
//!   full-scan rollup.
//! - [`latency`]: heartbeat → `facility.status` online, and deadline → offline, through the
//!   local stack with real WebSocket clients.
//! - [`fanout`]: one status event to 10 k WebSocket connections (1 % stale → 410 → deleted).
//! - [`storm`]: a region-wide outage (500 facilities offline within 1 s) seen by 5 000
//!   watching sockets: status frames per socket, time to the final state, peak posts/s;
//!   against the same storm with `STATUS_COALESCE_MS=0`.
//! - [`vanish`]: browsers that vanish without a close frame or `$disconnect` go offline at
//!   their deadline (last heartbeat + TTL) within 2 s.
//! - [`bill`]: the monthly bill from the local stack's billing counters, per browser
//!   activity, for this design, its 120 s profile, the straightforward design and Azure SignalR.
//! - [`report`]: figures, the summary table, `runs.csv`, and [`svg`] charts.
//! - [`directory`]: the fixed facilities and regions the throughput and rollup workloads use.
//! - [`redis_server`], [`http`]: a private `redis-server`, a tiny HTTP/1.1 client. Workloads
//!   draw from `presence_local::rng::Rng`, the project's one seeded generator.
//!
//! [`run`] runs the selected benchmarks; `--quick` (and the test `bench/tests/quick.rs`) runs
//! each on small numbers, so the code paths cannot rot.

pub mod bill;
pub mod directory;
pub mod fanout;
pub mod http;
pub mod latency;
pub mod redis_server;
pub mod report;
pub mod rollup;
pub mod stack;
pub mod storm;
pub mod svg;
pub mod throughput;
pub mod vanish;

use report::Report;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// One of the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bench {
    Throughput,
    Rollup,
    Latency,
    Fanout,
    Storm,
    Vanish,
    Bill,
}

impl Bench {
    pub const ALL: [Bench; 7] = [
        Bench::Throughput,
        Bench::Rollup,
        Bench::Latency,
        Bench::Fanout,
        Bench::Storm,
        Bench::Vanish,
        Bench::Bill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bench::Throughput => "throughput",
            Bench::Rollup => "rollup",
            Bench::Latency => "latency",
            Bench::Fanout => "fanout",
            Bench::Storm => "storm",
            Bench::Vanish => "vanish",
            Bench::Bill => "bill",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        // `cost` was the hand-written model `bill` replaced.
        let raw = if raw.trim() == "cost" {
            "bill"
        } else {
            raw.trim()
        };
        Self::ALL.into_iter().find(|b| b.name() == raw)
    }
}

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct Options {
    /// Small numbers: a few seconds in all (the tests use this).
    pub quick: bool,
    pub only: BTreeSet<Bench>,
    /// Where `runs.csv`, `summary.md`, `latency.svg` and `rollup.svg` go.
    pub out: PathBuf,
    /// The `presence-bench` binary, to run the fan-out's WebSocket clients in a process of
    /// their own (10 000 client sockets and 10 000 server sockets do not fit one process's
    /// descriptor limit). `None`: clients in this process.
    pub client_exe: Option<PathBuf>,
}

impl Options {
    /// Everything, full size, into `bench/results`.
    pub fn full() -> Self {
        Self {
            quick: false,
            only: Bench::ALL.into_iter().collect(),
            out: default_out(false),
            client_exe: None,
        }
    }

    /// Everything, quick, into `bench/results/quick`.
    pub fn quick() -> Self {
        Self {
            quick: true,
            out: default_out(true),
            ..Self::full()
        }
    }
}

/// `bench/results` (full) or `bench/results/quick`.
pub fn default_out(quick: bool) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    if quick { base.join("quick") } else { base }
}

/// An error that ends a benchmark (the others still run).
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

/// What a benchmark's `run` ends with: done, or the error that stopped it.
pub type Outcome = Result<(), BenchError>;

/// Progress on stderr, prefixed with the benchmark and the elapsed time.
#[derive(Debug, Clone)]
pub struct Progress {
    bench: &'static str,
    start: Instant,
}

impl Progress {
    pub fn new(bench: &'static str) -> Self {
        Self {
            bench,
            start: Instant::now(),
        }
    }

    pub fn say(&self, message: impl AsRef<str>) {
        eprintln!(
            "[{:>6.1}s {:<10}] {}",
            self.start.elapsed().as_secs_f64(),
            self.bench,
            message.as_ref()
        );
    }
}

/// Raises the open-file limit as far as the hard limit allows; returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Runs the selected benchmarks, writes the results under `options.out` and returns the
/// report (its summary table is [`Report::table`]). A benchmark that fails is reported as
/// an error row; the others still run.
pub async fn run(options: &Options) -> Report {
    // The functions print CloudWatch metric lines on stdout; the summary table goes there.
    presence::telemetry::print_metrics(false);
    let nofile = raise_nofile_limit();
    let mut report = Report::new(options.quick, nofile);
    let load_before = load_average();
    for bench in &options.only {
        let progress = Progress::new(bench.name());
        progress.say("starting");
        let result = match bench {
            Bench::Throughput => throughput::run(options, &mut report, &progress).await,
            Bench::Rollup => rollup::run(options, &mut report, &progress).await,
            Bench::Latency => latency::run(options, &mut report, &progress).await,
            Bench::Fanout => fanout::run(options, &mut report, &progress).await,
            Bench::Storm => storm::run(options, &mut report, &progress).await,
            Bench::Vanish => vanish::run(options, &mut report, &progress).await,
            Bench::Bill => bill::run(options, &mut report, &progress).await,
        };
        match result {
            Ok(()) => progress.say("done"),
            Err(e) => {
                progress.say(format!("FAILED: {e}"));
                report.error(bench.name(), e.to_string());
            }
        }
    }
    report.note(format!(
        "machine: {} cores; load average (1 min) {} at the start, {} at the end (other work on the machine slows every figure, references included).",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before,
        load_average()
    ));
    if let Err(e) = report.write(&options.out) {
        eprintln!("could not write results to {}: {e}", options.out.display());
    }
    report
}

/// The 1-minute load average (`/proc/loadavg`), or `?`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Wall-clock microseconds since the epoch (comparable across processes on one machine).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// The `q` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// CPU seconds (user + system) this process used so far, from `/proc/self/stat` (Linux);
/// 0 elsewhere.
pub fn process_cpu_seconds() -> f64 {
    proc_cpu_seconds("self")
}

/// CPU seconds of process `pid` (or `"self"`), from `/proc/<pid>/stat`.
pub fn proc_cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the state.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
