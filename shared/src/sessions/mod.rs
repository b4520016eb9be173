//! The session engine: sessions, deadlines and facility status in Redis.
//!
//! All changes run as Lua scripts (`shared/lua/`, embedded at build time, called by SHA and
//! reloaded on `NOSCRIPT`), one call per partition per batch. The caller passes the current
//! time in; scripts never read the clock.

mod connection;
pub mod model;
mod partition;

pub use connection::RedisConnection;
pub use partition::{Partition, Partitioner};

use crate::config::SessionSettings;
use crate::ids::{FacilityId, RegionId, SessionId, UserId};
use crate::ledger::{EpochStart, PartitionLedger};
use crate::protocol::{FacilityStatus, QueueMessage, Status};
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

/// `region, status, since, version` of a facility hash.
type FacilityFields = (Option<String>, Option<String>, Option<i64>, Option<u64>);

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
        let [journal, dirty, stale, reconcile] = take_array::<4>("rollup_collect", reply)?;
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

    /// The live status of every known facility of `region`: one read-only script per
    /// partition, all partitions at once.
    pub async fn snapshot(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, StoreError> {
        let calls = self.partitioner.all().map(|p| {
            let mut conn = self.conn.clone();
            async move {
                let reply: Value = SNAPSHOT
                    .key(p.deadlines_key())
                    .arg(p.prefix())
                    .arg(region.as_str())
                    .invoke_async(&mut conn)
                    .await?;
                parse_flips("snapshot", reply)
            }
        });
        let mut all = Vec::new();
        for part in futures::future::join_all(calls).await {
            all.extend(part?);
        }
        all.sort_by(|a, b| a.facility_id.cmp(&b.facility_id));
        Ok(all)
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

    /// A session as stored, if any.
    pub async fn session(
        &self,
        facility: &FacilityId,
        session: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let p = self.partitioner.partition_of(facility);
        let key = format!("{}:s:{}/{}", p.prefix(), facility, session);
        let h: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        if h.is_empty() {
            return Ok(None);
        }
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
        Ok(Some(SessionRecord {
            user_id: h.get("user").cloned().unwrap_or_default(),
            facility_id: h.get("facility").cloned().unwrap_or_default(),
            region: h.get("region").cloned().unwrap_or_default(),
            started_ms: num("started").unwrap_or_default(),
            last_ms: num("last").unwrap_or_default(),
            deadline_ms: num("deadline").unwrap_or_default(),
            offline_ms: num("offline"),
        }))
    }

    /// A facility's current status, if it was ever seen.
    pub async fn facility(
        &self,
        facility: &FacilityId,
    ) -> Result<Option<FacilityStatus>, StoreError> {
        let p = self.partitioner.partition_of(facility);
        let fk = format!("{}:f:{}", p.prefix(), facility);
        let lk = format!("{}:live:{}", p.prefix(), facility);
        let (fields, live): (FacilityFields, u64) = redis::pipe()
            .cmd("HMGET")
            .arg(&fk)
            .arg("region")
            .arg("status")
            .arg("since")
            .arg("version")
            .cmd("SCARD")
            .arg(&lk)
            .query_async(&mut self.conn.clone())
            .await?;
        let (region, status, since, version) = fields;
        let (Some(region), Some(status)) = (region, status) else {
            return Ok(None);
        };
        Ok(Some(FacilityStatus {
            facility_id: facility.clone(),
            region: RegionId::parse(&region)
                .map_err(|e| StoreError::reply("facility", e.to_string()))?,
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::reply("facility", format!("status {status:?}")))?,
            since_ms: since.unwrap_or_default(),
            version: version.unwrap_or_default(),
            online_sessions: live,
        }))
    }
}

fn take_array<const N: usize>(script: &'static str, v: Value) -> Result<[Value; N], StoreError> {
    let items = as_array(script, v)?;
    let len = items.len();
    items
        .try_into()
        .map_err(|_| StoreError::reply(script, format!("expected {N} items, got {len}")))
}

fn as_array(script: &'static str, v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(StoreError::reply(
            script,
            format!("expected an array, got {other:?}"),
        )),
    }
}

fn as_string(script: &'static str, v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b.clone()).map_err(|e| StoreError::reply(script, e.to_string()))
        }
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(StoreError::reply(
            script,
            format!("expected a string, got {other:?}"),
        )),
    }
}

fn as_int(script: &'static str, v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(_) | Value::SimpleString(_) => as_string(script, v)?
            .parse()
            .map_err(|e: std::num::ParseIntError| StoreError::reply(script, e.to_string())),
        other => Err(StoreError::reply(
            script,
            format!("expected an integer, got {other:?}"),
        )),
    }
}

/// `{ facility, region, status, since_ms, version, online_sessions }`
fn parse_status(
    script: &'static str,
    v: Value,
) -> Result<(FacilityStatus, Vec<Value>), StoreError> {
    let mut items = as_array(script, v)?;
    if items.len() < 6 {
        return Err(StoreError::reply(
            script,
            format!("status with {} fields", items.len()),
        ));
    }
    let rest = items.split_off(6);
    let bad = |e: crate::ids::IdError| StoreError::reply(script, e.to_string());
    let status = as_string(script, &items[2])?;
    Ok((
        FacilityStatus {
            facility_id: FacilityId::parse(&as_string(script, &items[0])?).map_err(bad)?,
            region: RegionId::parse(&as_string(script, &items[1])?).map_err(bad)?,
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::reply(script, format!("status {status:?}")))?,
            since_ms: as_int(script, &items[3])?,
            version: as_int(script, &items[4])? as u64,
            online_sessions: as_int(script, &items[5])? as u64,
        },
        rest,
    ))
}

fn parse_flips(script: &'static str, v: Value) -> Result<Vec<FacilityStatus>, StoreError> {
    as_array(script, v)?
        .into_iter()
        .map(|f| parse_status(script, f).map(|(s, _)| s))
        .collect()
}

/// `{ facility, region, status, since_ms, version, online_sessions, rev }`
fn parse_states(v: Value) -> Result<Vec<FacilityState>, StoreError> {
    as_array("rollup_collect", v)?
        .into_iter()
        .map(|s| {
            let (status, rest) = parse_status("rollup_collect", s)?;
            let rev = rest
                .first()
                .map(|r| as_int("rollup_collect", r))
                .transpose()?
                .unwrap_or(0);
            Ok(FacilityState {
                status,
                rev: rev as u64,
            })
        })
        .collect()
}
