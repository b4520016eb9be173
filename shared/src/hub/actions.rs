//! `$default`: one client frame — parse, rate-limit, dispatch to its action, reply.

use super::groups::PolicyError;
use super::messages::{self, ClientAction};
use super::{ActionError, Connection, Hub, HubError, ServerMessage};
use crate::auth::Identity;
use crate::ids::{RegionId, UserId};
use crate::ingest::IngestError;
use crate::protocol::{Group, HeartbeatBody};
use serde_json::Value;
use std::collections::BTreeSet;

/// An action's reply, or why it was refused.
type Reply = Result<ServerMessage, ActionError>;

/// Who sent the frame being served, the `ref` its reply echoes, and when.
struct Frame<'a> {
    c: &'a Connection,
    reference: Option<Value>,
    now_ms: i64,
}

impl Hub {
    /// `$default`: one client frame. Returns the reply to the caller (an `error` frame for a
    /// bad frame or a refused action), which the route response carries back on the same
    /// connection; frames for anyone else (the user's other devices, a group) are posted.
    /// `Err` only when the backend failed before the frame could be looked at.
    pub async fn message(
        &self,
        connection_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<ServerMessage, HubError> {
        let Some(connection) = self.connection(connection_id, now_ms).await? else {
            return Ok(ServerMessage::error(
                "unknown_connection",
                "reconnect: this connection is not registered",
                None,
                None,
            ));
        };
        if !self.limiter.allow(connection_id, now_ms) {
            return Ok(ServerMessage::error(
                "rate_limited",
                "too many frames on this connection; slow down",
                None,
                None,
            ));
        }
        let (action, reference) = match messages::parse_frame(body) {
            Ok(parsed) => parsed,
            Err(e) => {
                return Ok(ServerMessage::error(
                    e.code,
                    e.message,
                    e.action,
                    e.reference,
                ));
            }
        };
        let name = action.name();
        match self
            .dispatch(&connection, action, reference.clone(), now_ms)
            .await
        {
            Ok(reply) => Ok(reply),
            Err(e) => Ok(ServerMessage::error(
                e.code(),
                e.to_string(),
                Some(name.to_owned()),
                reference,
            )),
        }
    }

    async fn dispatch(
        &self,
        c: &Connection,
        action: ClientAction,
        reference: Option<Value>,
        now_ms: i64,
    ) -> Reply {
        let f = Frame {
            c,
            reference,
            now_ms,
        };
        match action {
            ClientAction::Ping => Ok(ServerMessage::Pong {
                reference: f.reference,
            }),
            ClientAction::Heartbeat { session_id, state } => {
                self.heartbeat(f, HeartbeatBody { session_id, state }).await
            }
            ClientAction::Join { group } => self.join(f, group).await,
            ClientAction::Leave { group } => self.leave(f, group).await,
            ClientAction::Send {
                group,
                data,
                others,
            } => self.send(f, group, data, others).await,
            ClientAction::Members { group } => self.members(f, group).await,
            ClientAction::Snapshot { region } => self.snapshot(f, region).await,
        }
    }

    async fn heartbeat(&self, f: Frame<'_>, body: HeartbeatBody) -> Reply {
        let Frame {
            c,
            reference,
            now_ms,
        } = f;
        let accepted = self
            .ingest
            .enqueue(&identity(c), body, now_ms)
            .await
            .map_err(|e| match e {
                IngestError::RateLimited => ActionError::RateLimited(e.to_string()),
                other => ActionError::backend(&other),
            })?;
        Ok(ServerMessage::HeartbeatAck {
            interval_s: accepted.interval_s,
            reference,
        })
    }

    async fn join(&self, f: Frame<'_>, group: Group) -> Reply {
        let Frame {
            c,
            reference,
            now_ms,
        } = f;
        self.policy
            .may_join(&identity(c), &group)
            .map_err(|e| ActionError::Forbidden(e.to_string()))?;
        let name = group.to_string();
        let new = self.registry.join(&c.user, &name, now_ms).await?;
        let joined = ServerMessage::Joined {
            group: name.clone(),
            reference: None,
        };
        self.to_other_devices(c, joined, now_ms).await;
        if new {
            let joined = ServerMessage::MemberJoined {
                group: name.clone(),
                user: c.user.clone(),
            };
            self.to_other_members(&group, &c.user, &joined, now_ms)
                .await;
        }
        Ok(ServerMessage::Joined {
            group: name,
            reference,
        })
    }

    async fn leave(&self, f: Frame<'_>, group: Group) -> Reply {
        let Frame {
            c,
            reference,
            now_ms,
        } = f;
        if group.is_automatic() {
            let e = PolicyError::Automatic(group.to_string());
            return Err(ActionError::Forbidden(e.to_string()));
        }
        let name = group.to_string();
        if self.registry.leave(&c.user, &name).await? {
            let left = ServerMessage::Left {
                group: name.clone(),
                reference: None,
            };
            self.to_other_devices(c, left, now_ms).await;
            let left = ServerMessage::MemberLeft {
                group: name.clone(),
                user: c.user.clone(),
            };
            self.to_other_members(&group, &c.user, &left, now_ms).await;
        }
        Ok(ServerMessage::Left {
            group: name,
            reference,
        })
    }

    async fn send(&self, f: Frame<'_>, group: Group, data: Value, others: bool) -> Reply {
        let Frame {
            c,
            reference,
            now_ms,
        } = f;
        self.require_member(c, &group).await?;
        let name = group.to_string();
        let mut targets: Vec<String> = self
            .group_connections(&group)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if others {
            targets.retain(|id| *id != c.id);
        }
        let frame = ServerMessage::Message {
            group: name.clone(),
            from: c.user.clone(),
            data,
        }
        .to_json();
        let report = self.deliver(&targets, &frame, now_ms).await;
        Ok(ServerMessage::Sent {
            group: name,
            delivered: report.delivered,
            reference,
        })
    }

    async fn members(&self, f: Frame<'_>, group: Group) -> Reply {
        let Frame { c, reference, .. } = f;
        self.require_member(c, &group).await?;
        let users: BTreeSet<UserId> = match &group {
            Group::Free(name) => self.registry.members(name).await?.into_iter().collect(),
            other => self
                .group_connections(other)
                .await?
                .into_iter()
                .map(|(_, u)| u)
                .collect(),
        };
        Ok(ServerMessage::Members {
            group: group.to_string(),
            users: users.into_iter().collect(),
            reference,
        })
    }

    async fn snapshot(&self, f: Frame<'_>, region: Option<RegionId>) -> Reply {
        let Frame { c, reference, .. } = f;
        let region = region.unwrap_or_else(|| c.region.clone());
        self.policy
            .may_watch(&identity(c), &region)
            .map_err(|e| ActionError::Forbidden(e.to_string()))?;
        let facilities = self
            .store
            .snapshot(&region)
            .await
            .map_err(|e| ActionError::backend(&e))?;
        Ok(ServerMessage::Snapshot {
            region,
            facilities,
            reference,
        })
    }

    async fn require_member(&self, c: &Connection, group: &Group) -> Result<(), ActionError> {
        let member = match group {
            Group::Free(name) => self.registry.is_member(&c.user, name).await?,
            automatic => automatic.contains(&c.user, &c.facility, &c.region),
        };
        if member {
            Ok(())
        } else {
            Err(ActionError::NotMember(format!(
                "you are not a member of {group}"
            )))
        }
    }
}

/// Who sent a frame, as the connection recorded it at `$connect`.
fn identity(c: &Connection) -> Identity {
    Identity {
        user: c.user.clone(),
        facility: c.facility.clone(),
        region: c.region.clone(),
    }
}
