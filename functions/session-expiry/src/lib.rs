//! session-expiry: the scheduled Redis expiry handler (every minute).
//!
//! The schedule edge of [`presence::expiry`]. With `SWEEP_WINDOW_SECONDS` > 0 one invocation
//! keeps sweeping for that long (bounded by its own remaining time), so with a window close
//! to the schedule period offline is detected within about a second.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use presence::aws::SdkConfig;
use presence::aws::WarmUp;
use presence::config::{ConfigError, Env};
use presence::expiry::{SweepReport, Sweeper};
use presence::sessions::RedisConnection;
use presence::telemetry::{Unit, emit_metrics};
use presence::wiring::{PipelineConfig, SessionPorts};
use std::time::Duration;

/// Stop sweeping this long before the invocation's deadline, to publish and return.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// This function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub pipeline: PipelineConfig,
    /// `SWEEP_WINDOW_SECONDS` (default 0: one sweep per invocation; at most 840). Set it a
    /// little under the schedule period (e.g. 55 with a 1-minute schedule and a 60 s timeout)
    /// for second-level detection.
    pub sweep_window: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            pipeline: PipelineConfig::from_env(env)?,
            sweep_window: env.seconds_or("SWEEP_WINDOW_SECONDS", 0, 0..=840)?,
        })
    }
}

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        Call::sqs("SendMessageBatch", Queue("PUSH_QUEUE_URL")),
        Call::sqs("GetQueueAttributes", Queue("PUSH_QUEUE_URL")),
        // The partition ledger (facilities table), when a partition starts an epoch.
        Call::dynamodb("UpdateItem", Table("FACILITIES_TABLE")),
    ]
};

/// The service, from its configuration, a Redis connection and its ports: called by
/// `main.rs` (ports through the SDK) and by the local stack (its stand-ins).
pub fn service(config: &Config, redis: RedisConnection, ports: &SessionPorts) -> Sweeper {
    Sweeper::new(
        ports.store(redis, &config.pipeline.sessions),
        ports.push.clone(),
    )
}

/// The connections opened during the cold start.
pub fn warm_ups(config: &Config, sdk: &SdkConfig) -> Vec<WarmUp> {
    vec![presence::aws::queue(sdk, &config.pipeline.push_queue_url)]
}

/// The sweep window for an invocation that must finish by `deadline_ms`.
pub fn window(configured: Duration, now_ms: i64, deadline_ms: i64) -> Duration {
    let remaining = Duration::from_millis((deadline_ms - now_ms).max(0) as u64);
    configured.min(remaining.saturating_sub(SAFETY_MARGIN))
}

/// Handles one scheduled event; `clock` reads the current time in ms.
pub async fn handle(
    sweeper: &Sweeper,
    _event: EventBridgeEvent,
    window: Duration,
    clock: &(dyn Fn() -> i64 + Send + Sync),
) -> SweepReport {
    let report = sweeper.run(clock, window).await;
    tracing::info!(
        sweeps = report.sweeps,
        claimed = report.claimed,
        flips = report.flips,
        published = report.published,
        lateness_max_ms = report.max_lateness_ms(),
        lateness_mean_ms = report.mean_lateness_ms(),
        errors = report.errors,
        "sweep done"
    );
    emit_metrics(
        "session-expiry",
        clock(),
        &[
            ("SessionsExpired", Unit::Count, report.claimed as f64),
            (
                "ExpiryLatenessMaxMs",
                Unit::Milliseconds,
                report.max_lateness_ms() as f64,
            ),
            (
                "ExpiryLatenessMeanMs",
                Unit::Milliseconds,
                report.mean_lateness_ms(),
            ),
            ("SweepErrors", Unit::Count, report.errors as f64),
            (
                "FlipsUnpublished",
                Unit::Count,
                (report.flips - report.published) as f64,
            ),
        ],
    );
    report
}

/// The invocation's summary.
pub fn summary(report: &SweepReport) -> serde_json::Value {
    serde_json::json!({
        "sweeps": report.sweeps, "claimed": report.claimed, "flips": report.flips,
        "published": report.published, "lateness_max_ms": report.max_lateness_ms(), "errors": report.errors,
    })
}
