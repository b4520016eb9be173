//! heartbeat-consumer: apply a queue batch to Redis, one script call per partition.
//!
//! Malformed records fail alone (they go back to the queue and, after the receive count, to
//! its dead-letter queue); a partition whose script failed fails only its own records; every
//! other record of the batch is applied. Flips are then published and acknowledged.

use crate::flips::publish_flips;
use crate::protocol::QueueMessage;
use crate::queue::PushPublisher;
use crate::sessions::{Outcome, Partition, SessionStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One queue record: its id (for batch item failures) and body.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub body: String,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Ids of records to report as batch item failures.
    pub failed: Vec<String>,
    /// Heartbeats applied by a script (whatever their outcome).
    pub applied: usize,
    pub outcomes: HashMap<Outcome, usize>,
    pub flips: usize,
    pub published: usize,
}

/// The consumer service.
#[derive(Clone)]
pub struct Consumer {
    store: SessionStore,
    publisher: Arc<dyn PushPublisher>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("store", &self.store)
            .finish()
    }
}

impl Consumer {
    pub fn new(store: SessionStore, publisher: Arc<dyn PushPublisher>) -> Self {
        Self { store, publisher }
    }

    /// Applies a batch received at `now_ms`.
    pub async fn consume(&self, records: Vec<Record>, now_ms: i64) -> BatchReport {
        let mut report = BatchReport::default();
        let partitioner = self.store.partitioner();
        let mut groups: BTreeMap<Partition, (Vec<String>, Vec<QueueMessage>)> = BTreeMap::new();
        for record in records {
            match QueueMessage::parse(&record.body) {
                Ok(msg) => {
                    let group = groups
                        .entry(partitioner.partition_of(&msg.facility_id))
                        .or_default();
                    group.0.push(record.id);
                    group.1.push(msg);
                }
                Err(e) => {
                    tracing::warn!(message_id = %record.id, error = %e, "malformed heartbeat record");
                    report.failed.push(record.id);
                }
            }
        }

        let store = &self.store;
        let results =
            futures::future::join_all(groups.into_iter().map(|(p, (ids, msgs))| async move {
                let result = store.apply(p, now_ms, &msgs).await;
                (p, ids, result)
            }))
            .await;

        let mut flips = Vec::new();
        for (p, ids, result) in results {
            match result {
                Ok(applied) => {
                    report.applied += ids.len();
                    for o in applied.outcomes {
                        *report.outcomes.entry(o).or_default() += 1;
                    }
                    flips.extend(applied.flips.into_iter().map(|f| (p, f)));
                }
                Err(e) => {
                    tracing::error!(partition = p.0, records = ids.len(), error = %e, "partition not applied");
                    report.failed.extend(ids);
                }
            }
        }
        report.flips = flips.len();
        report.published = publish_flips(&self.store, self.publisher.as_ref(), &flips).await;
        report
    }
}
