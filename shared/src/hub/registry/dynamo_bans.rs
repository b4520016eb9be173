//! Bans in the connections table: `GROUP#{group}` / `BAN#{user}` items.

use super::super::Ban;
use super::{DynamoConnectionRegistry, describe};
use crate::dynamo::{Item, s};
use crate::hub::registry::RegistryError;
use crate::ids::UserId;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

impl DynamoConnectionRegistry {
    pub(super) async fn put_ban(
        &self,
        group: &str,
        user: &UserId,
        ban: Ban,
    ) -> Result<(), RegistryError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("GROUP#{group}")))
            .item("sk", s(format!("BAN#{user}")))
            .item("user_id", s(user.as_str()));
        if let Some(until) = ban.until_ms {
            put = put
                .item("until_ms", AttributeValue::N(until.to_string()))
                .item(
                    "expires_at",
                    AttributeValue::N((until / 1000 + 60).to_string()),
                );
        }
        put.send().await.map(|_| ()).map_err(|e| describe(&e))
    }

    pub(super) async fn delete_ban(
        &self,
        group: &str,
        user: &UserId,
        now_ms: i64,
    ) -> Result<bool, RegistryError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("GROUP#{group}")))
            .key("sk", s(format!("BAN#{user}")))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out
            .attributes
            .filter(|a| !a.is_empty())
            .is_some_and(|a| ban_from(&a).in_force(now_ms)))
    }

    pub(super) async fn get_ban(
        &self,
        group: &str,
        user: &UserId,
        now_ms: i64,
    ) -> Result<Option<Ban>, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("GROUP#{group}")))
            .key("sk", s(format!("BAN#{user}")))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out
            .item
            .map(|i| ban_from(&i))
            .filter(|b| b.in_force(now_ms)))
    }
}

/// A ban item (TTL deletion lags: an ended ban may still be there).
fn ban_from(item: &Item) -> Ban {
    Ban {
        until_ms: item
            .get("until_ms")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
    }
}
