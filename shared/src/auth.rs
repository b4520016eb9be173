//! Identity from signed tokens: who the user is, their facility and their region.
//!
//! Identity never comes from a request body. Behind an API Gateway JWT authorizer the
//! claims arrive already verified in the request context ([`Authenticator::from_claims`]);
//! otherwise the token is verified here with an HS256 secret or an RS256 public key
//! ([`Authenticator::verify`]), checking signature, algorithm, expiry and, when configured,
//! issuer and audience.
//!
//! In AWS the HS256 secret is not in the function's configuration: `JWT_SECRET_ARN` names a
//! Secrets Manager secret that [`resolve_secret`] reads once at cold start (a plain string,
//! or JSON `{"secret": "...", "previous": "..."}` while a rotation is under way).

mod grant;
pub use grant::{Grant, MAX_GRANTED_GROUPS};

use crate::config::{ConfigError, Env};
use crate::ids::{FacilityId, RegionId, UserId};
use aws_config::SdkConfig;
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
    #[error("token is not valid yet (its nbf lies in the future)")]
    NotYetValid,
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token lacks claim {0:?}")]
    MissingClaim(String),
    #[error("claim {claim:?} is malformed: {reason}")]
    BadClaim { claim: String, reason: String },
}

/// The development secret: the local stack signs `/dev/token` tokens with it when no key
/// is configured, and the sample events' tokens are signed with it. Never a default of a
/// deployed function, which refuses to start without a key.
pub const DEV_SECRET: &str = "presence-local-development-secret";

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
    /// `JWT_SECRET_PREVIOUS`: the HS256 secret being rotated out, still accepted.
    previous: Option<DecodingKey>,
    claims: ClaimNames,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "verifies",
                &self.key.as_ref().map(|(_, v)| v.algorithms.clone()),
            )
            .field("accepts_previous_secret", &self.previous.is_some())
            .field("claims", &self.claims)
            .finish()
    }
}

impl Authenticator {
    /// Reads `JWT_SECRET` (HS256) or `JWT_PUBLIC_KEY` (RS256, PEM), optional `JWT_ISSUER`
    /// and `JWT_AUDIENCE`, and the claim names. With `JWT_AUTHORIZER=true` and neither key
    /// set, only claims from an authorizer are accepted. `JWT_SECRET_PREVIOUS` (HS256 only)
    /// is a second secret still accepted while the signer moves to a new one.
    ///
    /// `JWT_SECRET_ARN` must have been resolved first ([`resolve_secret`], or
    /// [`Authenticator::from_env_resolving`]).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let claims = ClaimNames {
            user: env.get("CLAIM_USER").unwrap_or("sub").to_owned(),
            facility: env.get("CLAIM_FACILITY").unwrap_or("facility").to_owned(),
            region: env.get("CLAIM_REGION").unwrap_or("region").to_owned(),
        };
        let authorizer: bool = env.parse_or("JWT_AUTHORIZER", false)?;
        let mut previous = None;
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
                if let Some(old) = env.get("JWT_SECRET_PREVIOUS") {
                    if old.len() < 32 {
                        return Err(ConfigError::Malformed {
                            name: "JWT_SECRET_PREVIOUS",
                            reason: format!(
                                "{} bytes is too short for HS256; use at least 32",
                                old.len()
                            ),
                        });
                    }
                    previous = Some(DecodingKey::from_secret(old.as_bytes()));
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
            (None, None) if authorizer => {
                return Ok(Self {
                    key: None,
                    previous: None,
                    claims,
                });
            }
            (None, None) if env.get("JWT_SECRET_ARN").is_some() => {
                return Err(ConfigError::Unavailable {
                    name: "JWT_SECRET_ARN",
                    reason:
                        "the secret was not read: resolve it at cold start (auth::resolve_secret)"
                            .into(),
                });
            }
            (None, None) => return Err(ConfigError::Missing("JWT_SECRET")),
        };
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
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
            previous,
            claims,
        })
    }

    /// [`Authenticator::from_env`] after [`resolve_secret`]: reads the secret named by
    /// `JWT_SECRET_ARN` from Secrets Manager when that is set.
    pub async fn from_env_resolving(env: &Env, sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Self::from_env(&resolve_secret(env.clone(), sdk).await?)
    }

    /// An HS256 authenticator with the default claim names (tests, local stack).
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 30;
        Self {
            key: Some((DecodingKey::from_secret(secret), validation)),
            previous: None,
            claims: ClaimNames::default(),
        }
    }

    /// Whether this code verifies tokens itself (no authorizer in front).
    pub fn verifies_tokens(&self) -> bool {
        self.key.is_some()
    }

    /// Verifies a raw token (without `Bearer `) and reads the identity from it.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        self.from_claims(&self.decode(token)?)
    }

    /// Verifies a raw token and reads the identity and what the token grants besides (its
    /// `exp`, its `groups` claim): what a WebSocket connection keeps.
    pub fn verify_granting(&self, token: &str) -> Result<(Identity, Grant), AuthError> {
        let claims = self.decode(token)?;
        Ok((self.from_claims(&claims)?, Grant::from_claims(&claims)?))
    }

    /// The verified claims of a raw token.
    fn decode(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let Some((key, validation)) = &self.key else {
            return Err(AuthError::Invalid(
                "this endpoint accepts only authorizer-verified requests".into(),
            ));
        };
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        use jsonwebtoken::errors::ErrorKind;
        let decode = |key| jsonwebtoken::decode::<Map<String, Value>>(token, key, validation);
        let data = match (decode(key), &self.previous) {
            (Err(e), Some(old)) if matches!(e.kind(), ErrorKind::InvalidSignature) => decode(old),
            (result, _) => result,
        }
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
            _ => AuthError::Invalid(e.to_string()),
        })?;
        Ok(data.claims)
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

/// How long reading the secret at cold start may take before the start fails.
const SECRET_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves `JWT_SECRET_ARN`, when set: reads that Secrets Manager secret (name or ARN) once
/// and returns `env` with `JWT_SECRET` (and `JWT_SECRET_PREVIOUS`) set from it, so the secret
/// never appears in the function's configuration. The secret is a plain string (at least 32
/// bytes) or JSON `{"secret": "...", "previous": "..."}`; `previous` is optional and keeps
/// tokens signed with the old secret valid during a rotation. `JWT_SECRET_ARN` takes the
/// place of a `JWT_SECRET` in the environment. Without `JWT_SECRET_ARN`, `env` is returned
/// as it is and nothing is called.
pub async fn resolve_secret(mut env: Env, sdk: &SdkConfig) -> Result<Env, ConfigError> {
    let Some(id) = env.get("JWT_SECRET_ARN").map(str::to_owned) else {
        return Ok(env);
    };
    let unavailable = |reason: String| ConfigError::Unavailable {
        name: "JWT_SECRET_ARN",
        reason,
    };
    if env.get("JWT_SECRET").is_some() {
        tracing::warn!("JWT_SECRET_ARN is set: it takes the place of JWT_SECRET");
    }
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let read = client.get_secret_value().secret_id(&id).send();
    let out = tokio::time::timeout(SECRET_READ_TIMEOUT, read)
        .await
        .map_err(|_| {
            unavailable(format!(
                "secret {id:?} not read within {}s (does the function reach Secrets Manager?)",
                SECRET_READ_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            unavailable(format!(
                "secret {id:?} could not be read: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    let raw = match (out.secret_string(), out.secret_binary()) {
        (Some(s), _) => s.to_owned(),
        (None, Some(b)) => String::from_utf8(b.as_ref().to_vec())
            .map_err(|_| unavailable(format!("secret {id:?} is binary, not UTF-8 text")))?,
        (None, None) => return Err(unavailable(format!("secret {id:?} has no value"))),
    };
    let value = SecretValue::parse(&raw).map_err(|reason| ConfigError::Malformed {
        name: "JWT_SECRET_ARN",
        reason: format!("secret {id:?}: {reason}"),
    })?;
    env.set("JWT_SECRET", value.secret);
    match value.previous {
        Some(p) => env.set("JWT_SECRET_PREVIOUS", p),
        None => env.remove("JWT_SECRET_PREVIOUS"),
    }
    Ok(env)
}

/// The value of the token secret in Secrets Manager.
#[derive(PartialEq, Eq)]
struct SecretValue {
    secret: String,
    previous: Option<String>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

impl SecretValue {
    /// A plain string, or a JSON object with `secret` and optionally `previous`.
    fn parse(raw: &str) -> Result<Self, String> {
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(raw) {
            let field = |name: &str| match fields.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(format!("field {name:?} must be a non-empty string")),
            };
            return Ok(Self {
                secret: field("secret")?
                    .ok_or("a JSON secret needs a \"secret\" field with the HS256 secret")?,
                previous: field("previous")?,
            });
        }
        let secret = raw.trim();
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(Self {
            secret: secret.to_owned(),
            previous: None,
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
        self.sign_granting(identity, exp_s, None)
    }

    /// A token as [`DevTokenSigner::sign`], with a `groups` claim when given.
    pub fn sign_granting(
        &self,
        identity: &Identity,
        exp_s: i64,
        groups: Option<&[String]>,
    ) -> String {
        let mut claims = serde_json::json!({
            "sub": identity.user, "facility": identity.facility, "region": identity.region, "exp": exp_s,
        });
        if let Some(groups) = groups {
            claims["groups"] = serde_json::json!(groups);
        }
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
    fn refuses_a_token_whose_nbf_lies_in_the_future() {
        let auth = Authenticator::hs256(SECRET);
        let claims = |nbf: i64| {
            serde_json::json!({"sub": "u1", "facility": "f1", "region": "r1",
                "exp": now_s() + 600, "nbf": nbf})
        };
        let sign = |nbf| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims(nbf),
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        };
        assert_eq!(
            auth.verify(&sign(now_s() + 600)),
            Err(AuthError::NotYetValid)
        );
        // Within the 30 s leeway for clock skew, and in the past: accepted.
        assert_eq!(auth.verify(&sign(now_s() + 10)).unwrap(), identity());
        assert_eq!(auth.verify(&sign(now_s() - 60)).unwrap(), identity());
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
        let err = Authenticator::from_env(&Env::from_pairs([("JWT_SECRET_ARN", "presence/jwt")]))
            .unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET_ARN"), "{err}");
    }

    #[test]
    fn a_previous_secret_is_accepted_during_a_rotation() {
        let old = "old-secret-old-secret-old-secret-0";
        let new = "new-secret-new-secret-new-secret-1";
        let by_old = DevTokenSigner::new(old.as_bytes()).sign(&identity(), now_s() + 600);
        let by_new = DevTokenSigner::new(new.as_bytes()).sign(&identity(), now_s() + 600);
        let rotating = Authenticator::from_env(&Env::from_pairs([
            ("JWT_SECRET", new),
            ("JWT_SECRET_PREVIOUS", old),
        ]))
        .unwrap();
        assert_eq!(rotating.verify(&by_new).unwrap(), identity());
        assert_eq!(rotating.verify(&by_old).unwrap(), identity());
        let other = DevTokenSigner::new(SECRET).sign(&identity(), now_s() + 600);
        assert!(matches!(
            rotating.verify(&other),
            Err(AuthError::Invalid(_))
        ));

        let rotated = Authenticator::from_env(&Env::from_pairs([("JWT_SECRET", new)])).unwrap();
        assert!(rotated.verify(&by_old).is_err());
        let err = Authenticator::from_env(&Env::from_pairs([
            ("JWT_SECRET", new),
            ("JWT_SECRET_PREVIOUS", "short"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET_PREVIOUS"), "{err}");
    }

    #[test]
    fn secret_values_are_plain_strings_or_json() {
        let plain = SecretValue::parse("  0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(plain.secret, "0123456789abcdef0123456789abcdef");
        assert_eq!(plain.previous, None);
        let json = SecretValue::parse(r#"{"secret": "new-one", "previous": "old-one"}"#).unwrap();
        assert_eq!(json.secret, "new-one");
        assert_eq!(json.previous.as_deref(), Some("old-one"));
        let json = SecretValue::parse(r#"{"secret": "only", "previous": null}"#).unwrap();
        assert_eq!(json.previous, None);
        assert!(SecretValue::parse(r#"{"password": "x"}"#).is_err());
        assert!(SecretValue::parse(r#"{"secret": 42}"#).is_err());
        assert!(SecretValue::parse("   ").is_err());
        // Not a JSON object: the whole text is the secret.
        assert_eq!(SecretValue::parse("[1,2]").unwrap().secret, "[1,2]");
    }

    /// A one-request Secrets Manager stand-in: answers `GetSecretValue` with `secret_string`
    /// and hands back the request it got.
    fn secrets_manager_once(
        secret_string: &'static str,
    ) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut head, mut length) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = serde_json::json!({"ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:presence/jwt-AbCdEf", "Name": "presence/jwt", "SecretString": secret_string}).to_string();
            write!(
                &stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
            head + &String::from_utf8(body).unwrap()
        });
        (url, server)
    }

    #[tokio::test]
    async fn the_secret_is_read_from_secrets_manager_by_arn() {
        let (url, server) = secrets_manager_once(
            r#"{"secret": "new-secret-new-secret-new-secret-1", "previous": "old-secret-old-secret-old-secret-0"}"#,
        );
        let sdk = crate::aws::local_sdk_config(&url).await;
        let env = Env::from_pairs([("JWT_SECRET_ARN", "presence/jwt"), ("JWT_SECRET", "")]);
        let auth = Authenticator::from_env_resolving(&env, &sdk).await.unwrap();
        let request = server.join().unwrap();
        assert!(
            request.contains("secretsmanager.GetSecretValue"),
            "{request}"
        );
        assert!(
            request.contains(r#""SecretId":"presence/jwt""#),
            "{request}"
        );
        let old = DevTokenSigner::new(b"old-secret-old-secret-old-secret-0")
            .sign(&identity(), now_s() + 600);
        assert_eq!(auth.verify(&old).unwrap(), identity());

        let (url, server) = secrets_manager_once("short");
        let sdk = crate::aws::local_sdk_config(&url).await;
        let err = Authenticator::from_env_resolving(&env, &sdk)
            .await
            .unwrap_err();
        server.join().unwrap();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");

        // Nothing listens: the start fails naming the variable and the secret.
        let sdk = crate::aws::local_sdk_config("http://127.0.0.1:9").await;
        let err = resolve_secret(env, &sdk).await.unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Unavailable {
                    name: "JWT_SECRET_ARN",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("presence/jwt"), "{err}");
    }

    #[tokio::test]
    async fn without_an_arn_nothing_is_resolved() {
        let sdk = aws_config::SdkConfig::builder().build();
        let env = Env::from_pairs([("JWT_SECRET", "0123456789abcdef0123456789abcdef")]);
        let resolved = resolve_secret(env, &sdk).await.unwrap();
        assert_eq!(
            resolved.get("JWT_SECRET"),
            Some("0123456789abcdef0123456789abcdef")
        );
    }
}
