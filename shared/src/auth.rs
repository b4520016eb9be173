//! Identity from signed tokens: who the user is, their facility and their region.
//!
//! Identity never comes from a request body. Behind an API Gateway JWT authorizer the
//! claims arrive already verified in the request context ([`Authenticator::from_claims`]);
//! otherwise the token is verified here with an HS256 secret or an RS256 public key
//! ([`Authenticator::verify`]), checking signature, algorithm, expiry and, when configured,
//! issuer and audience.

use crate::config::{ConfigError, Env};
use crate::ids::{FacilityId, RegionId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Who is calling, from verified claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub facility: FacilityId,
    pub region: RegionId,
}

/// Why a token was refused. Messages are safe to show the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("token is expired")]
    Expired,
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token lacks claim {0:?}")]
    MissingClaim(String),
    #[error("claim {claim:?} is malformed: {reason}")]
    BadClaim { claim: String, reason: String },
}

/// The names of the claims that carry identity (`CLAIM_USER`, `CLAIM_FACILITY`,
/// `CLAIM_REGION`; defaults `sub`, `facility`, `region`). Cognito custom attributes, for
/// example, arrive as `custom:facility`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub user: String,
    pub facility: String,
    pub region: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            facility: "facility".into(),
            region: "region".into(),
        }
    }
}

/// Verifies tokens and turns claims into an [`Identity`].
#[derive(Clone)]
pub struct Authenticator {
    /// `None` when an API Gateway authorizer verifies tokens and this code only reads claims.
    key: Option<(DecodingKey, Validation)>,
    claims: ClaimNames,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "verifies",
                &self.key.as_ref().map(|(_, v)| v.algorithms.clone()),
            )
            .field("claims", &self.claims)
            .finish()
    }
}

impl Authenticator {
    /// Reads `JWT_SECRET` (HS256) or `JWT_PUBLIC_KEY` (RS256, PEM), optional `JWT_ISSUER`
    /// and `JWT_AUDIENCE`, and the claim names. With `JWT_AUTHORIZER=true` and neither key
    /// set, only claims from an authorizer are accepted.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let claims = ClaimNames {
            user: env.get("CLAIM_USER").unwrap_or("sub").to_owned(),
            facility: env.get("CLAIM_FACILITY").unwrap_or("facility").to_owned(),
            region: env.get("CLAIM_REGION").unwrap_or("region").to_owned(),
        };
        let authorizer: bool = env.parse_or("JWT_AUTHORIZER", false)?;
        let (key, alg) = match (env.get("JWT_SECRET"), env.get("JWT_PUBLIC_KEY")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Malformed {
                    name: "JWT_PUBLIC_KEY",
                    reason: "set either JWT_SECRET or JWT_PUBLIC_KEY, not both".into(),
                });
            }
            (Some(secret), None) => {
                if secret.len() < 32 {
                    return Err(ConfigError::Malformed {
                        name: "JWT_SECRET",
                        reason: format!(
                            "{} bytes is too short for HS256; use at least 32",
                            secret.len()
                        ),
                    });
                }
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            (None, Some(pem)) => {
                let pem = pem.replace("\\n", "\n");
                let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                    ConfigError::Malformed {
                        name: "JWT_PUBLIC_KEY",
                        reason: format!("not an RSA public key in PEM: {e}"),
                    }
                })?;
                (key, Algorithm::RS256)
            }
            (None, None) if authorizer => return Ok(Self { key: None, claims }),
            (None, None) => return Err(ConfigError::Missing("JWT_SECRET")),
        };
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp"]);
        validation.leeway = 30;
        match env.get("JWT_AUDIENCE") {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = env.get("JWT_ISSUER") {
            validation.set_issuer(&[iss]);
        }
        Ok(Self {
            key: Some((key, validation)),
            claims,
        })
    }

    /// An HS256 authenticator with the default claim names (tests, local stack).
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        validation.leeway = 30;
        Self {
            key: Some((DecodingKey::from_secret(secret), validation)),
            claims: ClaimNames::default(),
        }
    }

    /// Whether this code verifies tokens itself (no authorizer in front).
    pub fn verifies_tokens(&self) -> bool {
        self.key.is_some()
    }

    /// Verifies a raw token (without `Bearer `) and reads the identity from it.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let Some((key, validation)) = &self.key else {
            return Err(AuthError::Invalid(
                "this endpoint accepts only authorizer-verified requests".into(),
            ));
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
                    _ => AuthError::Invalid(e.to_string()),
                }
            })?;
        self.from_claims(&data.claims)
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_bearer(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Invalid(format!(
                "expected a Bearer token, got scheme {scheme:?}"
            )));
        }
        self.verify(token)
    }

    /// Reads identity from claims that something trusted already verified.
    pub fn from_claims(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let get = |name: &str| -> Result<String, AuthError> {
            match claims.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                Some(_) => Err(AuthError::BadClaim {
                    claim: name.into(),
                    reason: "not a string".into(),
                }),
                None => Err(AuthError::MissingClaim(name.into())),
            }
        };
        let bad = |claim: &str, e: crate::ids::IdError| AuthError::BadClaim {
            claim: claim.into(),
            reason: e.to_string(),
        };
        let c = &self.claims;
        Ok(Identity {
            user: UserId::parse(&get(&c.user)?).map_err(|e| bad(&c.user, e))?,
            facility: FacilityId::parse(&get(&c.facility)?).map_err(|e| bad(&c.facility, e))?,
            region: RegionId::parse(&get(&c.region)?).map_err(|e| bad(&c.region, e))?,
        })
    }
}

/// Signs HS256 tokens with the default claim names: the local stack's `/dev/token` and tests.
#[derive(Clone)]
pub struct DevTokenSigner {
    key: EncodingKey,
}

impl std::fmt::Debug for DevTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevTokenSigner")
    }
}

impl DevTokenSigner {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
        }
    }

    /// A token for `identity` that expires at `exp_s` (seconds since the epoch).
    pub fn sign(&self, identity: &Identity, exp_s: i64) -> String {
        let claims = serde_json::json!({
            "sub": identity.user, "facility": identity.facility, "region": identity.region, "exp": exp_s,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn identity() -> Identity {
        Identity {
            user: UserId::parse("u1").unwrap(),
            facility: FacilityId::parse("f1").unwrap(),
            region: RegionId::parse("r1").unwrap(),
        }
    }

    fn now_s() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn verifies_a_signed_token() {
        let token = DevTokenSigner::new(SECRET).sign(&identity(), now_s() + 600);
        let auth = Authenticator::hs256(SECRET);
        assert_eq!(
            auth.verify_bearer(Some(&format!("Bearer {token}")))
                .unwrap(),
            identity()
        );
    }

    #[test]
    fn refuses_forged_expired_and_unsigned_tokens() {
        let auth = Authenticator::hs256(SECRET);
        let forged = DevTokenSigner::new(b"another-secret-another-secret-xx")
            .sign(&identity(), now_s() + 600);
        assert!(matches!(auth.verify(&forged), Err(AuthError::Invalid(_))));
        let expired = DevTokenSigner::new(SECRET).sign(&identity(), now_s() - 3600);
        assert_eq!(auth.verify(&expired), Err(AuthError::Expired));
        // alg: none, with the same claims
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let good = DevTokenSigner::new(SECRET).sign(&identity(), now_s() + 600);
        let payload = good.split('.').nth(1).unwrap();
        assert!(auth.verify(&format!("{header}.{payload}.")).is_err());
        assert_eq!(auth.verify_bearer(None), Err(AuthError::Missing));
        assert!(auth.verify_bearer(Some("Basic abc")).is_err());
    }

    #[test]
    fn claims_are_validated_as_ids() {
        let auth = Authenticator::hs256(SECRET);
        let mut claims = Map::new();
        claims.insert("sub".into(), "u1".into());
        claims.insert("facility".into(), "f/1".into());
        claims.insert("region".into(), "r1".into());
        assert!(matches!(
            auth.from_claims(&claims),
            Err(AuthError::BadClaim { .. })
        ));
        claims.remove("facility");
        assert_eq!(
            auth.from_claims(&claims),
            Err(AuthError::MissingClaim("facility".into()))
        );
    }

    #[test]
    fn config_needs_a_key_unless_an_authorizer_verifies() {
        let err = Authenticator::from_env(&Env::from_pairs::<&str, &str>([])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("JWT_SECRET"));
        let err = Authenticator::from_env(&Env::from_pairs([("JWT_SECRET", "short")])).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"));
        let err =
            Authenticator::from_env(&Env::from_pairs([("JWT_PUBLIC_KEY", "nope")])).unwrap_err();
        assert!(err.to_string().contains("JWT_PUBLIC_KEY"));
        let a = Authenticator::from_env(&Env::from_pairs([("JWT_AUTHORIZER", "true")])).unwrap();
        assert!(!a.verifies_tokens());
    }
}
