//! The messages table's store, metered as DynamoDB on-demand units.

use super::Meter;
use super::size;
use async_trait::async_trait;
use presence::ids::UserId;
use presence::messages::{HistoryPage, MessageError, MessageStore, StoredMessage};
use serde_json::Value;
use std::sync::Arc;

/// The message store (the messages table), metered.
pub struct MeteredMessages {
    inner: Arc<dyn MessageStore>,
    meter: Arc<Meter>,
}

impl MeteredMessages {
    pub fn new(inner: Arc<dyn MessageStore>, meter: Arc<Meter>) -> Arc<Self> {
        Arc::new(Self { inner, meter })
    }
}

impl std::fmt::Debug for MeteredMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredMessages").finish_non_exhaustive()
    }
}

/// A stored message item: `pk`, `sk`, `from`, `data`, `ts`, `expires_at`.
fn message_item(group: &str, m: &StoredMessage) -> usize {
    size::item(&[
        ("pk", group.len() + 6),
        ("sk", size::num(m.seq)),
        ("from", m.from.as_ref().map_or(0, |u| u.as_str().len())),
        ("data", m.data.to_string().len()),
        ("ts", size::num(m.ts)),
        ("expires_at", size::num(m.ts / 1000)),
    ])
}

/// The group's head item: `pk`, `sk` 0, `seq`.
fn head_item(group: &str) -> usize {
    size::item(&[("pk", group.len() + 6), ("sk", 1), ("seq", 8)])
}

#[async_trait]
impl MessageStore for MeteredMessages {
    /// A consistent `GetItem` of the head, then one `TransactWriteItems` (billed double):
    /// the head and the message. (Once a group holds `MESSAGE_RETENTION_COUNT` messages the
    /// transaction deletes the oldest too: not counted here.)
    async fn append(
        &self,
        group: &str,
        from: Option<&UserId>,
        data: &Value,
        now_ms: i64,
    ) -> Result<StoredMessage, MessageError> {
        let out = self.inner.append(group, from, data, now_ms).await?;
        self.meter.get_item(Some(head_item(group)), true);
        for _ in 0..2 {
            self.meter.write(head_item(group));
            self.meter.write(message_item(group, &out));
        }
        Ok(out)
    }

    /// One `Query` (and a `GetItem` of the head when the page alone cannot tell whether it
    /// is complete; counted always, an upper bound).
    async fn history(
        &self,
        group: &str,
        after: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> Result<HistoryPage, MessageError> {
        let out = self.inner.history(group, after, limit, now_ms).await?;
        self.meter
            .query(out.messages.iter().map(|m| message_item(group, m)));
        if out.messages.is_empty() || !out.complete {
            self.meter.get_item(Some(head_item(group)), false);
        }
        Ok(out)
    }
}
