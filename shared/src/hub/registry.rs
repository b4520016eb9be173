//! The connection registry in DynamoDB (the `connections` table).
//!
//! API Gateway keeps no group lists, so this table does, and nothing lives in server memory.
//!
//! # Items (one table, string keys `pk` + `sk`)
//!
//! | item | pk | sk | index keys |
//! |---|---|---|---|
//! | connection | `CONN#{id}` | `META` | `user_pk = USER#{user}`, `user_sk = CONN#{id}`; `facility_pk = FACILITY#{f}`; `region_pk = REGION#{r}`; `expires_at` TTL |
//! | membership | `GROUP#{group}` | `USER#{user}` | `user_pk = USER#{user}`, `user_sk = GROUP#{group}` |
//!
//! Indexes: `by-user` (`user_pk`, `user_sk`): a user's connections and groups; `by-facility`
//! (`facility_pk`, `pk`) and `by-region` (`region_pk`, `pk`): the connections of the
//! automatic facility and region groups. Group → users is a `Query` on `GROUP#{group}`.
//! Memberships belong to the user, not a connection: they outlive reconnects. Connection
//! items expire (TTL) after API Gateway's 2-hour connection limit, so a missed `$disconnect`
//! never lingers for long; a failed push (410) deletes one at once.

use crate::ids::{FacilityId, RegionId, SessionId, UserId};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;

/// API Gateway closes every connection after 2 hours; items live a little longer.
pub const CONNECTION_TTL_S: i64 = 2 * 3600 + 300;

/// A connection as registered at `$connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub user: UserId,
    pub facility: FacilityId,
    pub region: RegionId,
    /// The session bound to this socket (`?session_id=`), ended at `$disconnect`.
    pub session_id: Option<SessionId>,
    pub connected_ms: i64,
}

/// A registry failure (for logs).
#[derive(Debug, thiserror::Error)]
#[error("connections table: {0}")]
pub struct RegistryError(pub String);

/// Connections and user-level group memberships.
#[async_trait]
pub trait ConnectionRegistry: Send + Sync {
    async fn register(&self, connection: &Connection) -> Result<(), RegistryError>;
    /// Removes a connection; returns it if it was registered (idempotent).
    async fn remove(&self, id: &str) -> Result<Option<Connection>, RegistryError>;
    async fn get(&self, id: &str) -> Result<Option<Connection>, RegistryError>;
    /// Adds a membership; returns whether it is new.
    async fn join(&self, user: &UserId, group: &str, now_ms: i64) -> Result<bool, RegistryError>;
    /// Removes a membership; returns whether there was one.
    async fn leave(&self, user: &UserId, group: &str) -> Result<bool, RegistryError>;
    async fn is_member(&self, user: &UserId, group: &str) -> Result<bool, RegistryError>;
    /// Users with a stored membership of `group`.
    async fn members(&self, group: &str) -> Result<Vec<UserId>, RegistryError>;
    /// Connection ids of a user.
    async fn user_connections(&self, user: &UserId) -> Result<Vec<String>, RegistryError>;
    /// Connections of a facility, with their users.
    async fn facility_connections(
        &self,
        facility: &FacilityId,
    ) -> Result<Vec<(String, UserId)>, RegistryError>;
    /// Connections of a region, with their users.
    async fn region_connections(
        &self,
        region: &RegionId,
    ) -> Result<Vec<(String, UserId)>, RegistryError>;
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoConnectionRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn describe<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> RegistryError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    RegistryError(crate::aws::describe_sdk_error(e))
}

fn text(item: &HashMap<String, AttributeValue>, k: &str) -> Result<String, RegistryError> {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| RegistryError(format!("item lacks {k}")))
}

impl DynamoConnectionRegistry {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn connection_from(
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Connection, RegistryError> {
        let bad = |e: crate::ids::IdError| RegistryError(e.to_string());
        Ok(Connection {
            id: text(item, "conn_id")?,
            user: UserId::parse(&text(item, "user_id")?).map_err(bad)?,
            facility: FacilityId::parse(&text(item, "facility_id")?).map_err(bad)?,
            region: RegionId::parse(&text(item, "region")?).map_err(bad)?,
            session_id: match item.get("session_id").and_then(|v| v.as_s().ok()) {
                Some(sid) => Some(SessionId::parse(sid).map_err(bad)?),
                None => None,
            },
            connected_ms: item
                .get("connected_ms")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Every item of a query (all pages).
    async fn query(
        &self,
        index: Option<&str>,
        condition: &str,
        values: &[(&str, String)],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, RegistryError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression(condition);
        for (k, v) in values {
            q = q.expression_attribute_values(*k, s(v.clone()));
        }
        let items: Vec<_> = q.into_paginator().items().send().collect::<Vec<_>>().await;
        items
            .into_iter()
            .map(|i| i.map_err(|e| describe(&e)))
            .collect()
    }

    async fn group_connections(
        &self,
        index: &str,
        attr: &str,
        key: String,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        let items = self
            .query(Some(index), &format!("{attr} = :k"), &[(":k", key)])
            .await?;
        items
            .iter()
            .map(|i| {
                Ok((
                    text(i, "conn_id")?,
                    UserId::parse(&text(i, "user_id")?)
                        .map_err(|e| RegistryError(e.to_string()))?,
                ))
            })
            .collect()
    }
}

#[async_trait]
impl ConnectionRegistry for DynamoConnectionRegistry {
    async fn register(&self, c: &Connection) -> Result<(), RegistryError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CONN#{}", c.id)))
            .item("sk", s("META"))
            .item("user_pk", s(format!("USER#{}", c.user)))
            .item("user_sk", s(format!("CONN#{}", c.id)))
            .item("facility_pk", s(format!("FACILITY#{}", c.facility)))
            .item("region_pk", s(format!("REGION#{}", c.region)))
            .item("conn_id", s(c.id.clone()))
            .item("user_id", s(c.user.as_str()))
            .item("facility_id", s(c.facility.as_str()))
            .item("region", s(c.region.as_str()))
            .item(
                "connected_ms",
                AttributeValue::N(c.connected_ms.to_string()),
            )
            .item(
                "expires_at",
                AttributeValue::N((c.connected_ms / 1000 + CONNECTION_TTL_S).to_string()),
            );
        if let Some(sid) = &c.session_id {
            put = put.item("session_id", s(sid.as_str()));
        }
        put.send().await.map(|_| ()).map_err(|e| describe(&e))
    }

    async fn remove(&self, id: &str) -> Result<Option<Connection>, RegistryError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("CONN#{id}")))
            .key("sk", s("META"))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        out.attributes
            .as_ref()
            .filter(|a| !a.is_empty())
            .map(Self::connection_from)
            .transpose()
    }

    async fn get(&self, id: &str) -> Result<Option<Connection>, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("CONN#{id}")))
            .key("sk", s("META"))
            .send()
            .await
            .map_err(|e| describe(&e))?;
        out.item.as_ref().map(Self::connection_from).transpose()
    }

    async fn join(&self, user: &UserId, group: &str, now_ms: i64) -> Result<bool, RegistryError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("GROUP#{group}")))
            .item("sk", s(format!("USER#{user}")))
            .item("user_pk", s(format!("USER#{user}")))
            .item("user_sk", s(format!("GROUP#{group}")))
            .item("group_name", s(group))
            .item("user_id", s(user.as_str()))
            .item("joined_ms", AttributeValue::N(now_ms.to_string()))
            .condition_expression("attribute_not_exists(pk)")
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
            Err(e) => Err(describe(&e)),
        }
    }

    async fn leave(&self, user: &UserId, group: &str) -> Result<bool, RegistryError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("GROUP#{group}")))
            .key("sk", s(format!("USER#{user}")))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn is_member(&self, user: &UserId, group: &str) -> Result<bool, RegistryError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("GROUP#{group}")))
            .key("sk", s(format!("USER#{user}")))
            .projection_expression("pk")
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(out.item.is_some())
    }

    async fn members(&self, group: &str) -> Result<Vec<UserId>, RegistryError> {
        let items = self
            .query(None, "pk = :g", &[(":g", format!("GROUP#{group}"))])
            .await?;
        items
            .iter()
            .map(|i| UserId::parse(&text(i, "user_id")?).map_err(|e| RegistryError(e.to_string())))
            .collect()
    }

    async fn user_connections(&self, user: &UserId) -> Result<Vec<String>, RegistryError> {
        let items = self
            .query(
                Some("by-user"),
                "user_pk = :u AND begins_with(user_sk, :c)",
                &[(":u", format!("USER#{user}")), (":c", "CONN#".into())],
            )
            .await?;
        items.iter().map(|i| text(i, "conn_id")).collect()
    }

    async fn facility_connections(
        &self,
        facility: &FacilityId,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        self.group_connections("by-facility", "facility_pk", format!("FACILITY#{facility}"))
            .await
    }

    async fn region_connections(
        &self,
        region: &RegionId,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        self.group_connections("by-region", "region_pk", format!("REGION#{region}"))
            .await
    }
}

/// Creates the connections table as `template.yaml` declares it (local emulators, tests).
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), RegistryError> {
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
    let index = |name: &str, hash: &str, range: &str| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash))
            .key_schema(key(range, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .expect("index")
    };
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for a in ["pk", "sk", "user_pk", "user_sk", "facility_pk", "region_pk"] {
        req = req.attribute_definitions(attr(a));
    }
    let result = req
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index("by-user", "user_pk", "user_sk"))
        .global_secondary_indexes(index("by-facility", "facility_pk", "pk"))
        .global_secondary_indexes(index("by-region", "region_pk", "pk"))
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
        Err(e) => Err(describe(&e)),
    }
}

/// The registry in memory, for the local stack and tests. Same contract as the DynamoDB one.
#[derive(Debug, Default)]
pub struct MemoryConnectionRegistry {
    state: std::sync::Mutex<MemoryRegistryState>,
}

#[derive(Debug, Default)]
struct MemoryRegistryState {
    connections: std::collections::BTreeMap<String, Connection>,
    /// group → users
    groups: std::collections::BTreeMap<String, std::collections::BTreeSet<UserId>>,
}

impl MemoryConnectionRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryRegistryState) -> T) -> T {
        f(&mut self.state.lock().expect("registry lock"))
    }

    /// Registered connections (the local stack's `/dev/stats`).
    pub fn connection_count(&self) -> usize {
        self.with(|s| s.connections.len())
    }

    /// Up to `n` registered connections (the local stack's `/dev/stats`).
    pub fn sample(&self, n: usize) -> Vec<Connection> {
        self.with(|s| s.connections.values().take(n).cloned().collect())
    }
}

#[async_trait]
impl ConnectionRegistry for MemoryConnectionRegistry {
    async fn register(&self, connection: &Connection) -> Result<(), RegistryError> {
        self.with(|s| {
            s.connections
                .insert(connection.id.clone(), connection.clone())
        });
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<Option<Connection>, RegistryError> {
        Ok(self.with(|s| s.connections.remove(id)))
    }

    async fn get(&self, id: &str) -> Result<Option<Connection>, RegistryError> {
        Ok(self.with(|s| s.connections.get(id).cloned()))
    }

    async fn join(&self, user: &UserId, group: &str, _now_ms: i64) -> Result<bool, RegistryError> {
        Ok(self.with(|s| {
            s.groups
                .entry(group.to_owned())
                .or_default()
                .insert(user.clone())
        }))
    }

    async fn leave(&self, user: &UserId, group: &str) -> Result<bool, RegistryError> {
        Ok(self.with(|s| {
            let removed = s
                .groups
                .get_mut(group)
                .is_some_and(|users| users.remove(user));
            if s.groups.get(group).is_some_and(|users| users.is_empty()) {
                s.groups.remove(group);
            }
            removed
        }))
    }

    async fn is_member(&self, user: &UserId, group: &str) -> Result<bool, RegistryError> {
        Ok(self.with(|s| {
            s.groups
                .get(group)
                .is_some_and(|users| users.contains(user))
        }))
    }

    async fn members(&self, group: &str) -> Result<Vec<UserId>, RegistryError> {
        Ok(self.with(|s| {
            s.groups
                .get(group)
                .map(|u| u.iter().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn user_connections(&self, user: &UserId) -> Result<Vec<String>, RegistryError> {
        Ok(self.with(|s| {
            s.connections
                .values()
                .filter(|c| c.user == *user)
                .map(|c| c.id.clone())
                .collect()
        }))
    }

    async fn facility_connections(
        &self,
        facility: &FacilityId,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        Ok(self.with(|s| {
            s.connections
                .values()
                .filter(|c| c.facility == *facility)
                .map(|c| (c.id.clone(), c.user.clone()))
                .collect()
        }))
    }

    async fn region_connections(
        &self,
        region: &RegionId,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        Ok(self.with(|s| {
            s.connections
                .values()
                .filter(|c| c.region == *region)
                .map(|c| (c.id.clone(), c.user.clone()))
                .collect()
        }))
    }
}
