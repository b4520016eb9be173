//! Facility status and history in DynamoDB (the `facilities` table).
//!
//! # Items (one table, `pk` + `sk` strings)
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | current status | `FACILITY#{id}` | `STATUS` | `region_pk = REGION#{region}` feeds the sparse GSI `by-region` |
//! | flip history | `FACILITY#{id}` | `FLIP#{since_ms:013}#{version:012}` | `expires_at` TTL |
//! | online segment | `ONLINE#{id}#{hour}` | `{start_ms:013}#{session}` | one item per hour the segment overlaps; `expires_at` TTL |
//!
//! "Who was online at facility F at time T" is one `Query` on `ONLINE#F#{T / 1h}` with
//! `sk <= T` and a filter `end_ms >= T`: a segment is written into every hour bucket it
//! overlaps, so the bucket of T holds every segment that covers T.
//!
//! A status write wins only if its version is newer, or the same version with a newer
//! change counter (`rev`, for online-session counts), so duplicate and reordered rollups
//! never move the stored status backwards.

use crate::ids::{FacilityId, RegionId};
use crate::protocol::{FacilityStatus, Status};
use crate::sessions::{FacilityState, JournalEntry, Segment};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;
/// DynamoDB takes at most 25 writes per `BatchWriteItem`.
const BATCH_WRITE: usize = 25;
/// Concurrent DynamoDB calls per rollup.
const CONCURRENCY: usize = 8;

/// A DynamoDB failure (for logs; never shown to clients).
#[derive(Debug, thiserror::Error)]
#[error("facilities table: {0}")]
pub struct FacilityError(pub String);

/// Persisted facility status and history.
#[async_trait]
pub trait FacilityStore: Send + Sync {
    /// Writes the current status unless a newer one is stored. Returns whether it was written.
    async fn put_status(&self, state: &FacilityState, now_ms: i64) -> Result<bool, FacilityError>;
    /// Appends flips and finished segments (idempotent: the same entry twice is one item).
    async fn append_history(
        &self,
        entries: &[JournalEntry],
        now_ms: i64,
    ) -> Result<(), FacilityError>;
    /// The stored status of a facility.
    async fn status(&self, facility: &FacilityId) -> Result<Option<FacilityStatus>, FacilityError>;
    /// The stored status of every facility of a region (one GSI query, paginated).
    async fn region(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, FacilityError>;
    /// Flips of a facility with `since_ms` in `[from_ms, to_ms]`, oldest first.
    async fn flips(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FacilityStatus>, FacilityError>;
    /// Finished segments at `facility` that cover `at_ms`.
    async fn online_at(
        &self,
        facility: &FacilityId,
        at_ms: i64,
    ) -> Result<Vec<Segment>, FacilityError>;
    /// Every facility stored as online. A full scan: only after Redis lost its data.
    async fn online_facilities(&self) -> Result<Vec<FacilityStatus>, FacilityError>;
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoFacilityStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// History items expire this long after their event (`HISTORY_RETENTION_DAYS`).
    retention: Duration,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoFacilityStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        retention: Duration,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn expires_at(&self, event_ms: i64) -> AttributeValue {
        n(event_ms / 1000 + self.retention.as_secs() as i64)
    }

    fn flip_item(&self, f: &FacilityStatus) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".into(), s(format!("FACILITY#{}", f.facility_id))),
            (
                "sk".into(),
                s(format!("FLIP#{:013}#{:012}", f.since_ms, f.version)),
            ),
            ("facility_id".into(), s(f.facility_id.as_str())),
            ("region".into(), s(f.region.as_str())),
            ("status".into(), s(f.status.as_str())),
            ("since_ms".into(), n(f.since_ms)),
            ("version".into(), n(f.version)),
            ("online_sessions".into(), n(f.online_sessions)),
            ("expires_at".into(), self.expires_at(f.since_ms)),
        ])
    }

    fn segment_items(&self, seg: &Segment, now_ms: i64) -> Vec<HashMap<String, AttributeValue>> {
        // Buckets older than the retention would expire at once: skip them.
        let oldest = now_ms - self.retention.as_millis() as i64;
        let first = seg.start_ms.max(oldest).div_euclid(HOUR_MS);
        let last = seg.end_ms.max(seg.start_ms).div_euclid(HOUR_MS);
        (first..=last)
            .map(|hour| {
                HashMap::from([
                    ("pk".into(), s(format!("ONLINE#{}#{hour}", seg.facility_id))),
                    (
                        "sk".into(),
                        s(format!("{:013}#{}", seg.start_ms, seg.session_id)),
                    ),
                    ("facility_id".into(), s(seg.facility_id.as_str())),
                    ("region".into(), s(seg.region.as_str())),
                    ("session_id".into(), s(seg.session_id.as_str())),
                    ("user_id".into(), s(seg.user_id.as_str())),
                    ("start_ms".into(), n(seg.start_ms)),
                    ("end_ms".into(), n(seg.end_ms)),
                    ("reason".into(), s(seg.reason.clone())),
                    ("expires_at".into(), self.expires_at(seg.end_ms)),
                ])
            })
            .collect()
    }

    async fn batch_write(
        &self,
        items: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), FacilityError> {
        let mut pending: Vec<WriteRequest> = items
            .into_iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .expect("item is set"),
                    )
                    .build()
            })
            .collect();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            let chunks: Vec<Vec<WriteRequest>> =
                pending.chunks(BATCH_WRITE).map(<[_]>::to_vec).collect();
            let results: Vec<Result<Vec<WriteRequest>, FacilityError>> =
                futures::stream::iter(chunks)
                    .map(|chunk| async move {
                        let out = self
                            .client
                            .batch_write_item()
                            .request_items(&self.table, chunk)
                            .send()
                            .await
                            .map_err(|e| FacilityError(crate::aws::describe_sdk_error(&e)))?;
                        Ok(out
                            .unprocessed_items
                            .and_then(|mut m| m.remove(&self.table))
                            .unwrap_or_default())
                    })
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
            pending = Vec::new();
            for r in results {
                pending.extend(r?);
            }
            if pending.is_empty() {
                break;
            }
            // Unprocessed items mean throttling: back off before retrying them.
            attempt += 1;
            if attempt > 6 {
                return Err(FacilityError(format!(
                    "{} history items still unprocessed after retries",
                    pending.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Ok(())
    }

    fn status_from(
        item: &HashMap<String, AttributeValue>,
    ) -> Result<FacilityStatus, FacilityError> {
        let text = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or_else(|| FacilityError(format!("item lacks {k}")))
        };
        let num = |k: &str| -> Result<i64, FacilityError> {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| FacilityError(format!("item lacks number {k}")))
        };
        let status = text("status")?;
        Ok(FacilityStatus {
            facility_id: FacilityId::parse(&text("facility_id")?)
                .map_err(|e| FacilityError(e.to_string()))?,
            region: RegionId::parse(&text("region")?).map_err(|e| FacilityError(e.to_string()))?,
            status: Status::parse(&status)
                .ok_or_else(|| FacilityError(format!("status {status:?}")))?,
            since_ms: num("since_ms")?,
            version: num("version")? as u64,
            online_sessions: num("online_sessions")? as u64,
        })
    }
}

#[async_trait]
impl FacilityStore for DynamoFacilityStore {
    async fn online_facilities(&self) -> Result<Vec<FacilityStatus>, FacilityError> {
        let items: Vec<_> = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :s AND #st = :on")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":s", s("STATUS"))
            .expression_attribute_values(":on", s("online"))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        items
            .into_iter()
            .map(|item| {
                item.map_err(|e| FacilityError(crate::aws::describe_sdk_error(&e)))
                    .and_then(|i| Self::status_from(&i))
            })
            .collect()
    }

    async fn put_status(&self, state: &FacilityState, now_ms: i64) -> Result<bool, FacilityError> {
        let f = &state.status;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("FACILITY#{}", f.facility_id)))
            .item("sk", s("STATUS"))
            .item("region_pk", s(format!("REGION#{}", f.region)))
            .item("facility_id", s(f.facility_id.as_str()))
            .item("region", s(f.region.as_str()))
            .item("status", s(f.status.as_str()))
            .item("since_ms", n(f.since_ms))
            .item("version", n(f.version))
            .item("online_sessions", n(f.online_sessions))
            .item("rev", n(state.rev))
            .item("updated_ms", n(now_ms))
            .condition_expression(
                "attribute_not_exists(version) OR version < :v OR (version = :v AND rev < :rev)",
            )
            .expression_attribute_values(":v", n(f.version))
            .expression_attribute_values(":rev", n(state.rev))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(FacilityError(crate::aws::describe_sdk_error(&e))),
        }
    }

    async fn append_history(
        &self,
        entries: &[JournalEntry],
        now_ms: i64,
    ) -> Result<(), FacilityError> {
        let mut items = Vec::new();
        for e in entries {
            match e {
                JournalEntry::Flip(f) => items.push(self.flip_item(f)),
                JournalEntry::Segment(seg) => items.extend(self.segment_items(seg, now_ms)),
            }
        }
        // BatchWriteItem refuses two writes of one key in a request; keep the last.
        let mut seen = std::collections::HashSet::new();
        items.reverse();
        items.retain(|i| {
            let key = |k: &str| {
                i.get(k)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            seen.insert((key("pk"), key("sk")))
        });
        items.reverse();
        self.batch_write(items).await
    }

    async fn status(&self, facility: &FacilityId) -> Result<Option<FacilityStatus>, FacilityError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("FACILITY#{facility}")))
            .key("sk", s("STATUS"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| FacilityError(crate::aws::describe_sdk_error(&e)))?;
        out.item.as_ref().map(Self::status_from).transpose()
    }

    async fn region(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, FacilityError> {
        let pages: Vec<_> = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by-region")
            .key_condition_expression("region_pk = :r")
            .expression_attribute_values(":r", s(format!("REGION#{region}")))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        pages
            .into_iter()
            .map(|item| {
                item.map_err(|e| FacilityError(crate::aws::describe_sdk_error(&e)))
                    .and_then(|i| Self::status_from(&i))
            })
            .collect()
    }

    async fn flips(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FacilityStatus>, FacilityError> {
        let items: Vec<_> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":pk", s(format!("FACILITY#{facility}")))
            .expression_attribute_values(":a", s(format!("FLIP#{from_ms:013}")))
            .expression_attribute_values(":b", s(format!("FLIP#{to_ms:013}#~")))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        items
            .into_iter()
            .map(|item| {
                item.map_err(|e| FacilityError(crate::aws::describe_sdk_error(&e)))
                    .and_then(|i| Self::status_from(&i))
            })
            .collect()
    }

    async fn online_at(
        &self,
        facility: &FacilityId,
        at_ms: i64,
    ) -> Result<Vec<Segment>, FacilityError> {
        let items: Vec<_> = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk <= :t")
            .filter_expression("end_ms >= :at")
            .expression_attribute_values(
                ":pk",
                s(format!("ONLINE#{facility}#{}", at_ms.div_euclid(HOUR_MS))),
            )
            .expression_attribute_values(":t", s(format!("{at_ms:013}#~")))
            .expression_attribute_values(":at", n(at_ms))
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        items
            .into_iter()
            .map(|item| {
                let item = item.map_err(|e| FacilityError(crate::aws::describe_sdk_error(&e)))?;
                let json: serde_json::Map<String, serde_json::Value> = item
                    .iter()
                    .filter_map(|(k, v)| {
                        let v = match v {
                            AttributeValue::S(s) => serde_json::Value::String(s.clone()),
                            AttributeValue::N(n) => {
                                serde_json::Value::Number(n.parse::<i64>().ok()?.into())
                            }
                            _ => return None,
                        };
                        Some((k.clone(), v))
                    })
                    .collect();
                serde_json::from_value(serde_json::Value::Object(json))
                    .map_err(|e| FacilityError(format!("segment item: {e}")))
            })
            .collect()
    }
}

/// Creates the facilities table as `template.yaml` declares it (for local emulators and
/// tests; in AWS the stack creates it).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), FacilityError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    let result = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("region_pk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by-region")
                .key_schema(key("region_pk", KeyType::Hash))
                .key_schema(key("pk", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(FacilityError(crate::aws::describe_sdk_error(&e))),
    }
}

/// The facilities table in memory, for the local stack and tests. Same contract as DynamoDB.
#[derive(Debug, Default)]
pub struct MemoryFacilityStore {
    state: std::sync::Mutex<MemoryFacilities>,
}

#[derive(Debug, Default)]
struct MemoryFacilities {
    /// facility → (status, rev)
    status: std::collections::BTreeMap<FacilityId, (FacilityStatus, u64)>,
    /// (facility, since, version) → flip
    flips: std::collections::BTreeMap<(FacilityId, i64, u64), FacilityStatus>,
    /// (facility, start, session) → segment
    segments: std::collections::BTreeMap<(FacilityId, i64, String), Segment>,
}

impl MemoryFacilityStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// History items held (flips and session segments).
    pub fn history_len(&self) -> usize {
        self.with(|s| s.flips.len() + s.segments.len())
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryFacilities) -> T) -> T {
        f(&mut self.state.lock().expect("facilities lock"))
    }
}

#[async_trait]
impl FacilityStore for MemoryFacilityStore {
    async fn online_facilities(&self) -> Result<Vec<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| {
            m.status
                .values()
                .filter(|(s, _)| s.status == Status::Online)
                .map(|(s, _)| s.clone())
                .collect()
        }))
    }

    async fn put_status(&self, state: &FacilityState, _now_ms: i64) -> Result<bool, FacilityError> {
        Ok(self.with(|m| {
            let newer = match m.status.get(&state.status.facility_id) {
                None => true,
                Some((held, rev)) => {
                    held.version < state.status.version
                        || (held.version == state.status.version && *rev < state.rev)
                }
            };
            if newer {
                m.status.insert(
                    state.status.facility_id.clone(),
                    (state.status.clone(), state.rev),
                );
            }
            newer
        }))
    }

    async fn append_history(
        &self,
        entries: &[JournalEntry],
        _now_ms: i64,
    ) -> Result<(), FacilityError> {
        self.with(|m| {
            for e in entries {
                match e {
                    JournalEntry::Flip(f) => {
                        m.flips
                            .insert((f.facility_id.clone(), f.since_ms, f.version), f.clone());
                    }
                    JournalEntry::Segment(s) => {
                        m.segments.insert(
                            (s.facility_id.clone(), s.start_ms, s.session_id.to_string()),
                            s.clone(),
                        );
                    }
                }
            }
        });
        Ok(())
    }

    async fn status(&self, facility: &FacilityId) -> Result<Option<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| m.status.get(facility).map(|(s, _)| s.clone())))
    }

    async fn region(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| {
            m.status
                .values()
                .filter(|(s, _)| s.region == *region)
                .map(|(s, _)| s.clone())
                .collect()
        }))
    }

    async fn flips(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FacilityStatus>, FacilityError> {
        Ok(self.with(|m| {
            m.flips
                .range((facility.clone(), from_ms, 0)..=(facility.clone(), to_ms, u64::MAX))
                .map(|(_, f)| f.clone())
                .collect()
        }))
    }

    async fn online_at(
        &self,
        facility: &FacilityId,
        at_ms: i64,
    ) -> Result<Vec<Segment>, FacilityError> {
        Ok(self.with(|m| {
            m.segments
                .values()
                .filter(|s| s.facility_id == *facility && s.start_ms <= at_ms && s.end_ms >= at_ms)
                .cloned()
                .collect()
        }))
    }
}
