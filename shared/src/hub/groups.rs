//! Who may do what with groups: the join policy. Group names themselves are wire types
//! ([`crate::ids::Group`]).
//!
//! `user:{id}`, `facility:{id}` and `region:{id}` follow the connection: every connection is
//! in its user's, facility's and region's group from `$connect`, and nobody joins or leaves
//! them by hand. Free groups (`chat:{name}`) are user-level memberships governed by a
//! [`GroupPolicy`]: [`JoinPolicy`] (`JOIN_POLICY`), open to all or by the token's `groups`
//! claim.

use crate::auth::{Grant, Identity};
use crate::config::{ConfigError, Env};
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
    /// May `who`, whose token grants `grant`, join the free group `group`?
    fn may_join(&self, who: &Identity, grant: &Grant, group: &Group) -> Result<(), PolicyError>;
    /// May `who` read the live status of `region`?
    fn may_watch(&self, who: &Identity, region: &RegionId) -> Result<(), PolicyError>;
}

/// The deployment's policy (`JOIN_POLICY`): who may join which `chat:` group. Either way a
/// user watches only their own region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JoinPolicy {
    /// `open` (the default): any signed-in user may join any `chat:` group.
    #[default]
    Open,
    /// `claim`: only the groups the token's `groups` claim lists, exactly (`chat:ops`) or
    /// by prefix (`chat:north-*`).
    Claim,
}

impl JoinPolicy {
    /// `JOIN_POLICY`: `open` (default) or `claim`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get("JOIN_POLICY").map(str::trim) {
            None | Some("") | Some("open") => Ok(Self::Open),
            Some("claim") => Ok(Self::Claim),
            Some(other) => Err(ConfigError::Malformed {
                name: "JOIN_POLICY",
                reason: format!("{other:?} is neither \"open\" nor \"claim\""),
            }),
        }
    }
}

/// Whether a `groups` claim entry grants `group`: equal, or a prefix ending in `*`.
pub fn grants(entry: &str, group: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => group.starts_with(prefix),
        None => entry == group,
    }
}

impl GroupPolicy for JoinPolicy {
    fn may_join(&self, _who: &Identity, grant: &Grant, group: &Group) -> Result<(), PolicyError> {
        let name = match group {
            Group::Free(_) => group.to_string(),
            g => return Err(PolicyError::Automatic(g.to_string())),
        };
        match self {
            Self::Open => Ok(()),
            Self::Claim if grant.groups.iter().any(|e| grants(e, &name)) => Ok(()),
            Self::Claim => Err(PolicyError::NotAllowed(name)),
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
        let p = JoinPolicy::Open;
        let none = Grant::default();
        for raw in ["user:ann", "facility:icu", "region:north"] {
            let g = Group::parse(raw).unwrap();
            assert!(g.is_automatic() && g.contains(&me.user, &me.facility, &me.region));
            assert!(matches!(
                p.may_join(&me, &none, &g),
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
        assert!(p.may_join(&me, &none, &chat).is_ok());
        assert!(p.may_watch(&me, &RegionId::parse("north").unwrap()).is_ok());
        assert!(
            p.may_watch(&me, &RegionId::parse("south").unwrap())
                .is_err()
        );
    }

    #[test]
    fn the_claim_policy_grants_listed_groups_and_prefixes_only() {
        let me = ann();
        let grant = Grant {
            exp_s: None,
            groups: vec!["chat:ops".into(), "chat:north-*".into()],
        };
        let p = JoinPolicy::Claim;
        for ok in ["chat:ops", "chat:north-", "chat:north-icu"] {
            assert!(
                p.may_join(&me, &grant, &Group::parse(ok).unwrap()).is_ok(),
                "{ok}"
            );
        }
        for no in ["chat:opsx", "chat:north", "chat:south-icu"] {
            assert_eq!(
                p.may_join(&me, &grant, &Group::parse(no).unwrap()),
                Err(PolicyError::NotAllowed(no.into())),
                "{no}"
            );
        }
        let chat = Group::parse("chat:ops").unwrap();
        assert!(
            p.may_join(&me, &Grant::default(), &chat).is_err(),
            "no claim, no group"
        );
        assert!(
            JoinPolicy::Open
                .may_join(&me, &Grant::default(), &chat)
                .is_ok()
        );
        let env = |v: &str| Env::from_pairs([("JOIN_POLICY", v)]);
        assert_eq!(
            JoinPolicy::from_env(&env("claim")).unwrap(),
            JoinPolicy::Claim
        );
        assert_eq!(
            JoinPolicy::from_env(&env("open")).unwrap(),
            JoinPolicy::Open
        );
        assert!(JoinPolicy::from_env(&env("closed")).is_err());
    }
}
