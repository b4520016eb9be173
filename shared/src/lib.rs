//! Presence: real-time connectivity status and group messaging for browsers.
//!
//! This library holds everything the Lambda functions share; each function crate is a thin
//! adapter from its event to one of the services here.
//!
//! # Layout
//!
//! - [`config`]: environment variables, read once at cold start, with errors that name them.
//! - [`ids`]: validated identifiers (session, user, facility, region).
//! - [`protocol`]: wire formats: heartbeat body, queue message, status event, error body.
//! - [`auth`]: identity from JWTs (verified here, or by an API Gateway authorizer).
//! - [`sessions`]: the session engine in Redis (Lua scripts, one call per partition per batch).
//! - [`queue`]: the heartbeat and push queues (SQS, and in memory).
//! - [`facilities`]: facility status and history in DynamoDB (and in memory).
//! - [`dynamo`]: what the DynamoDB adapters share.
//! - [`ledger`]: the partition ledger, which tells a first start from a Redis data loss.
//! - [`port`]: the error every port returns: its cause, and whether a retry can help.
//! - [`history`]: the facility history read API (history-read).
//! - [`admin_api`]: the admin API of the team's backend (admin-api), over the [`hub`].
//! - [`ingest`], [`consume`], [`expiry`], [`rollup`]: the pipeline's services, one per function.
//! - [`telemetry`]: tracing setup and CloudWatch embedded metrics.
//! - [`wiring`]: the ports each function's service is built from, in Lambda and locally.
//!
//! Time is always an argument (`now_ms`): nothing below the function edge reads the clock.

pub mod admin_api;
pub mod auth;
pub mod aws;
pub mod config;
pub mod consume;
pub mod dynamo;
pub mod expiry;
pub mod facilities;
pub mod flips;
pub mod history;
pub mod http_api;
pub mod hub;
pub mod ids;
pub mod ingest;
pub mod ledger;
pub mod messages;
pub mod permissions;
pub mod port;
pub mod protocol;
pub mod queue;
pub mod ratelimit;
pub mod rollup;
pub mod sessions;
pub mod telemetry;
pub mod wiring;

/// Milliseconds since the Unix epoch: the one place the library reads the wall clock, for the
/// function edges to pass in.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
