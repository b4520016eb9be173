//! Group names and who may do what with them.
//!
//! `user:{id}`, `facility:{id}` and `region:{id}` follow the connection: every connection is
//! in its user's, facility's and region's group from `$connect`, and nobody joins or leaves
//! them by hand. Free groups (`chat:{name}`) are user-level memberships governed by a
//! [`GroupPolicy`].

use crate::auth::Identity;
use crate::ids::{FacilityId, RegionId, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Group kinds anyone may create by joining.
pub const FREE_KINDS: &[&str] = &["chat"];

/// A parsed, valid group name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    User(UserId),
    Facility(FacilityId),
    Region(RegionId),
    /// `kind:name`, kind in [`FREE_KINDS`], name of `[A-Za-z0-9_.-]{1,64}`.
    Free(String),
}

/// Why a group name is not valid.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum GroupError {
    #[error("group must look like kind:name")]
    Shape,
    #[error("group kind {0:?} is unknown; use user:, facility:, region: or chat:")]
    Kind(String),
    #[error("group name must be 1-64 characters of [A-Za-z0-9_.-]")]
    Name,
}

impl Group {
    pub fn parse(raw: &str) -> Result<Self, GroupError> {
        let (kind, name) = raw.split_once(':').ok_or(GroupError::Shape)?;
        let bad = |_| GroupError::Name;
        Ok(match kind {
            "user" => Group::User(UserId::parse(name).map_err(bad)?),
            "facility" => Group::Facility(FacilityId::parse(name).map_err(bad)?),
            "region" => Group::Region(RegionId::parse(name).map_err(bad)?),
            k if FREE_KINDS.contains(&k) => {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !ok {
                    return Err(GroupError::Name);
                }
                Group::Free(raw.to_owned())
            }
            k => return Err(GroupError::Kind(k.chars().take(32).collect())),
        })
    }

    /// Joined automatically at `$connect`; never joined or left by hand.
    pub fn is_automatic(&self) -> bool {
        !matches!(self, Group::Free(_))
    }

    /// Whether `who` is in this automatic group by identity (always false for free groups,
    /// whose membership is stored).
    pub fn contains_by_identity(&self, who: &Identity) -> bool {
        match self {
            Group::User(u) => *u == who.user,
            Group::Facility(f) => *f == who.facility,
            Group::Region(r) => *r == who.region,
            Group::Free(_) => false,
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::User(u) => write!(f, "user:{u}"),
            Group::Facility(x) => write!(f, "facility:{x}"),
            Group::Region(r) => write!(f, "region:{r}"),
            Group::Free(name) => f.write_str(name),
        }
    }
}

impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Group::parse(&raw).map_err(serde::de::Error::custom)
    }
}

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

    fn ann() -> Identity {
        Identity {
            user: UserId::parse("ann").unwrap(),
            facility: FacilityId::parse("icu").unwrap(),
            region: RegionId::parse("north").unwrap(),
        }
    }

    #[test]
    fn parses_every_kind_and_round_trips() {
        for raw in [
            "user:ann",
            "facility:icu",
            "region:north",
            "chat:night-shift",
        ] {
            assert_eq!(Group::parse(raw).unwrap().to_string(), raw);
        }
        assert_eq!(Group::parse("nope"), Err(GroupError::Shape));
        assert!(matches!(Group::parse("admin:x"), Err(GroupError::Kind(_))));
        assert_eq!(Group::parse("chat:"), Err(GroupError::Name));
        assert_eq!(Group::parse("chat:a b"), Err(GroupError::Name));
        assert_eq!(Group::parse("user:a/b"), Err(GroupError::Name));
    }

    #[test]
    fn automatic_groups_follow_identity_and_cannot_be_joined() {
        let me = ann();
        let p = DefaultPolicy;
        for raw in ["user:ann", "facility:icu", "region:north"] {
            let g = Group::parse(raw).unwrap();
            assert!(g.is_automatic() && g.contains_by_identity(&me));
            assert!(matches!(
                p.may_join(&me, &g),
                Err(PolicyError::Automatic(_))
            ));
        }
        assert!(
            !Group::parse("facility:er")
                .unwrap()
                .contains_by_identity(&me)
        );
        let chat = Group::parse("chat:x").unwrap();
        assert!(!chat.is_automatic() && !chat.contains_by_identity(&me));
        assert!(p.may_join(&me, &chat).is_ok());
        assert!(p.may_watch(&me, &RegionId::parse("north").unwrap()).is_ok());
        assert!(
            p.may_watch(&me, &RegionId::parse("south").unwrap())
                .is_err()
        );
    }
}
