//! Queues with SQS semantics, in memory, and the event source mapping that feeds a batch
//! handler from them — what Lambda does for an SQS trigger.
//!
//! Semantics kept from SQS: at-least-once delivery; a received message is invisible for the
//! visibility timeout and comes back unless deleted; a message received `max_receive_count`
//! times moves to the dead-letter queue instead of being delivered again; consumers get
//! batches of up to `batch_size`, waiting up to `batching_window` to fill one. Batch item
//! failures stay undeleted, so they come back after the visibility timeout.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use presence::protocol::{PushMessage, QueueMessage};
use presence::queue::{HeartbeatQueue, PublishError, PushPublisher, QueueError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A queue's settings, named as in SQS and Lambda.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub name: String,
    pub visibility_timeout: Duration,
    /// Receives before a message goes to the dead-letter queue (`maxReceiveCount`).
    pub max_receive_count: u32,
    /// The event source mapping's `BatchSize`.
    pub batch_size: usize,
    /// The event source mapping's `MaximumBatchingWindowInSeconds`.
    pub batching_window: Duration,
}

impl QueueConfig {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
            batch_size: 100,
            batching_window: Duration::from_millis(20),
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    id: String,
    body: String,
    receive_count: u32,
    sent_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    ready: VecDeque<Stored>,
    /// id → (message, when it becomes visible again)
    in_flight: HashMap<String, (Stored, Instant)>,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub body: String,
    pub receive_count: u32,
    pub sent_ms: i64,
}

/// A queue in memory with SQS semantics.
#[derive(Debug)]
pub struct LocalQueue {
    config: QueueConfig,
    state: Mutex<State>,
    arrived: Notify,
    dead_letters: Option<Arc<LocalQueue>>,
}

impl LocalQueue {
    /// A queue whose messages go to `dead_letters` after `max_receive_count` receives (or are
    /// dropped with an error log when it has none).
    pub fn new(config: QueueConfig, dead_letters: Option<Arc<LocalQueue>>) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            dead_letters,
        })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Enqueues a body; returns its message id.
    pub fn send(&self, body: String) -> String {
        let id = {
            let mut s = self.state.lock().expect("queue lock");
            s.next_id += 1;
            let id = format!("{}-{:08}", self.config.name, s.next_id);
            s.ready.push_back(Stored {
                id: id.clone(),
                body,
                receive_count: 0,
                sent_ms: presence::now_ms(),
            });
            id
        };
        self.arrived.notify_waiters();
        id
    }

    /// Messages visible now (waiting ones plus expired in-flight ones).
    pub fn visible(&self) -> usize {
        let mut s = self.state.lock().expect("queue lock");
        self.requeue_expired(&mut s, Instant::now());
        s.ready.len()
    }

    /// Messages received and neither deleted nor visible again yet.
    pub fn in_flight(&self) -> usize {
        self.state.lock().expect("queue lock").in_flight.len()
    }

    /// Removes and returns every visible body (inspecting a dead-letter queue).
    pub fn drain(&self) -> Vec<String> {
        let mut s = self.state.lock().expect("queue lock");
        self.requeue_expired(&mut s, Instant::now());
        s.ready.drain(..).map(|m| m.body).collect()
    }

    fn requeue_expired(&self, s: &mut State, now: Instant) {
        let expired: Vec<String> = s
            .in_flight
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some((m, _)) = s.in_flight.remove(&id) {
                s.ready.push_back(m);
            }
        }
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first.
    pub async fn receive(&self, max: usize, wait: Duration) -> Vec<Received> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let (batch, next_visible) = self.take(max);
            if !batch.is_empty() {
                return batch;
            }
            let now = Instant::now();
            if now >= deadline {
                return batch;
            }
            let until = next_visible.map_or(deadline, |v| v.min(deadline));
            let _ = tokio::time::timeout(until.saturating_duration_since(now), notified).await;
        }
    }

    fn take(&self, max: usize) -> (Vec<Received>, Option<Instant>) {
        let mut dead = Vec::new();
        let mut batch = Vec::new();
        let next_visible;
        {
            let mut s = self.state.lock().expect("queue lock");
            let now = Instant::now();
            self.requeue_expired(&mut s, now);
            while batch.len() < max {
                let Some(mut m) = s.ready.pop_front() else {
                    break;
                };
                if m.receive_count >= self.config.max_receive_count {
                    dead.push(m);
                    continue;
                }
                m.receive_count += 1;
                batch.push(Received {
                    id: m.id.clone(),
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                    sent_ms: m.sent_ms,
                });
                s.in_flight
                    .insert(m.id.clone(), (m, now + self.config.visibility_timeout));
            }
            next_visible = s.in_flight.values().map(|(_, at)| *at).min();
        }
        for m in dead {
            match &self.dead_letters {
                Some(dlq) => {
                    tracing::warn!(queue = %self.config.name, message_id = %m.id, receives = m.receive_count, "moved to the dead-letter queue");
                    dlq.send(m.body);
                }
                None => {
                    tracing::error!(queue = %self.config.name, message_id = %m.id, "dropped after max receives (no dead-letter queue)")
                }
            }
        }
        (batch, next_visible)
    }

    /// Deletes a received message (it will not come back).
    pub fn delete(&self, id: &str) {
        self.state.lock().expect("queue lock").in_flight.remove(id);
    }

    /// Receives a batch as Lambda's event source mapping would and builds the SQS event.
    pub async fn receive_event(&self, wait: Duration) -> Option<SqsEvent> {
        let mut batch = self.receive(self.config.batch_size, wait).await;
        if batch.is_empty() {
            return None;
        }
        // Fill the batch for up to the batching window, as the event source mapping does.
        let window_end = Instant::now() + self.config.batching_window;
        while batch.len() < self.config.batch_size {
            let left = window_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let more = self
                .receive(self.config.batch_size - batch.len(), left)
                .await;
            if more.is_empty() {
                break;
            }
            batch.extend(more);
        }
        let mut event = SqsEvent::default();
        event.records = batch
            .into_iter()
            .map(|r| {
                let mut m = SqsMessage::default();
                m.message_id = Some(r.id.clone());
                m.receipt_handle = Some(r.id);
                m.body = Some(r.body);
                m.event_source = Some("aws:sqs".into());
                m.event_source_arn = Some(format!(
                    "arn:aws:sqs:local:000000000000:{}",
                    self.config.name
                ));
                m.attributes.insert(
                    "ApproximateReceiveCount".into(),
                    r.receive_count.to_string(),
                );
                m.attributes
                    .insert("SentTimestamp".into(), r.sent_ms.to_string());
                m
            })
            .collect();
        Some(event)
    }

    /// Settles a handled batch: deletes every record that is not a batch item failure.
    pub fn settle(&self, event: &SqsEvent, response: &SqsBatchResponse) {
        let failed: std::collections::HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for r in &event.records {
            if let Some(id) = r.message_id.as_deref() {
                if !failed.contains(id) {
                    self.delete(id);
                }
            }
        }
    }
}

/// Feeds `queue` to `handler` until the task is aborted: the event source mapping.
pub fn run_event_source<F, Fut>(queue: Arc<LocalQueue>, handler: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(SqsEvent) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = SqsBatchResponse> + Send,
{
    tokio::spawn(async move {
        loop {
            if let Some(event) = queue.receive_event(Duration::from_secs(1)).await {
                let response = handler(event.clone()).await;
                queue.settle(&event, &response);
            }
        }
    })
}

#[async_trait]
impl HeartbeatQueue for LocalQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        LocalQueue::send(self, message.to_json());
        Ok(())
    }
}

#[async_trait]
impl PushPublisher for LocalQueue {
    async fn publish(&self, messages: &[PushMessage]) -> Result<(), PublishError> {
        for m in messages {
            LocalQueue::send(self, m.to_json());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(visibility_ms: u64, max_receives: u32) -> (Arc<LocalQueue>, Arc<LocalQueue>) {
        let dlq = LocalQueue::new(QueueConfig::new("dlq"), None);
        let mut c = QueueConfig::new("q");
        c.visibility_timeout = Duration::from_millis(visibility_ms);
        c.max_receive_count = max_receives;
        c.batch_size = 3;
        (LocalQueue::new(c, Some(dlq.clone())), dlq)
    }

    #[tokio::test]
    async fn batches_settle_failures_come_back_then_dead_letter() {
        let (q, dlq) = queue(50, 2);
        for i in 0..4 {
            q.send(format!("m{i}"));
        }
        let event = q.receive_event(Duration::from_millis(10)).await.unwrap();
        assert_eq!(event.records.len(), 3, "batch size");
        let mut response = SqsBatchResponse::default();
        let mut failure = aws_lambda_events::event::sqs::BatchItemFailure::default();
        failure.item_identifier = event.records[0].message_id.clone().unwrap();
        response.batch_item_failures.push(failure);
        q.settle(&event, &response);
        assert_eq!((q.visible(), q.in_flight()), (1, 1));

        // the failed one comes back after the visibility timeout, with its receive count
        tokio::time::sleep(Duration::from_millis(60)).await;
        let again = q.receive(10, Duration::ZERO).await;
        let m0 = again.iter().find(|r| r.body == "m0").unwrap();
        assert_eq!(m0.receive_count, 2);
        // received twice (the maximum) and never deleted: the dead-letter queue gets it
        tokio::time::sleep(Duration::from_millis(60)).await;
        let rest = q.receive(10, Duration::ZERO).await;
        assert!(rest.iter().all(|r| r.body != "m0"));
        assert_eq!(dlq.drain(), ["m0"]);
    }

    #[tokio::test]
    async fn receive_waits_for_a_message() {
        let (q, _) = queue(1000, 5);
        let q2 = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            q2.send("late".into());
        });
        let got = q.receive(1, Duration::from_secs(2)).await;
        assert_eq!(got[0].body, "late");
    }
}
