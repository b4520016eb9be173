//! The sample directory: regions, facilities and users (`GET /dev/directory`).

use presence::ids::{FacilityId, RegionId, UserId};
use serde::{Deserialize, Serialize};

/// The sample regions, facilities and users.
pub const SAMPLE_DIRECTORY: &str = include_str!("../../sample/directory.json");

/// The sample directory (`GET /dev/directory`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Directory {
    pub regions: Vec<DirRegion>,
    pub users: Vec<DirUser>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirRegion {
    pub id: RegionId,
    pub name: String,
    pub facilities: Vec<DirFacility>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirFacility {
    pub id: FacilityId,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirUser {
    pub id: UserId,
    pub name: String,
    pub facility: FacilityId,
    pub region: RegionId,
}

impl Directory {
    /// The sample directory shipped with the stack.
    pub fn sample() -> Result<Self, serde_json::Error> {
        serde_json::from_str(SAMPLE_DIRECTORY)
    }
}
