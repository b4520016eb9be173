//! Who may do what with groups: the join policy. Group names themselves are wire types
//! ([`crate::ids::Group`]).
//!
//! `user:{id}`, `facility:{id}` and `region:{id}` follow the connection: every connection is
//! in its user's, facility's and region's group from `$connect`, and nobody joins or leaves
//! them by hand. Free groups (`chat:{name}`) are user-level memberships governed by a
//! [`GroupPolicy`].

use crate::auth::Identity;
use crate::ids::{Group, RegionId};
use std::fmt;

/// Why the policy refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{0} is joined automatically and cannot be joined or left by hand")]
    Automatic(String),
    #[error("you may not join {0}")]
    NotAllowed(String),
    #[error("you may not watch region {0}")]
    Region(String),
}

/// Who may join which group and watch which region.
pub trait GroupPolicy: Send + Sync + fmt::Debug {
    /// May `who` join the free group `group`?
    fn may_join(&self, who: &Identity, group: &Group) -> Result<(), PolicyError>;
    /// May `who` read the live status of `region`?
    fn may_watch(&self, who: &Identity, region: &RegionId) -> Result<(), PolicyError>;
}

/// The default policy: any signed-in user may join any `chat:` group; a user watches only
/// their own region.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl GroupPolicy for DefaultPolicy {
    fn may_join(&self, _who: &Identity, group: &Group) -> Result<(), PolicyError> {
        match group {
            Group::Free(_) => Ok(()),
            g => Err(PolicyError::Automatic(g.to_string())),
        }
    }

    fn may_watch(&self, who: &Identity, region: &RegionId) -> Result<(), PolicyError> {
        if *region == who.region {
            Ok(())
        } else {
            Err(PolicyError::Region(region.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{FacilityId, UserId};

    fn ann() -> Identity {
        Identity {
            user: UserId::parse("ann").unwrap(),
            facility: FacilityId::parse("icu").unwrap(),
            region: RegionId::parse("north").unwrap(),
        }
    }

    #[test]
    fn automatic_groups_follow_identity_and_cannot_be_joined() {
        let me = ann();
        let p = DefaultPolicy;
        for raw in ["user:ann", "facility:icu", "region:north"] {
            let g = Group::parse(raw).unwrap();
            assert!(g.is_automatic() && g.contains(&me.user, &me.facility, &me.region));
            assert!(matches!(
                p.may_join(&me, &g),
                Err(PolicyError::Automatic(_))
            ));
        }
        assert!(
            !Group::parse("facility:er")
                .unwrap()
                .contains(&me.user, &me.facility, &me.region)
        );
        let chat = Group::parse("chat:x").unwrap();
        assert!(!chat.is_automatic() && !chat.contains(&me.user, &me.facility, &me.region));
        assert!(p.may_join(&me, &chat).is_ok());
        assert!(p.may_watch(&me, &RegionId::parse("north").unwrap()).is_ok());
        assert!(
            p.may_watch(&me, &RegionId::parse("south").unwrap())
                .is_err()
        );
    }
}
