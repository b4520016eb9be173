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
