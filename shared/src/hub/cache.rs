//! Connections this function instance has looked up, kept while they can live.
//!
//! A connection's item never changes while it lives (user, facility, region, bound session
//! and connect time are fixed at `$connect`), and API Gateway sends no frame for a connection
//! after its `$disconnect`, so `$default` can reuse what it read for the connection's earlier
//! frames instead of reading the table for every frame. Entries expire after `ttl_ms` and the
//! map is bounded; a miss reads the registry, so the cache changes cost, never answers.

use super::registry::Connection;
use std::collections::HashMap;
use std::sync::Mutex;

/// A bounded, expiring map of connection id → connection.
#[derive(Debug)]
pub struct ConnectionCache {
    ttl_ms: i64,
    max_entries: usize,
    entries: Mutex<HashMap<String, (Connection, i64)>>,
}

impl ConnectionCache {
    /// Keeps at most `max_entries` connections, each for `ttl_ms` after it was read.
    pub fn new(max_entries: usize, ttl_ms: i64) -> Self {
        Self {
            ttl_ms,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The connection, if read less than `ttl_ms` ago.
    pub fn get(&self, id: &str, now_ms: i64) -> Option<Connection> {
        let entries = self.entries.lock().expect("connection cache lock");
        entries
            .get(id)
            .filter(|(_, at)| now_ms - *at < self.ttl_ms)
            .map(|(c, _)| c.clone())
    }

    /// Remembers `connection` as read at `now_ms`. When full, expired entries go first, then
    /// the older half.
    pub fn put(&self, connection: &Connection, now_ms: i64) {
        if self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("connection cache lock");
        if entries.len() >= self.max_entries && !entries.contains_key(&connection.id) {
            entries.retain(|_, (_, at)| now_ms - *at < self.ttl_ms);
            if entries.len() >= self.max_entries {
                let mut by_age: Vec<(i64, String)> = entries
                    .iter()
                    .map(|(k, (_, at))| (*at, k.clone()))
                    .collect();
                by_age.sort_unstable();
                for (_, k) in by_age.into_iter().take(self.max_entries / 2 + 1) {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(connection.id.clone(), (connection.clone(), now_ms));
    }

    /// Forgets a connection (it disconnected or was found gone).
    pub fn forget(&self, id: &str) {
        self.entries
            .lock()
            .expect("connection cache lock")
            .remove(id);
    }

    /// Connections held now.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("connection cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FacilityId, RegionId, UserId};

    fn conn(id: &str) -> Connection {
        Connection {
            id: id.to_owned(),
            user: UserId::parse("u").unwrap(),
            facility: FacilityId::parse("f").unwrap(),
            region: RegionId::parse("r").unwrap(),
            session_id: None,
            connected_ms: 0,
            hidden: false,
            grant: Default::default(),
        }
    }

    #[test]
    fn hits_expire_and_are_forgotten() {
        let c = ConnectionCache::new(10, 1_000);
        assert!(c.get("a", 0).is_none());
        c.put(&conn("a"), 0);
        assert_eq!(c.get("a", 999).map(|c| c.id), Some("a".to_owned()));
        assert!(c.get("a", 1_000).is_none(), "expired");
        c.put(&conn("a"), 1_000);
        c.forget("a");
        assert!(c.get("a", 1_001).is_none(), "forgotten");
    }

    #[test]
    fn bounded() {
        let c = ConnectionCache::new(10, 1_000_000);
        for i in 0..100 {
            c.put(&conn(&format!("c{i}")), i);
            assert!(c.len() <= 10);
        }
        assert!(c.get("c99", 100).is_some(), "the newest is kept");
        assert!(c.get("c0", 100).is_none(), "the oldest went");
        let none = ConnectionCache::new(0, 1_000);
        none.put(&conn("a"), 0);
        assert!(none.is_empty());
    }
}
