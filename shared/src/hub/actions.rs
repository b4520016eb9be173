//! `$default`: one client frame — parse, rate-limit, dispatch to its action, reply.

use super::groups::PolicyError;
use super::messages::{self, ClientAction};
use super::{ActionError, Connection, Hub, HubError, ServerMessage};
use crate::auth::Identity;
use crate::ids::{RegionId, SessionId, UserId};
use crate::protocol::{Group, HeartbeatState};
use crate::sessions::SocketOp;
use serde_json::Value;
use std::collections::BTreeSet;

/// An action's reply, or why it was refused.
type Reply = Result<ServerMessage, ActionError>;

/// A served frame: the reply, and whether its route is one-way.
struct Served {
    message: Option<ServerMessage>,
    one_way: bool,
}

/// Who sent the frame being served, the `ref` its reply echoes, and when.
struct Frame<'a> {
    c: &'a Connection,
    reference: Option<Value>,
    now_ms: i64,
}

impl Hub {
    /// `$default` and the one-way routes: one client frame. Returns the reply to the caller
    /// (an `error` frame for a bad frame or a refused action), which the route response
    /// carries back on the same connection, or `None` for a one-way action
    /// ([`messages::ONE_WAY_ACTIONS`]: their routes have no route response, so their errors
    /// are posted to the connection instead). Frames for anyone else (the user's other
    /// devices, a group) are posted. `Err` only when the backend failed before the frame
    /// could be looked at.
    pub async fn message(
        &self,
        connection_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<Option<ServerMessage>, HubError> {
        let reply = self.serve_frame(connection_id, body, now_ms).await?;
        if !reply.one_way {
            return Ok(reply.message);
        }
        if let Some(error) = reply.message {
            self.deliver(&[connection_id.to_owned()], &error.to_json(), now_ms)
                .await;
        }
        Ok(None)
    }

    async fn serve_frame(
        &self,
        connection_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<Served, HubError> {
        // API Gateway picks the route by the frame's `action`, so a frame is one-way exactly
        // when that names a one-way action, parsable or not.
        let one_way = messages::names_one_way_action(body);
        let answer = |message| Ok(Served { message, one_way });
        let Some(connection) = self.connection(connection_id, now_ms).await? else {
            return answer(Some(ServerMessage::error(
                "unknown_connection",
                "reconnect: this connection is not registered",
                None,
                None,
            )));
        };
        let connection = self.renewed(connection, now_ms).await?;
        if !self.limiter.allow(connection_id, now_ms) {
            return answer(Some(ServerMessage::error(
                "rate_limited",
                "too many frames on this connection; slow down",
                None,
                None,
            )));
        }
        let (action, reference) = match messages::parse_frame(body) {
            Ok(parsed) => parsed,
            Err(e) => {
                return answer(Some(ServerMessage::error(
                    e.code,
                    e.message,
                    e.action,
                    e.reference,
                )));
            }
        };
        let name = action.name();
        match self
            .dispatch(&connection, action, reference.clone(), now_ms)
            .await
        {
            Ok(reply) => answer(reply),
            Err(e) => answer(Some(ServerMessage::error(
                e.code(),
                e.to_string(),
                Some(name.to_owned()),
                reference,
            ))),
        }
    }

    async fn dispatch(
        &self,
        c: &Connection,
        action: ClientAction,
        reference: Option<Value>,
        now_ms: i64,
    ) -> Result<Option<ServerMessage>, ActionError> {
        if !matches!(action, ClientAction::Auth { .. }) {
            self.check_token(c, now_ms).await?;
        }
        let f = Frame {
            c,
            reference,
            now_ms,
        };
        let reply = match action {
            ClientAction::Ping => ServerMessage::Pong {
                reference: f.reference,
            },
            ClientAction::Heartbeat { session_id, state } => {
                self.heartbeat(f, session_id, state).await?;
                return Ok(None);
            }
            ClientAction::Visibility { visible } => {
                self.visibility(f, visible).await?;
                return Ok(None);
            }
            ClientAction::Join { group } => self.join(f, group).await?,
            ClientAction::Leave { group } => self.leave(f, group).await?,
            ClientAction::Send {
                group,
                data,
                others,
            } => self.send(f, group, data, others).await?,
            ClientAction::Members { group } => self.members(f, group).await?,
            ClientAction::Snapshot { region } => self.snapshot(f, region).await?,
            ClientAction::History {
                group,
                after,
                limit,
            } => {
                self.require_member(c, &group).await?;
                self.history(&group, after, limit, f.reference, now_ms)
                    .await?
            }
            ClientAction::Presence { group } => {
                self.require_member(c, &group).await?;
                ServerMessage::Presence {
                    group: group.to_string(),
                    members: self.presence(&group).await?,
                    reference: f.reference,
                }
            }
            ClientAction::Auth { token } => self.auth(c, &token, f.reference, now_ms).await?,
        };
        Ok(Some(reply))
    }

    /// One-way: the session goes to Redis directly (one script call; no queue, no registry
    /// read on a warm connection) and is bound to this socket, so `$disconnect` lingers it.
    /// A socket that starts carrying another session records it (one registry write, once).
    async fn heartbeat(
        &self,
        f: Frame<'_>,
        session_id: Option<SessionId>,
        state: HeartbeatState,
    ) -> Result<(), ActionError> {
        let Frame { c, now_ms, .. } = f;
        let sid = session_id.or_else(|| c.session_id.clone()).ok_or_else(|| {
            ActionError::BadRequest(
                "session_id is required: this socket carries no session yet".into(),
            )
        })?;
        let op = match state {
            HeartbeatState::Active => SocketOp::Bind,
            HeartbeatState::Ended => SocketOp::Ended,
        };
        if op == SocketOp::Bind && c.session_id.as_ref() != Some(&sid) {
            if !self.registry.bind_session(&c.id, &sid).await? {
                return Err(ActionError::BadRequest(
                    "this connection is no longer registered; reconnect".into(),
                ));
            }
            let mut bound = c.clone();
            bound.session_id = Some(sid.clone());
            self.connections.put(&bound, now_ms);
        }
        self.apply_session(c, &sid, op, now_ms)
            .await
            .map_err(|e| ActionError::backend(&e))?;
        Ok(())
    }

    /// One-way: whether region status events reach this socket. Written only on a change.
    async fn visibility(&self, f: Frame<'_>, visible: bool) -> Result<(), ActionError> {
        let Frame { c, now_ms, .. } = f;
        if c.hidden != visible {
            return Ok(());
        }
        if !self.registry.set_hidden(&c.id, !visible).await? {
            return Err(ActionError::BadRequest(
                "this connection is no longer registered; reconnect".into(),
            ));
        }
        let mut changed = c.clone();
        changed.hidden = !visible;
        self.connections.put(&changed, now_ms);
        Ok(())
    }

    async fn join(&self, f: Frame<'_>, group: Group) -> Reply {
        let Frame {
            c,
            reference,
            now_ms,
        } = f;
        self.policy
            .may_join(&identity(c), &c.grant, &group)
            .map_err(|e| ActionError::Forbidden(e.to_string()))?;
        let name = group.to_string();
        if self
            .registry
            .ban_of(&name, &c.user, now_ms)
            .await?
            .is_some()
        {
            return Err(ActionError::Banned(format!("you are banned from {name}")));
        }
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
        let except = others.then_some(c.id.as_str());
        let (stored, delivered) = self
            .publish(&group, Some(&c.user), data, except, now_ms)
            .await?;
        Ok(ServerMessage::Sent {
            group: group.to_string(),
            delivered: delivered.delivered,
            seq: stored.seq,
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
            interval_s: self.interval_s,
            reference,
        })
    }

    pub(super) async fn require_member(
        &self,
        c: &Connection,
        group: &Group,
    ) -> Result<(), ActionError> {
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
pub(super) fn identity(c: &Connection) -> Identity {
    Identity {
        user: c.user.clone(),
        facility: c.facility.clone(),
        region: c.region.clone(),
    }
}
