//! Sizes of items as DynamoDB counts them (the layouts of the DynamoDB adapters).

use super::ESTIMATED_ID_LEN;
use presence::hub::registry::{CONNECTION_TTL_S, Connection};
use presence::protocol::FacilityStatus;
use presence::sessions::{FacilityState, Partition, Segment};

/// A number attribute: its decimal string.
pub(super) fn num(n: impl ToString) -> usize {
    n.to_string().len()
}

/// Attribute names and value lengths.
pub(super) fn item(attributes: &[(&str, usize)]) -> usize {
    attributes.iter().map(|(name, len)| name.len() + len).sum()
}

/// What a connection item holds; `None` for what the caller does not know.
#[derive(Debug, Default)]
pub(super) struct ConnectionItem<'a> {
    pub id: &'a str,
    pub user: Option<&'a str>,
    pub facility: Option<&'a str>,
    pub region: Option<&'a str>,
    pub session: Option<&'a str>,
    pub connected_ms: Option<i64>,
    pub hidden: bool,
}

impl<'a> ConnectionItem<'a> {
    pub(super) fn of(c: &'a Connection) -> Self {
        Self {
            id: &c.id,
            user: Some(c.user.as_str()),
            facility: Some(c.facility.as_str()),
            region: Some(c.region.as_str()),
            session: c.session_id.as_ref().map(|s| s.as_str()),
            connected_ms: Some(c.connected_ms),
            hidden: c.hidden,
        }
    }

    /// `CONN#{id}` / `META` with its index keys (`shared/src/hub/registry/dynamo.rs`).
    pub(super) fn size(&self) -> usize {
        let id = self.id.len();
        let len = |v: Option<&str>| v.map_or(ESTIMATED_ID_LEN, str::len);
        let (user, facility, region) = (len(self.user), len(self.facility), len(self.region));
        let connected_ms = self.connected_ms.unwrap_or(1_000_000_000_000);
        let mut size = item(&[
            ("pk", 5 + id),
            ("sk", 4),
            ("user_pk", 5 + user),
            ("user_sk", 5 + id),
            ("facility_pk", 9 + facility),
            ("region_pk", 7 + region),
            ("conn_id", id),
            ("user_id", user),
            ("facility_id", facility),
            ("region", region),
            ("connected_ms", num(connected_ms)),
            ("expires_at", num(connected_ms / 1000 + CONNECTION_TTL_S)),
        ]);
        if let Some(session) = self.session {
            size += item(&[("session_id", session.len())]);
        }
        if self.hidden {
            size += item(&[("hidden", 1)]);
        }
        size
    }
}

/// `GROUP#{group}` / `USER#{user}`.
pub(super) fn membership(user: &str, group: &str) -> usize {
    let (user, group) = (user.len(), group.len());
    item(&[
        ("pk", 6 + group),
        ("sk", 5 + user),
        ("user_pk", 5 + user),
        ("user_sk", 6 + group),
        ("group_name", group),
        ("user_id", user),
        ("joined_ms", 13),
    ])
}

/// `FACILITY#{id}` / `STATUS` (`shared/src/facilities/dynamo.rs` `put_status`).
pub(super) fn status(f: &FacilityStatus, partition: Option<Partition>, rev: Option<u64>) -> usize {
    let (facility, region) = (f.facility_id.as_str().len(), f.region.as_str().len());
    item(&[
        ("pk", 9 + facility),
        ("sk", 6),
        ("region_pk", 7 + region),
        ("partition_pk", 10 + partition.map_or(2, |p| num(p.0))),
        ("facility_id", facility),
        ("region", region),
        ("status", f.status.as_str().len()),
        ("since_ms", num(f.since_ms)),
        ("version", num(f.version)),
        ("online_sessions", num(f.online_sessions)),
        ("rev", rev.map_or(3, num)),
        ("updated_ms", 13),
    ])
}

pub(super) fn state(partition: Partition, state: &FacilityState) -> usize {
    status(&state.status, Some(partition), Some(state.rev))
}

/// `FACILITY#{id}` / `FLIP#{since_ms:013}#{version:012}`.
pub(super) fn flip(f: &FacilityStatus) -> usize {
    let facility = f.facility_id.as_str().len();
    item(&[
        ("pk", 9 + facility),
        (
            "sk",
            5 + num(f.since_ms).max(13) + 1 + num(f.version).max(12),
        ),
        ("facility_id", facility),
        ("region", f.region.as_str().len()),
        ("status", f.status.as_str().len()),
        ("since_ms", num(f.since_ms)),
        ("version", num(f.version)),
        ("online_sessions", num(f.online_sessions)),
        ("expires_at", 10),
    ])
}

/// `ONLINE#{id}#{hour}` / `{start_ms:013}#{session}`, for one hour bucket.
pub(super) fn segment(seg: &Segment, hour: i64) -> usize {
    let facility = seg.facility_id.as_str().len();
    let session = seg.session_id.as_str().len();
    item(&[
        ("pk", 7 + facility + 1 + num(hour)),
        ("sk", num(seg.start_ms).max(13) + 1 + session),
        ("facility_id", facility),
        ("region", seg.region.as_str().len()),
        ("session_id", session),
        ("user_id", seg.user_id.as_str().len()),
        ("start_ms", num(seg.start_ms)),
        ("end_ms", num(seg.end_ms)),
        ("reason", seg.reason.len()),
        ("expires_at", 10),
    ])
}

/// `PARTITION#{n}` / `LEDGER` (`shared/src/ledger.rs`).
pub(super) fn ledger(partition: Partition) -> usize {
    item(&[
        ("pk", 10 + num(partition.0)),
        ("sk", 6),
        ("epochs", 2),
        ("last_epoch_ms", 13),
    ])
}
