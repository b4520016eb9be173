//! The benchmarks' fixed directory: facilities `f00000`, `f00001`, … spread over regions
//! `r000`, `r001`, … (facility `i` in region `i % regions`), and the heartbeats sessions send
//! at them. The directory does not grow with the load; the sessions per facility do.

use presence::ids::{FacilityId, RegionId, SessionId, UserId};
use presence::protocol::{HeartbeatState, QUEUE_MESSAGE_VERSION, QueueMessage};

#[derive(Debug, Clone)]
pub struct Directory {
    pub facilities: Vec<FacilityId>,
    pub regions: Vec<RegionId>,
}

impl Directory {
    pub fn new(facilities: u32, regions: u32) -> Self {
        Self {
            facilities: (0..facilities)
                .map(|f| FacilityId::parse(&format!("f{f:05}")).expect("valid id"))
                .collect(),
            regions: (0..regions)
                .map(|r| RegionId::parse(&format!("r{r:03}")).expect("valid id"))
                .collect(),
        }
    }

    /// A heartbeat of `session` by `user` at facility number `facility`, in its region.
    pub fn heartbeat(
        &self,
        session: &str,
        user: &str,
        facility: usize,
        at_ms: i64,
        state: HeartbeatState,
    ) -> QueueMessage {
        QueueMessage {
            v: QUEUE_MESSAGE_VERSION,
            session_id: SessionId::parse(session).expect("valid id"),
            user_id: UserId::parse(user).expect("valid id"),
            facility_id: self.facilities[facility].clone(),
            region: self.regions[facility % self.regions.len()].clone(),
            at_ms,
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_facility_stays_in_one_region() {
        let dir = Directory::new(25, 10);
        let hb = |f| dir.heartbeat("s1", "u1", f, 1, HeartbeatState::Active);
        assert_eq!(hb(3).facility_id.as_str(), "f00003");
        assert_eq!(hb(3).region.as_str(), "r003");
        assert_eq!(hb(23).region.as_str(), "r003");
        assert_eq!(hb(23).region, hb(13).region);
    }
}
