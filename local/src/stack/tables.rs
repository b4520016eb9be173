//! The stack's tables: in memory, or on an emulator.

use super::billing::{Meter, MeteredFacilities, MeteredLedger, MeteredMessages, MeteredRegistry};
use super::{LocalSettings, StackError};
use presence::facilities::{FacilityStore, MemoryFacilityStore};
use presence::hub::registry::{
    ConnectionRegistry, DynamoConnectionRegistry, MemoryConnectionRegistry,
};
use presence::ledger::{DynamoPartitionLedger, MemoryPartitionLedger, PartitionLedger};
use presence::messages::{DynamoMessageStore, MemoryMessageStore, MessageStore};
use std::sync::Arc;

/// The tables: in memory, or on the emulator at `AWS_ENDPOINT_URL` (created as the template
/// declares them).
pub(super) struct Tables {
    pub registry: Arc<dyn ConnectionRegistry>,
    pub facilities: Arc<dyn FacilityStore>,
    pub ledger: Arc<dyn PartitionLedger>,
    pub messages: Arc<dyn MessageStore>,
    pub memory_registry: Option<Arc<MemoryConnectionRegistry>>,
    pub memory_facilities: Option<Arc<MemoryFacilityStore>>,
}

impl Tables {
    /// The same tables, each call metered in DynamoDB request units (the `memory_*` handles
    /// stay unmetered: `/dev/stats` reads them, not the functions).
    pub(super) fn metered(self, meter: &Arc<Meter>) -> Self {
        Self {
            registry: MeteredRegistry::new(self.registry, meter.clone()),
            facilities: MeteredFacilities::new(self.facilities, meter.clone()),
            ledger: MeteredLedger::new(self.ledger, meter.clone()),
            messages: MeteredMessages::new(self.messages, meter.clone()),
            ..self
        }
    }

    pub(super) async fn open(settings: &LocalSettings) -> Result<Self, StackError> {
        let Some(endpoint) = &settings.hub.aws.endpoint_url else {
            let registry = Arc::new(MemoryConnectionRegistry::new());
            let facilities = Arc::new(MemoryFacilityStore::new());
            return Ok(Self {
                registry: registry.clone(),
                facilities: facilities.clone(),
                ledger: Arc::new(MemoryPartitionLedger::new()),
                messages: Arc::new(MemoryMessageStore::new(settings.hub.retention)),
                memory_registry: Some(registry),
                memory_facilities: Some(facilities),
            });
        };
        let sdk = presence::aws::local_sdk_config(endpoint).await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let (connections, facilities) = (
            &settings.hub.connections_table,
            &settings.rollup.pipeline.facilities_table,
        );
        let messages = &settings.hub.messages_table;
        crate::tables::create_tables(&ddb, connections, facilities, messages)
            .await
            .map_err(|e| StackError::Setup(e.to_string()))?;
        Ok(Self {
            registry: Arc::new(DynamoConnectionRegistry::new(ddb.clone(), connections)),
            // The rollup's own AWS ports: history kept for HISTORY_RETENTION_DAYS.
            facilities: facility_rollup::aws_ports(&settings.rollup, &sdk).facilities,
            ledger: Arc::new(DynamoPartitionLedger::new(ddb.clone(), facilities)),
            messages: Arc::new(DynamoMessageStore::new(
                ddb,
                messages.clone(),
                settings.hub.retention,
            )),
            memory_registry: None,
            memory_facilities: None,
        })
    }
}
