//! facility-rollup: the scheduled session monitor (every minute).
//!
//! The schedule edge of [`presence::rollup`].

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use presence::aws::{SdkConfig, WarmUp};
use presence::config::{ConfigError, Env};
use presence::facilities::{DynamoFacilityStore, FacilityStore};
use presence::ledger::{DynamoPartitionLedger, PartitionLedger};
use presence::queue::{PushPublisher, SqsQueue};
use presence::rollup::{Rollup, RollupReport, RollupSettings};
use presence::sessions::{RedisConnection, SessionStore};
use presence::telemetry::{Unit, emit_metrics};
use presence::wiring::PipelineConfig;
use std::sync::Arc;
use std::time::Duration;

/// This function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub pipeline: PipelineConfig,
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
            pipeline: PipelineConfig::from_env(env)?,
            history_retention: Duration::from_secs(days * 86_400),
            republish_after: env.seconds_or("REPUBLISH_AFTER_SECONDS", 5, 1..=3600)?,
        })
    }
}

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        // Flips and re-published flips; GetQueueAttributes opens the connection at cold start.
        Call::sqs("SendMessageBatch", Queue("PUSH_QUEUE_URL")),
        Call::sqs("GetQueueAttributes", Queue("PUSH_QUEUE_URL")),
        Call::dynamodb("DescribeTable", Table("FACILITIES_TABLE")),
        Call::dynamodb("PutItem", Table("FACILITIES_TABLE")),
        Call::dynamodb("BatchWriteItem", Table("FACILITIES_TABLE")),
        // The stored status, after a conditional put was refused.
        Call::dynamodb("GetItem", Table("FACILITIES_TABLE")),
        // Facilities stored as online in a partition, to reconcile after a Redis data loss.
        Call::dynamodb("Query", Index("FACILITIES_TABLE", "by-partition")),
        // Tells the partition ledger of the epochs Redis holds (once per partition and instance).
        Call::dynamodb("UpdateItem", Table("FACILITIES_TABLE")),
    ]
};

/// What the rollup talks to besides Redis.
#[derive(Clone)]
pub struct Ports {
    /// Where re-published flips and `resync` go (the push queue).
    pub push: Arc<dyn PushPublisher>,
    /// The facilities table.
    pub facilities: Arc<dyn FacilityStore>,
    /// The partition ledger (in the facilities table), told of the epochs Redis holds.
    pub ledger: Arc<dyn PartitionLedger>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ports")
    }
}

/// The service, from its configuration, a Redis connection and its ports: called by
/// `main.rs` (ports through the SDK) and by the local stack (its stand-ins).
pub fn service(config: &Config, redis: RedisConnection, ports: &Ports) -> Rollup {
    let settings = RollupSettings {
        republish_after: config.republish_after,
        ..RollupSettings::default()
    };
    Rollup::new(
        SessionStore::new(redis, &config.pipeline.sessions),
        ports.facilities.clone(),
        ports.push.clone(),
        settings,
    )
    .with_ledger(ports.ledger.clone())
}

/// The ports in AWS: the push queue and the facilities table (history kept for
/// `HISTORY_RETENTION_DAYS`).
pub fn aws_ports(config: &Config, sdk: &SdkConfig) -> Ports {
    Ports {
        push: Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            config.pipeline.push_queue_url.clone(),
        )),
        facilities: Arc::new(DynamoFacilityStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            config.pipeline.facilities_table.clone(),
            config.history_retention,
        )),
        ledger: Arc::new(DynamoPartitionLedger::new(
            aws_sdk_dynamodb::Client::new(sdk),
            config.pipeline.facilities_table.clone(),
        )),
    }
}

/// The connections opened during the cold start.
pub fn warm_ups(config: &Config, sdk: &SdkConfig) -> Vec<WarmUp> {
    vec![
        presence::aws::queue(sdk, &config.pipeline.push_queue_url),
        presence::aws::table(sdk, &config.pipeline.facilities_table),
    ]
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
        resyncs = report.resyncs,
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
            ("Resyncs", Unit::Count, report.resyncs as f64),
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
        "sessions_dropped": report.sessions_dropped, "resyncs": report.resyncs,
    }))
}
