//! The facilities table in DynamoDB.

use super::{FacilityError, FacilityStore, FlipKey, FlipPage};
use crate::dynamo::{Item, n, read_all, s, written};
use crate::ids::{FacilityId, RegionId};
use crate::port::PortError;
use crate::protocol::{FacilityStatus, Status};
use crate::sessions::{FacilityState, JournalEntry, Partition, Segment};
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

/// The key of a partition's status items in the GSI `by-partition`.
fn partition_key(p: Partition) -> String {
    format!("PARTITION#{}", p.0)
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoFacilityStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// History items expire this long after their event (`HISTORY_RETENTION_DAYS`).
    retention: Duration,
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

    fn flip_item(&self, f: &FacilityStatus) -> Item {
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

    fn segment_items(&self, seg: &Segment, now_ms: i64) -> Vec<Item> {
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

    async fn batch_write(&self, items: Vec<Item>) -> Result<(), FacilityError> {
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
                            .map_err(|e| PortError::from_sdk(&e))?;
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
                return Err(PortError::Throttled(format!(
                    "{} history items still unprocessed after retries",
                    pending.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Ok(())
    }

    /// Every status item a query finds (all pages).
    async fn statuses(
        &self,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Vec<FacilityStatus>, FacilityError> {
        let items: Vec<_> = query
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        read_all(items, Self::status_from)
    }

    fn status_from(item: &Item) -> Result<FacilityStatus, FacilityError> {
        let text = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or_else(|| PortError::Malformed(format!("item lacks {k}")))
        };
        let num = |k: &str| -> Result<i64, FacilityError> {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| PortError::Malformed(format!("item lacks number {k}")))
        };
        let status = text("status")?;
        Ok(FacilityStatus {
            facility_id: FacilityId::parse(&text("facility_id")?)
                .map_err(|e| PortError::Malformed(e.to_string()))?,
            region: RegionId::parse(&text("region")?)
                .map_err(|e| PortError::Malformed(e.to_string()))?,
            status: Status::parse(&status)
                .ok_or_else(|| PortError::Malformed(format!("status {status:?}")))?,
            since_ms: num("since_ms")?,
            version: num("version")? as u64,
            online_sessions: num("online_sessions")? as u64,
        })
    }
}

#[async_trait]
impl FacilityStore for DynamoFacilityStore {
    async fn online_in(&self, partition: Partition) -> Result<Vec<FacilityStatus>, FacilityError> {
        // The index holds status items only (one per facility of the partition), never
        // history: bounded by the number of facilities, whatever the table's size.
        self.statuses(
            self.client
                .query()
                .table_name(&self.table)
                .index_name("by-partition")
                .key_condition_expression("partition_pk = :p")
                .filter_expression("#st = :on")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":p", s(partition_key(partition)))
                .expression_attribute_values(":on", s("online")),
        )
        .await
    }

    async fn put_status(
        &self,
        partition: Partition,
        state: &FacilityState,
        now_ms: i64,
    ) -> Result<bool, FacilityError> {
        let f = &state.status;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("FACILITY#{}", f.facility_id)))
            .item("sk", s("STATUS"))
            .item("region_pk", s(format!("REGION#{}", f.region)))
            .item("partition_pk", s(partition_key(partition)))
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
        written(result, |e| e.is_conditional_check_failed_exception())
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
            .map_err(|e| PortError::from_sdk(&e))?;
        out.item.as_ref().map(Self::status_from).transpose()
    }

    async fn region(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, FacilityError> {
        self.statuses(
            self.client
                .query()
                .table_name(&self.table)
                .index_name("by-region")
                .key_condition_expression("region_pk = :r")
                .expression_attribute_values(":r", s(format!("REGION#{region}"))),
        )
        .await
    }

    async fn flips(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FacilityStatus>, FacilityError> {
        self.statuses(
            self.client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
                .expression_attribute_values(":pk", s(format!("FACILITY#{facility}")))
                .expression_attribute_values(":a", s(format!("FLIP#{from_ms:013}")))
                .expression_attribute_values(":b", s(format!("FLIP#{to_ms:013}#~"))),
        )
        .await
    }

    async fn flips_page(
        &self,
        facility: &FacilityId,
        from_ms: i64,
        to_ms: i64,
        after: Option<FlipKey>,
        limit: usize,
    ) -> Result<FlipPage, FacilityError> {
        let pk = format!("FACILITY#{facility}");
        let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let start = after.map(|k| {
            HashMap::from([
                ("pk".to_owned(), s(pk.clone())),
                ("sk".to_owned(), s(k.sort_key())),
            ])
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":a", s(format!("FLIP#{from_ms:013}")))
            .expression_attribute_values(":b", s(format!("FLIP#{to_ms:013}#~")))
            .set_exclusive_start_key(start)
            .limit(limit)
            .send()
            .await
            .map_err(|e| PortError::from_sdk(&e))?;
        let flips = out
            .items()
            .iter()
            .map(Self::status_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next =
            match out.last_evaluated_key() {
                None => None,
                Some(key) => {
                    let sk = key.get("sk").and_then(|v| v.as_s().ok()).ok_or_else(|| {
                        PortError::Malformed("LastEvaluatedKey lacks sk".to_owned())
                    })?;
                    Some(FlipKey::parse_sort_key(sk).ok_or_else(|| {
                        PortError::Malformed(format!("LastEvaluatedKey sk {sk:?}"))
                    })?)
                }
            };
        Ok(FlipPage { flips, next })
    }

    async fn flip_before(
        &self,
        facility: &FacilityId,
        before_ms: i64,
    ) -> Result<Option<FacilityStatus>, FacilityError> {
        // `FLIP#{before_ms:013}` sorts before every flip at `before_ms` itself.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":pk", s(format!("FACILITY#{facility}")))
            .expression_attribute_values(":a", s("FLIP#"))
            .expression_attribute_values(":b", s(format!("FLIP#{before_ms:013}")))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| PortError::from_sdk(&e))?;
        out.items().first().map(Self::status_from).transpose()
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
        read_all(items, |item| {
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
                .map_err(|e| PortError::Malformed(format!("segment item: {e}")))
        })
    }
}
