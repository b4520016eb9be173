//! Fan-out: a group's connections, posting at bounded concurrency with retries and 410
//! handling, and ws-push's push-queue messages.

use super::registry::RegistryError;
use super::{CONNECTING_GRACE_MS, Connection, Delivered, Hub, HubError, PostError, ServerMessage};
use crate::ids::UserId;
use crate::protocol::{Group, PushMessage, Target};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;

impl Hub {
    /// `to_others` to the user's other devices (the caller gets its own copy, with the
    /// `ref`, as the reply).
    pub(super) async fn to_other_devices(
        &self,
        c: &Connection,
        to_others: ServerMessage,
        now_ms: i64,
    ) {
        match self.registry.user_connections(&c.user).await {
            Ok(ids) => {
                let others: Vec<String> = ids.into_iter().filter(|id| *id != c.id).collect();
                self.deliver(&others, &to_others.to_json(), now_ms).await;
            }
            Err(e) => tracing::error!(error = %e, "user's devices not found"),
        }
    }

    /// `message` to the group's connections of every user but `except`. The membership
    /// change it announces has happened already, so a failure is logged, not returned.
    pub(super) async fn to_other_members(
        &self,
        group: &Group,
        except: &UserId,
        message: &ServerMessage,
        now_ms: i64,
    ) {
        match self.group_connections(group).await {
            Ok(members) => {
                let targets: Vec<String> = members
                    .into_iter()
                    .filter(|(_, u)| u != except)
                    .map(|(id, _)| id)
                    .collect();
                self.deliver(&targets, &message.to_json(), now_ms).await;
            }
            Err(e) => tracing::error!(error = %e, %group, "group members not found"),
        }
    }

    /// The connections of a group with their users.
    pub async fn group_connections(
        &self,
        group: &Group,
    ) -> Result<Vec<(String, UserId)>, RegistryError> {
        match group {
            Group::User(u) => Ok(self
                .registry
                .user_connections(u)
                .await?
                .into_iter()
                .map(|id| (id, u.clone()))
                .collect()),
            Group::Facility(f) => self.registry.facility_connections(f).await,
            Group::Region(r) => self.registry.region_connections(r).await,
            Group::Free(name) => {
                let users = self.registry.members(name).await?;
                let registry = &self.registry;
                let per_user: Vec<Result<Vec<(String, UserId)>, _>> = futures::stream::iter(users)
                    .map(|u| async move {
                        registry
                            .user_connections(&u)
                            .await
                            .map(|ids| ids.into_iter().map(|id| (id, u.clone())).collect())
                    })
                    .buffer_unordered(self.settings.member_concurrency)
                    .collect()
                    .await;
                let mut all = Vec::new();
                for r in per_user {
                    all.extend(r?);
                }
                Ok(all)
            }
        }
    }

    /// Posts `frame` to each connection at bounded concurrency, retrying throttling with
    /// backoff; a gone connection is disconnected (registry and session) on the spot.
    pub async fn deliver(&self, connection_ids: &[String], frame: &str, now_ms: i64) -> Delivered {
        // Owned ids: the futures must not borrow the caller's slice (they may run on a spawned task).
        let unique: BTreeSet<String> = connection_ids.iter().cloned().collect();
        let results: Vec<(String, Result<(), PostError>)> = futures::stream::iter(unique)
            .map(|id| async move {
                let result = self.post_with_retry(&id, frame.as_bytes()).await;
                (id, result)
            })
            .buffer_unordered(self.settings.fanout_concurrency)
            .collect()
            .await;
        let mut report = Delivered::default();
        for (id, result) in results {
            match result {
                Ok(()) => report.delivered += 1,
                Err(PostError::Gone) => {
                    // API Gateway also answers 410 for a connection whose `$connect` has not
                    // finished yet: a young connection is skipped, not deleted.
                    match self.registry.get(&id).await {
                        Ok(Some(c)) if now_ms - c.connected_ms < CONNECTING_GRACE_MS => {
                            tracing::debug!(connection = %id, "410 from a connection still connecting");
                            continue;
                        }
                        _ => {}
                    }
                    if let Err(e) = self.disconnect(&id, now_ms).await {
                        tracing::error!(connection = %id, error = %e, "gone connection not cleaned up");
                    }
                    report.gone.push(id);
                }
                Err(e) => {
                    tracing::warn!(connection = %id, error = %e, "post failed");
                    report.failed.push(id);
                }
            }
        }
        report
    }

    async fn post_with_retry(&self, id: &str, data: &[u8]) -> Result<(), PostError> {
        let mut delay = self.settings.retry_delay;
        let mut attempt = 1;
        loop {
            match self.gateway.post(id, data).await {
                Err(PostError::Retryable(e)) if attempt < self.settings.post_attempts => {
                    tracing::debug!(connection = %id, attempt, error = %e, "post retried");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// ws-push: one push-queue message. Status events go to `region:{r}` (its visible sockets)
    /// and `facility:{f}`, coalesced per region ([`Hub::push_statuses`]); ws-push hands a
    /// batch's statuses of one region over together.
    pub async fn push(&self, message: &PushMessage, now_ms: i64) -> Result<Delivered, HubError> {
        match message {
            PushMessage::Status(event) => {
                self.push_statuses(
                    &event.status.region,
                    std::slice::from_ref(&event.status),
                    now_ms,
                )
                .await
            }
            PushMessage::Deliver(d) => {
                let mut ids: Vec<String> = match &d.to {
                    Target::Connection(id) => vec![id.clone()],
                    Target::User(u) => self.registry.user_connections(u).await?,
                    Target::Group(g) => self
                        .group_connections(g)
                        .await?
                        .into_iter()
                        .map(|(id, _)| id)
                        .collect(),
                    Target::All => self.registry.all_connections().await?,
                };
                if let Some(except) = &d.except {
                    ids.retain(|id| id != except);
                }
                let frame = match &d.data {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok(self.deliver(&ids, &frame, now_ms).await)
            }
            PushMessage::Member(m) => {
                self.announce_member(&m.user, m.online, now_ms).await?;
                Ok(Delivered::default())
            }
        }
    }
}
