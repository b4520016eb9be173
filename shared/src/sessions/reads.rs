//! Reads: the live snapshot of a region, and one session or facility as stored.

use super::reply::parse_flips;
use super::{SNAPSHOT, SessionRecord, SessionStore, StoreError};
use crate::ids::{FacilityId, RegionId, SessionId};
use crate::protocol::{FacilityStatus, Status};
use redis::Value;

/// `region, status, since, version` of a facility hash.
type FacilityFields = (Option<String>, Option<String>, Option<i64>, Option<u64>);

impl SessionStore {
    /// The live status of every known facility of `region`: one read-only script per
    /// partition, all partitions at once.
    pub async fn snapshot(&self, region: &RegionId) -> Result<Vec<FacilityStatus>, StoreError> {
        let calls = self.partitioner.all().map(|p| {
            let mut conn = self.conn.clone();
            async move {
                let reply: Value = SNAPSHOT
                    .key(p.deadlines_key())
                    .arg(p.prefix())
                    .arg(region.as_str())
                    .invoke_async(&mut conn)
                    .await?;
                parse_flips("snapshot", reply)
            }
        });
        let mut all = Vec::new();
        for part in futures::future::join_all(calls).await {
            all.extend(part?);
        }
        all.sort_by(|a, b| a.facility_id.cmp(&b.facility_id));
        Ok(all)
    }

    /// A session as stored, if any.
    pub async fn session(
        &self,
        facility: &FacilityId,
        session: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let p = self.partitioner.partition_of(facility);
        let key = format!("{}:s:{}/{}", p.prefix(), facility, session);
        let h: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        if h.is_empty() {
            return Ok(None);
        }
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
        Ok(Some(SessionRecord {
            user_id: h.get("user").cloned().unwrap_or_default(),
            facility_id: h.get("facility").cloned().unwrap_or_default(),
            region: h.get("region").cloned().unwrap_or_default(),
            started_ms: num("started").unwrap_or_default(),
            last_ms: num("last").unwrap_or_default(),
            deadline_ms: num("deadline").unwrap_or_default(),
            offline_ms: num("offline"),
        }))
    }

    /// A facility's current status, if it was ever seen.
    pub async fn facility(
        &self,
        facility: &FacilityId,
    ) -> Result<Option<FacilityStatus>, StoreError> {
        let p = self.partitioner.partition_of(facility);
        let fk = format!("{}:f:{}", p.prefix(), facility);
        let lk = format!("{}:live:{}", p.prefix(), facility);
        let (fields, live): (FacilityFields, u64) = redis::pipe()
            .cmd("HMGET")
            .arg(&fk)
            .arg("region")
            .arg("status")
            .arg("since")
            .arg("version")
            .cmd("SCARD")
            .arg(&lk)
            .query_async(&mut self.conn.clone())
            .await?;
        let (region, status, since, version) = fields;
        let (Some(region), Some(status)) = (region, status) else {
            return Ok(None);
        };
        Ok(Some(FacilityStatus {
            facility_id: facility.clone(),
            region: RegionId::parse(&region)
                .map_err(|e| StoreError::reply("facility", e.to_string()))?,
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::reply("facility", format!("status {status:?}")))?,
            since_ms: since.unwrap_or_default(),
            version: version.unwrap_or_default(),
            online_sessions: live,
        }))
    }
}
