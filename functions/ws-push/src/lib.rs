//! ws-push: the push-queue consumer — status events to `region:{r}` and `facility:{f}`, and
//! generic deliveries to a connection, a user or a group.
//!
//! Posts run at bounded concurrency; a gone connection (410) is deleted on the spot;
//! throttling and 5xx are retried with backoff. A record that still could not reach every
//! connection is a batch item failure (SQS redelivers it, then dead-letters it), never a
//! silent drop.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use presence::hub::Hub;
use presence::protocol::PushMessage;
use presence::telemetry::{Unit, emit_metrics};

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml). Receiving and
/// deleting pushes is the event source mapping's, not the code's.
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        Call::dynamodb("DescribeTable", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("GetItem", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("DeleteItem", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("Query", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-user")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-facility")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-region")),
        Call::management_api("PostToConnection", Connections("WEBSOCKET_ENDPOINT")),
        Call::management_api("GetConnection", Connections("WEBSOCKET_ENDPOINT")),
        // Flips of the sessions of gone connections.
        Call::sqs("SendMessageBatch", Queue("PUSH_QUEUE_URL")),
        // Built by the shared warm-up list (presence::hub::setup) and dropped unsent.
        Call::sqs("GetQueueAttributes", Queue("PUSH_QUEUE_URL")).never_sent(),
        // The partition ledger (facilities table), when a partition starts an epoch.
        Call::dynamodb("UpdateItem", Table("FACILITIES_TABLE")),
        // Every connection (a `resync` after a data loss): the sparse index holds only them.
        Call::dynamodb("Scan", Index("CONNECTIONS_TABLE", "by-region")),
    ]
};

pub async fn handle(hub: &Hub, event: SqsEvent, now_ms: i64) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let (mut delivered, mut gone, mut failed_posts) = (0usize, 0usize, 0usize);
    for record in event.records {
        let Some(id) = record.message_id else {
            tracing::error!("push record without a message id dropped");
            continue;
        };
        let message = match record
            .body
            .as_deref()
            .map(serde_json::from_str::<PushMessage>)
        {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(message_id = %id, error = %e, "malformed push message");
                failures.push(id);
                continue;
            }
            None => {
                failures.push(id);
                continue;
            }
        };
        match hub.push(&message, now_ms).await {
            Ok(report) => {
                delivered += report.delivered;
                gone += report.gone.len();
                failed_posts += report.failed.len();
                if !report.failed.is_empty() {
                    failures.push(id);
                }
            }
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "push not delivered");
                failures.push(id);
            }
        }
    }
    emit_metrics(
        "ws-push",
        now_ms,
        &[
            ("PushDelivered", Unit::Count, delivered as f64),
            ("PushGone", Unit::Count, gone as f64),
            ("PushFailures", Unit::Count, failed_posts as f64),
        ],
    );
    presence::wiring::batch_response(failures)
}
