//! The local stack's settings: each function's own `Config`, parsed from the same
//! environment variables as in AWS, with the local stand-ins filled in where AWS would give
//! a resource (queue URLs, table names, the management endpoint, Redis).
//!
//! So a setting tested locally is the one deployed: `SESSION_TTL_SECONDS`,
//! `HISTORY_RETENTION_DAYS`, `REPUBLISH_AFTER_SECONDS`, `LOSS_HOLD_SECONDS`, `JWT_ISSUER`…
//! mean here exactly what they mean in Lambda, because the same `from_env` reads them.

use presence::config::{ConfigError, Env};
use presence::hub::HubConfig;
use std::time::Duration;

/// The development secret, when no key is configured: tokens from `/dev/token` and the
/// sample events are signed with it.
pub use presence::auth::DEV_SECRET;

/// Every function's configuration and the local-only timings.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    pub ingest: heartbeat_ingest::Config,
    pub history: history_read::Config,
    pub consumer: heartbeat_consumer::Config,
    pub expiry: session_expiry::Config,
    pub rollup: facility_rollup::Config,
    pub hub: HubConfig,
    /// `EXPIRY_SCHEDULE_SECONDS` (60): how often session-expiry is invoked.
    pub expiry_period: Duration,
    /// `ROLLUP_SCHEDULE_SECONDS` (60): how often facility-rollup is invoked.
    pub rollup_period: Duration,
    /// `WS_IDLE_TIMEOUT_SECONDS` (600) and `WS_MAX_CONNECTION_SECONDS` (7200): API Gateway's.
    pub ws_idle_timeout: Duration,
    pub ws_max_connection: Duration,
    /// `WS_DROP_DISCONNECT_RATE` (0, 0 to 1): the share of `$disconnect` events the local
    /// WebSocket API drops, as API Gateway may (it delivers them on a best-effort basis).
    pub ws_drop_disconnect_rate: f64,
    /// `ADMIN_API_KEY` (default [`DEFAULT_ADMIN_API_KEY`]): what the local HTTP API expects
    /// in the `x-presence-admin-key` header of an admin request, where API Gateway would
    /// check an IAM signature.
    pub admin_api_key: String,
    /// The environment the functions' configurations were read from (stand-ins included).
    pub env: Env,
}

/// The local admin API's key when `ADMIN_API_KEY` is not set.
pub const DEFAULT_ADMIN_API_KEY: &str = "presence-local-admin-key";

/// What the stand-ins provide in place of AWS resources.
#[derive(Debug, Clone)]
pub struct StandIns {
    /// The Redis the stack talks to (a private server unless `REDIS_URL` is set).
    pub redis_url: String,
    /// The local WebSocket API's `@connections` endpoint.
    pub management_endpoint: String,
    /// Where the local queues say they are (they live in-process).
    pub queue_base_url: String,
}

/// A share from 0 to 1 (default 0).
fn share(env: &Env, name: &'static str) -> Result<f64, ConfigError> {
    let v: f64 = env.parse_or(name, 0.0)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ConfigError::Malformed {
            name,
            reason: format!("{v} is outside 0 to 1"),
        })
    }
}

/// `ADMIN_API_KEY`: printable ASCII (it travels in a header), at least 8 characters.
fn admin_api_key(env: &Env) -> Result<String, ConfigError> {
    let key = env.get("ADMIN_API_KEY").unwrap_or(DEFAULT_ADMIN_API_KEY);
    if key.len() < 8 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Malformed {
            name: "ADMIN_API_KEY",
            reason: "must be at least 8 printable ASCII characters without spaces".into(),
        });
    }
    Ok(key.to_owned())
}

impl LocalSettings {
    /// Reads every function's configuration from `env`, after filling in what the template
    /// would give each function in AWS and the user did not set.
    pub fn from_env(env: &Env, stand_ins: &StandIns) -> Result<Self, ConfigError> {
        let mut local = env.clone();
        let mut default = |name: &str, value: String| {
            if local.get(name).is_none() {
                local.set(name, value);
            }
        };
        default("REDIS_URL", stand_ins.redis_url.clone());
        default(
            "HEARTBEAT_QUEUE_URL",
            format!("{}/heartbeats", stand_ins.queue_base_url),
        );
        default(
            "PUSH_QUEUE_URL",
            format!("{}/push", stand_ins.queue_base_url),
        );
        default("FACILITIES_TABLE", "presence-facilities".into());
        default("CONNECTIONS_TABLE", "presence-connections".into());
        default("MESSAGES_TABLE", "presence-messages".into());
        default("WEBSOCKET_ENDPOINT", stand_ins.management_endpoint.clone());
        // template.yaml sets it for session-expiry: sweep 55 s of each minute.
        default("SWEEP_WINDOW_SECONDS", "55".into());
        let keyed = ["JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_SECRET_ARN"]
            .iter()
            .any(|k| env.get(k).is_some());
        if !keyed {
            local.set("JWT_SECRET", DEV_SECRET);
        }
        Ok(Self {
            ingest: heartbeat_ingest::Config::from_env(&local)?,
            history: history_read::Config::from_env(&local)?,
            consumer: heartbeat_consumer::Config::from_env(&local)?,
            expiry: session_expiry::Config::from_env(&local)?,
            rollup: facility_rollup::Config::from_env(&local)?,
            hub: HubConfig::from_env(&local)?,
            expiry_period: local.seconds_or("EXPIRY_SCHEDULE_SECONDS", 60, 1..=3600)?,
            rollup_period: local.seconds_or("ROLLUP_SCHEDULE_SECONDS", 60, 1..=3600)?,
            ws_idle_timeout: local.seconds_or("WS_IDLE_TIMEOUT_SECONDS", 600, 1..=7200)?,
            ws_max_connection: local.seconds_or("WS_MAX_CONNECTION_SECONDS", 7200, 1..=86_400)?,
            ws_drop_disconnect_rate: share(&local, "WS_DROP_DISCONNECT_RATE")?,
            admin_api_key: admin_api_key(&local)?,
            env: local,
        })
    }

    /// The secret `/dev/token` signs with (none when tokens are verified with a public key).
    pub fn signing_secret(&self) -> Option<&str> {
        self.env.get("JWT_SECRET")
    }
}
