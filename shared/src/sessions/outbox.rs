//! ws-push's per-region outbox in Redis (`status_outbox.lua`): status events of one region
//! gathered over a short window and sent as one frame (docs/architecture.md, "Coalescing").

use super::reply::{as_array, as_int, as_string};
use super::{SessionStore, StoreError};
use crate::ids::RegionId;
use crate::protocol::FacilityStatus;
use redis::{Script, Value};
use std::sync::LazyLock;
use std::time::Duration;

static OUTBOX: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/status_outbox.lua")));

/// How long a waiting sender holds its turn, and taken entries stay its own, before another
/// may take them (it died).
const FLUSHER_LEASE: Duration = Duration::from_secs(30);

/// A status waiting in the outbox, with its stored form (compared by [`SessionStore::outbox_done`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub raw: String,
    pub status: FacilityStatus,
}

/// Who sends an offered status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxRole {
    /// No frame went out within the window: send these now.
    Send(Vec<Pending>),
    /// Send what gathered after this wait (then [`SessionStore::outbox_take`]).
    Wait(Duration),
    /// Another sender is waiting and will carry these too.
    Queued,
}

fn keys(region: &RegionId) -> [String; 3] {
    let tag = format!("presence:{{o:{region}}}");
    [
        format!("{tag}:outbox"),
        format!("{tag}:gate"),
        format!("{tag}:flusher"),
    ]
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn entries(v: Value) -> Result<Vec<Pending>, StoreError> {
    let flat = as_array("status_outbox", v)?;
    let mut out = Vec::with_capacity(flat.len() / 2);
    for pair in flat.chunks(2) {
        let [_, raw] = pair else {
            return Err(StoreError::reply("status_outbox", "odd entry list"));
        };
        let raw = as_string("status_outbox", raw)?;
        // "<version>|<taken ms>|<json>"
        let json = raw.splitn(3, '|').nth(2).unwrap_or_default();
        let status = serde_json::from_str(json)
            .map_err(|e| StoreError::reply("status_outbox", format!("entry: {e}")))?;
        out.push(Pending { raw, status });
    }
    Ok(out)
}

impl SessionStore {
    /// Puts `statuses` (all of `region`) in the region's outbox and says who sends them.
    pub async fn outbox_offer(
        &self,
        region: &RegionId,
        window: Duration,
        statuses: &[FacilityStatus],
        now_ms: i64,
    ) -> Result<OutboxRole, StoreError> {
        let [outbox, gate, flusher] = keys(region);
        let mut inv = OUTBOX.prepare_invoke();
        inv.key(outbox)
            .key(gate)
            .key(flusher)
            .arg("offer")
            .arg(now_ms)
            .arg(millis(FLUSHER_LEASE))
            .arg(millis(window));
        for s in statuses {
            let json = serde_json::to_string(s).expect("a status serializes");
            inv.arg(s.facility_id.as_str()).arg(s.version).arg(json);
        }
        let reply = as_array(
            "status_outbox",
            inv.invoke_async(&mut self.connection()).await?,
        )?;
        let mut it = reply.into_iter();
        let role = it
            .next()
            .map(|v| as_string("status_outbox", &v))
            .transpose()?;
        match (role.as_deref(), it.next()) {
            (Some("send"), Some(list)) => Ok(OutboxRole::Send(entries(list)?)),
            (Some("wait"), Some(ms)) => Ok(OutboxRole::Wait(Duration::from_millis(
                u64::try_from(as_int("status_outbox", &ms)?).unwrap_or(0),
            ))),
            (Some("queued"), None) => Ok(OutboxRole::Queued),
            (other, _) => Err(StoreError::reply(
                "status_outbox",
                format!("unexpected role {other:?}"),
            )),
        }
    }

    /// Takes what gathered (after an [`OutboxRole::Wait`]) and starts a new window.
    pub async fn outbox_take(
        &self,
        region: &RegionId,
        window: Duration,
        now_ms: i64,
    ) -> Result<Vec<Pending>, StoreError> {
        let [outbox, gate, flusher] = keys(region);
        let reply = as_array(
            "status_outbox",
            OUTBOX
                .key(outbox)
                .key(gate)
                .key(flusher)
                .arg("take")
                .arg(now_ms)
                .arg(millis(FLUSHER_LEASE))
                .arg(millis(window))
                .invoke_async(&mut self.connection())
                .await?,
        )?;
        match reply.into_iter().nth(1) {
            Some(list) => entries(list),
            None => Err(StoreError::reply("status_outbox", "take without entries")),
        }
    }

    /// Forgets the entries that were sent (unless a newer version replaced one meanwhile).
    pub async fn outbox_done(&self, region: &RegionId, sent: &[Pending]) -> Result<(), StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        let [outbox, gate, flusher] = keys(region);
        let mut inv = OUTBOX.prepare_invoke();
        inv.key(outbox)
            .key(gate)
            .key(flusher)
            .arg("done")
            .arg(0)
            .arg(0);
        for p in sent {
            inv.arg(p.status.facility_id.as_str()).arg(&p.raw);
        }
        let _: Value = inv.invoke_async(&mut self.connection()).await?;
        Ok(())
    }
}
