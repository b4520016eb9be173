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
//! | ban | `GROUP#{group}` | `BAN#{user}` | none; `until_ms` (absent: until lifted), `expires_at` TTL a minute after it ends |
//!
//! Indexes: `by-user` (`user_pk`, `user_sk`): a user's connections and groups; `by-facility`
//! (`facility_pk`, `pk`) and `by-region` (`region_pk`, `pk`): the connections of the
//! automatic facility and region groups. Group → users is a `Query` on `GROUP#{group}`.
//! Memberships belong to the user, not a connection: they outlive reconnects. Connection
//! items expire (TTL) after API Gateway's 2-hour connection limit, so a missed `$disconnect`
//! never lingers for long; a failed push (410) deletes one at once.

mod dynamo;
mod memory;

pub use dynamo::DynamoConnectionRegistry;
pub use memory::MemoryConnectionRegistry;

use crate::auth::Grant;
use crate::ids::{FacilityId, RegionId, SessionId, UserId};
use async_trait::async_trait;

/// API Gateway closes every connection after 2 hours; items live a little longer.
pub const CONNECTION_TTL_S: i64 = 2 * 3600 + 300;

/// A connection as registered at `$connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub user: UserId,
    pub facility: FacilityId,
    pub region: RegionId,
    /// The session this socket carries (`?session_id=` at `$connect`, or the last
    /// `heartbeat` frame's), which lingers at `$disconnect`.
    pub session_id: Option<SessionId>,
    pub connected_ms: i64,
    /// The page said it is hidden (`visibility` frame): region status events skip it, except
    /// its own facility's.
    pub hidden: bool,
    /// The token's expiry and granted groups (`auth` renews them).
    pub grant: Grant,
}

/// A user's items in the registry: one Query of the `by-user` index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFootprint {
    /// Connection ids.
    pub connections: Vec<String>,
    /// Free groups the user is a member of.
    pub groups: Vec<String>,
}

/// A ban of a user from a free group: `until_ms` `None` lasts until lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub until_ms: Option<i64>,
}

/// A registry failure (for logs): the port's cause.
pub type RegistryError = crate::port::PortError;

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
    /// Every registered connection id. Reads every connection item (not memberships): only
    /// for `resync` after a Redis data loss, never on a schedule.
    async fn all_connections(&self) -> Result<Vec<String>, RegistryError>;
    /// The connections of a region, whole (with their facility and visibility): one read of
    /// the `by-region` index for a coalesced status frame.
    async fn region_sockets(&self, region: &RegionId) -> Result<Vec<Connection>, RegistryError>;
    /// Records the session a registered connection carries; `false` when the connection is
    /// not registered (nothing is written).
    async fn bind_session(&self, id: &str, session: &SessionId) -> Result<bool, RegistryError>;
    /// Records whether the connection's page is hidden; `false` when the connection is not
    /// registered (nothing is written).
    async fn set_hidden(&self, id: &str, hidden: bool) -> Result<bool, RegistryError>;
    /// Records a renewed token's grant; `false` when the connection is not registered.
    async fn set_grant(&self, id: &str, grant: &Grant) -> Result<bool, RegistryError>;
    /// The user's connections and free groups, in one read.
    async fn user_footprint(&self, user: &UserId) -> Result<UserFootprint, RegistryError>;
    /// Bans `user` from `group` (replacing an earlier ban).
    async fn ban(&self, group: &str, user: &UserId, ban: Ban) -> Result<(), RegistryError>;
    /// Lifts a ban; returns whether there was one in force.
    async fn unban(&self, group: &str, user: &UserId, now_ms: i64) -> Result<bool, RegistryError>;
    /// The ban of `user` from `group` in force at `now_ms`, if any.
    async fn ban_of(
        &self,
        group: &str,
        user: &UserId,
        now_ms: i64,
    ) -> Result<Option<Ban>, RegistryError>;
}

impl Ban {
    /// Whether the ban is in force at `now_ms`.
    pub fn in_force(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }
}
