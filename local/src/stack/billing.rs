//! What the stack would cost in AWS: the billed units of every service, counted the way AWS
//! meters them (`GET /dev/stats` `billing`, [`LocalStack::billing`](super::LocalStack::billing)).
//!
//! - **API Gateway WebSocket**: messages both ways in 32 KB units and connection minutes, and
//!   `@connections` calls, from the local API's own [`WebSocketMeter`].
//! - **API Gateway HTTP**: one request per call of an HTTP API route (`POST /v1/heartbeats`;
//!   not `/dev/*`, not the dashboard's files). HTTP APIs meter in 512 KB units; the bodies
//!   here are at most 1 KB, so a request is one.
//! - **Lambda**: invocations per function, and GB-seconds: each invocation's wall time
//!   rounded up to the next millisecond × its memory, [`LAMBDA_MEMORY_MB`] for every function
//!   (`template.yaml` Globals `MemorySize: 256`; no function overrides it).
//! - **SQS**: requests in 64 KB units of payload. `SendMessage` (a heartbeat) is one per 64 KB;
//!   a publish of push messages is a `SendMessageBatch` per 10 messages, each one per 64 KB of
//!   its bodies. For each batch an event source mapping hands to a function: `ReceiveMessage`
//!   calls (at most 10 messages each, one per 64 KB of their bodies) and `DeleteMessageBatch`
//!   calls for the messages that succeeded (at most 10 each; none when none did). Not counted:
//!   the mapping's idle long polling (in AWS a fixed few hundred thousand requests a month per
//!   queue, whatever the traffic), moves to a dead-letter queue (done by SQS itself).
//! - **DynamoDB on demand**: read and write request units of the three tables' ports,
//!   metered by wrapping them ([`MeteredRegistry`], [`MeteredFacilities`], [`MeteredLedger`]),
//!   whether they are in memory or on an emulator. An item's size is the sum of the UTF-8
//!   lengths of its attribute names and values, a number counted as its decimal string (close
//!   to DynamoDB's own number encoding), a boolean as 1; the items are rebuilt from the domain
//!   values with the attribute layout of the DynamoDB adapters (`shared/src/hub/registry/dynamo.rs`,
//!   `shared/src/facilities/dynamo.rs`, `shared/src/ledger.rs`). Reads: `GetItem` is
//!   ⌈size / 4 KB⌉ × ½ eventually consistent, × 1 with `ConsistentRead` (an absent item costs
//!   the same as a 1-byte one); `Query` and `Scan` are ⌈sum of the sizes of the items read /
//!   4 KB⌉ × ½ (index reads are always eventually consistent), at least ½. Writes: `PutItem`,
//!   `UpdateItem`, `DeleteItem` are ⌈size / 1 KB⌉ of the larger of the old and new item (at
//!   least 1, also when a delete finds nothing or a condition refuses the write);
//!   `BatchWriteItem` the same per item. Approximations: attributes a port's answer does not
//!   carry (another id's length, a counter) are estimated ([`ESTIMATED_ID_LEN`]); a filtered
//!   `Query` is metered on what it returns (DynamoDB bills what it read before filtering); a
//!   status write's old item is taken to be the size of the new one; writes to the
//!   global secondary indexes, which DynamoDB bills on top of the table's, are not counted;
//!   calls that fail with an error are not counted (DynamoDB does not bill throttled ones).

use crate::WebSocketMeter;
use crate::queue::LocalQueue;
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use presence::facilities::{FacilityError, FacilityStore};
use presence::hub::registry::{Connection, ConnectionRegistry, RegistryError};
use presence::ids::{FacilityId, RegionId, SessionId, UserId};
use presence::ledger::{EpochStart, LedgerError, PartitionLedger};
use presence::protocol::{FacilityStatus, PushMessage, QueueMessage};
use presence::queue::{HeartbeatQueue, PublishError, PushPublisher, QueueError};
use presence::sessions::{FacilityState, JournalEntry, Partition, Segment};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Every function's memory (`template.yaml` Globals `MemorySize: 256`; none overrides it).
pub const LAMBDA_MEMORY_MB: u64 = 256;
/// SQS meters requests in 64 KB chunks of payload.
pub const SQS_UNIT_BYTES: usize = 64 * 1024;
/// Messages per `ReceiveMessage`, `SendMessageBatch` and `DeleteMessageBatch`.
pub const SQS_MAX_BATCH: usize = 10;
/// DynamoDB read request units cover 4 KB (a strongly consistent read; half for eventual).
pub const DYNAMODB_READ_UNIT_BYTES: usize = 4 * 1024;
/// DynamoDB write request units cover 1 KB.
pub const DYNAMODB_WRITE_UNIT_BYTES: usize = 1024;
/// The length assumed for an id an item holds but a port's answer does not carry.
pub const ESTIMATED_ID_LEN: usize = 16;

/// The stack's functions, as Lambda bills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    HeartbeatIngest,
    HeartbeatConsumer,
    SessionExpiry,
    FacilityRollup,
    WsConnect,
    WsDisconnect,
    WsMessage,
    WsPush,
}

impl Function {
    pub const ALL: [Function; 8] = [
        Function::HeartbeatIngest,
        Function::HeartbeatConsumer,
        Function::SessionExpiry,
        Function::FacilityRollup,
        Function::WsConnect,
        Function::WsDisconnect,
        Function::WsMessage,
        Function::WsPush,
    ];

    /// The function's name (its directory under `functions/`).
    pub fn name(self) -> &'static str {
        match self {
            Function::HeartbeatIngest => "heartbeat-ingest",
            Function::HeartbeatConsumer => "heartbeat-consumer",
            Function::SessionExpiry => "session-expiry",
            Function::FacilityRollup => "facility-rollup",
            Function::WsConnect => "ws-connect",
            Function::WsDisconnect => "ws-disconnect",
            Function::WsMessage => "ws-message",
            Function::WsPush => "ws-push",
        }
    }
}

/// Billed units so far, as `GET /dev/stats` reports them under `billing`. Subtract two
/// snapshots with [`since`](Self::since) to cost an operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Billing {
    /// API Gateway WebSocket messages, both ways, in 32 KB units.
    pub websocket_messages: u64,
    /// Open time of every WebSocket connection, open ones up to now, in minutes.
    pub connection_minutes: f64,
    /// HTTP API requests.
    pub http_requests: u64,
    /// Invocations per function name (all eight, zeros included).
    pub lambda_invocations: BTreeMap<String, u64>,
    /// Lambda compute: billed milliseconds × memory in GB, in GB-seconds.
    pub lambda_gb_seconds: f64,
    /// SQS requests, in 64 KB units.
    pub sqs_requests: u64,
    /// DynamoDB read request units (on demand).
    pub dynamodb_read_units: f64,
    /// DynamoDB write request units (on demand).
    pub dynamodb_write_units: f64,
    /// `@connections` (management API) requests.
    pub management_api_calls: u64,
}

impl Billing {
    /// What was billed between `earlier` and `self` (counters never go down; a counter that
    /// did, e.g. snapshots of two stacks, gives 0).
    pub fn since(&self, earlier: &Billing) -> Billing {
        let float = |now: f64, then: f64| (now - then).max(0.0);
        Billing {
            websocket_messages: self
                .websocket_messages
                .saturating_sub(earlier.websocket_messages),
            connection_minutes: float(self.connection_minutes, earlier.connection_minutes),
            http_requests: self.http_requests.saturating_sub(earlier.http_requests),
            lambda_invocations: self
                .lambda_invocations
                .iter()
                .map(|(name, n)| (name.clone(), n.saturating_sub(earlier.invocations(name))))
                .collect(),
            lambda_gb_seconds: float(self.lambda_gb_seconds, earlier.lambda_gb_seconds),
            sqs_requests: self.sqs_requests.saturating_sub(earlier.sqs_requests),
            dynamodb_read_units: float(self.dynamodb_read_units, earlier.dynamodb_read_units),
            dynamodb_write_units: float(self.dynamodb_write_units, earlier.dynamodb_write_units),
            management_api_calls: self
                .management_api_calls
                .saturating_sub(earlier.management_api_calls),
        }
    }

    /// Invocations of the function named `name` (0 when unknown).
    pub fn invocations(&self, name: &str) -> u64 {
        self.lambda_invocations.get(name).copied().unwrap_or(0)
    }
}

/// The stack's billing counters (all but the WebSocket API's, which it reads from the API's
/// [`WebSocketMeter`] once [`attach_websocket`](Self::attach_websocket) gave it).
#[derive(Debug, Default)]
pub struct Meter {
    http_requests: AtomicU64,
    invocations: [AtomicU64; 8],
    /// Billed Lambda milliseconds (each invocation rounded up), all functions.
    lambda_ms: AtomicU64,
    sqs_requests: AtomicU64,
    /// DynamoDB read units in halves (every read costs a multiple of ½).
    read_half_units: AtomicU64,
    write_units: AtomicU64,
    websocket: OnceLock<WebSocketMeter>,
}

impl Meter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Reads the WebSocket API's counters from now on (once).
    pub fn attach_websocket(&self, meter: WebSocketMeter) {
        let _ = self.websocket.set(meter);
    }

    /// Everything so far.
    pub fn billing(&self) -> Billing {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ws = self.websocket.get().map(WebSocketMeter::usage);
        Billing {
            websocket_messages: ws.map_or(0, |u| u.messages),
            connection_minutes: ws.map_or(0.0, |u| u.connection_minutes()),
            http_requests: load(&self.http_requests),
            lambda_invocations: Function::ALL
                .iter()
                .map(|f| (f.name().to_owned(), load(&self.invocations[*f as usize])))
                .collect(),
            lambda_gb_seconds: load(&self.lambda_ms) as f64 / 1000.0 * LAMBDA_MEMORY_MB as f64
                / 1024.0,
            sqs_requests: load(&self.sqs_requests),
            dynamodb_read_units: load(&self.read_half_units) as f64 / 2.0,
            dynamodb_write_units: load(&self.write_units) as f64,
            management_api_calls: ws.map_or(0, |u| u.management_calls),
        }
    }

    /// One request to an HTTP API route.
    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// One invocation of `function` that ran for `wall`.
    pub fn invocation(&self, function: Function, wall: Duration) {
        self.invocations[function as usize].fetch_add(1, Ordering::Relaxed);
        let billed_ms = wall.as_nanos().div_ceil(1_000_000).max(1);
        self.lambda_ms.fetch_add(
            u64::try_from(billed_ms).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Runs `handler` as one invocation of `function`, timed.
    pub async fn invoke<T>(&self, function: Function, handler: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = handler.await;
        self.invocation(function, start.elapsed());
        out
    }

    /// An event source mapping's batch: its `ReceiveMessage` calls, the invocation of
    /// `function`, and the `DeleteMessageBatch` calls for what succeeded.
    pub async fn sqs_batch<F, Fut>(
        &self,
        function: Function,
        event: SqsEvent,
        handler: F,
    ) -> SqsBatchResponse
    where
        F: FnOnce(SqsEvent) -> Fut,
        Fut: Future<Output = SqsBatchResponse>,
    {
        let sizes: Vec<usize> = event
            .records
            .iter()
            .map(|r| r.body.as_ref().map_or(0, String::len))
            .collect();
        let ids: Vec<Option<String>> = event.records.iter().map(|r| r.message_id.clone()).collect();
        self.sqs_requests(sizes.chunks(SQS_MAX_BATCH).map(sqs_units).sum());
        let response = self.invoke(function, handler(event)).await;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let succeeded = ids
            .iter()
            .filter(|id| id.as_deref().is_none_or(|id| !failed.contains(id)))
            .count();
        self.sqs_requests(succeeded.div_ceil(SQS_MAX_BATCH) as u64);
        response
    }

    fn sqs_requests(&self, n: u64) {
        self.sqs_requests.fetch_add(n, Ordering::Relaxed);
    }

    /// A `GetItem` of an item of `size` bytes (`None`: not found).
    fn get_item(&self, size: Option<usize>, consistent: bool) {
        let halves = size.unwrap_or(0).div_ceil(DYNAMODB_READ_UNIT_BYTES).max(1) as u64;
        self.read_half_units.fetch_add(
            if consistent { 2 * halves } else { halves },
            Ordering::Relaxed,
        );
    }

    /// An eventually consistent `Query` or `Scan` that read items of these sizes.
    fn query(&self, sizes: impl IntoIterator<Item = usize>) {
        let total: usize = sizes.into_iter().sum();
        let halves = total.div_ceil(DYNAMODB_READ_UNIT_BYTES).max(1) as u64;
        self.read_half_units.fetch_add(halves, Ordering::Relaxed);
    }

    /// A `PutItem`, `UpdateItem` or `DeleteItem` (or one item of a `BatchWriteItem`) whose
    /// larger item, old or new, has `size` bytes.
    fn write(&self, size: usize) {
        let units = size.div_ceil(DYNAMODB_WRITE_UNIT_BYTES).max(1) as u64;
        self.write_units.fetch_add(units, Ordering::Relaxed);
    }
}

/// Requests for an SQS call carrying bodies of these sizes: one per 64 KB, at least one.
fn sqs_units(sizes: &[usize]) -> u64 {
    sizes.iter().sum::<usize>().div_ceil(SQS_UNIT_BYTES).max(1) as u64
}

/// A [`LocalQueue`] as the functions' queue ports, metered as SQS calls.
#[derive(Debug)]
pub struct MeteredQueue {
    queue: Arc<LocalQueue>,
    meter: Arc<Meter>,
}

impl MeteredQueue {
    pub fn new(queue: Arc<LocalQueue>, meter: Arc<Meter>) -> Arc<Self> {
        Arc::new(Self { queue, meter })
    }
}

#[async_trait]
impl HeartbeatQueue for MeteredQueue {
    /// One `SendMessage`.
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let body = message.to_json();
        self.meter.sqs_requests(sqs_units(&[body.len()]));
        self.queue.send(body);
        Ok(())
    }
}

#[async_trait]
impl PushPublisher for MeteredQueue {
    /// A `SendMessageBatch` per 10 messages, as the SQS adapter sends them.
    async fn publish(&self, messages: &[PushMessage]) -> Result<(), PublishError> {
        let bodies: Vec<String> = messages.iter().map(PushMessage::to_json).collect();
        for batch in bodies.chunks(SQS_MAX_BATCH) {
            let sizes: Vec<usize> = batch.iter().map(String::len).collect();
            self.meter.sqs_requests(sqs_units(&sizes));
        }
        for body in bodies {
            self.queue.send(body);
        }
        Ok(())
    }
}

/// Sizes of items as DynamoDB counts them.
mod size {
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
    pub(super) fn status(
        f: &FacilityStatus,
        partition: Option<Partition>,
        rev: Option<u64>,
    ) -> usize {
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
}

use size::ConnectionItem;

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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::{BatchItemFailure, SqsMessage};
    use presence::hub::registry::CONNECTION_TTL_S;

    fn connection() -> Connection {
        Connection {
            id: "L0SM9cOFvHcCIhw=".into(),
            user: UserId::parse("nurse-ann").unwrap(),
            facility: FacilityId::parse("st-olav-icu").unwrap(),
            region: RegionId::parse("trondelag").unwrap(),
            session_id: None,
            connected_ms: 1_707_503_007_396,
            hidden: false,
        }
    }

    /// The size counts every attribute the DynamoDB adapter writes, by hand.
    #[test]
    fn a_connection_item_is_sized_like_the_adapter_writes_it() {
        let expected = "pk".len()
            + "CONN#L0SM9cOFvHcCIhw=".len()
            + "sk".len()
            + "META".len()
            + "user_pk".len()
            + "USER#nurse-ann".len()
            + "user_sk".len()
            + "CONN#L0SM9cOFvHcCIhw=".len()
            + "facility_pk".len()
            + "FACILITY#st-olav-icu".len()
            + "region_pk".len()
            + "REGION#trondelag".len()
            + "conn_id".len()
            + "L0SM9cOFvHcCIhw=".len()
            + "user_id".len()
            + "nurse-ann".len()
            + "facility_id".len()
            + "st-olav-icu".len()
            + "region".len()
            + "trondelag".len()
            + "connected_ms".len()
            + "1707503007396".len()
            + "expires_at".len()
            + (1_707_503_007 + CONNECTION_TTL_S).to_string().len();
        assert_eq!(ConnectionItem::of(&connection()).size(), expected);
    }

    #[tokio::test]
    async fn dynamodb_units_follow_on_demand_rounding() {
        let meter = Meter::new();
        let registry = MeteredRegistry::new(
            Arc::new(presence::hub::registry::MemoryConnectionRegistry::new()),
            meter.clone(),
        );
        let c = connection();
        registry.register(&c).await.unwrap(); // PutItem, < 1 KB
        assert_eq!(meter.billing().dynamodb_write_units, 1.0);
        registry.get(&c.id).await.unwrap(); // GetItem, eventual
        registry.get("absent").await.unwrap(); // not found: still ½
        assert_eq!(meter.billing().dynamodb_read_units, 1.0);
        registry.members("chat:empty").await.unwrap(); // an empty Query: ½
        assert_eq!(meter.billing().dynamodb_read_units, 1.5);
        registry.remove(&c.id).await.unwrap();
        registry.remove(&c.id).await.unwrap(); // absent: still 1
        assert_eq!(meter.billing().dynamodb_write_units, 3.0);

        // Sizes round up per call: a 5 KB item is 2 reads consistent, 1 eventual; 5 writes.
        meter.get_item(Some(5 * 1024), true);
        assert_eq!(meter.billing().dynamodb_read_units, 3.5);
        meter.get_item(Some(5 * 1024), false);
        assert_eq!(meter.billing().dynamodb_read_units, 4.5);
        meter.query([3 * 1024, 3 * 1024]); // 6 KB read: ⌈6/4⌉ × ½
        assert_eq!(meter.billing().dynamodb_read_units, 5.5);
        meter.write(5 * 1024);
        assert_eq!(meter.billing().dynamodb_write_units, 8.0);
    }

    #[tokio::test]
    async fn sqs_and_lambda_are_metered_per_call() {
        let meter = Meter::new();
        let queue = LocalQueue::new(crate::queue::QueueConfig::new("q"), None);
        let publisher = MeteredQueue::new(queue.clone(), meter.clone());
        let big = PushMessage::Deliver(
            serde_json::from_value(serde_json::json!({
                "type": "deliver", "to": "all", "data": "x".repeat(70 * 1024)
            }))
            .unwrap(),
        );
        // 11 messages: two SendMessageBatch calls, the first over 64 KB.
        let mut messages = vec![big];
        messages.extend((0..10).map(|i| {
            PushMessage::Deliver(
                serde_json::from_value(serde_json::json!({
                    "type": "deliver", "to": "all", "data": i
                }))
                .unwrap(),
            )
        }));
        publisher.publish(&messages).await.unwrap();
        assert_eq!(meter.billing().sqs_requests, 2 + 1);
        assert_eq!(queue.visible(), 11);

        let record = |id: &str, body: &str| {
            let mut m = SqsMessage::default();
            m.message_id = Some(id.into());
            m.body = Some(body.into());
            m
        };
        let mut event = SqsEvent::default();
        event.records = (0..12).map(|i| record(&i.to_string(), "{}")).collect();
        let response = meter
            .sqs_batch(Function::WsPush, event, |_| async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = "0".into();
                let mut response = SqsBatchResponse::default();
                response.batch_item_failures.push(failure);
                response
            })
            .await;
        assert_eq!(response.batch_item_failures.len(), 1);
        let billing = meter.billing();
        // 2 receives (12 messages) + 2 deletes (11 succeeded).
        assert_eq!(billing.sqs_requests, 3 + 2 + 2);
        assert_eq!(billing.invocations("ws-push"), 1);
        assert_eq!(billing.lambda_invocations.len(), 8);
        // At least 2 ms at 0.25 GB.
        assert!(billing.lambda_gb_seconds >= 0.002 * 0.25, "{billing:?}");

        let later = meter.billing();
        let none = later.since(&billing);
        assert_eq!(none.sqs_requests, 0);
        assert_eq!(none.invocations("ws-push"), 0);
    }
}
