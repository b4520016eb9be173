//! facility-rollup: the scheduled session monitor (every minute).
//!
//! The schedule edge of [`presence::rollup`].

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use presence::config::{AwsSettings, ConfigError, Env, RedisSettings, SessionSettings};
use presence::facilities::{DynamoFacilityStore, FacilityStore};
use presence::queue::{PushPublisher, SqsQueue};
use presence::rollup::{Rollup, RollupReport, RollupSettings};
use presence::sessions::{RedisConnection, SessionStore};
use presence::telemetry::{Unit, emit_metrics};
use std::sync::Arc;
use std::time::Duration;

/// This function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub sessions: SessionSettings,
    pub redis: RedisSettings,
    pub aws: AwsSettings,
    /// `PUSH_QUEUE_URL`
    pub push_queue_url: String,
    /// `FACILITIES_TABLE`
    pub facilities_table: String,
    /// `HISTORY_RETENTION_DAYS` (default 90, 1..=3650): history items expire after this.
    pub history_retention: Duration,
    /// `REPUBLISH_AFTER_SECONDS` (default 5): how long a flip may stay unpublished before
    /// the rollup pushes it again.
    pub republish_after: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let days: u64 = env.parse_or("HISTORY_RETENTION_DAYS", 90)?;
        if !(1..=3650).contains(&days) {
            return Err(ConfigError::Malformed {
                name: "HISTORY_RETENTION_DAYS",
                reason: format!("{days} is outside 1..=3650"),
            });
        }
        Ok(Self {
            sessions: SessionSettings::from_env(env)?,
            redis: RedisSettings::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
            push_queue_url: env.require_url("PUSH_QUEUE_URL", &["https://", "http://"])?,
            facilities_table: env.require("FACILITIES_TABLE")?,
            history_retention: Duration::from_secs(days * 86_400),
            republish_after: env.seconds_or("REPUBLISH_AFTER_SECONDS", 5, 1..=3600)?,
        })
    }
}

/// Connects to Redis and builds the AWS clients (once per cold start).
pub async fn build(config: &Config) -> Result<Rollup, redis::RedisError> {
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let conn = RedisConnection::connect(&config.redis).await?;
    let publisher: Arc<dyn PushPublisher> = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        config.push_queue_url.clone(),
    ));
    let facilities: Arc<dyn FacilityStore> = Arc::new(DynamoFacilityStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        config.facilities_table.clone(),
        config.history_retention,
    ));
    let settings = RollupSettings {
        republish_after: config.republish_after,
        ..RollupSettings::default()
    };
    Ok(Rollup::new(
        SessionStore::new(conn, &config.sessions),
        facilities,
        publisher,
        settings,
    ))
}

/// Why an invocation failed (so the schedule's retry and the error alarm see it).
#[derive(Debug, thiserror::Error)]
#[error("rollup incomplete: {0} partition error(s), first: {1}")]
pub struct RollupFailed(pub usize, pub String);

/// Handles one scheduled event at `now_ms`.
pub async fn handle(
    rollup: &Rollup,
    _event: EventBridgeEvent,
    now_ms: i64,
) -> Result<serde_json::Value, RollupFailed> {
    let report: RollupReport = rollup.run(now_ms).await;
    tracing::info!(
        history = report.history_entries,
        written = report.statuses_written,
        stale = report.statuses_stale,
        republished = report.republished,
        dropped = report.sessions_dropped,
        errors = report.errors.len(),
        "rollup done"
    );
    emit_metrics(
        "facility-rollup",
        now_ms,
        &[
            ("HistoryEntries", Unit::Count, report.history_entries as f64),
            (
                "StatusesWritten",
                Unit::Count,
                report.statuses_written as f64,
            ),
            ("FlipsRepublished", Unit::Count, report.republished as f64),
            ("RollupErrors", Unit::Count, report.errors.len() as f64),
        ],
    );
    if let Some(first) = report.errors.first() {
        for e in &report.errors {
            tracing::error!(error = %e, "rollup partition failed");
        }
        return Err(RollupFailed(report.errors.len(), first.to_string()));
    }
    Ok(serde_json::json!({
        "history_entries": report.history_entries, "statuses_written": report.statuses_written,
        "statuses_stale": report.statuses_stale, "republished": report.republished,
        "sessions_dropped": report.sessions_dropped,
    }))
}
