//! Publishing flips to the push queue, then acknowledging them in Redis.
//!
//! The order matters: a flip is acknowledged only after the push queue accepted it, so a
//! crash in between leaves it unpublished and the rollup pushes it again (clients ignore the
//! duplicate by version).

use crate::protocol::{FacilityStatus, PushMessage, StatusEvent};
use crate::queue::PushPublisher;
use crate::sessions::{Partition, SessionStore};
use std::collections::BTreeMap;

/// Publishes `flips` and acknowledges the published ones. Returns how many were published;
/// failures are logged and left for the rollup to re-publish.
pub async fn publish_flips(
    store: &SessionStore,
    publisher: &dyn PushPublisher,
    flips: &[(Partition, FacilityStatus)],
) -> usize {
    if flips.is_empty() {
        return 0;
    }
    let messages: Vec<PushMessage> = flips
        .iter()
        .map(|(_, f)| PushMessage::Status(StatusEvent { status: f.clone() }))
        .collect();
    let mut failed = match publisher.publish(&messages).await {
        Ok(()) => Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "flips left unpublished for the rollup to retry");
            e.failed
        }
    };
    failed.sort_unstable();
    let mut by_partition: BTreeMap<Partition, Vec<(crate::ids::FacilityId, u64)>> = BTreeMap::new();
    for (i, (p, f)) in flips.iter().enumerate() {
        if failed.binary_search(&i).is_err() {
            by_partition
                .entry(*p)
                .or_default()
                .push((f.facility_id.clone(), f.version));
        }
    }
    let published = flips.len() - failed.len();
    let acks = by_partition.into_iter().map(|(p, list)| async move {
        if let Err(e) = store.ack_published(p, &list).await {
            // Not fatal: the rollup will publish these once more; versions make that harmless.
            tracing::warn!(partition = p.0, error = %e, "published flips not acknowledged");
        }
    });
    futures::future::join_all(acks).await;
    published
}
