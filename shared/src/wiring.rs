//! The ports a function's service is assembled from, built once per cold start.
//!
//! Every function crate has one constructor, `service(&Config, RedisConnection, Ports)`,
//! called both by its `main.rs` (with [`SessionPorts::aws`]: SQS and DynamoDB through the
//! SDK) and by the local stack (with its stand-ins), so a setting tested locally is the one
//! deployed: both parse the function's `Config` from the same variables.

use crate::config::SessionSettings;
use crate::ledger::{DynamoPartitionLedger, PartitionLedger};
use crate::queue::{PushPublisher, SqsQueue};
use crate::sessions::{RedisConnection, SessionStore};
use aws_config::SdkConfig;
use std::sync::Arc;

/// What a function that changes sessions talks to besides Redis.
#[derive(Clone)]
pub struct SessionPorts {
    /// Where flips go (the push queue).
    pub push: Arc<dyn PushPublisher>,
    /// Tells a partition's first epoch from a data loss (the facilities table).
    pub ledger: Arc<dyn PartitionLedger>,
}

impl std::fmt::Debug for SessionPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPorts")
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl SessionPorts {
    /// The push queue at `push_queue_url` and the ledger in `facilities_table`, through the
    /// SDK.
    pub fn aws(sdk: &SdkConfig, push_queue_url: &str, facilities_table: &str) -> Self {
        Self {
            push: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), push_queue_url)),
            ledger: Arc::new(DynamoPartitionLedger::new(
                aws_sdk_dynamodb::Client::new(sdk),
                facilities_table,
            )),
        }
    }

    /// The session engine on `redis`, asking this ledger about new epochs.
    pub fn store(&self, redis: RedisConnection, settings: &SessionSettings) -> SessionStore {
        SessionStore::new(redis, settings).with_ledger(self.ledger.clone())
    }
}
