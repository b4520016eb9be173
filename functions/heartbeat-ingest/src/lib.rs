//! heartbeat-ingest: `POST /v1/heartbeats` behind an API Gateway HTTP API.
//!
//! The HTTP edge of [`presence::ingest`]: reads the authorizer claims or the `Authorization`
//! header and the body, and maps the outcome to 202 or a JSON error (docs/architecture.md,
//! "HTTP API").

use lambda_http::{Body, Request, RequestExt, Response, request::RequestContext};
use presence::auth::Authenticator;
use presence::config::{AwsSettings, ConfigError, Env, SessionSettings};
use presence::ingest::{Credentials, Ingest};
use presence::queue::{HeartbeatQueue, SqsQueue};
use std::sync::Arc;

/// This function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub sessions: SessionSettings,
    pub aws: AwsSettings,
    pub auth: Authenticator,
    /// `HEARTBEAT_QUEUE_URL`
    pub queue_url: String,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: SessionSettings::from_env(env)?,
            aws: AwsSettings::from_env(env)?,
            auth: Authenticator::from_env(env)?,
            queue_url: env.require_url("HEARTBEAT_QUEUE_URL", &["https://", "http://"])?,
        })
    }
}

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        Call::sqs("SendMessage", Queue("HEARTBEAT_QUEUE_URL")),
        Call::sqs("GetQueueAttributes", Queue("HEARTBEAT_QUEUE_URL")),
        // At cold start, only when JWT_SECRET_ARN is set.
        Call::secrets_manager("GetSecretValue", Secret("JWT_SECRET_ARN")),
    ]
};

/// The cold start in AWS: reads the configuration from `env` (the token secret from Secrets
/// Manager when `JWT_SECRET_ARN` is set) and builds the service with a real SQS client, while
/// a connection to SQS is opened so the first heartbeat pays no TLS handshake.
pub async fn build(env: Env) -> Result<Ingest, Box<dyn std::error::Error + Send + Sync>> {
    let sdk = presence::aws::sdk_config(&AwsSettings::from_env(&env)?).await;
    let warm_ups: Vec<_> = env
        .get("HEARTBEAT_QUEUE_URL")
        .map(|q| presence::aws::queue(&sdk, q))
        .into_iter()
        .collect();
    let (env, ()) = tokio::join!(
        presence::auth::resolve_secret(env, &sdk),
        presence::aws::warm_up(warm_ups)
    );
    let config = Config::from_env(&env?)?;
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&sdk),
        config.queue_url.clone(),
    ));
    Ok(service(&config, queue))
}

/// The service, from its configuration and the heartbeat queue: called by [`build`] (SQS)
/// and by the local stack (its queue), so both answer with the same interval and verify
/// tokens the same way.
pub fn service(config: &Config, queue: Arc<dyn HeartbeatQueue>) -> Ingest {
    Ingest::new(
        config.auth.clone(),
        queue,
        config.sessions.heartbeat_interval.as_secs(),
    )
}

/// Handles one request received at `now_ms`. Never fails: every error is an HTTP response.
pub async fn handle(ingest: &Ingest, req: Request, now_ms: i64) -> Response<Body> {
    if req.method() != lambda_http::http::Method::POST {
        return json(
            405,
            presence::protocol::ErrorBody::new("method_not_allowed", "use POST").to_json(),
            None,
        );
    }
    let claims = authorizer_claims(&req);
    // `navigator.sendBeacon` (the `ended` heartbeat on page close) cannot set headers, so a
    // token may also come as `?token=`, as it does for WebSocket connects.
    let bearer = query_token(&req).map(|t| format!("Bearer {t}"));
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let credentials = match &claims {
        Some(c) => Credentials::Authorizer(c),
        None => Credentials::Bearer(header.or(bearer.as_deref())),
    };
    match ingest
        .accept(credentials, req.body().as_ref(), now_ms)
        .await
    {
        Ok(accepted) => {
            tracing::debug!(session = %accepted.message.session_id, "heartbeat enqueued");
            json(202, accepted.body(), None)
        }
        Err(e) => {
            tracing::info!(status = e.status(), error = %e, "heartbeat refused");
            json(e.status(), e.body(), e.retry_after_s())
        }
    }
}

fn query_token(req: &Request) -> Option<String> {
    if let Some(t) = req
        .query_string_parameters_ref()
        .and_then(|q| q.first("token"))
    {
        return Some(t.to_owned());
    }
    let query = req.uri().query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(str::to_owned)
}

/// Claims from an API Gateway JWT authorizer, when one is configured on the route.
fn authorizer_claims(req: &Request) -> Option<serde_json::Map<String, serde_json::Value>> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => presence::http_api::authorizer_claims(ctx),
        _ => None,
    }
}

fn json(status: u16, body: String, retry_after_s: Option<u32>) -> Response<Body> {
    presence::http_api::json_response(status, body, retry_after_s).map(Body::from)
}
