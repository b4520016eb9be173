//! The queue ports, metered as SQS calls.

use super::{Meter, SQS_MAX_BATCH, sqs_units};
use crate::queue::LocalQueue;
use async_trait::async_trait;
use presence::protocol::{PushMessage, QueueMessage};
use presence::queue::{HeartbeatQueue, PublishError, PushPublisher, QueueError};
use std::sync::Arc;

/// A [`LocalQueue`] as the functions' queue ports, metered as SQS calls.
#[derive(Debug)]
pub struct MeteredQueue {
    queue: Arc<LocalQueue>,
    meter: Arc<Meter>,
}

impl MeteredQueue {
    pub fn new(queue: Arc<LocalQueue>, meter: Arc<Meter>) -> Arc<Self> {
        Arc::new(Self { queue, meter })
    }
}

#[async_trait]
impl HeartbeatQueue for MeteredQueue {
    /// One `SendMessage`.
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let body = message.to_json();
        self.meter.sqs_requests(sqs_units(&[body.len()]));
        self.queue.send(body);
        Ok(())
    }
}

#[async_trait]
impl PushPublisher for MeteredQueue {
    /// A `SendMessageBatch` per 10 messages, as the SQS adapter sends them.
    async fn publish(&self, messages: &[PushMessage]) -> Result<(), PublishError> {
        let bodies: Vec<String> = messages.iter().map(PushMessage::to_json).collect();
        for batch in bodies.chunks(SQS_MAX_BATCH) {
            let sizes: Vec<usize> = batch.iter().map(String::len).collect();
            self.meter.sqs_requests(sqs_units(&sizes));
        }
        for body in bodies {
            self.queue.send(body);
        }
        Ok(())
    }
}
