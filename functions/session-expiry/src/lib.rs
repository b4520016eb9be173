//! session-expiry: the scheduled Redis expiry handler (every minute).
//!
//! The schedule edge of [`presence::expiry`]. With `SWEEP_WINDOW_SECONDS` > 0 one invocation
//! keeps sweeping for that long (bounded by its own remaining time), so with a window close
//! to the schedule period offline is detected within about a second.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use presence::config::{AwsSettings, ConfigError, Env, RedisSettings, SessionSettings};
use presence::expiry::{SweepReport, Sweeper};
use presence::queue::{PushPublisher, SqsQueue};
use presence::sessions::{RedisConnection, SessionStore};
use presence::telemetry::{Unit, emit_metrics};
use std::sync::Arc;
use std::time::Duration;

/// Stop sweeping this long before the invocation's deadline, to publish and return.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// This function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub sessions: SessionSettings,
    pub redis: RedisSettings,
    pub aws: AwsSettings,
    /// `PUSH_QUEUE_URL`
    pub push_queue_url: String,
    /// `SWEEP_WINDOW_SECONDS` (default 0: one sweep per invocation; at most 840). Set it a
    /// little under the schedule period (e.g. 55 with a 1-minute schedule and a 60 s timeout)
    /// for second-level detection.
    pub sweep_window: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: SessionSettings::from_env(env)?,
            redis: RedisSettings::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
            push_queue_url: env.require_url("PUSH_QUEUE_URL", &["https://", "http://"])?,
            sweep_window: env.seconds_or("SWEEP_WINDOW_SECONDS", 0, 0..=840)?,
        })
    }
}

/// Connects to Redis and builds the SQS client (once per cold start).
pub async fn build(config: &Config) -> Result<Sweeper, redis::RedisError> {
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let conn = RedisConnection::connect(&config.redis).await?;
    let publisher: Arc<dyn PushPublisher> = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        config.push_queue_url.clone(),
    ));
    Ok(Sweeper::new(
        SessionStore::new(conn, &config.sessions),
        publisher,
    ))
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
