//! The session engine's rules in plain Rust, in memory: the sequential reference the Redis
//! scripts are checked against (property tests), and a readable statement of the rules.
//!
//! It mirrors `shared/lua/heartbeat.lua` and `sweep.lua` decision for decision; a change to
//! one must be made in the other, and the property test fails until both agree.

use super::Outcome;
use crate::ids::{FacilityId, RegionId, SessionId, UserId};
use crate::protocol::{FacilityStatus, HeartbeatState, QueueMessage, Status};
use std::collections::{BTreeMap, BTreeSet};

/// A session as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSession {
    pub user: UserId,
    pub region: RegionId,
    pub started_ms: i64,
    pub last_ms: i64,
    pub deadline_ms: i64,
    pub offline_ms: Option<i64>,
}

/// A facility as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelFacility {
    pub status: Option<Status>,
    pub since_ms: i64,
    pub version: u64,
    pub live: BTreeSet<SessionId>,
}

/// The reference engine.
#[derive(Debug, Clone, Default)]
pub struct ModelEngine {
    ttl_ms: i64,
    pub sessions: BTreeMap<(FacilityId, SessionId), ModelSession>,
    pub facilities: BTreeMap<FacilityId, ModelFacility>,
}

impl ModelEngine {
    pub fn new(ttl_ms: i64) -> Self {
        Self {
            ttl_ms,
            ..Self::default()
        }
    }

    fn flip(
        &mut self,
        fac: &FacilityId,
        region: &RegionId,
        status: Status,
        since: i64,
        flips: &mut Vec<FacilityStatus>,
    ) {
        let f = self.facilities.entry(fac.clone()).or_default();
        f.version += 1;
        f.status = Some(status);
        f.since_ms = since;
        flips.push(FacilityStatus {
            facility_id: fac.clone(),
            region: region.clone(),
            status,
            since_ms: since,
            version: f.version,
            online_sessions: f.live.len() as u64,
        });
    }

    fn go_online(&mut self, h: &QueueMessage, flips: &mut Vec<FacilityStatus>) {
        let key = (h.facility_id.clone(), h.session_id.clone());
        self.sessions.insert(
            key,
            ModelSession {
                user: h.user_id.clone(),
                region: h.region.clone(),
                started_ms: h.at_ms,
                last_ms: h.at_ms,
                deadline_ms: h.at_ms + self.ttl_ms,
                offline_ms: None,
            },
        );
        let f = self.facilities.entry(h.facility_id.clone()).or_default();
        if f.live.insert(h.session_id.clone()) && f.status != Some(Status::Online) {
            self.flip(&h.facility_id, &h.region, Status::Online, h.at_ms, flips);
        }
    }

    fn go_offline(
        &mut self,
        fac: &FacilityId,
        sess: &SessionId,
        at: i64,
        flips: &mut Vec<FacilityStatus>,
    ) {
        let key = (fac.clone(), sess.clone());
        let region = {
            let s = self.sessions.get_mut(&key).expect("session exists");
            s.offline_ms = Some(at);
            s.deadline_ms = at;
            s.region.clone()
        };
        let f = self.facilities.entry(fac.clone()).or_default();
        if f.live.remove(sess) && f.live.is_empty() && f.status == Some(Status::Online) {
            self.flip(fac, &region, Status::Offline, at, flips);
        }
    }

    /// Applies heartbeats at `now_ms` (in receive-time order, as the Redis store does).
    pub fn apply(
        &mut self,
        now_ms: i64,
        heartbeats: &[QueueMessage],
    ) -> (Vec<Outcome>, Vec<FacilityStatus>) {
        let mut order: Vec<usize> = (0..heartbeats.len()).collect();
        order.sort_by_key(|&i| heartbeats[i].at_ms);
        let mut outcomes = vec![Outcome::Old; heartbeats.len()];
        let mut flips = Vec::new();
        let ttl = self.ttl_ms;
        for i in order {
            let h = &heartbeats[i];
            let (at, ended) = (h.at_ms, h.state == HeartbeatState::Ended);
            let key = (h.facility_id.clone(), h.session_id.clone());
            let outcome = match self.sessions.get(&key).cloned() {
                None if ended => {
                    self.sessions.insert(
                        key,
                        ModelSession {
                            user: h.user_id.clone(),
                            region: h.region.clone(),
                            started_ms: at,
                            last_ms: at,
                            deadline_ms: at,
                            offline_ms: Some(at),
                        },
                    );
                    Outcome::EndedUnknown
                }
                None if at + ttl <= now_ms => Outcome::TooLate,
                None => {
                    self.go_online(h, &mut flips);
                    Outcome::New
                }
                Some(s) if s.user != h.user_id => Outcome::Conflict,
                Some(s) if at < s.last_ms || (at == s.last_ms && !ended) => Outcome::Old,
                Some(s) if s.offline_ms.is_some() => {
                    if at <= s.offline_ms.unwrap_or_default() || ended {
                        Outcome::Old
                    } else if at + ttl <= now_ms {
                        Outcome::TooLate
                    } else {
                        self.go_online(h, &mut flips);
                        Outcome::Restarted
                    }
                }
                Some(s) if at > s.deadline_ms => {
                    self.go_offline(&h.facility_id, &h.session_id, s.deadline_ms, &mut flips);
                    if ended {
                        Outcome::Ended
                    } else if at + ttl <= now_ms {
                        Outcome::TooLate
                    } else {
                        self.go_online(h, &mut flips);
                        Outcome::Restarted
                    }
                }
                Some(_) if ended => {
                    self.sessions.get_mut(&key).expect("exists").last_ms = at;
                    self.go_offline(&h.facility_id, &h.session_id, at, &mut flips);
                    Outcome::Ended
                }
                Some(s) => {
                    let entry = self.sessions.get_mut(&key).expect("exists");
                    entry.last_ms = at;
                    entry.deadline_ms = s.deadline_ms.max(at + ttl);
                    Outcome::Refreshed
                }
            };
            outcomes[i] = outcome;
        }
        (outcomes, flips)
    }

    /// Claims every live session whose deadline is before `now_ms`, earliest first.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<FacilityStatus> {
        let mut due: Vec<(i64, FacilityId, SessionId)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.offline_ms.is_none() && s.deadline_ms < now_ms)
            .map(|((f, s), rec)| (rec.deadline_ms, f.clone(), s.clone()))
            .collect();
        due.sort();
        let mut flips = Vec::new();
        for (deadline, f, s) in due {
            self.go_offline(&f, &s, deadline, &mut flips);
        }
        flips
    }
}
