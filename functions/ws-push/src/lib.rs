//! ws-push: the push-queue consumer — status events to `region:{r}` and `facility:{f}`
//! (coalesced per region, and only to the region's visible sockets; see
//! `presence::hub::Hub::push_statuses`), and generic deliveries to a connection, a user or a
//! group.
//!
//! Posts run at bounded concurrency; a gone connection (410) is deleted on the spot;
//! throttling and 5xx are retried with backoff. A record that still could not reach every
//! connection is a batch item failure (SQS redelivers it, then dead-letters it), never a
//! silent drop.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use presence::hub::{Delivered, Hub, HubError};
use presence::ids::RegionId;
use presence::protocol::{FacilityStatus, PushMessage};
use presence::telemetry::{Unit, emit_metrics};
use std::collections::BTreeMap;

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

/// What a batch's pushes did, for the metrics and the batch response.
#[derive(Default)]
struct Tally {
    failures: Vec<String>,
    delivered: usize,
    gone: usize,
    failed_posts: usize,
}

impl Tally {
    /// Records the outcome of the push that carried the records `ids`.
    fn record(&mut self, ids: &[String], outcome: Result<Delivered, HubError>) {
        match outcome {
            Ok(report) => {
                self.delivered += report.delivered;
                self.gone += report.gone.len();
                self.failed_posts += report.failed.len();
                if !report.failed.is_empty() {
                    self.failures.extend_from_slice(ids);
                }
            }
            Err(e) => {
                tracing::error!(message_ids = ?ids, error = %e, "push not delivered");
                self.failures.extend_from_slice(ids);
            }
        }
    }
}

pub async fn handle(hub: &Hub, event: SqsEvent, now_ms: i64) -> SqsBatchResponse {
    let mut tally = Tally::default();
    // Status events of one region go together (one coalesced frame); the rest one by one.
    let mut regions: BTreeMap<RegionId, (Vec<String>, Vec<FacilityStatus>)> = BTreeMap::new();
    let mut others = Vec::new();
    for record in event.records {
        let Some(id) = record.message_id else {
            tracing::error!("push record without a message id dropped");
            continue;
        };
        match record
            .body
            .as_deref()
            .map(serde_json::from_str::<PushMessage>)
        {
            Some(Ok(PushMessage::Status(e))) => {
                let entry = regions.entry(e.status.region.clone()).or_default();
                entry.0.push(id);
                entry.1.push(e.status);
            }
            Some(Ok(m)) => others.push((id, m)),
            Some(Err(e)) => {
                tracing::warn!(message_id = %id, error = %e, "malformed push message");
                tally.failures.push(id);
            }
            None => tally.failures.push(id),
        }
    }
    let mut pushes = Vec::new();
    for (region, (ids, statuses)) in regions {
        pushes.push(async move {
            let outcome = hub.push_statuses(&region, &statuses, now_ms).await;
            (ids, outcome)
        });
    }
    for (ids, outcome) in futures::future::join_all(pushes).await {
        tally.record(&ids, outcome);
    }
    for (id, message) in others {
        let outcome = hub.push(&message, now_ms).await;
        tally.record(std::slice::from_ref(&id), outcome);
    }
    let Tally {
        failures,
        delivered,
        gone,
        failed_posts,
    } = tally;
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
