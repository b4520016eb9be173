//! The facilities table in memory, for the local stack and tests.

use super::{FacilityError, FacilityStore, FlipKey, FlipPage};
use crate::ids::{FacilityId, RegionId};
use crate::protocol::{FacilityStatus, Status};
use crate::sessions::{FacilityState, JournalEntry, Partition, Segment};
use async_trait::async_trait;

/// The facilities table in memory, for the local stack and tests. Same contract as DynamoDB.
#[derive(Debug, Default)]
pub struct MemoryFacilityStore {
    state: std::sync::Mutex<MemoryFacilities>,
}

#[derive(Debug, Default)]
struct MemoryFacilities {
    /// facility → (status, rev, partition)
    status: std::collections::BTreeMap<FacilityId, (FacilityStatus, u64, Partition)>,
    /// (facility, since, version) → flip
    flips: std::collections::BTreeMap<(FacilityId, i64, u64), FacilityStatus>,
    /// (facility, start, session) → segment
    segments: std::collections::BTreeMap<(FacilityId, i64, String), Segment>,
}

impl MemoryFacilityStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// History items held (flips and session segments).
    pub fn history_len(&self) -> usize {
        self.with(|s| s.flips.len() + s.segments.len())
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryFacilities) -> T) -> T {
        f(&mut self.state.lock().expect("facilities lock"))
    }
}

#[async_trait]
impl FacilityStore for MemoryFacilityStore {
    async fn online_in(&self, partition: Partition) -> Result<Vec<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| {
            m.status
                .values()
                .filter(|(s, _, p)| s.status == Status::Online && *p == partition)
                .map(|(s, _, _)| s.clone())
                .collect()
        }))
    }

    async fn put_status(
        &self,
        partition: Partition,
        state: &FacilityState,
        _now_ms: i64,
    ) -> Result<bool, FacilityError> {
        Ok(self.with(|m| {
            let newer = match m.status.get(&state.status.facility_id) {
                None => true,
                Some((held, rev, _)) => {
                    held.version < state.status.version
                        || (held.version == state.status.version && *rev < state.rev)
                }
            };
            if newer {
                m.status.insert(
                    state.status.facility_id.clone(),
                    (state.status.clone(), state.rev, partition),
                );
            }
            newer
        }))
    }

    async fn append_history(
        &self,
        entries: &[JournalEntry],
        _now_ms: i64,
    ) -> Result<(), FacilityError> {
        self.with(|m| {
            for e in entries {
                match e {
                    JournalEntry::Flip(f) => {
                        m.flips
                            .insert((f.facility_id.clone(), f.since_ms, f.version), f.clone());
                    }
                    JournalEntry::Segment(s) => {
                        m.segments.insert(
                            (s.facility_id.clone(), s.start_ms, s.session_id.to_string()),
                            s.clone(),
                        );
                    }
                }
            }
        });
        Ok(())
    }

    async fn status(&self, facility: &FacilityId) -> Result<Option<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| m.status.get(facility).map(|(s, _, _)| s.clone())))
    }

    async fn region(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| {
            m.status
                .values()
                .filter(|(s, _, _)| s.region == *region)
                .map(|(s, _, _)| s.clone())
                .collect()
        }))
    }

    async fn flips(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| {
            m.flips
                .range((facility.clone(), from_ms, 0)..=(facility.clone(), to_ms, u64::MAX))
                .map(|(_, f)| f.clone())
                .collect()
        }))
    }

    async fn flips_page(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
        after: Option<FlipKey>,
        limit: usize,
    ) -> Result<FlipPage, FacilityError> {
        use std::ops::Bound;
        if after.is_some_and(|k| (k.since_ms, k.version) >= (to_ms, u64::MAX)) || from_ms > to_ms {
            return Ok(FlipPage::default());
        }
        Ok(self.with(|m| {
            let start = match after {
                Some(k) => Bound::Excluded((facility.clone(), k.since_ms, k.version)),
                None => Bound::Included((facility.clone(), from_ms, 0)),
            };
            let end = Bound::Included((facility.clone(), to_ms, u64::MAX));
            let mut in_range = m
                .flips
                .range((start, end))
                .filter(|((_, since, _), _)| *since >= from_ms)
                .map(|(_, f)| f.clone());
            let flips: Vec<FacilityStatus> = in_range.by_ref().take(limit).collect();
            // As DynamoDB does: a full page may have more after it.
            let next = if flips.len() == limit {
                flips.last().map(FlipKey::of)
            } else {
                None
            };
            FlipPage { flips, next }
        }))
    }

    async fn flip_before(
        &self,
        facility: &FacilityId,
        before_ms: i64,
    ) -> Result<Option<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| {
            m.flips
                .range((facility.clone(), i64::MIN, 0)..(facility.clone(), before_ms, 0))
                .next_back()
                .map(|(_, f)| f.clone())
        }))
    }

    async fn online_at(
        &self,
        facility: &FacilityId,
        at_ms: i64,
    ) -> Result<Vec<Segment>, FacilityError> {
        Ok(self.with(|m| {
            m.segments
                .values()
                .filter(|s| s.facility_id == *facility && s.start_ms <= at_ms && s.end_ms >= at_ms)
                .cloned()
                .collect()
        }))
    }
}
