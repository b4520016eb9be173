//! The grace before a chat member is announced offline (`members.lua`): a user whose last
//! connection went is announced `member.offline` only when no device came back within
//! `DISCONNECT_GRACE_SECONDS`, the way a socket's session lingers. session-expiry claims due
//! users ([`SessionStore::members_due`]) and hands them to ws-push, which announces them.

use super::reply::{as_array, as_int, as_string};
use super::{SessionStore, StoreError};
use crate::ids::UserId;
use redis::Script;
use std::sync::LazyLock;

static MEMBERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/members.lua")));

/// The sorted set of users within the grace, scored by when it ends.
const GONE: &str = "presence:{members}:gone";

impl SessionStore {
    /// The user's last device went: announce them offline at `due_ms` unless one comes back.
    pub async fn member_gone(&self, user: &UserId, due_ms: i64) -> Result<(), StoreError> {
        let _: redis::Value = MEMBERS
            .key(GONE)
            .arg("gone")
            .arg(user.as_str())
            .arg(due_ms)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(())
    }

    /// A device of the user connected: `true` when the user was within the grace (a
    /// reconnect, which is not announced).
    pub async fn member_back(&self, user: &UserId) -> Result<bool, StoreError> {
        let v: redis::Value = MEMBERS
            .key(GONE)
            .arg("back")
            .arg(user.as_str())
            .invoke_async(&mut self.connection())
            .await?;
        Ok(as_int("members", &v)? == 1)
    }

    /// Claims up to `limit` users whose grace ended by `now_ms` (each is claimed once).
    pub async fn members_due(&self, now_ms: i64, limit: usize) -> Result<Vec<UserId>, StoreError> {
        let v = MEMBERS
            .key(GONE)
            .arg("due")
            .arg(now_ms)
            .arg(limit)
            .invoke_async(&mut self.connection())
            .await?;
        let flat = as_array("members", v)?;
        let mut users = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let raw = as_string("members", &pair[0])?;
            match UserId::parse(&raw) {
                Ok(u) => users.push(u),
                Err(e) => tracing::error!(error = %e, "a malformed user in the member grace"),
            }
        }
        Ok(users)
    }
}
