//! Identifiers that reach Redis keys, queue messages and DynamoDB keys.
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

#[cfg(test)]
mod tests {
    use super::*;

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
