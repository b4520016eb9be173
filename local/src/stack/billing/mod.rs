//! What the stack would cost in AWS: the billed units of every service, counted the way AWS
//! meters them (`GET /dev/stats` `billing`, [`LocalStack::billing`](super::LocalStack::billing)).
//!
//! - **API Gateway WebSocket**: messages both ways in 32 KB units and connection minutes, and
//!   `@connections` calls, from the local API's own [`WebSocketMeter`].
//! - **API Gateway HTTP**: one request per call of an HTTP API route (`POST /v1/heartbeats`,
//!   the history read and admin routes; not `/dev/*`, not the dashboard's files). HTTP APIs meter in 512 KB units; the bodies
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

mod messages;
mod queue;
mod size;
mod tables;

pub use messages::MeteredMessages;
pub use queue::MeteredQueue;
pub use tables::{MeteredFacilities, MeteredLedger, MeteredRegistry};

use crate::WebSocketMeter;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
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
    HistoryRead,
    AdminApi,
}

impl Function {
    pub const ALL: [Function; 10] = [
        Function::HeartbeatIngest,
        Function::HeartbeatConsumer,
        Function::SessionExpiry,
        Function::FacilityRollup,
        Function::WsConnect,
        Function::WsDisconnect,
        Function::WsMessage,
        Function::WsPush,
        Function::HistoryRead,
        Function::AdminApi,
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
            Function::HistoryRead => "history-read",
            Function::AdminApi => "admin-api",
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
    /// Invocations per function name (all of them, zeros included).
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
    invocations: [AtomicU64; Function::ALL.len()],
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
pub(super) fn sqs_units(sizes: &[usize]) -> u64 {
    sizes.iter().sum::<usize>().div_ceil(SQS_UNIT_BYTES).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    use presence::hub::registry::ConnectionRegistry;

    use super::size::ConnectionItem;
    use crate::queue::LocalQueue;
    use presence::queue::PushPublisher;

    use presence::hub::registry::Connection;
    use presence::ids::{FacilityId, RegionId, UserId};

    use presence::protocol::PushMessage;

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
            grant: Default::default(),
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
        assert_eq!(
            billing.lambda_invocations.len(),
            Function::ALL.len(),
            "every function listed"
        );
        // At least 2 ms at 0.25 GB.
        assert!(billing.lambda_gb_seconds >= 0.002 * 0.25, "{billing:?}");

        let later = meter.billing();
        let none = later.since(&billing);
        assert_eq!(none.sqs_requests, 0);
        assert_eq!(none.invocations("ws-push"), 0);
    }
}
