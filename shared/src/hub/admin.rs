//! What the team's backend does through the admin API (`/v1/admin/`, the admin-api
//! function): disconnect a user, remove and ban members. Publishing is [`Hub::publish`] and
//! presence [`Hub::presence`], shared with the WebSocket actions.

use super::registry::Ban;
use super::{ActionError, Hub, HubError, ServerMessage};
use crate::ids::UserId;
use crate::protocol::Group;
use crate::sessions::SocketOp;

/// The longest ban with an end (a ban without `seconds` lasts until lifted).
pub const MAX_BAN_SECONDS: u64 = 366 * 24 * 3600;

impl Hub {
    /// Closes every socket of `user`; the sessions they carried end now (no linger).
    /// Returns how many connections there were.
    pub async fn disconnect_user(&self, user: &UserId, now_ms: i64) -> Result<usize, HubError> {
        let ids = self.registry.user_connections(user).await?;
        for id in &ids {
            if let Err(e) = self.gateway.close(id).await {
                tracing::warn!(connection = %id, error = %e, "closing a connection failed");
            }
            self.forget_connection(id, SocketOp::Ended, now_ms).await?;
        }
        Ok(ids.len())
    }

    /// Removes `user` from the chat group `group` on every device: `left` to each of their
    /// connections, one `member.left` to the other members. Returns whether they were a
    /// member.
    pub async fn remove_member(
        &self,
        group: &Group,
        user: &UserId,
        now_ms: i64,
    ) -> Result<bool, ActionError> {
        let name = free_group(group)?;
        if !self.registry.leave(user, &name).await? {
            return Ok(false);
        }
        let devices = self.registry.user_connections(user).await?;
        let left = ServerMessage::Left {
            group: name.clone(),
            reference: None,
        };
        self.deliver(&devices, &left.to_json(), now_ms).await;
        let member_left = ServerMessage::MemberLeft {
            group: name,
            user: user.clone(),
        };
        self.to_other_members(group, user, &member_left, now_ms)
            .await;
        Ok(true)
    }

    /// Bans `user` from `group` for `seconds` (until lifted without) and removes them.
    /// Returns when the ban ends (ms), `None` for until lifted.
    pub async fn ban_member(
        &self,
        group: &Group,
        user: &UserId,
        seconds: Option<u64>,
        now_ms: i64,
    ) -> Result<Option<i64>, ActionError> {
        let name = free_group(group)?;
        if let Some(s) = seconds {
            if !(1..=MAX_BAN_SECONDS).contains(&s) {
                return Err(ActionError::BadRequest(format!(
                    "seconds must be 1..={MAX_BAN_SECONDS}, not {s}"
                )));
            }
        }
        let until_ms = seconds.map(|s| now_ms + i64::try_from(s).unwrap_or(i64::MAX) * 1000);
        self.registry.ban(&name, user, Ban { until_ms }).await?;
        self.remove_member(group, user, now_ms).await?;
        Ok(until_ms)
    }

    /// Lifts a ban; returns whether one was in force.
    pub async fn unban_member(
        &self,
        group: &Group,
        user: &UserId,
        now_ms: i64,
    ) -> Result<bool, ActionError> {
        let name = free_group(group)?;
        Ok(self.registry.unban(&name, user, now_ms).await?)
    }
}

/// Removing and banning apply to chat groups only: the automatic ones follow identity.
fn free_group(group: &Group) -> Result<String, ActionError> {
    if group.is_automatic() {
        return Err(ActionError::BadRequest(format!(
            "{group} follows identity: only chat groups have members to remove or ban"
        )));
    }
    Ok(group.to_string())
}
