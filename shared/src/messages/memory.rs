//! The message store in memory, for the local stack and tests.

use super::{
    HistoryPage, MAX_HISTORY_LIMIT, MessageError, MessageStore, Retention, StoredMessage,
    page_after, page_latest,
};
use crate::ids::UserId;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The message store in memory. Same contract as DynamoDB; expired messages are dropped as
/// new ones arrive (and skipped by reads before that, like DynamoDB's late TTL).
#[derive(Debug, Default)]
pub struct MemoryMessageStore {
    retention: Retention,
    groups: std::sync::Mutex<HashMap<String, GroupLog>>,
}

#[derive(Debug, Default)]
struct GroupLog {
    /// The newest seq given out.
    head: u64,
    messages: BTreeMap<u64, StoredMessage>,
}

impl MemoryMessageStore {
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            groups: Default::default(),
        }
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// How many messages `group` holds (expired ones not yet dropped included).
    pub fn stored(&self, group: &str) -> usize {
        self.with(|g| g.get(group).map_or(0, |l| l.messages.len()))
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, GroupLog>) -> T) -> T {
        f(&mut self.groups.lock().expect("messages lock"))
    }
}

#[async_trait]
impl MessageStore for MemoryMessageStore {
    async fn append(
        &self,
        group: &str,
        from: Option<&UserId>,
        data: &Value,
        now_ms: i64,
    ) -> Result<StoredMessage, MessageError> {
        let r = self.retention;
        Ok(self.with(|groups| {
            let log = groups.entry(group.to_owned()).or_default();
            log.head += 1;
            let message = StoredMessage {
                seq: log.head,
                ts: now_ms,
                from: from.cloned(),
                data: data.clone(),
            };
            log.messages.insert(message.seq, message.clone());
            if let Some(evicted) = r.evicts(message.seq) {
                log.messages = log.messages.split_off(&(evicted + 1));
            }
            while let Some(entry) = log.messages.first_entry() {
                if r.keeps(entry.get().ts, now_ms) {
                    break;
                }
                entry.remove();
            }
            message
        }))
    }

    async fn history(
        &self,
        group: &str,
        after: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> Result<HistoryPage, MessageError> {
        let limit = limit.clamp(1, MAX_HISTORY_LIMIT);
        let r = self.retention;
        Ok(self.with(|groups| {
            let empty = GroupLog::default();
            let log = groups.get(group).unwrap_or(&empty);
            let live = |m: &&StoredMessage| r.keeps(m.ts, now_ms);
            match after {
                Some(after) => {
                    let kept = match after.checked_add(1) {
                        Some(first) => log
                            .messages
                            .range(first..)
                            .map(|(_, m)| m)
                            .filter(live)
                            .take(limit + 1)
                            .cloned()
                            .collect(),
                        None => Vec::new(),
                    };
                    page_after(after, limit, kept, || log.head > after)
                }
                None => {
                    let kept = log
                        .messages
                        .values()
                        .rev()
                        .filter(live)
                        .take(limit)
                        .cloned()
                        .collect();
                    page_latest(limit, kept, log.head)
                }
            }
        }))
    }
}
