//! Messaging beyond join/leave/send: stored messages with `seq` (history and recovery),
//! presence in groups (`presence`, `member.online`/`member.offline`), and a token's lifetime
//! on a live socket (`auth`, `token_expired`).

use super::messages::PresentMember;
use super::{ActionError, Connection, Delivered, Hub, HubError, ServerMessage};
use crate::ids::UserId;
use crate::messages::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, StoredMessage};
use crate::protocol::{Group, MemberPresence, PushMessage};
use serde_json::Value;
use std::collections::BTreeMap;

/// The largest `history` reply: API Gateway takes up to 128 KB per message.
pub const MAX_HISTORY_REPLY_BYTES: usize = 120 * 1024;

/// The largest `data` of a published message, as JSON: a `message` frame must stay one
/// billed 32 KB unit with its envelope.
pub const MAX_DATA_BYTES: usize = 30 * 1024;

impl Hub {
    /// Stores a message to `group` (its `seq` and `ts`), then posts it to the group's
    /// connections (but `except`). `send` and the admin API's publish.
    pub async fn publish(
        &self,
        group: &Group,
        from: Option<&UserId>,
        data: Value,
        except: Option<&str>,
        now_ms: i64,
    ) -> Result<(StoredMessage, Delivered), ActionError> {
        let size = serde_json::to_string(&data).map_or(0, |s| s.len());
        if size > MAX_DATA_BYTES {
            return Err(ActionError::BadRequest(format!(
                "data is {size} bytes as JSON; the limit is {MAX_DATA_BYTES}"
            )));
        }
        let name = group.to_string();
        let stored = self.messages.append(&name, from, &data, now_ms).await?;
        let targets: Vec<String> = self
            .group_connections(group)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| Some(id.as_str()) != except)
            .collect();
        let frame = ServerMessage::Message {
            group: name,
            from: stored.from.clone(),
            data: stored.data.clone(),
            seq: stored.seq,
            ts: stored.ts,
        }
        .to_json();
        let delivered = self.deliver(&targets, &frame, now_ms).await;
        Ok((stored, delivered))
    }

    /// `history`: the group's stored messages after `after` (or the newest `limit`), cut to
    /// fit one reply.
    pub(super) async fn history(
        &self,
        group: &Group,
        after: Option<u64>,
        limit: Option<usize>,
        reference: Option<Value>,
        now_ms: i64,
    ) -> Result<ServerMessage, ActionError> {
        let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
        if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
            return Err(ActionError::BadRequest(format!(
                "limit must be 1..={MAX_HISTORY_LIMIT}, not {limit}"
            )));
        }
        let name = group.to_string();
        let mut page = self.messages.history(&name, after, limit, now_ms).await?;
        // Keep the reply under API Gateway's message size: with `after` the newest are left
        // for the next page (`more`); the newest `limit` lose their oldest.
        let mut size = 256 + name.len();
        let sizes: Vec<usize> = page
            .messages
            .iter()
            .map(|m| serde_json::to_string(m).map_or(0, |s| s.len() + 1))
            .collect();
        let total: usize = sizes.iter().sum();
        if size + total > MAX_HISTORY_REPLY_BYTES {
            if after.is_some() {
                let keep = sizes
                    .iter()
                    .take_while(|s| {
                        size += **s;
                        size <= MAX_HISTORY_REPLY_BYTES
                    })
                    .count();
                page.messages.truncate(keep);
                page.more = true;
            } else {
                let keep = sizes
                    .iter()
                    .rev()
                    .take_while(|s| {
                        size += **s;
                        size <= MAX_HISTORY_REPLY_BYTES
                    })
                    .count();
                let drop = page.messages.len() - keep;
                page.messages.drain(..drop);
                page.complete = false;
            }
        }
        Ok(ServerMessage::History {
            group: name,
            messages: page.messages,
            complete: page.complete,
            more: page.more,
            reference,
        })
    }

    /// The members of `group` with at least one live connection, and how many, by user.
    pub async fn presence(&self, group: &Group) -> Result<Vec<PresentMember>, ActionError> {
        let mut devices: BTreeMap<UserId, usize> = BTreeMap::new();
        for (_, user) in self.group_connections(group).await? {
            *devices.entry(user).or_default() += 1;
        }
        Ok(devices
            .into_iter()
            .map(|(user, devices)| PresentMember { user, devices })
            .collect())
    }

    /// The connection as the registry has it now when the remembered one's token looks
    /// expired: `auth` on another function instance renewed it there, not in this
    /// instance's cache. One read, only for frames past the remembered `exp`.
    pub(super) async fn renewed(&self, c: Connection, now_ms: i64) -> Result<Connection, HubError> {
        let expired = c
            .grant
            .exp_s
            .is_some_and(|exp| now_ms >= exp.saturating_mul(1000));
        if !expired {
            return Ok(c);
        }
        match self.registry.get(&c.id).await? {
            Some(fresh) => {
                self.connections.put(&fresh, now_ms);
                Ok(fresh)
            }
            None => Ok(c),
        }
    }

    /// Refuses frames on a connection whose token expired; past the grace the socket is
    /// closed too.
    pub(super) async fn check_token(&self, c: &Connection, now_ms: i64) -> Result<(), ActionError> {
        let Some(exp_s) = c.grant.exp_s else {
            return Ok(());
        };
        let exp_ms = exp_s.saturating_mul(1000);
        if now_ms < exp_ms {
            return Ok(());
        }
        if now_ms >= exp_ms.saturating_add(self.token_grace_ms) {
            tracing::info!(connection = %c.id, user = %c.user, "closing a socket whose token expired");
            let error = ActionError::TokenExpired(
                "the token expired and no fresh one came: the socket is closed".into(),
            );
            // Said before the close: the reply would find the socket gone.
            let frame = ServerMessage::error(error.code(), error.to_string(), None, None);
            self.deliver(std::slice::from_ref(&c.id), &frame.to_json(), now_ms)
                .await;
            self.close_connection(&c.id, now_ms).await;
            return Err(error);
        }
        Err(ActionError::TokenExpired(format!(
            "the token expired; send auth with a fresh token within {} s or the socket is closed",
            (exp_ms + self.token_grace_ms - now_ms + 999) / 1000
        )))
    }

    /// `auth`: a fresh token for the same user renews the connection's grant.
    pub(super) async fn auth(
        &self,
        c: &Connection,
        token: &str,
        reference: Option<Value>,
        now_ms: i64,
    ) -> Result<ServerMessage, ActionError> {
        let (identity, grant) = self
            .auth
            .verify_granting(token)
            .map_err(|e| ActionError::Unauthorized(e.to_string()))?;
        if identity.user != c.user {
            return Err(ActionError::Forbidden(format!(
                "the token is for user {}, this connection is {}'s",
                identity.user, c.user
            )));
        }
        if !self.registry.set_grant(&c.id, &grant).await? {
            return Err(ActionError::BadRequest(
                "this connection is no longer registered; reconnect".into(),
            ));
        }
        let mut renewed = c.clone();
        renewed.grant = grant.clone();
        self.connections.put(&renewed, now_ms);
        Ok(ServerMessage::Authed {
            // Tokens that verify always have `exp` (a required claim).
            exp: grant.exp_s.unwrap_or_default(),
            reference,
        })
    }

    /// Closes a connection from the server side (the management API's DeleteConnection)
    /// and forgets it at once, without waiting for `$disconnect`.
    pub(super) async fn close_connection(&self, id: &str, now_ms: i64) {
        if let Err(e) = self.gateway.close(id).await {
            tracing::warn!(connection = %id, error = %e, "closing a connection failed");
        }
        if let Err(e) = self.disconnect(id, now_ms).await {
            tracing::error!(connection = %id, error = %e, "forgetting a closed connection failed");
        }
    }

    /// At `$connect`: a user's first device has ws-push announce `member.online` to the
    /// other members of their chat groups, unless the user's last device left within the
    /// grace (a reconnect makes no noise).
    pub(super) async fn member_connected(&self, c: &Connection) {
        let footprint = match self.registry.user_footprint(&c.user).await {
            Ok(f) => f,
            Err(e) => return tracing::error!(error = %e, "user's groups not found"),
        };
        let first = footprint.connections.iter().all(|id| *id == c.id);
        if !first || footprint.groups.is_empty() {
            return;
        }
        match self.store.member_back(&c.user).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "member grace not read; announcing online"),
        }
        let online = PushMessage::Member(MemberPresence {
            user: c.user.clone(),
            online: true,
        });
        if let Err(e) = self.publisher.publish(&[online]).await {
            tracing::error!(error = %e, "member.online not published");
        }
    }

    /// At `$disconnect`: a user's last device starts the grace after which session-expiry
    /// has ws-push announce `member.offline` ([`Hub::announce_member`]).
    pub(super) async fn member_disconnected(&self, user: &UserId, now_ms: i64) {
        let footprint = match self.registry.user_footprint(user).await {
            Ok(f) => f,
            Err(e) => return tracing::error!(error = %e, "user's groups not found"),
        };
        if footprint.connections.is_empty() && !footprint.groups.is_empty() {
            let due = now_ms + self.disconnect_grace_ms;
            if let Err(e) = self.store.member_gone(user, due).await {
                tracing::error!(error = %e, "member grace not recorded: no member.offline");
            }
        }
    }

    /// ws-push: `member.online` (or `member.offline`) to the other members of the user's
    /// chat groups, if it still holds: a device of the user is connected (none is). Returns
    /// the groups told.
    pub async fn announce_member(
        &self,
        user: &UserId,
        online: bool,
        now_ms: i64,
    ) -> Result<usize, HubError> {
        let footprint = self.registry.user_footprint(user).await?;
        if footprint.connections.is_empty() == online {
            return Ok(0);
        }
        let mut announced = 0;
        for group in footprint.groups {
            let Ok(group) = Group::parse(&group) else {
                continue;
            };
            let (name, who) = (group.to_string(), user.clone());
            let frame = if online {
                ServerMessage::MemberOnline {
                    group: name,
                    user: who,
                }
            } else {
                ServerMessage::MemberOffline {
                    group: name,
                    user: who,
                }
            };
            self.to_other_members(&group, user, &frame, now_ms).await;
            announced += 1;
        }
        Ok(announced)
    }
}
