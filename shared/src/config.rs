//! Configuration from environment variables, read once at cold start.
//!
//! Every function reads only the variables it needs, through [`Env`], so a missing or
//! malformed variable stops the start with an error that names it. Tests and the local stack
//! pass their own variables with [`Env::from_pairs`] instead of touching the process
//! environment.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// A configuration error: always names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
    /// What the variable points at (e.g. a Secrets Manager secret) could not be read.
    #[error("environment variable {name}: {reason}")]
    Unavailable { name: &'static str, reason: String },
}

/// Where variables come from: the process environment, or a fixed map.
#[derive(Debug, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment (ignoring variables that are not valid UTF-8).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    /// A fixed set of variables, for tests and the local stack.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets `name` to `value` (a value resolved at cold start, e.g. a secret fetched by
    /// `JWT_SECRET_ARN`).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// The value of `name`, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A variable that must be set.
    pub fn require(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name)
            .map(str::to_owned)
            .ok_or(ConfigError::Missing(name))
    }

    /// A variable parsed with `FromStr`, or `default` when unset.
    pub fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse().map_err(|e: T::Err| ConfigError::Malformed {
                name,
                reason: format!("{raw:?}: {e}"),
            }),
        }
    }

    /// A whole number of seconds within `range`, or `default` when unset.
    pub fn seconds_or(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        let secs: u64 = self.parse_or(name, default)?;
        if !range.contains(&secs) {
            return Err(ConfigError::Malformed {
                name,
                reason: format!("{secs} is outside {}..={}", range.start(), range.end()),
            });
        }
        Ok(Duration::from_secs(secs))
    }

    /// A URL that must start with one of `schemes` (e.g. `https://`).
    pub fn require_url(&self, name: &'static str, schemes: &[&str]) -> Result<String, ConfigError> {
        let url = self.require(name)?;
        if schemes.iter().any(|s| url.starts_with(s))
            && url.len() > url.find("://").unwrap_or(0) + 3
        {
            Ok(url)
        } else {
            Err(ConfigError::Malformed {
                name,
                reason: format!("{url:?} must start with one of {}", schemes.join(", ")),
            })
        }
    }
}

/// How sessions behave; shared by every function that touches the session engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// `SESSION_TTL_SECONDS` (default 150): a session is online until its last heartbeat plus
    /// this. It must exceed the heartbeat interval, or every session would flap between beats.
    /// The default is the interval plus a minute (a hidden tab's timers run at most once a
    /// minute, aligned to the minute) plus 30 s for a slow network; it is also how long a
    /// browser that vanished without a `$disconnect` still shows online (docs/deploy.md).
    pub ttl: Duration,
    /// `HEARTBEAT_INTERVAL_SECONDS` (default 60): what the server tells clients to use. One
    /// billed WebSocket message and one Lambda invocation per online browser per interval;
    /// docs/deploy.md prices the choices.
    pub heartbeat_interval: Duration,
    /// `PARTITIONS` (default 16, 1..=1024): how many Redis partitions facilities are spread
    /// over. Changing it on a live system moves facilities between partitions: drain first.
    pub partitions: u16,
    /// `LOSS_HOLD_SECONDS` (default: the TTL): after Redis lost its data (a restart without
    /// persistence, a failover, `FLUSHALL`), offline flips are held this long, while sessions
    /// come back with their next heartbeats, so facilities do not all flap offline. A new
    /// Redis looks the same as a wiped one, so the hold also applies right after a first
    /// start, when it costs nothing. 0 disables it.
    pub loss_hold: Duration,
    /// `DISCONNECT_GRACE_SECONDS` (default 10, below the TTL): a session carried by a socket
    /// stays online this long after the socket closed, unless the browser ends it: a new
    /// leader tab or a reconnect within it shows no flap.
    pub disconnect_grace: Duration,
}

impl SessionSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ttl = env.seconds_or("SESSION_TTL_SECONDS", 150, 1..=86_400)?;
        let heartbeat_interval = env.seconds_or("HEARTBEAT_INTERVAL_SECONDS", 60, 1..=3_600)?;
        if heartbeat_interval >= ttl {
            return Err(ConfigError::Malformed {
                name: "HEARTBEAT_INTERVAL_SECONDS",
                reason: format!(
                    "{}s must be shorter than SESSION_TTL_SECONDS ({}s), or sessions expire between heartbeats",
                    heartbeat_interval.as_secs(),
                    ttl.as_secs()
                ),
            });
        }
        let partitions: u16 = env.parse_or("PARTITIONS", 16)?;
        if !(1..=1024).contains(&partitions) {
            return Err(ConfigError::Malformed {
                name: "PARTITIONS",
                reason: format!("{partitions} is outside 1..=1024"),
            });
        }
        let loss_hold = env.seconds_or("LOSS_HOLD_SECONDS", ttl.as_secs(), 0..=86_400)?;
        let disconnect_grace = env.seconds_or(
            "DISCONNECT_GRACE_SECONDS",
            10.min(ttl.as_secs() - 1),
            0..=86_400,
        )?;
        if disconnect_grace >= ttl {
            return Err(ConfigError::Malformed {
                name: "DISCONNECT_GRACE_SECONDS",
                reason: format!(
                    "{}s must be shorter than SESSION_TTL_SECONDS ({}s)",
                    disconnect_grace.as_secs(),
                    ttl.as_secs()
                ),
            });
        }
        Ok(Self {
            ttl,
            heartbeat_interval,
            partitions,
            loss_hold,
            disconnect_grace,
        })
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(150),
            heartbeat_interval: Duration::from_secs(60),
            partitions: 16,
            loss_hold: Duration::from_secs(150),
            disconnect_grace: Duration::from_secs(10),
        }
    }
}

/// How to reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `REDIS_URL`: `redis://` or `rediss://` (TLS, as ElastiCache Serverless requires).
    pub url: String,
    /// `REDIS_CLUSTER` (default false): talk the cluster protocol (ElastiCache Serverless and
    /// any cluster-mode deployment need it).
    pub cluster: bool,
}

impl RedisSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.require_url("REDIS_URL", &["redis://", "rediss://"])?,
            cluster: env.parse_or("REDIS_CLUSTER", false)?,
        })
    }
}

/// How AWS clients are built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsSettings {
    /// `AWS_ENDPOINT_URL`: a local emulator; unset in AWS.
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let endpoint_url = match env.get("AWS_ENDPOINT_URL") {
            None => None,
            Some(_) => Some(env.require_url("AWS_ENDPOINT_URL", &["http://", "https://"])?),
        };
        Ok(Self { endpoint_url })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_unset() {
        let s = SessionSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(s, SessionSettings::default());
    }

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("SESSION_TTL_SECONDS", "soon")]);
        let err = SessionSettings::from_env(&env).unwrap_err();
        assert!(err.to_string().contains("SESSION_TTL_SECONDS"), "{err}");

        let env = Env::from_pairs([
            ("SESSION_TTL_SECONDS", "20"),
            ("HEARTBEAT_INTERVAL_SECONDS", "30"),
        ]);
        let err = SessionSettings::from_env(&env).unwrap_err();
        assert!(
            err.to_string().contains("HEARTBEAT_INTERVAL_SECONDS"),
            "{err}"
        );

        let env = Env::from_pairs([("PARTITIONS", "0")]);
        assert!(
            SessionSettings::from_env(&env)
                .unwrap_err()
                .to_string()
                .contains("PARTITIONS")
        );

        let err = RedisSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("REDIS_URL"));
        let err =
            RedisSettings::from_env(&Env::from_pairs([("REDIS_URL", "http://x")])).unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"));
        assert!(
            RedisSettings::from_env(&Env::from_pairs([("REDIS_URL", "rediss://cache:6379")]))
                .is_ok()
        );
    }
}
