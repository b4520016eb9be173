//! The rollup's side of the engine: what to persist and re-publish, what was persisted, and
//! the repairs after a data loss (reconcile, reseed).

use super::reply::{as_array, as_int, as_string, parse_flips, parse_states, take_array};
use super::{
    ACK_PUBLISHED, Collected, JournalEntry, Partition, RECONCILE, RESEED, ROLLUP_COLLECT,
    ROLLUP_COMMIT, SessionStore, StoreError,
};
use crate::ids::FacilityId;
use crate::protocol::FacilityStatus;
use redis::Value;

impl SessionStore {
    /// Marks flips as pushed. A facility that flipped again since stays unpublished.
    pub async fn ack_published(
        &self,
        partition: Partition,
        published: &[(FacilityId, u64)],
    ) -> Result<u64, StoreError> {
        if published.is_empty() {
            return Ok(0);
        }
        let mut inv = ACK_PUBLISHED.prepare_invoke();
        inv.key(partition.deadlines_key()).arg(partition.prefix());
        for (f, v) in published {
            inv.arg(f.as_str()).arg(*v);
        }
        let n: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(n as u64)
    }

    /// Reads what the rollup must persist (journal, dirty facilities) and re-publish
    /// (flips unpublished since before `republish_before_ms`).
    pub async fn collect(
        &self,
        partition: Partition,
        journal_limit: usize,
        dirty_limit: usize,
        republish_before_ms: i64,
        now_ms: i64,
    ) -> Result<Collected, StoreError> {
        let reply: Value = ROLLUP_COLLECT
            .key(partition.deadlines_key())
            .arg(partition.prefix())
            .arg(journal_limit)
            .arg(dirty_limit)
            .arg(republish_before_ms)
            .arg(now_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let [journal, dirty, stale, reconcile, has_epoch] =
            take_array::<5>("rollup_collect", reply)?;
        let raw = as_array("rollup_collect", journal)?;
        let mut entries = Vec::with_capacity(raw.len());
        for v in &raw {
            let text = as_string("rollup_collect", v)?;
            match serde_json::from_str::<JournalEntry>(&text) {
                Ok(e) => entries.push(e),
                // Unreadable entries are trimmed with the rest rather than blocking the journal.
                Err(e) => {
                    tracing::error!(partition = partition.0, error = %e, entry = %text, "unreadable journal entry skipped")
                }
            }
        }
        Ok(Collected {
            journal_len: raw.len(),
            journal: entries,
            dirty: parse_states(dirty)?,
            stale_unpublished: parse_states(stale)?,
            needs_reconcile: as_int("rollup_collect", &reconcile)? == 1,
            has_epoch: as_int("rollup_collect", &has_epoch)? == 1,
        })
    }

    /// Forgets the first `journal_len` journal entries and the persisted facility revs, and
    /// deletes up to `limit` offline sessions that ended before `drop_before_ms`.
    /// Returns `(facilities cleaned, sessions deleted)`.
    pub async fn commit(
        &self,
        partition: Partition,
        journal_len: usize,
        persisted: &[(FacilityId, u64)],
        drop_before_ms: i64,
        limit: usize,
    ) -> Result<(u64, u64), StoreError> {
        let mut inv = ROLLUP_COMMIT.prepare_invoke();
        inv.key(partition.deadlines_key())
            .arg(partition.prefix())
            .arg(journal_len)
            .arg(drop_before_ms)
            .arg(limit);
        for (f, rev) in persisted {
            inv.arg(f.as_str()).arg(*rev);
        }
        let reply: Value = inv.invoke_async(&mut self.conn.clone()).await?;
        let [cleaned, deleted] = take_array::<2>("rollup_commit", reply)?;
        Ok((
            as_int("rollup_commit", &cleaned)? as u64,
            as_int("rollup_commit", &deleted)? as u64,
        ))
    }

    /// After a data loss: flips offline the facilities DynamoDB holds as online
    /// (`persisted_online`: facility, region, version) that have no live session here, and
    /// marks the partition reconciled. Returns the flips to publish.
    pub async fn reconcile(
        &self,
        partition: Partition,
        now_ms: i64,
        persisted_online: &[FacilityStatus],
    ) -> Result<Vec<FacilityStatus>, StoreError> {
        let mut inv = RECONCILE.prepare_invoke();
        inv.key(partition.deadlines_key())
            .arg(partition.prefix())
            .arg(now_ms);
        for f in persisted_online {
            inv.arg(f.facility_id.as_str())
                .arg(f.region.as_str())
                .arg(f.version);
        }
        let reply: Value = inv.invoke_async(&mut self.conn.clone()).await?;
        parse_flips("reconcile", reply)
    }

    /// Re-issues the current status of facilities whose version is not above the persisted
    /// one (`persisted`: facility, version), as a flip with a version above it. Returns the
    /// flips to publish.
    pub async fn reseed(
        &self,
        partition: Partition,
        now_ms: i64,
        persisted: &[(FacilityId, u64)],
    ) -> Result<Vec<FacilityStatus>, StoreError> {
        if persisted.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = RESEED.prepare_invoke();
        inv.key(partition.deadlines_key())
            .arg(partition.prefix())
            .arg(now_ms);
        for (f, v) in persisted {
            inv.arg(f.as_str()).arg(*v);
        }
        let reply: Value = inv.invoke_async(&mut self.conn.clone()).await?;
        parse_flips("reseed", reply)
    }
}
