//! The queues: heartbeats from ingest to the consumer, and push messages to ws-push.
//!
//! Each is a small trait with an SQS adapter and an in-memory one (tests, local stack).

use crate::port::PortError;
use crate::protocol::{PushMessage, QueueMessage};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A queue failure (for logs, never for clients): the port's cause.
pub type QueueError = PortError;

/// Some push messages could not be published; the others were.
#[derive(Debug, thiserror::Error)]
#[error("{} of the push messages were not published: {cause}", failed.len())]
pub struct PublishError {
    /// Indexes into the slice given to `publish`.
    pub failed: Vec<usize>,
    /// Why (the first failure's cause).
    pub cause: PortError,
}

/// Where heartbeats go after ingest.
#[async_trait]
pub trait HeartbeatQueue: Send + Sync {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError>;
}

/// Where status events and other pushes go, for ws-push to fan out.
#[async_trait]
pub trait PushPublisher: Send + Sync {
    async fn publish(&self, messages: &[PushMessage]) -> Result<(), PublishError>;
}

/// An SQS queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

/// SQS takes at most 10 entries per `SendMessageBatch`.
const SQS_BATCH: usize = 10;
/// How many `SendMessageBatch` calls run at once.
const SQS_CONCURRENCY: usize = 8;

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Sends bodies in batches of 10, several batches at once; returns the indexes that failed.
    pub async fn send_bodies(&self, bodies: &[String]) -> Result<(), PublishError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        // Entries are built up front so the futures below own their data.
        let batches: Vec<(usize, Vec<SendMessageBatchRequestEntry>)> = bodies
            .chunks(SQS_BATCH)
            .enumerate()
            .map(|(chunk_no, chunk)| {
                let base = chunk_no * SQS_BATCH;
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id((base + i).to_string())
                            .message_body(body)
                            .build()
                            .expect("id and body are set")
                    })
                    .collect();
                (base, entries)
            })
            .collect();
        let client = &self.client;
        let url = self.url.as_str();
        let results: Vec<(Vec<usize>, Option<PortError>)> = futures::stream::iter(batches)
            .map(|(base, entries)| async move {
                let len = entries.len();
                match client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => {
                        let failed: Vec<usize> = out
                            .failed()
                            .iter()
                            .filter_map(|f| f.id().parse().ok())
                            .collect();
                        // Entry failures are SQS's own (throttling among them): worth a retry.
                        let cause = out.failed().first().map(|f| {
                            let detail = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                            if f.sender_fault() {
                                PortError::Refused(detail)
                            } else {
                                PortError::Unavailable(detail)
                            }
                        });
                        (failed, cause)
                    }
                    Err(e) => ((base..base + len).collect(), Some(PortError::from_sdk(&e))),
                }
            })
            .buffer_unordered(SQS_CONCURRENCY)
            .collect()
            .await;
        let mut failed = Vec::new();
        let mut cause = None;
        for (f, r) in results {
            failed.extend(f);
            cause = cause.or(r);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            failed.sort_unstable();
            Err(PublishError {
                failed,
                cause: cause.unwrap_or_else(|| PortError::Unavailable("no cause given".into())),
            })
        }
    }
}

#[async_trait]
impl HeartbeatQueue for SqsQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.to_json())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| PortError::from_sdk(&e))
    }
}

#[async_trait]
impl PushPublisher for SqsQueue {
    async fn publish(&self, messages: &[PushMessage]) -> Result<(), PublishError> {
        let bodies: Vec<String> = messages.iter().map(PushMessage::to_json).collect();
        self.send_bodies(&bodies).await
    }
}

/// A queue in memory: keeps message bodies in order. `set_failing(true)` makes every send
/// fail, to exercise outage paths.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    bodies: Mutex<Vec<String>>,
    failing: AtomicBool,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Takes every body sent so far.
    pub fn drain(&self) -> Vec<String> {
        std::mem::take(&mut *self.bodies.lock().expect("queue lock"))
    }

    fn push(&self, body: String) -> Result<(), QueueError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(PortError::Unavailable("memory queue set to fail".into()));
        }
        self.bodies.lock().expect("queue lock").push(body);
        Ok(())
    }
}

#[async_trait]
impl HeartbeatQueue for MemoryQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        self.push(message.to_json())
    }
}

#[async_trait]
impl PushPublisher for MemoryQueue {
    async fn publish(&self, messages: &[PushMessage]) -> Result<(), PublishError> {
        for (i, m) in messages.iter().enumerate() {
            if let Err(e) = self.push(m.to_json()) {
                return Err(PublishError {
                    failed: (i..messages.len()).collect(),
                    cause: e,
                });
            }
        }
        Ok(())
    }
}
