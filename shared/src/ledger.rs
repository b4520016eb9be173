//! The partition ledger: tells a partition's first start from a Redis data loss.
//!
//! Redis cannot say whether a partition without an epoch is new or lost its data: the
//! answer must outlive Redis. The ledger is one item per partition in the facilities table
//! (`pk = PARTITION#{n}`, `sk = LEDGER`, `epochs` = how many epochs it has seen), written
//! once per epoch by whoever started the epoch (docs/architecture.md, "Redis data loss").

use crate::port::PortError;
use crate::sessions::Partition;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;
use std::sync::Mutex;

/// The ledger's error: the port's cause.
pub type LedgerError = PortError;

/// What a new epoch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochStart {
    /// The partition never had an epoch: a fresh deployment or a fresh Redis.
    First,
    /// It had one before: its data was lost.
    AfterLoss,
}

/// Records the epochs of each partition.
#[async_trait]
pub trait PartitionLedger: Send + Sync + std::fmt::Debug {
    /// Records that `partition` started an epoch at `epoch_ms`; says whether it had one
    /// before.
    async fn begin_epoch(
        &self,
        partition: Partition,
        epoch_ms: i64,
    ) -> Result<EpochStart, LedgerError>;

    /// Makes sure the ledger knows that `partition` has an epoch (one Redis already holds,
    /// started before the ledger existed, e.g. by a deployment that predates it): without
    /// it, the partition's next data loss would be taken for a first start. Changes nothing
    /// when the ledger knows of one already.
    async fn record_existing(&self, partition: Partition, now_ms: i64) -> Result<(), LedgerError>;
}

/// The ledger in the facilities table.
#[derive(Debug, Clone)]
pub struct DynamoPartitionLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoPartitionLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl PartitionLedger for DynamoPartitionLedger {
    async fn begin_epoch(
        &self,
        partition: Partition,
        epoch_ms: i64,
    ) -> Result<EpochStart, LedgerError> {
        // One atomic counter: the old value says whether there was an epoch before.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                "pk",
                AttributeValue::S(format!("PARTITION#{}", partition.0)),
            )
            .key("sk", AttributeValue::S("LEDGER".into()))
            .update_expression("ADD epochs :one SET last_epoch_ms = :at")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":at", AttributeValue::N(epoch_ms.to_string()))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await
            .map_err(|e| PortError::from_sdk(&e))?;
        let before = out
            .attributes
            .as_ref()
            .and_then(|a| a.get("epochs"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(if before == 0 {
            EpochStart::First
        } else {
            EpochStart::AfterLoss
        })
    }

    async fn record_existing(&self, partition: Partition, now_ms: i64) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("PARTITION#{}", partition.0)))
            .key("sk", AttributeValue::S("LEDGER".into()))
            .update_expression(
                "SET epochs = if_not_exists(epochs, :one), last_epoch_ms = if_not_exists(last_epoch_ms, :at)",
            )
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":at", AttributeValue::N(now_ms.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| PortError::from_sdk(&e))
    }
}

/// The ledger in memory (the local stack's in-memory tables, tests).
#[derive(Debug, Default)]
pub struct MemoryPartitionLedger {
    epochs: Mutex<HashMap<u16, u64>>,
}

impl MemoryPartitionLedger {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PartitionLedger for MemoryPartitionLedger {
    async fn begin_epoch(
        &self,
        partition: Partition,
        _epoch_ms: i64,
    ) -> Result<EpochStart, LedgerError> {
        let mut epochs = self.epochs.lock().expect("ledger lock");
        let n = epochs.entry(partition.0).or_default();
        *n += 1;
        Ok(if *n == 1 {
            EpochStart::First
        } else {
            EpochStart::AfterLoss
        })
    }

    async fn record_existing(&self, partition: Partition, _now_ms: i64) -> Result<(), LedgerError> {
        let mut epochs = self.epochs.lock().expect("ledger lock");
        let n = epochs.entry(partition.0).or_default();
        *n = (*n).max(1);
        Ok(())
    }
}
