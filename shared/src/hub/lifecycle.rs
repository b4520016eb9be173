//! `$connect` and `$disconnect`, and the session a socket carries (`?session_id=`).

use super::{Connection, Hub, HubError};
use crate::auth::AuthError;
use crate::flips::publish_flips;
use crate::ids::SessionId;
use crate::protocol::{HeartbeatState, QUEUE_MESSAGE_VERSION, QueueMessage};
use crate::sessions::{Outcome, SocketOp};

/// API Gateway connection ids are short base64-like strings.
fn valid_connection_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b))
}

impl Hub {
    /// `$connect`: verify `token`, register the connection and, with `session_id`, put that
    /// session online at once.
    pub async fn connect(
        &self,
        connection_id: &str,
        token: Option<&str>,
        session_id: Option<&str>,
        now_ms: i64,
    ) -> Result<Connection, HubError> {
        let (identity, grant) = self
            .auth
            .verify_granting(token.ok_or(AuthError::Missing)?)?;
        if !valid_connection_id(connection_id) {
            return Err(HubError::BadRequest("connection id is malformed".into()));
        }
        let session_id = session_id
            .map(SessionId::parse)
            .transpose()
            .map_err(|e| HubError::BadRequest(e.to_string()))?;
        let connection = Connection {
            id: connection_id.to_owned(),
            user: identity.user.clone(),
            facility: identity.facility.clone(),
            region: identity.region.clone(),
            session_id: session_id.clone(),
            connected_ms: now_ms,
            hidden: false,
            grant,
        };
        self.registry.register(&connection).await?;
        if let Some(sid) = &session_id {
            if let Err(e) = self
                .apply_session(&connection, sid, SocketOp::Bind, now_ms)
                .await
            {
                // Refuse the socket rather than show a presence we could not record.
                let _ = self.registry.remove(connection_id).await;
                return Err(e);
            }
        }
        self.member_connected(&connection).await;
        Ok(connection)
    }

    /// `$disconnect` (or a connection found gone): remove it; the session it carried lingers
    /// for the disconnect grace (`SocketOp::Linger`) unless another socket carries it now.
    /// Idempotent; an unknown connection is fine.
    pub async fn disconnect(
        &self,
        connection_id: &str,
        now_ms: i64,
    ) -> Result<Option<Connection>, HubError> {
        let grace_ms = self.disconnect_grace_ms;
        self.forget_connection(connection_id, SocketOp::Linger { grace_ms }, now_ms)
            .await
    }

    /// Removes a connection and applies `op` to the session it carried (linger at
    /// `$disconnect`; end when the team's backend disconnects the user); a user's last
    /// connection starts the grace before `member.offline`.
    pub(super) async fn forget_connection(
        &self,
        connection_id: &str,
        op: SocketOp,
        now_ms: i64,
    ) -> Result<Option<Connection>, HubError> {
        self.connections.forget(connection_id);
        self.limiter.forget(connection_id);
        let removed = self.registry.remove(connection_id).await?;
        if let Some(c) = &removed {
            if let Some(sid) = &c.session_id {
                self.apply_session(c, sid, op, now_ms).await?;
            }
            self.member_disconnected(&c.user, now_ms).await;
        }
        Ok(removed)
    }

    /// Applies what the socket does to its session in Redis directly (one script call, no
    /// queue) and publishes the flips it caused.
    pub(super) async fn apply_session(
        &self,
        c: &Connection,
        sid: &SessionId,
        op: SocketOp,
        now_ms: i64,
    ) -> Result<Outcome, HubError> {
        let msg = QueueMessage {
            v: QUEUE_MESSAGE_VERSION,
            session_id: sid.clone(),
            user_id: c.user.clone(),
            facility_id: c.facility.clone(),
            region: c.region.clone(),
            at_ms: now_ms,
            state: HeartbeatState::Active,
        };
        let (p, outcome, flips) = self
            .store
            .apply_socket(&msg, op, &c.id, now_ms)
            .await
            .map_err(|e| HubError::Unavailable(e.to_string()))?;
        if !flips.is_empty() {
            let flips: Vec<_> = flips.into_iter().map(|f| (p, f)).collect();
            publish_flips(&self.store, self.publisher.as_ref(), &flips).await;
        }
        Ok(outcome)
    }

    /// The connection `$default` serves: from the cache, else from the registry.
    pub(super) async fn connection(
        &self,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<Connection>, HubError> {
        if let Some(c) = self.connections.get(id, now_ms) {
            return Ok(Some(c));
        }
        let found = self.registry.get(id).await?;
        if let Some(c) = &found {
            self.connections.put(c, now_ms);
        }
        Ok(found)
    }
}
