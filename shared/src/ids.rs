//! Identifiers that reach Redis keys, queue messages and DynamoDB keys, and the group names
//! built from them (wire types: frames, push messages and the connections table carry them).
//!
//! They are validated once, where they enter (token claims, request bodies, queue messages),
//! so the rest of the code can build keys from them without escaping: none of them contains
//! `/` (the separator in session members) or whitespace, and all are short.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was rejected; names the field.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field} must be 1-{max} characters of {allowed}")]
pub struct IdError {
    pub field: &'static str,
    pub max: usize,
    pub allowed: &'static str,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:literal, $allowed:literal, $extra:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const FIELD: &'static str = $field;

            pub fn parse(raw: &str) -> Result<Self, IdError> {
                let extra: &[u8] = $extra;
                let ok = !raw.is_empty()
                    && raw.len() <= $max
                    && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || extra.contains(&b));
                if ok {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(IdError { field: $field, max: $max, allowed: $allowed })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// One browser tab (or one browser, when tabs share a heartbeat stream).
    SessionId, "session_id", 64, "[A-Za-z0-9_-]", b""
);
id_type!(
    /// A person: the token's subject. Cognito subjects are UUIDs; other issuers may use
    /// e-mail-like names, hence `.` and `@`.
    UserId, "user_id", 128, "[A-Za-z0-9_.@:-]", b".@:"
);
id_type!(
    /// A hospital, clinic or depot.
    FacilityId, "facility_id", 64, "[A-Za-z0-9_.-]", b"."
);
id_type!(
    /// A region (county) grouping facilities.
    RegionId, "region", 64, "[A-Za-z0-9_.-]", b"."
);

// ---------- groups ----------

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

    /// Whether a connection of `user` at `facility` in `region` is in this automatic group
    /// (always false for free groups, whose membership is stored).
    pub fn contains(&self, user: &UserId, facility: &FacilityId, region: &RegionId) -> bool {
        match self {
            Group::User(u) => u == user,
            Group::Facility(f) => f == facility,
            Group::Region(r) => r == region,
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn accepts_the_documented_alphabet() {
        assert!(SessionId::parse("tab_01-AZ").is_ok());
        assert!(SessionId::parse(&"a".repeat(64)).is_ok());
        assert!(UserId::parse("nurse.ann@example.org").is_ok());
        assert!(FacilityId::parse("st-olav.icu").is_ok());
    }

    #[test]
    fn rejects_everything_else_naming_the_field() {
        for bad in ["", "a/b", "a b", "ä", &"a".repeat(65), "x{y}", "a:b"] {
            let err = SessionId::parse(bad).unwrap_err();
            assert_eq!(err.field, "session_id", "{bad:?}");
        }
        assert!(FacilityId::parse("f/1").is_err());
        assert!(RegionId::parse("r 1").is_err());
        assert!(UserId::parse("u/1").is_err());
        let err: Result<SessionId, _> = serde_json::from_str("\"a/b\"");
        assert!(err.unwrap_err().to_string().contains("session_id"));
    }
}
