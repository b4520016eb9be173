//! Facility status and history in DynamoDB (the `facilities` table).
//!
//! # Items (one table, `pk` + `sk` strings)
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | current status | `FACILITY#{id}` | `STATUS` | `region_pk = REGION#{region}` and `partition_pk = PARTITION#{n}` feed the sparse GSIs `by-region` and `by-partition` |
//! | flip history | `FACILITY#{id}` | `FLIP#{since_ms:013}#{version:012}` | `expires_at` TTL |
//! | online segment | `ONLINE#{id}#{hour}` | `{start_ms:013}#{session}` | one item per hour the segment overlaps; `expires_at` TTL |
//! | partition ledger | `PARTITION#{n}` | `LEDGER` | `epochs`: see [`crate::ledger`] |
//!
//! "Who was online at facility F at time T" is one `Query` on `ONLINE#F#{T / 1h}` with
//! `sk <= T` and a filter `end_ms >= T`: a segment is written into every hour bucket it
//! overlaps, so the bucket of T holds every segment that covers T.
//!
//! A status write wins only if its version is newer, or the same version with a newer
//! change counter (`rev`, for online-session counts), so duplicate and reordered rollups
//! never move the stored status backwards.

mod dynamo;
mod memory;

pub use dynamo::DynamoFacilityStore;
pub use memory::MemoryFacilityStore;

use crate::ids::{FacilityId, RegionId};
use crate::protocol::FacilityStatus;
use crate::sessions::{FacilityState, JournalEntry, Partition, Segment};
use async_trait::async_trait;

/// The key of a flip history item within its facility: `FLIP#{since_ms:013}#{version:012}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlipKey {
    pub since_ms: i64,
    pub version: u64,
}

impl FlipKey {
    pub fn of(f: &FacilityStatus) -> Self {
        Self {
            since_ms: f.since_ms,
            version: f.version,
        }
    }

    /// The item's sort key, `FLIP#{since_ms:013}#{version:012}`.
    pub fn sort_key(&self) -> String {
        format!("FLIP#{:013}#{:012}", self.since_ms, self.version)
    }

    /// Reads a sort key written by [`FlipKey::sort_key`]: exactly `FLIP#`, 13 digits, `#`,
    /// 12 digits.
    pub fn parse_sort_key(sk: &str) -> Option<Self> {
        let rest = sk.strip_prefix("FLIP#")?;
        let (since, version) = rest.split_once('#')?;
        let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(since, 13) || !digits(version, 12) {
            return None;
        }
        Some(Self {
            since_ms: since.parse().ok()?,
            version: version.parse().ok()?,
        })
    }
}

/// One page of flips ([`FacilityStore::flips_page`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlipPage {
    pub flips: Vec<FacilityStatus>,
    /// Where the next page starts (exclusive), when more flips may follow.
    pub next: Option<FlipKey>,
}

/// A facilities-table failure (for logs; never shown to clients): the port's cause.
pub type FacilityError = crate::port::PortError;

/// Persisted facility status and history.
#[async_trait]
pub trait FacilityStore: Send + Sync {
    /// Writes the current status of a facility of `partition` unless a newer one is stored.
    /// Returns whether it was written.
    async fn put_status(
        &self,
        partition: Partition,
        state: &FacilityState,
        now_ms: i64,
    ) -> Result<bool, FacilityError>;
    /// Appends flips and finished segments (idempotent: the same entry twice is one item).
    async fn append_history(
        &self,
        entries: &[JournalEntry],
        now_ms: i64,
    ) -> Result<(), FacilityError>;
    /// The stored status of a facility.
    async fn status(&self, facility: &FacilityId) -> Result<Option<FacilityStatus>, FacilityError>;
    /// The stored status of every facility of a region (one GSI query, paginated).
    async fn region(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, FacilityError>;
    /// Flips of a facility with `since_ms` in `[from_ms, to_ms]`, oldest first.
    async fn flips(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FacilityStatus>, FacilityError>;
    /// One page of the flips of a facility with `since_ms` in `[from_ms, to_ms]`, oldest
    /// first: at most `limit` flips, starting after the flip keyed `after` (exclusive) when
    /// given. One `Query` with `Limit`, whatever the table's size. [`FlipPage::next`] is the
    /// key to continue from when more flips may follow (`None`: the range is exhausted).
    async fn flips_page(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
        after: Option<FlipKey>,
        limit: usize,
    ) -> Result<FlipPage, FacilityError>;
    /// The last flip of a facility with `since_ms < before_ms`: its status at `before_ms`
    /// (one `Query`, newest first, `Limit 1`). `None` when no earlier flip is kept.
    async fn flip_before(
        &self,
        facility: &FacilityId,
        before_ms: i64,
    ) -> Result<Option<FacilityStatus>, FacilityError>;
    /// Finished segments at `facility` that cover `at_ms`.
    async fn online_at(
        &self,
        facility: &FacilityId,
        at_ms: i64,
    ) -> Result<Vec<Segment>, FacilityError>;
    /// The facilities of `partition` stored as online: one Query on the status items of the
    /// partition (GSI `by-partition`), never a scan; only after Redis lost its data.
    async fn online_in(&self, partition: Partition) -> Result<Vec<FacilityStatus>, FacilityError>;
}
