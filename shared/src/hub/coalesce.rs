//! ws-push's status events, coalesced per region: the first event of a quiet region goes out
//! at once; events that follow within the window (`STATUS_COALESCE_MS`) are gathered in a
//! Redis outbox ([`crate::sessions::outbox`]) and sent together by one waiting invocation,
//! as one `facility.statuses` message per socket (split at API Gateway's 128 KB message
//! limit; API Gateway bills it per 32 KB).
//! Hidden sockets get only their own facility's statuses.

use super::{Delivered, Hub, HubError, ServerMessage};
use crate::ids::{FacilityId, RegionId};
use crate::protocol::{FacilityStatus, StatusEvent};
use crate::sessions::outbox::OutboxRole;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};

/// The largest message a coalesced push makes: under API Gateway's 128 KB limit for a
/// `PostToConnection` body. It is billed per 32 KB either way, and one post instead of four
/// gets a region-wide outage to every socket sooner.
const MAX_STATUS_FRAME: usize = 120 * 1024;

impl Hub {
    /// ws-push: status events of one region (one batch's worth). With coalescing off, each
    /// goes out as its own `facility.status` frame at once.
    pub async fn push_statuses(
        &self,
        region: &RegionId,
        statuses: &[FacilityStatus],
        now_ms: i64,
    ) -> Result<Delivered, HubError> {
        if self.coalesce_window.is_zero() {
            return self.send_statuses(region, statuses.to_vec(), now_ms).await;
        }
        let unavailable = |e: crate::sessions::StoreError| HubError::Unavailable(e.to_string());
        let window = self.coalesce_window;
        let pending = match self
            .store
            .outbox_offer(region, window, statuses, now_ms)
            .await
            .map_err(unavailable)?
        {
            OutboxRole::Queued => return Ok(Delivered::default()),
            OutboxRole::Send(pending) => pending,
            OutboxRole::Wait(wait) => {
                tokio::time::sleep(wait).await;
                let waited = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                self.store
                    .outbox_take(region, window, now_ms.saturating_add(waited))
                    .await
                    .map_err(unavailable)?
            }
        };
        let report = self
            .send_statuses(
                region,
                pending.iter().map(|p| p.status.clone()).collect(),
                now_ms,
            )
            .await;
        // Sent or not, these entries are this caller's: a failed record is redelivered by
        // SQS and offers its statuses again.
        if let Err(e) = self.store.outbox_done(region, &pending).await {
            tracing::warn!(%region, error = %e, "sent statuses stay in the outbox; they may be sent again");
        }
        report
    }

    /// Sends `statuses` of `region` to its sockets: every visible one gets all of them, a
    /// hidden one its own facility's; connections of a facility's group outside the region
    /// get that facility's.
    async fn send_statuses(
        &self,
        region: &RegionId,
        mut statuses: Vec<FacilityStatus>,
        now_ms: i64,
    ) -> Result<Delivered, HubError> {
        if statuses.is_empty() {
            return Ok(Delivered::default());
        }
        statuses.sort_by_key(|s| (s.since_ms, s.version));
        let flipped: BTreeSet<&FacilityId> = statuses.iter().map(|s| &s.facility_id).collect();
        // Which statuses each connection gets: `None` = all of them.
        let mut wants: BTreeMap<String, Option<BTreeSet<FacilityId>>> = BTreeMap::new();
        for c in self.registry.region_sockets(region).await? {
            if !c.hidden {
                wants.insert(c.id, None);
            } else if flipped.contains(&c.facility) {
                wants.insert(c.id, Some(BTreeSet::from([c.facility])));
            }
        }
        let registry = self.registry.clone();
        let owned: Vec<FacilityId> = flipped.iter().map(|f| (*f).clone()).collect();
        let groups: Vec<_> = futures::stream::iter(owned)
            .map(|f| {
                let registry = registry.clone();
                async move {
                    let found = registry.facility_connections(&f).await;
                    (f, found)
                }
            })
            .buffer_unordered(self.settings.member_concurrency)
            .collect()
            .await;
        for (facility, found) in groups {
            for (id, _) in found? {
                if let Some(set) = wants.entry(id).or_insert_with(|| Some(BTreeSet::new())) {
                    set.insert(facility.clone());
                }
            }
        }
        // One set of frames per distinct selection.
        let mut audiences: BTreeMap<Option<BTreeSet<FacilityId>>, Vec<String>> = BTreeMap::new();
        for (id, selection) in wants {
            audiences.entry(selection).or_default().push(id);
        }
        let mut report = Delivered::default();
        for (selection, ids) in audiences {
            let chosen: Vec<FacilityStatus> = statuses
                .iter()
                .filter(|s| {
                    selection
                        .as_ref()
                        .is_none_or(|set| set.contains(&s.facility_id))
                })
                .cloned()
                .collect();
            for frame in status_frames(region, chosen) {
                let r = self.deliver(&ids, &frame, now_ms).await;
                report.delivered += r.delivered;
                report.gone.extend(r.gone);
                report.failed.extend(r.failed);
            }
        }
        Ok(report)
    }
}

/// The frames carrying `statuses` in order: `facility.status` for a lone one, else
/// `facility.statuses` messages of at most [`MAX_STATUS_FRAME`] bytes.
fn status_frames(region: &RegionId, statuses: Vec<FacilityStatus>) -> Vec<String> {
    if let [one] = statuses.as_slice() {
        let event = StatusEvent {
            status: one.clone(),
        };
        return vec![serde_json::to_string(&event).expect("an event serializes")];
    }
    let frame = |chunk: Vec<FacilityStatus>| {
        ServerMessage::Statuses {
            region: region.clone(),
            statuses: chunk,
        }
        .to_json()
    };
    let mut frames = Vec::new();
    let (mut chunk, mut size) = (Vec::new(), 64 + region.as_str().len());
    for s in statuses {
        let len = serde_json::to_string(&s).map(|j| j.len() + 1).unwrap_or(0);
        if !chunk.is_empty() && size + len > MAX_STATUS_FRAME {
            frames.push(frame(std::mem::take(&mut chunk)));
            size = 64 + region.as_str().len();
        }
        size += len;
        chunk.push(s);
    }
    if !chunk.is_empty() {
        frames.push(frame(chunk));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    fn status(i: u64) -> FacilityStatus {
        FacilityStatus {
            facility_id: FacilityId::parse(&format!("facility-{i:04}")).unwrap(),
            region: RegionId::parse("r").unwrap(),
            status: Status::Online,
            since_ms: 1_700_000_000_000 + i as i64,
            version: i,
            online_sessions: 1,
        }
    }

    #[test]
    fn a_lone_status_is_a_plain_status_event() {
        let frames = status_frames(&RegionId::parse("r").unwrap(), vec![status(1)]);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].starts_with("{\"type\":\"facility.status\""));
    }

    #[test]
    fn many_statuses_fill_messages_of_at_most_120_kb_in_order() {
        let all: Vec<_> = (0..2000).map(status).collect();
        let frames = status_frames(&RegionId::parse("r").unwrap(), all);
        assert!(frames.len() >= 2, "{} frames", frames.len());
        let mut seen = Vec::new();
        for f in &frames {
            assert!(f.len() <= MAX_STATUS_FRAME, "{} bytes", f.len());
            let m: ServerMessage = serde_json::from_str(f).unwrap();
            let ServerMessage::Statuses { statuses, .. } = m else {
                panic!("{f}")
            };
            seen.extend(statuses.into_iter().map(|s| s.version));
        }
        assert_eq!(seen, (0..2000).collect::<Vec<_>>());
    }
}
