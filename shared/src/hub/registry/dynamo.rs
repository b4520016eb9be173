//! The connections table in DynamoDB.

use super::{Ban, CONNECTION_TTL_S, Connection, ConnectionRegistry, RegistryError, UserFootprint};
use crate::auth::Grant;
use crate::dynamo::{Item, read_all, s, written};
use crate::ids::{FacilityId, RegionId, SessionId, UserId};
use crate::port::PortError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

#[path = "dynamo_bans.rs"]
mod bans;

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoConnectionRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn describe<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> RegistryError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    PortError::from_sdk(e)
}

/// A `groups` claim as stored: a list of strings.
fn groups_value(groups: &[String]) -> AttributeValue {
    AttributeValue::L(groups.iter().map(|g| s(g.as_str())).collect())
}

fn text(item: &Item, k: &str) -> Result<String, RegistryError> {
    item.get(k)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| PortError::Malformed(format!("item lacks {k}")))
}

impl DynamoConnectionRegistry {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn connection_from(item: &Item) -> Result<Connection, RegistryError> {
        let bad = |e: crate::ids::IdError| PortError::Malformed(e.to_string());
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
            hidden: item
                .get("hidden")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
            grant: Grant {
                exp_s: item
                    .get("token_exp")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok()),
                groups: item
                    .get("groups")
                    .and_then(|v| v.as_l().ok())
                    .map(|l| l.iter().filter_map(|g| g.as_s().ok().cloned()).collect())
                    .unwrap_or_default(),
            },
        })
    }

    /// `SET`s on an existing connection item; `false` when there is none.
    async fn update_existing(
        &self,
        id: &str,
        attribute: &str,
        expression: &str,
        values: &[(&str, AttributeValue)],
        second: Option<(&str, &str)>,
    ) -> Result<bool, RegistryError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("CONN#{id}")))
            .key("sk", s("META"))
            .update_expression(expression)
            // `#a`: attribute names may be reserved words (HIDDEN is one).
            .expression_attribute_names("#a", attribute)
            .condition_expression("attribute_exists(pk)");
        if let Some((placeholder, name)) = second {
            update = update.expression_attribute_names(placeholder, name);
        }
        for (k, v) in values {
            update = update.expression_attribute_values(*k, v.clone());
        }
        written(update.send().await, |e| {
            e.is_conditional_check_failed_exception()
        })
    }

    /// Every item of a query (all pages).
    async fn query(
        &self,
        index: Option<&str>,
        condition: &str,
        values: &[(&str, String)],
    ) -> Result<Vec<Item>, RegistryError> {
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
                        .map_err(|e| PortError::Malformed(e.to_string()))?,
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
        if c.hidden {
            put = put.item("hidden", AttributeValue::Bool(true));
        }
        if let Some(exp) = c.grant.exp_s {
            put = put.item("token_exp", AttributeValue::N(exp.to_string()));
        }
        if !c.grant.groups.is_empty() {
            put = put.item("groups", groups_value(&c.grant.groups));
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
        written(result, |e| e.is_conditional_check_failed_exception())
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
            .query(
                None,
                "pk = :g AND begins_with(sk, :u)",
                &[(":g", format!("GROUP#{group}")), (":u", "USER#".into())],
            )
            .await?;
        items
            .iter()
            .map(|i| {
                UserId::parse(&text(i, "user_id")?).map_err(|e| PortError::Malformed(e.to_string()))
            })
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

    async fn all_connections(&self) -> Result<Vec<String>, RegistryError> {
        // The sparse index `by-region` holds connection items only, never memberships.
        let items: Vec<_> = self
            .client
            .scan()
            .table_name(&self.table)
            .index_name("by-region")
            .projection_expression("conn_id")
            .into_paginator()
            .items()
            .send()
            .collect::<Vec<_>>()
            .await;
        read_all(items, |i| text(i, "conn_id"))
    }

    async fn region_sockets(&self, region: &RegionId) -> Result<Vec<Connection>, RegistryError> {
        let items = self
            .query(
                Some("by-region"),
                "region_pk = :k",
                &[(":k", format!("REGION#{region}"))],
            )
            .await?;
        items.iter().map(Self::connection_from).collect()
    }

    async fn bind_session(&self, id: &str, session: &SessionId) -> Result<bool, RegistryError> {
        self.update_existing(
            id,
            "session_id",
            "SET #a = :v",
            &[(":v", s(session.as_str()))],
            None,
        )
        .await
    }

    async fn set_hidden(&self, id: &str, hidden: bool) -> Result<bool, RegistryError> {
        self.update_existing(
            id,
            "hidden",
            "SET #a = :v",
            &[(":v", AttributeValue::Bool(hidden))],
            None,
        )
        .await
    }

    async fn set_grant(&self, id: &str, grant: &Grant) -> Result<bool, RegistryError> {
        let exp = grant.exp_s.map_or(AttributeValue::Null(true), |e| {
            AttributeValue::N(e.to_string())
        });
        self.update_existing(
            id,
            "token_exp",
            "SET #a = :e, #g = :g",
            &[(":e", exp), (":g", groups_value(&grant.groups))],
            Some(("#g", "groups")),
        )
        .await
    }

    async fn user_footprint(&self, user: &UserId) -> Result<UserFootprint, RegistryError> {
        let items = self
            .query(
                Some("by-user"),
                "user_pk = :u",
                &[(":u", format!("USER#{user}"))],
            )
            .await?;
        let mut footprint = UserFootprint::default();
        for item in &items {
            let sk = text(item, "user_sk")?;
            if sk.starts_with("CONN#") {
                footprint.connections.push(text(item, "conn_id")?);
            } else if sk.starts_with("GROUP#") {
                footprint.groups.push(text(item, "group_name")?);
            }
        }
        Ok(footprint)
    }

    async fn ban(&self, group: &str, user: &UserId, ban: Ban) -> Result<(), RegistryError> {
        self.put_ban(group, user, ban).await
    }

    async fn unban(&self, group: &str, user: &UserId, now_ms: i64) -> Result<bool, RegistryError> {
        self.delete_ban(group, user, now_ms).await
    }

    async fn ban_of(
        &self,
        group: &str,
        user: &UserId,
        now_ms: i64,
    ) -> Result<Option<Ban>, RegistryError> {
        self.get_ban(group, user, now_ms).await
    }
}
