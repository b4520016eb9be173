//! heartbeat-consumer: SQS batches of heartbeats into Redis, with partial batch responses.
//!
//! The SQS edge of [`presence::consume`].

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use presence::config::{AwsSettings, ConfigError, Env, RedisSettings, SessionSettings};
use presence::consume::{Consumer, Record};
use presence::queue::{PushPublisher, SqsQueue};
use presence::sessions::{RedisConnection, SessionStore};
use presence::telemetry::{Unit, emit_metrics};
use std::sync::Arc;

/// This function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub sessions: SessionSettings,
    pub redis: RedisSettings,
    pub aws: AwsSettings,
    /// `PUSH_QUEUE_URL`
    pub push_queue_url: String,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: SessionSettings::from_env(env)?,
            redis: RedisSettings::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
            push_queue_url: env.require_url("PUSH_QUEUE_URL", &["https://", "http://"])?,
        })
    }
}

/// Connects to Redis and builds the SQS client (once per cold start).
pub async fn build(config: Config) -> Result<Consumer, redis::RedisError> {
    let sdk = presence::aws::sdk_config(&config.aws).await;
    let conn = RedisConnection::connect(&config.redis).await?;
    let publisher: Arc<dyn PushPublisher> = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        config.push_queue_url,
    ));
    Ok(Consumer::new(
        SessionStore::new(conn, &config.sessions),
        publisher,
    ))
}

/// Handles one batch received at `now_ms`; failed records come back as batch item failures.
pub async fn handle(consumer: &Consumer, event: SqsEvent, now_ms: i64) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut records = Vec::with_capacity(event.records.len());
    for r in event.records {
        match (r.message_id, r.body) {
            (Some(id), Some(body)) => records.push(Record { id, body }),
            (Some(id), None) => {
                tracing::warn!(message_id = %id, "record without a body");
                failures.push(id);
            }
            // Without an id SQS cannot be told which record failed; nothing to retry.
            (None, _) => tracing::error!("record without a message id dropped"),
        }
    }
    let report = consumer.consume(records, now_ms).await;
    failures.extend(report.failed.iter().cloned());
    tracing::info!(
        applied = report.applied,
        failed = failures.len(),
        flips = report.flips,
        published = report.published,
        "batch done"
    );
    emit_metrics(
        "heartbeat-consumer",
        now_ms,
        &[
            ("HeartbeatsApplied", Unit::Count, report.applied as f64),
            ("BatchItemFailures", Unit::Count, failures.len() as f64),
            (
                "FlipsUnpublished",
                Unit::Count,
                (report.flips - report.published) as f64,
            ),
        ],
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    response
}
