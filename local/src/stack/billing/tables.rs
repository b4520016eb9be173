//! The three tables' ports, metered as DynamoDB on-demand units.

use super::Meter;
use super::size::{self, ConnectionItem};
use async_trait::async_trait;
use presence::auth::Grant;
use presence::facilities::{FacilityError, FacilityStore, FlipKey, FlipPage};
use presence::hub::registry::{Ban, Connection, ConnectionRegistry, RegistryError, UserFootprint};
use presence::ids::{FacilityId, RegionId, SessionId, UserId};
use presence::ledger::{EpochStart, LedgerError, PartitionLedger};
use presence::protocol::FacilityStatus;
use presence::sessions::{FacilityState, JournalEntry, Partition, Segment};
use std::collections::HashSet;
use std::sync::Arc;

/// The connection registry (the connections table), metered.
pub struct MeteredRegistry {
    inner: Arc<dyn ConnectionRegistry>,
    meter: Arc<Meter>,
}

impl MeteredRegistry {
    pub fn new(inner: Arc<dyn ConnectionRegistry>, meter: Arc<Meter>) -> Arc<Self> {
        Arc::new(Self { inner, meter })
    }
}

impl std::fmt::Debug for MeteredRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredRegistry").finish_non_exhaustive()
    }
}

/// Connection items of which only the id and one group key are known.
fn connections_of<'a>(
    ids: impl Iterator<Item = ConnectionItem<'a>>,
) -> impl Iterator<Item = usize> {
    ids.map(|c| c.size())
}

#[async_trait]
impl ConnectionRegistry for MeteredRegistry {
    /// `PutItem`.
    async fn register(&self, connection: &Connection) -> Result<(), RegistryError> {
        self.inner.register(connection).await?;
        self.meter.write(ConnectionItem::of(connection).size());
        Ok(())
    }

    /// `DeleteItem` returning the old item.
    async fn remove(&self, id: &str) -> Result<Option<Connection>, RegistryError> {
        let out = self.inner.remove(id).await?;
        self.meter
            .write(out.as_ref().map_or(0, |c| ConnectionItem::of(c).size()));
        Ok(out)
    }

    /// `GetItem`, eventually consistent.
    async fn get(&self, id: &str) -> Result<Option<Connection>, RegistryError> {
        let out = self.inner.get(id).await?;
        self.meter
            .get_item(out.as_ref().map(|c| ConnectionItem::of(c).size()), false);
        Ok(out)
    }

    /// Conditional `PutItem` (billed when refused too).
    async fn join(&self, user: &UserId, group: &str, now_ms: i64) -> Result<bool, RegistryError> {
        let out = self.inner.join(user, group, now_ms).await?;
        self.meter.write(size::membership(user.as_str(), group));
        Ok(out)
    }

    /// `DeleteItem` returning the old item.
    async fn leave(&self, user: &UserId, group: &str) -> Result<bool, RegistryError> {
        let out = self.inner.leave(user, group).await?;
        self.meter.write(if out {
            size::membership(user.as_str(), group)
        } else {
            0
        });
        Ok(out)
    }

    /// `GetItem`, eventually consistent (a projection does not lower the cost).
    async fn is_member(&self, user: &UserId, group: &str) -> Result<bool, RegistryError> {
        let out = self.inner.is_member(user, group).await?;
        self.meter
            .get_item(out.then(|| size::membership(user.as_str(), group)), false);
        Ok(out)
    }

    /// `Query` on the group's items.
    async fn members(&self, group: &str) -> Result<Vec<UserId>, RegistryError> {
        let out = self.inner.members(group).await?;
        self.meter
            .query(out.iter().map(|u| size::membership(u.as_str(), group)));
        Ok(out)
    }

    /// `Query` on `by-user`.
    async fn user_connections(&self, user: &UserId) -> Result<Vec<String>, RegistryError> {
        let out = self.inner.user_connections(user).await?;
        self.meter
            .query(connections_of(out.iter().map(|id| ConnectionItem {
                id,
                user: Some(user.as_str()),
                ..ConnectionItem::default()
            })));
        Ok(out)
    }

    /// `Query` on `by-facility`.
    async fn facility_connections(
        &self,
        facility: &FacilityId,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        let out = self.inner.facility_connections(facility).await?;
        self.meter
            .query(connections_of(out.iter().map(|(id, user)| {
                ConnectionItem {
                    id,
                    user: Some(user.as_str()),
                    facility: Some(facility.as_str()),
                    ..ConnectionItem::default()
                }
            })));
        Ok(out)
    }

    /// `Query` on `by-region`.
    async fn region_connections(
        &self,
        region: &RegionId,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        let out = self.inner.region_connections(region).await?;
        self.meter
            .query(connections_of(out.iter().map(|(id, user)| {
                ConnectionItem {
                    id,
                    user: Some(user.as_str()),
                    region: Some(region.as_str()),
                    ..ConnectionItem::default()
                }
            })));
        Ok(out)
    }

    /// `Scan` of `by-region`.
    async fn all_connections(&self) -> Result<Vec<String>, RegistryError> {
        let out = self.inner.all_connections().await?;
        self.meter
            .query(connections_of(out.iter().map(|id| ConnectionItem {
                id,
                ..ConnectionItem::default()
            })));
        Ok(out)
    }

    /// `Query` on `by-region`, whole items.
    async fn region_sockets(&self, region: &RegionId) -> Result<Vec<Connection>, RegistryError> {
        let out = self.inner.region_sockets(region).await?;
        self.meter
            .query(connections_of(out.iter().map(ConnectionItem::of)));
        Ok(out)
    }

    /// Conditional `UpdateItem` of the connection item (billed when refused too).
    async fn bind_session(&self, id: &str, session: &SessionId) -> Result<bool, RegistryError> {
        let out = self.inner.bind_session(id, session).await?;
        self.meter.write(
            ConnectionItem {
                id,
                session: Some(session.as_str()),
                ..ConnectionItem::default()
            }
            .size(),
        );
        Ok(out)
    }

    /// Conditional `UpdateItem` of the connection item (billed when refused too).
    async fn set_hidden(&self, id: &str, hidden: bool) -> Result<bool, RegistryError> {
        let out = self.inner.set_hidden(id, hidden).await?;
        self.meter.write(
            ConnectionItem {
                id,
                hidden: true,
                ..ConnectionItem::default()
            }
            .size(),
        );
        Ok(out)
    }

    /// Conditional `UpdateItem` of the connection item.
    async fn set_grant(&self, id: &str, grant: &Grant) -> Result<bool, RegistryError> {
        let out = self.inner.set_grant(id, grant).await?;
        let groups: usize = grant.groups.iter().map(|g| g.len() + 1).sum();
        self.meter.write(
            ConnectionItem {
                id,
                ..ConnectionItem::default()
            }
            .size()
                + 30
                + groups,
        );
        Ok(out)
    }

    /// `Query` on `by-user`: the user's connection and membership items.
    async fn user_footprint(&self, user: &UserId) -> Result<UserFootprint, RegistryError> {
        let out = self.inner.user_footprint(user).await?;
        let connections = out.connections.iter().map(|id| {
            ConnectionItem {
                id,
                user: Some(user.as_str()),
                ..ConnectionItem::default()
            }
            .size()
        });
        let groups = out
            .groups
            .iter()
            .map(|g| size::membership(user.as_str(), g));
        self.meter.query(connections.chain(groups));
        Ok(out)
    }

    /// `PutItem` of the ban item.
    async fn ban(&self, group: &str, user: &UserId, ban: Ban) -> Result<(), RegistryError> {
        self.inner.ban(group, user, ban).await?;
        self.meter.write(size::membership(user.as_str(), group));
        Ok(())
    }

    /// `DeleteItem` returning the old item.
    async fn unban(&self, group: &str, user: &UserId, now_ms: i64) -> Result<bool, RegistryError> {
        let out = self.inner.unban(group, user, now_ms).await?;
        self.meter.write(size::membership(user.as_str(), group));
        Ok(out)
    }

    /// `GetItem`, eventually consistent.
    async fn ban_of(
        &self,
        group: &str,
        user: &UserId,
        now_ms: i64,
    ) -> Result<Option<Ban>, RegistryError> {
        let out = self.inner.ban_of(group, user, now_ms).await?;
        self.meter
            .get_item(out.map(|_| size::membership(user.as_str(), group)), false);
        Ok(out)
    }
}

/// The facilities table's store, metered.
pub struct MeteredFacilities {
    inner: Arc<dyn FacilityStore>,
    meter: Arc<Meter>,
}

impl MeteredFacilities {
    pub fn new(inner: Arc<dyn FacilityStore>, meter: Arc<Meter>) -> Arc<Self> {
        Arc::new(Self { inner, meter })
    }
}

impl std::fmt::Debug for MeteredFacilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredFacilities").finish_non_exhaustive()
    }
}

const HOUR_MS: i64 = 3_600_000;

#[async_trait]
impl FacilityStore for MeteredFacilities {
    /// Conditional `PutItem` (billed when refused too).
    async fn put_status(
        &self,
        partition: Partition,
        state: &FacilityState,
        now_ms: i64,
    ) -> Result<bool, FacilityError> {
        let out = self.inner.put_status(partition, state, now_ms).await?;
        self.meter.write(size::state(partition, state));
        Ok(out)
    }

    /// `BatchWriteItem`: a flip item per flip, a segment item per hour bucket a segment
    /// overlaps; one write per distinct key.
    async fn append_history(
        &self,
        entries: &[JournalEntry],
        now_ms: i64,
    ) -> Result<(), FacilityError> {
        self.inner.append_history(entries, now_ms).await?;
        let mut keys = HashSet::new();
        for e in entries.iter().rev() {
            match e {
                JournalEntry::Flip(f) => {
                    if keys.insert((f.facility_id.to_string(), f.since_ms, f.version.to_string())) {
                        self.meter.write(size::flip(f));
                    }
                }
                JournalEntry::Segment(seg) => {
                    let first = seg.start_ms.div_euclid(HOUR_MS);
                    let last = seg.end_ms.max(seg.start_ms).div_euclid(HOUR_MS);
                    for hour in first..=last {
                        let key = (
                            format!("{}#{hour}", seg.facility_id),
                            seg.start_ms,
                            seg.session_id.to_string(),
                        );
                        if keys.insert(key) {
                            self.meter.write(size::segment(seg, hour));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `GetItem` with `ConsistentRead`.
    async fn status(&self, facility: &FacilityId) -> Result<Option<FacilityStatus>, FacilityError> {
        let out = self.inner.status(facility).await?;
        self.meter
            .get_item(out.as_ref().map(|f| size::status(f, None, None)), true);
        Ok(out)
    }

    /// `Query` on `by-region`.
    async fn region(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, FacilityError> {
        let out = self.inner.region(region).await?;
        self.meter
            .query(out.iter().map(|f| size::status(f, None, None)));
        Ok(out)
    }

    /// `Query` on the facility's flip items.
    async fn flips(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FacilityStatus>, FacilityError> {
        let out = self.inner.flips(facility, from_ms, to_ms).await?;
        self.meter.query(out.iter().map(size::flip));
        Ok(out)
    }

    /// `Query` with `Limit` on the facility's flip items.
    async fn flips_page(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
        after: Option<FlipKey>,
        limit: usize,
    ) -> Result<FlipPage, FacilityError> {
        let out = self
            .inner
            .flips_page(facility, from_ms, to_ms, after, limit)
            .await?;
        self.meter.query(out.flips.iter().map(size::flip));
        Ok(out)
    }

    /// `Query`, newest first, `Limit 1`.
    async fn flip_before(
        &self,
        facility: &FacilityId,
        before_ms: i64,
    ) -> Result<Option<FacilityStatus>, FacilityError> {
        let out = self.inner.flip_before(facility, before_ms).await?;
        self.meter.query(out.iter().map(size::flip));
        Ok(out)
    }

    /// `Query` on one hour bucket (filtered: metered on what it returns).
    async fn online_at(
        &self,
        facility: &FacilityId,
        at_ms: i64,
    ) -> Result<Vec<Segment>, FacilityError> {
        let out = self.inner.online_at(facility, at_ms).await?;
        let hour = at_ms.div_euclid(HOUR_MS);
        self.meter
            .query(out.iter().map(|seg| size::segment(seg, hour)));
        Ok(out)
    }

    /// `Query` on `by-partition` (filtered: metered on what it returns).
    async fn online_in(&self, partition: Partition) -> Result<Vec<FacilityStatus>, FacilityError> {
        let out = self.inner.online_in(partition).await?;
        self.meter
            .query(out.iter().map(|f| size::status(f, Some(partition), None)));
        Ok(out)
    }
}

/// The partition ledger (in the facilities table), metered.
#[derive(Debug)]
pub struct MeteredLedger {
    inner: Arc<dyn PartitionLedger>,
    meter: Arc<Meter>,
}

impl MeteredLedger {
    pub fn new(inner: Arc<dyn PartitionLedger>, meter: Arc<Meter>) -> Arc<Self> {
        Arc::new(Self { inner, meter })
    }
}

#[async_trait]
impl PartitionLedger for MeteredLedger {
    /// `UpdateItem`.
    async fn begin_epoch(
        &self,
        partition: Partition,
        epoch_ms: i64,
    ) -> Result<EpochStart, LedgerError> {
        let out = self.inner.begin_epoch(partition, epoch_ms).await?;
        self.meter.write(size::ledger(partition));
        Ok(out)
    }

    /// `UpdateItem`.
    async fn record_existing(&self, partition: Partition, now_ms: i64) -> Result<(), LedgerError> {
        self.inner.record_existing(partition, now_ms).await?;
        self.meter.write(size::ledger(partition));
        Ok(())
    }
}
