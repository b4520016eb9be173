//! The per-group message store: every message sent to a group, numbered, kept for history
//! and for recovery after a missed push (docs: the WebSocket `history` action).
//!
//! Each group's messages get a `seq` that starts at 1, only grows and has no gaps among the
//! stored messages, and a server time `ts` (ms since the epoch). A group keeps its messages
//! for [`Retention::max_age`] (`MESSAGE_RETENTION_SECONDS`) and at most
//! [`Retention::max_count`] of them (`MESSAGE_RETENTION_COUNT`); retention drops the oldest
//! first, so the stored messages of a group are always one run of consecutive seqs.
//!
//! # DynamoDB layout (the `messages` table: `pk` string, `sk` number)
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | head | `GROUP#{group}` | `0` | `seq` (N): the newest seq given out. No TTL: a group's seq never restarts. |
//! | message | `GROUP#{group}` | its seq | `ts` (N, ms), `data` (S, the JSON text), `from` (S, absent when the team's backend published without one), `expires_at` (N, seconds: the TTL attribute) |
//!
//! **Append** is a consistent `GetItem` of the head, then one `TransactWriteItems`: update
//! the head `SET seq = :n` on condition `attribute_not_exists(pk) OR seq = :prev`, put the
//! message at `sk = n`, and, once `n > max_count`, delete `sk = n - max_count` (count
//! retention: one in, one out). When a concurrent append won the head first, the
//! transaction is cancelled on that condition and the append tries again with the new head
//! (at once with the head the cancellation returned, then after a random, growing wait with
//! the head read again; at most [`APPEND_RETRIES`] times, then a retryable
//! [`PortError::Unavailable`]), so seqs have no gaps and no duplicates. Within one process,
//! appends to a group take turns before reading the head, so they never race each other.
//!
//! **History** is one consistent `Query` of the group's messages: with `after`, ascending
//! from `sk > after` with `Limit = limit + 1` (the extra one tells `more`); without, the
//! newest `limit` descending from `sk > 0`. A `GetItem` of the head follows only when the
//! query found nothing, to tell "nothing newer" from "all of it dropped". Never a `Scan`.
//!
//! DynamoDB's TTL deletes expired items late (and the emulator never does), so reads skip
//! messages older than `max_age` themselves: an expired message counts as dropped. Should
//! a whole page with `after` be expired leftovers, the query reads on until it has
//! `limit + 1` live messages or reaches the end.
//!
//! The size of `data` is the caller's to check.

mod dynamo;
mod memory;

pub use dynamo::{DynamoMessageStore, create_table};
pub use memory::MemoryMessageStore;

use crate::config::{ConfigError, Env};
use crate::ids::UserId;
use crate::port::PortError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// The most messages one history page returns.
pub const MAX_HISTORY_LIMIT: usize = 500;
/// How many messages a history page returns when the client names no `limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;
/// How many times an append tries again after losing the group's head to a concurrent one.
pub const APPEND_RETRIES: u32 = 8;

/// One stored message, as the `history` reply lists it: `{seq, ts, from, data}` (`from` is
/// `null` when the team's backend published without one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub seq: u64,
    pub ts: i64,
    pub from: Option<UserId>,
    pub data: Value,
}

/// One page of a group's history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<StoredMessage>,
    /// `false` when retention already dropped some of the messages asked for.
    pub complete: bool,
    /// `true` when stored messages follow the last one returned (ask again with
    /// `after` = its seq). Always `false` without `after`.
    pub more: bool,
}

/// How long and how many messages a group keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `MESSAGE_RETENTION_SECONDS` (default 86400, 60..=30 days).
    pub max_age: Duration,
    /// `MESSAGE_RETENTION_COUNT` (default 1000, 1..=100000): per group.
    pub max_count: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(86_400),
            max_count: 1_000,
        }
    }
}

impl Retention {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_age = env.seconds_or("MESSAGE_RETENTION_SECONDS", 86_400, 60..=30 * 86_400)?;
        let max_count: u64 = env.parse_or("MESSAGE_RETENTION_COUNT", 1_000)?;
        if !(1..=100_000).contains(&max_count) {
            return Err(ConfigError::Malformed {
                name: "MESSAGE_RETENTION_COUNT",
                reason: format!("{max_count} is outside 1..=100000"),
            });
        }
        Ok(Self { max_age, max_count })
    }

    fn max_age_ms(&self) -> i64 {
        i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether a message stored at `ts` is still kept at `now_ms`.
    pub fn keeps(&self, ts: i64, now_ms: i64) -> bool {
        now_ms < ts.saturating_add(self.max_age_ms())
    }

    /// The TTL of a message stored at `ts` (seconds since the epoch): the first whole second
    /// at which it is no longer kept.
    pub fn expires_at_s(&self, ts: i64) -> i64 {
        ts.saturating_add(self.max_age_ms())
            .saturating_add(999)
            .div_euclid(1000)
    }

    /// The seq that count retention drops when `seq` is stored, if any.
    fn evicts(&self, seq: u64) -> Option<u64> {
        seq.checked_sub(self.max_count).filter(|s| *s > 0)
    }
}

/// A message store failure (for logs; never shown to clients): the port's cause.
pub type MessageError = PortError;

/// Where each group's messages are kept.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a message; returns it with its seq and `ts` (= `now_ms`).
    async fn append(
        &self,
        group: &str,
        from: Option<&UserId>,
        data: &Value,
        now_ms: i64,
    ) -> Result<StoredMessage, MessageError>;

    /// With `after`: the stored messages with `seq > after`, oldest first, at most `limit`.
    /// Without: the newest `limit`, oldest first. `limit` is 1..=[`MAX_HISTORY_LIMIT`] (the
    /// caller clamps it).
    async fn history(
        &self,
        group: &str,
        after: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> Result<HistoryPage, MessageError>;
}

/// The page after `after` from `live`: the kept messages with `seq > after`, oldest first,
/// `limit + 1` of them when there are that many. `newest_beyond`: whether the group's newest
/// seq is above `after` (asked only when `live` is empty).
fn page_after(
    after: u64,
    limit: usize,
    mut live: Vec<StoredMessage>,
    newest_beyond: impl FnOnce() -> bool,
) -> HistoryPage {
    let more = live.len() > limit;
    live.truncate(limit);
    let complete = match live.first() {
        Some(first) => Some(first.seq) == after.checked_add(1),
        None => !newest_beyond(),
    };
    HistoryPage {
        messages: live,
        complete,
        more,
    }
}

/// The newest page from `live_newest_first` (the kept messages, newest first, at most
/// `limit`), given the group's newest seq.
fn page_latest(
    limit: usize,
    mut live_newest_first: Vec<StoredMessage>,
    newest: u64,
) -> HistoryPage {
    live_newest_first.truncate(limit);
    live_newest_first.reverse();
    let complete = live_newest_first.len() as u64 >= (limit as u64).min(newest);
    HistoryPage {
        messages: live_newest_first,
        complete,
        more: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: i64 = 1_800_000_000_000;

    fn store(max_count: u64) -> MemoryMessageStore {
        MemoryMessageStore::new(Retention {
            max_age: Duration::from_secs(3_600),
            max_count,
        })
    }

    fn ann() -> UserId {
        UserId::parse("ann").unwrap()
    }

    async fn fill(s: &MemoryMessageStore, group: &str, n: u64, ts: i64) {
        for i in 0..n {
            s.append(group, Some(&ann()), &json!({ "i": i }), ts)
                .await
                .unwrap();
        }
    }

    fn seqs(p: &HistoryPage) -> Vec<u64> {
        p.messages.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn retention_reads_its_variables() {
        assert_eq!(
            Retention::from_env(&Env::from_pairs::<&str, &str>([])).unwrap(),
            Retention::default()
        );
        let r = Retention::from_env(&Env::from_pairs([
            ("MESSAGE_RETENTION_SECONDS", "60"),
            ("MESSAGE_RETENTION_COUNT", "5"),
        ]))
        .unwrap();
        assert_eq!((r.max_age, r.max_count), (Duration::from_secs(60), 5));
        for (k, v) in [
            ("MESSAGE_RETENTION_SECONDS", "59"),
            ("MESSAGE_RETENTION_SECONDS", "2592001"),
            ("MESSAGE_RETENTION_COUNT", "0"),
            ("MESSAGE_RETENTION_COUNT", "100001"),
            ("MESSAGE_RETENTION_COUNT", "many"),
        ] {
            let e = Retention::from_env(&Env::from_pairs([(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{e}");
        }
        let r = Retention::default();
        assert!(r.keeps(T, T + 86_399_999));
        assert!(!r.keeps(T, T + 86_400_000));
        assert_eq!(r.expires_at_s(T), T / 1000 + 86_400);
        assert_eq!(r.expires_at_s(T + 1), T / 1000 + 86_401);
    }

    #[test]
    fn a_stored_message_serializes_as_the_wire_shape() {
        let m = StoredMessage {
            seq: 3,
            ts: T,
            from: None,
            data: json!({"x": 1}),
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"seq": 3, "ts": T, "from": null, "data": {"x": 1}})
        );
        let m = StoredMessage {
            from: Some(ann()),
            ..m
        };
        assert_eq!(serde_json::to_value(&m).unwrap()["from"], "ann");
    }

    #[tokio::test]
    async fn seqs_start_at_one_and_grow_per_group() {
        let s = store(100);
        let m = s.append("chat:a", None, &json!("hi"), T).await.unwrap();
        assert_eq!((m.seq, m.ts, m.from, m.data), (1, T, None, json!("hi")));
        let m = s
            .append("chat:a", Some(&ann()), &json!(2), T + 1)
            .await
            .unwrap();
        assert_eq!((m.seq, m.from), (2, Some(ann())));
        assert_eq!(s.append("chat:b", None, &json!(1), T).await.unwrap().seq, 1);
        let p = s.history("chat:a", None, 10, T + 2).await.unwrap();
        assert_eq!(seqs(&p), [1, 2]);
        assert!(p.complete && !p.more);
        assert_eq!(p.messages[1].data, json!(2));
        let empty = s.history("chat:none", None, 10, T).await.unwrap();
        assert_eq!(
            empty,
            HistoryPage {
                messages: vec![],
                complete: true,
                more: false
            }
        );
    }

    #[tokio::test]
    async fn pages_after_a_seq() {
        let s = store(100);
        fill(&s, "g", 10, T).await;
        let p = s.history("g", Some(0), 4, T).await.unwrap();
        assert_eq!(seqs(&p), [1, 2, 3, 4]);
        assert!(p.complete && p.more);
        let p = s.history("g", Some(4), 4, T).await.unwrap();
        assert_eq!(seqs(&p), [5, 6, 7, 8]);
        assert!(p.complete && p.more);
        let p = s.history("g", Some(8), 4, T).await.unwrap();
        assert_eq!(seqs(&p), [9, 10]);
        assert!(p.complete && !p.more);
        let p = s.history("g", Some(6), 4, T).await.unwrap();
        assert_eq!(seqs(&p), [7, 8, 9, 10]);
        assert!(p.complete && !p.more);
        for after in [10, 11, 1_000] {
            let p = s.history("g", Some(after), 4, T).await.unwrap();
            assert_eq!(
                p,
                HistoryPage {
                    messages: vec![],
                    complete: true,
                    more: false
                }
            );
        }
        // A limit outside 1..=MAX_HISTORY_LIMIT is clamped.
        assert_eq!(seqs(&s.history("g", Some(0), 0, T).await.unwrap()), [1]);
        assert_eq!(seqs(&s.history("g", None, 0, T).await.unwrap()), [10]);
        // Without `after`: the newest, oldest first.
        let p = s.history("g", None, 3, T).await.unwrap();
        assert_eq!(seqs(&p), [8, 9, 10]);
        assert!(p.complete && !p.more);
        let p = s.history("g", None, 50, T).await.unwrap();
        assert_eq!(seqs(&p), (1..=10).collect::<Vec<_>>());
        assert!(p.complete);
    }

    #[tokio::test]
    async fn count_retention_drops_the_oldest() {
        let s = store(5);
        fill(&s, "g", 12, T).await;
        assert_eq!(s.stored("g"), 5);
        let p = s.history("g", None, 100, T).await.unwrap();
        assert_eq!(seqs(&p), [8, 9, 10, 11, 12]);
        assert!(!p.complete, "asked for 100 of 12, got 5");
        let p = s.history("g", None, 5, T).await.unwrap();
        assert_eq!(seqs(&p), [8, 9, 10, 11, 12]);
        assert!(p.complete);
        let p = s.history("g", Some(3), 2, T).await.unwrap();
        assert_eq!(seqs(&p), [8, 9]);
        assert!(!p.complete && p.more);
        let p = s.history("g", Some(7), 2, T).await.unwrap();
        assert_eq!(seqs(&p), [8, 9]);
        assert!(p.complete && p.more);
        // The next seq goes on from the head, not from what is kept.
        assert_eq!(s.append("g", None, &json!(0), T).await.unwrap().seq, 13);
    }

    #[tokio::test]
    async fn age_retention_counts_expired_messages_as_dropped() {
        let s = store(100);
        fill(&s, "g", 3, T).await; // 1..=3, expire at T + 1 h
        fill(&s, "g", 2, T + 1_800_000).await; // 4, 5
        let now = T + 3_600_000;
        let p = s.history("g", None, 10, now).await.unwrap();
        assert_eq!(seqs(&p), [4, 5]);
        assert!(!p.complete);
        let p = s.history("g", None, 2, now).await.unwrap();
        assert_eq!(seqs(&p), [4, 5]);
        assert!(p.complete);
        let p = s.history("g", Some(1), 1, now).await.unwrap();
        assert_eq!(seqs(&p), [4]);
        assert!(!p.complete && p.more);
        let p = s.history("g", Some(3), 10, now).await.unwrap();
        assert_eq!(seqs(&p), [4, 5]);
        assert!(p.complete && !p.more);
        // Everything expired: nothing comes back, and that is not complete.
        let later = T + 1_800_000 + 3_600_000;
        let p = s.history("g", None, 10, later).await.unwrap();
        assert_eq!(
            p,
            HistoryPage {
                messages: vec![],
                complete: false,
                more: false
            }
        );
        let p = s.history("g", Some(2), 10, later).await.unwrap();
        assert_eq!(
            p,
            HistoryPage {
                messages: vec![],
                complete: false,
                more: false
            }
        );
        let p = s.history("g", Some(5), 10, later).await.unwrap();
        assert_eq!(
            p,
            HistoryPage {
                messages: vec![],
                complete: true,
                more: false
            }
        );
        assert_eq!(s.append("g", None, &json!(0), later).await.unwrap().seq, 6);
    }
}
