//! The connection registry in memory, for the local stack and tests.

use super::{Ban, Connection, ConnectionRegistry, RegistryError, UserFootprint};
use crate::auth::Grant;
use crate::ids::{FacilityId, RegionId, SessionId, UserId};
use async_trait::async_trait;

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
    /// (group, user) → ban
    bans: std::collections::BTreeMap<(String, UserId), Ban>,
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

    async fn all_connections(&self) -> Result<Vec<String>, RegistryError> {
        Ok(self.with(|s| s.connections.keys().cloned().collect()))
    }

    async fn region_sockets(&self, region: &RegionId) -> Result<Vec<Connection>, RegistryError> {
        Ok(self.with(|s| {
            s.connections
                .values()
                .filter(|c| c.region == *region)
                .cloned()
                .collect()
        }))
    }

    async fn bind_session(&self, id: &str, session: &SessionId) -> Result<bool, RegistryError> {
        Ok(self.with(|s| match s.connections.get_mut(id) {
            Some(c) => {
                c.session_id = Some(session.clone());
                true
            }
            None => false,
        }))
    }

    async fn set_hidden(&self, id: &str, hidden: bool) -> Result<bool, RegistryError> {
        Ok(self.with(|s| match s.connections.get_mut(id) {
            Some(c) => {
                c.hidden = hidden;
                true
            }
            None => false,
        }))
    }

    async fn set_grant(&self, id: &str, grant: &Grant) -> Result<bool, RegistryError> {
        Ok(self.with(|s| match s.connections.get_mut(id) {
            Some(c) => {
                c.grant = grant.clone();
                true
            }
            None => false,
        }))
    }

    async fn user_footprint(&self, user: &UserId) -> Result<UserFootprint, RegistryError> {
        Ok(self.with(|s| UserFootprint {
            connections: s
                .connections
                .values()
                .filter(|c| c.user == *user)
                .map(|c| c.id.clone())
                .collect(),
            groups: s
                .groups
                .iter()
                .filter(|(_, users)| users.contains(user))
                .map(|(g, _)| g.clone())
                .collect(),
        }))
    }

    async fn ban(&self, group: &str, user: &UserId, ban: Ban) -> Result<(), RegistryError> {
        self.with(|s| s.bans.insert((group.to_owned(), user.clone()), ban));
        Ok(())
    }

    async fn unban(&self, group: &str, user: &UserId, now_ms: i64) -> Result<bool, RegistryError> {
        Ok(self.with(|s| {
            s.bans
                .remove(&(group.to_owned(), user.clone()))
                .is_some_and(|b| b.in_force(now_ms))
        }))
    }

    async fn ban_of(
        &self,
        group: &str,
        user: &UserId,
        now_ms: i64,
    ) -> Result<Option<Ban>, RegistryError> {
        Ok(self.with(|s| {
            s.bans
                .get(&(group.to_owned(), user.clone()))
                .copied()
                .filter(|b| b.in_force(now_ms))
        }))
    }
}
