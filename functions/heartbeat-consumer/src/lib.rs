//! heartbeat-consumer: SQS batches of heartbeats into Redis, with partial batch responses.
//!
//! The SQS edge of [`presence::consume`].

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use presence::aws::SdkConfig;
use presence::aws::WarmUp;
use presence::consume::{Consumer, Record};
use presence::sessions::RedisConnection;
use presence::telemetry::{Unit, emit_metrics};
use presence::wiring::{PipelineConfig, SessionPorts};

/// This function's configuration: the pipeline's (`PUSH_QUEUE_URL`, `FACILITIES_TABLE`,
/// Redis and session settings), nothing of its own.
pub type Config = PipelineConfig;

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml). Receiving and
/// deleting heartbeats is the event source mapping's, not the code's.
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
pub fn service(config: &Config, redis: RedisConnection, ports: &SessionPorts) -> Consumer {
    Consumer::new(ports.store(redis, &config.sessions), ports.push.clone())
}

/// The connections opened during the cold start.
pub fn warm_ups(config: &Config, sdk: &SdkConfig) -> Vec<WarmUp> {
    vec![presence::aws::queue(sdk, &config.push_queue_url)]
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
    presence::wiring::batch_response(failures)
}
