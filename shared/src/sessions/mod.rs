//! The session engine: sessions, deadlines and facility status in Redis.
//!
//! All changes run as Lua scripts (`shared/lua/`, embedded at build time, called by SHA and
//! reloaded on `NOSCRIPT`), one call per partition per batch. The caller passes the current
//! time in; scripts never read the clock.

mod connection;
mod members;
#[cfg(any(test, feature = "testing"))]
pub mod model;
pub mod outbox;
mod partition;
mod reads;
mod reply;
mod rollup_ops;

use reply::{as_array, as_int, as_string, parse_flips, take_array};

pub use connection::RedisConnection;
pub use partition::{Partition, Partitioner};

use crate::config::SessionSettings;
use crate::ids::{FacilityId, RegionId, SessionId, UserId};
use crate::ledger::{EpochStart, PartitionLedger};
use crate::protocol::{FacilityStatus, QueueMessage};
use redis::{Script, Value};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("../../lua/lib.lua"),
                include_str!(concat!("../../lua/", $file))
            ))
        })
    };
}

static HEARTBEAT: LazyLock<Script> = script!("heartbeat.lua");
static SOCKET: LazyLock<Script> = script!("socket.lua");
static SWEEP: LazyLock<Script> = script!("sweep.lua");
static ACK_PUBLISHED: LazyLock<Script> = script!("ack_published.lua");
static ROLLUP_COLLECT: LazyLock<Script> = script!("rollup_collect.lua");
static ROLLUP_COMMIT: LazyLock<Script> = script!("rollup_commit.lua");
static SNAPSHOT: LazyLock<Script> = script!("snapshot.lua");
static RECONCILE: LazyLock<Script> = script!("reconcile.lua");
static RESEED: LazyLock<Script> = script!("reseed.lua");
static SETTLE_EPOCH: LazyLock<Script> = script!("settle_epoch.lua");

/// A session-engine failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from {script}: {detail}")]
    Reply {
        script: &'static str,
        detail: String,
    },
}

impl StoreError {
    /// Whether the same call may succeed later: Redis unreachable, timing out, failing over
    /// or busy; never a reply this code cannot read.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Redis(e) => {
                !matches!(e.retry_method(), redis::RetryMethod::NoRetry)
                    || e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
            }
            Self::Reply { .. } => false,
        }
    }

    fn reply(script: &'static str, detail: impl Into<String>) -> Self {
        Self::Reply {
            script,
            detail: detail.into(),
        }
    }
}

/// What one heartbeat did, as reported by the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A new session went online.
    New,
    /// A live session's deadline moved forward.
    Refreshed,
    /// The session ended (offline now).
    Ended,
    /// An offline session started a new online segment.
    Restarted,
    /// Older than or equal to what is stored (a duplicate or a late delivery): no change.
    Old,
    /// Its deadline had already passed when it was applied: no change.
    TooLate,
    /// The session id belongs to another user: no change.
    Conflict,
    /// An end for a session never seen: remembered so that late heartbeats cannot revive it.
    EndedUnknown,
    /// Its socket closed: the session's deadline moved in to the disconnect grace
    /// ([`SocketOp::Linger`]).
    Lingering,
    /// Its socket closed, but another socket carries the session now (or its deadline is
    /// sooner than the grace): no change.
    Kept,
}

/// What a WebSocket connection does to the session it carries (`socket.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOp {
    /// A heartbeat on the socket (`$connect` with `session_id`, or a `heartbeat` frame):
    /// applied as an `active` heartbeat, and the session remembers this socket.
    Bind,
    /// The socket closed (`$disconnect`, or found gone): unless another socket carries the
    /// session, it stays online at most `grace` longer.
    Linger { grace_ms: i64 },
    /// The client ended the session on the socket: offline now.
    Ended,
}

impl Outcome {
    fn from_code(c: char) -> Option<Self> {
        Some(match c {
            'n' => Self::New,
            'r' => Self::Refreshed,
            'e' => Self::Ended,
            's' => Self::Restarted,
            'o' => Self::Old,
            't' => Self::TooLate,
            'c' => Self::Conflict,
            'x' => Self::EndedUnknown,
            'l' => Self::Lingering,
            'k' => Self::Kept,
            _ => return None,
        })
    }
}

/// The result of applying a batch to one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// One per heartbeat, in the order given.
    pub outcomes: Vec<Outcome>,
    /// Facilities that flipped, each already recorded as unpublished.
    pub flips: Vec<FacilityStatus>,
}

/// The result of one sweep of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// `(facility/session member, deadline ms)` of each claimed session.
    pub claimed: Vec<(String, i64)>,
    pub flips: Vec<FacilityStatus>,
    /// The earliest deadline still pending in the partition.
    pub next_deadline_ms: Option<i64>,
}

/// A finished online segment of a session, for history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub facility_id: FacilityId,
    pub region: RegionId,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `ended` (the client said so) or `expired` (its deadline passed).
    pub reason: String,
}

/// An entry of a partition's journal: what happened since the last rollup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum JournalEntry {
    Flip(FacilityStatus),
    Segment(Segment),
}

/// A facility's current state with the change counter the rollup uses to know what it persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FacilityState {
    pub status: FacilityStatus,
    /// Grows on every change of status or live count.
    pub rev: u64,
}

/// What the rollup reads from one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Raw journal length read (what to trim on commit), including entries that failed to parse.
    pub journal_len: usize,
    pub journal: Vec<JournalEntry>,
    /// Facilities changed since they were last persisted.
    pub dirty: Vec<FacilityState>,
    /// Facilities whose last flip is still unpublished after the grace period.
    pub stale_unpublished: Vec<FacilityState>,
    /// The partition's data is new or was lost, its hold is over, and it has not been
    /// reconciled with what DynamoDB holds yet.
    pub needs_reconcile: bool,
    /// The partition has an epoch (its data began, or began again, in Redis).
    pub has_epoch: bool,
}

/// A session as stored (diagnostics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: String,
    pub facility_id: String,
    pub region: String,
    pub started_ms: i64,
    pub last_ms: i64,
    pub deadline_ms: i64,
    pub offline_ms: Option<i64>,
}

/// The Redis session engine.
#[derive(Debug, Clone)]
pub struct SessionStore {
    conn: RedisConnection,
    partitioner: Partitioner,
    ttl_ms: i64,
    /// How long offline flips are held after a data loss (see `lib.lua`).
    loss_hold_ms: i64,
    /// Tells a partition's first epoch from one after a data loss. Without it every new
    /// epoch is held as if data had been lost.
    ledger: Option<Arc<dyn PartitionLedger>>,
}

impl SessionStore {
    pub fn new(conn: RedisConnection, settings: &SessionSettings) -> Self {
        Self {
            conn,
            partitioner: Partitioner::new(settings.partitions),
            ttl_ms: settings.ttl.as_millis() as i64,
            loss_hold_ms: settings.loss_hold.as_millis() as i64,
            ledger: None,
        }
    }

    /// Asks `ledger` about every epoch this store starts, so a first start is not held.
    pub fn with_ledger(mut self, ledger: Arc<dyn PartitionLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// A script of this call started `partition`'s epoch: if the ledger says it is the
    /// partition's first, lift the hold now. Returns the flips that were held meanwhile.
    /// Any failure keeps the hold: it is what a data loss needs, and it ends by itself.
    async fn settle_new_epoch(&self, partition: Partition, now_ms: i64) -> Vec<FacilityStatus> {
        let Some(ledger) = &self.ledger else {
            return Vec::new();
        };
        match ledger.begin_epoch(partition, now_ms).await {
            Ok(EpochStart::First) => {
                let lifted: Result<Value, _> = SETTLE_EPOCH
                    .key(partition.deadlines_key())
                    .arg(partition.prefix())
                    .arg(now_ms)
                    .invoke_async(&mut self.conn.clone())
                    .await;
                match lifted
                    .map_err(StoreError::from)
                    .and_then(|v| parse_flips("settle_epoch", v))
                {
                    Ok(flips) => flips,
                    Err(e) => {
                        tracing::error!(partition = partition.0, error = %e, "first epoch not settled; its hold stays");
                        Vec::new()
                    }
                }
            }
            Ok(EpochStart::AfterLoss) => {
                tracing::warn!(
                    partition = partition.0,
                    hold_ms = self.loss_hold_ms,
                    "Redis lost this partition's data: offline flips held"
                );
                Vec::new()
            }
            Err(e) => {
                tracing::error!(partition = partition.0, error = %e, "partition ledger unavailable; the new epoch is held as after a loss");
                Vec::new()
            }
        }
    }

    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// Applies heartbeats of one partition in one atomic script call. The caller groups by
    /// partition; heartbeats are applied in receive-time order.
    pub async fn apply(
        &self,
        partition: Partition,
        now_ms: i64,
        heartbeats: &[QueueMessage],
    ) -> Result<Applied, StoreError> {
        if heartbeats.is_empty() {
            return Ok(Applied::default());
        }
        let mut order: Vec<usize> = (0..heartbeats.len()).collect();
        order.sort_by_key(|&i| heartbeats[i].at_ms);
        let mut inv = HEARTBEAT.prepare_invoke();
        inv.key(partition.deadlines_key())
            .arg(partition.prefix())
            .arg(now_ms)
            .arg(self.ttl_ms)
            .arg(self.loss_hold_ms);
        for &i in &order {
            let h = &heartbeats[i];
            inv.arg(h.session_id.as_str())
                .arg(h.user_id.as_str())
                .arg(h.facility_id.as_str())
                .arg(h.region.as_str())
                .arg(h.at_ms)
                .arg(h.state.as_str());
        }
        let reply: Value = inv.invoke_async(&mut self.conn.clone()).await?;
        let [codes, flips, new_epoch] = take_array::<3>("heartbeat", reply)?;
        let codes = as_string("heartbeat", &codes)?;
        if codes.len() != heartbeats.len() {
            return Err(StoreError::reply(
                "heartbeat",
                format!(
                    "{} outcomes for {} heartbeats",
                    codes.len(),
                    heartbeats.len()
                ),
            ));
        }
        let mut outcomes = vec![Outcome::Old; heartbeats.len()];
        for (slot, c) in order.iter().zip(codes.chars()) {
            outcomes[*slot] = Outcome::from_code(c)
                .ok_or_else(|| StoreError::reply("heartbeat", format!("outcome {c:?}")))?;
        }
        let mut flips = parse_flips("heartbeat", flips)?;
        if as_int("heartbeat", &new_epoch)? == 1 {
            flips.extend(self.settle_new_epoch(partition, now_ms).await);
        }
        Ok(Applied { outcomes, flips })
    }

    /// Applies what connection `connection_id` does to the session of `heartbeat` (its state
    /// is ignored: `op` says) in one atomic script call on its partition.
    pub async fn apply_socket(
        &self,
        heartbeat: &QueueMessage,
        op: SocketOp,
        connection_id: &str,
        now_ms: i64,
    ) -> Result<(Partition, Outcome, Vec<FacilityStatus>), StoreError> {
        let partition = self.partitioner.partition_of(&heartbeat.facility_id);
        let (name, grace_ms) = match op {
            SocketOp::Bind => ("bind", 0),
            SocketOp::Linger { grace_ms } => ("linger", grace_ms),
            SocketOp::Ended => ("ended", 0),
        };
        let reply: Value = SOCKET
            .key(partition.deadlines_key())
            .arg(partition.prefix())
            .arg(now_ms)
            .arg(self.ttl_ms)
            .arg(self.loss_hold_ms)
            .arg(heartbeat.session_id.as_str())
            .arg(heartbeat.user_id.as_str())
            .arg(heartbeat.facility_id.as_str())
            .arg(heartbeat.region.as_str())
            .arg(heartbeat.at_ms)
            .arg(name)
            .arg(connection_id)
            .arg(grace_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let [code, flips, new_epoch] = take_array::<3>("socket", reply)?;
        let code = as_string("socket", &code)?;
        let outcome = code
            .chars()
            .next()
            .and_then(Outcome::from_code)
            .ok_or_else(|| StoreError::reply("socket", format!("outcome {code:?}")))?;
        let mut flips = parse_flips("socket", flips)?;
        if as_int("socket", &new_epoch)? == 1 {
            flips.extend(self.settle_new_epoch(partition, now_ms).await);
        }
        Ok((partition, outcome, flips))
    }

    /// Claims up to `limit` sessions of `partition` whose deadline is before `now_ms`.
    pub async fn sweep(
        &self,
        partition: Partition,
        now_ms: i64,
        limit: usize,
    ) -> Result<Swept, StoreError> {
        let reply: Value = SWEEP
            .key(partition.deadlines_key())
            .arg(partition.prefix())
            .arg(now_ms)
            .arg(limit)
            .arg(self.loss_hold_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let [claimed, flips, next, new_epoch] = take_array::<4>("sweep", reply)?;
        let claimed = as_array("sweep", claimed)?;
        let mut pairs = Vec::with_capacity(claimed.len() / 2);
        let mut it = claimed.into_iter();
        while let (Some(member), Some(deadline)) = (it.next(), it.next()) {
            pairs.push((as_string("sweep", &member)?, as_int("sweep", &deadline)?));
        }
        let next = as_int("sweep", &next)?;
        let mut flips = parse_flips("sweep", flips)?;
        if as_int("sweep", &new_epoch)? == 1 {
            flips.extend(self.settle_new_epoch(partition, now_ms).await);
        }
        Ok(Swept {
            claimed: pairs,
            flips,
            next_deadline_ms: (next >= 0).then_some(next),
        })
    }
}
