//! The messages table in DynamoDB (layout: the module documentation).

use super::{
    APPEND_RETRIES, HistoryPage, MAX_HISTORY_LIMIT, MessageError, MessageStore, Retention,
    StoredMessage, page_after, page_latest,
};
use crate::dynamo::{Item, n, s};
use crate::ids::UserId;
use crate::port::PortError;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TransactWriteItem, Update,
};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The sort key of a group's head item.
const HEAD_SK: u64 = 0;

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoMessageStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    retention: Retention,
    /// Appends that lost their seq to a concurrent one (and tried again), since creation.
    lost_races: Arc<AtomicU64>,
    /// Appends to one group through this store (and its clones) take turns: rivals within
    /// one process never pay for a cancelled transaction, and the local stack stays correct
    /// on an emulator whose transactions are not isolated from each other. A group maps to
    /// one of [`APPEND_LOCKS`] locks.
    turns: Arc<[tokio::sync::Mutex<()>]>,
}

/// How many locks the groups of one store are spread over.
const APPEND_LOCKS: usize = 64;

fn group_pk(group: &str) -> String {
    format!("GROUP#{group}")
}

fn number<T: std::str::FromStr>(item: &Item, k: &str) -> Result<T, MessageError> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| PortError::Malformed(format!("message item lacks the number {k}")))
}

fn message_from(item: &Item) -> Result<StoredMessage, MessageError> {
    let text = item
        .get("data")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| PortError::Malformed("message item lacks data".into()))?;
    Ok(StoredMessage {
        seq: number(item, "sk")?,
        ts: number(item, "ts")?,
        from: match item.get("from").and_then(|v| v.as_s().ok()) {
            Some(user) => {
                Some(UserId::parse(user).map_err(|e| PortError::Malformed(e.to_string()))?)
            }
            None => None,
        },
        data: serde_json::from_str(text)
            .map_err(|e| PortError::Malformed(format!("message data: {e}")))?,
    })
}

fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, MessageError> {
    r.map_err(|e| PortError::Refused(format!("request: {e}")))
}

/// What a failed append transaction means.
enum Failure {
    /// A concurrent append moved the head first (its seq, when the reply carried it), or a
    /// concurrent transaction held an item: try again.
    Contention(Option<u64>),
    Failed(MessageError),
}

fn failure<R: std::fmt::Debug>(e: SdkError<TransactWriteItemsError, R>) -> Failure {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        e.as_service_error()
    else {
        return Failure::Failed(PortError::from_sdk(&e));
    };
    let reasons = cancelled.cancellation_reasons();
    let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
    if reasons.is_empty() {
        // No reasons given (some emulators): the head's condition is the only one.
        return Failure::Contention(None);
    }
    if code(0) == "ConditionalCheckFailed" {
        let head = reasons[0]
            .item()
            .and_then(|item| item.get("seq"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok());
        return Failure::Contention(head);
    }
    let codes: Vec<&str> = (0..reasons.len()).map(code).collect();
    if codes.contains(&"TransactionConflict") {
        return Failure::Contention(None);
    }
    let detail = format!(
        "message append cancelled: {}",
        crate::aws::describe_sdk_error(&e)
    );
    if codes.contains(&"ThrottlingError") || codes.contains(&"ProvisionedThroughputExceeded") {
        Failure::Failed(PortError::Throttled(detail))
    } else {
        Failure::Failed(PortError::Refused(detail))
    }
}

/// A random wait of up to `cap_ms` milliseconds.
fn jitter(cap_ms: u64) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(cap_ms);
    Duration::from_micros(h.finish() % (cap_ms.max(1) * 1000))
}

impl DynamoMessageStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        retention: Retention,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
            lost_races: Arc::default(),
            turns: (0..APPEND_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// The lock `group`'s appends through this store take turns on.
    fn turn(&self, group: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        group.hash(&mut h);
        &self.turns[(h.finish() % APPEND_LOCKS as u64) as usize]
    }

    /// How many times an append lost its seq to a concurrent one and tried again (a gauge of
    /// contention on groups' heads), since this store was made.
    pub fn lost_races(&self) -> u64 {
        self.lost_races.load(Ordering::Relaxed)
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// The group's newest seq (0 before its first message), read consistently.
    async fn head(&self, group: &str) -> Result<u64, MessageError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(group_pk(group)))
            .key("sk", n(HEAD_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::from_sdk(&e))?;
        match out.item {
            Some(item) => number(&item, "seq"),
            None => Ok(0),
        }
    }

    /// The transaction storing `message` as the head's successor of `prev`.
    fn append_items(
        &self,
        pk: &str,
        prev: u64,
        message: &StoredMessage,
    ) -> Result<Vec<TransactWriteItem>, MessageError> {
        let seq = message.seq;
        let head = Update::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", n(HEAD_SK))
            .update_expression("SET #seq = :n")
            .condition_expression("attribute_not_exists(pk) OR #seq = :prev")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_values(":n", n(seq))
            .expression_attribute_values(":prev", n(prev))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build();
        let data = serde_json::to_string(&message.data)
            .map_err(|e| PortError::Refused(format!("message data: {e}")))?;
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", n(seq))
            .item("ts", n(message.ts))
            .item("expires_at", n(self.retention.expires_at_s(message.ts)))
            .item("data", s(data));
        if let Some(from) = &message.from {
            put = put.item("from", s(from.as_str()));
        }
        let mut items = vec![
            TransactWriteItem::builder().update(built(head)?).build(),
            TransactWriteItem::builder()
                .put(built(put.build())?)
                .build(),
        ];
        if let Some(evicted) = self.retention.evicts(seq) {
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", n(evicted))
                .build();
            items.push(TransactWriteItem::builder().delete(built(delete)?).build());
        }
        Ok(items)
    }

    /// One query page of the group's messages.
    async fn query(
        &self,
        group: &str,
        above: u64,
        forward: bool,
        limit: Option<usize>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), MessageError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk > :above")
            .expression_attribute_values(":pk", s(group_pk(group)))
            .expression_attribute_values(":above", n(above))
            .scan_index_forward(forward)
            .consistent_read(true)
            .set_limit(limit.map(|l| i32::try_from(l).unwrap_or(i32::MAX)))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| PortError::from_sdk(&e))?;
        Ok((
            out.items.unwrap_or_default(),
            out.last_evaluated_key.filter(|k| !k.is_empty()),
        ))
    }
}

#[async_trait]
impl MessageStore for DynamoMessageStore {
    async fn append(
        &self,
        group: &str,
        from: Option<&UserId>,
        data: &Value,
        now_ms: i64,
    ) -> Result<StoredMessage, MessageError> {
        let _turn = self.turn(group).lock().await;
        let pk = group_pk(group);
        let mut prev = self.head(group).await?;
        let mut attempt = 0;
        loop {
            let message = StoredMessage {
                seq: prev + 1,
                ts: now_ms,
                from: from.cloned(),
                data: data.clone(),
            };
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(self.append_items(&pk, prev, &message)?))
                .send()
                .await;
            let seen = match result {
                Ok(_) => return Ok(message),
                Err(e) => match failure(e) {
                    Failure::Contention(seen) => seen,
                    Failure::Failed(e) => return Err(e),
                },
            };
            attempt += 1;
            if attempt > APPEND_RETRIES {
                return Err(PortError::Unavailable(format!(
                    "message append to {group}: lost the seq to concurrent appends {attempt} times"
                )));
            }
            self.lost_races.fetch_add(1, Ordering::Relaxed);
            // The head the failed condition saw is the newest there is: one try with it
            // straight away wins against a single rival. Losing again means a crowd: back off
            // (random, growing) and read the head afresh after the wait.
            prev = match seen {
                Some(head) if attempt == 1 => head,
                _ => {
                    tokio::time::sleep(jitter(4 << attempt)).await;
                    self.head(group).await?
                }
            };
        }
    }

    async fn history(
        &self,
        group: &str,
        after: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> Result<HistoryPage, MessageError> {
        let limit = limit.clamp(1, MAX_HISTORY_LIMIT);
        let r = self.retention;
        match after {
            Some(after) => {
                let mut live = Vec::new();
                let mut found_any = false;
                let mut start = None;
                let mut page_limit = Some(limit + 1);
                loop {
                    let (items, next) = self.query(group, after, true, page_limit, start).await?;
                    found_any |= !items.is_empty();
                    for item in &items {
                        let m = message_from(item)?;
                        if r.keeps(m.ts, now_ms) {
                            live.push(m);
                        }
                    }
                    // Read on past expired leftovers only (whole pages from then on).
                    match next {
                        Some(key) if live.len() <= limit => {
                            start = Some(key);
                            page_limit = None;
                        }
                        _ => break,
                    }
                }
                live.truncate(limit + 1);
                let newest_beyond = if found_any {
                    true
                } else {
                    self.head(group).await? > after
                };
                Ok(page_after(after, limit, live, || newest_beyond))
            }
            None => {
                let (items, _) = self.query(group, HEAD_SK, false, Some(limit), None).await?;
                let newest = match items.first() {
                    Some(item) => number(item, "sk")?,
                    None => self.head(group).await?,
                };
                let mut live = Vec::with_capacity(items.len());
                for item in &items {
                    let m = message_from(item)?;
                    if r.keeps(m.ts, now_ms) {
                        live.push(m);
                    }
                }
                Ok(page_latest(limit, live, newest))
            }
        }
    }
}

/// Creates the messages table `table` (`pk` S + `sk` N, on demand, TTL on `expires_at`) and
/// waits until it is active, for the local stack and tests; a table that exists already is
/// left as it is. In AWS the template declares it.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), PortError> {
    let key = |name: &str, kind: KeyType| {
        built(
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build(),
        )
    };
    let attribute = |name: &str, kind: ScalarAttributeType| {
        built(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build(),
        )
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attribute("sk", ScalarAttributeType::N)?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            return Ok(());
        }
        Err(e) => return Err(PortError::from_sdk(&e)),
    }
    for _ in 0..120 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| PortError::from_sdk(&e))?;
        if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(built(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build(),
        )?)
        .send()
        .await
        .map_err(|e| PortError::from_sdk(&e))?;
    Ok(())
}
