//! What a verified token grants besides identity: its `exp` and its `groups` claim.

use super::AuthError;
use serde_json::{Map, Value};

/// What a verified token grants besides identity: kept by a WebSocket connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The token's `exp` (seconds since the epoch): after it the connection must present a
    /// fresh token (`auth`).
    pub exp_s: Option<i64>,
    /// The token's `groups` claim: chat groups (`chat:ops`) and prefixes ending in `*`
    /// (`chat:north-*`) the user may join under the `claim` join policy.
    pub groups: Vec<String>,
}

/// The most entries a `groups` claim may have.
pub const MAX_GRANTED_GROUPS: usize = 100;

impl Grant {
    /// Reads `exp` and `groups` from verified claims; a malformed `groups` claim refuses the
    /// token (rather than silently granting nothing).
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Self, AuthError> {
        let bad = |reason: String| AuthError::BadClaim {
            claim: "groups".into(),
            reason,
        };
        let groups = match claims.get("groups") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_GRANTED_GROUPS {
                    return Err(bad(format!(
                        "{} entries; at most {MAX_GRANTED_GROUPS}",
                        items.len()
                    )));
                }
                items
                    .iter()
                    .map(|v| match v.as_str() {
                        Some(g) if !g.is_empty() && g.len() <= 128 => Ok(g.to_owned()),
                        _ => Err(bad("entries must be strings of 1 to 128 characters".into())),
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err(bad("not an array of strings".into())),
        };
        Ok(Self {
            exp_s: claims.get("exp").and_then(Value::as_i64),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_exp_and_groups_and_refuses_a_malformed_claim() {
        let g = Grant::from_claims(&claims(json!({"exp": 5, "groups": ["chat:a", "chat:b-*"]})))
            .unwrap();
        assert_eq!(g.exp_s, Some(5));
        assert_eq!(g.groups, vec!["chat:a", "chat:b-*"]);
        assert_eq!(
            Grant::from_claims(&claims(json!({}))).unwrap(),
            Grant::default()
        );
        for bad in [
            json!({"groups": "chat:a"}),
            json!({"groups": [1]}),
            json!({"groups": [""]}),
            json!({"groups": vec!["chat:x"; MAX_GRANTED_GROUPS + 1]}),
        ] {
            let e = Grant::from_claims(&claims(bad.clone())).unwrap_err();
            assert!(e.to_string().contains("groups"), "{bad}: {e}");
        }
    }
}
