//! history-read: the facility history read API behind the API Gateway HTTP API.
//!
//! `GET /v1/regions/{region}/facilities`, `GET /v1/facilities/{facility}/history`,
//! `.../sessions` and `.../availability`: the HTTP edge of [`presence::history`]. Reads the
//! authorizer claims or the `Authorization` header, the path and the query string, and maps
//! the outcome to 200 or a JSON error (docs/architecture.md, "HTTP API").

use lambda_http::{Body, Request, RequestExt, Response, request::RequestContext};
use presence::auth::Authenticator;
use presence::aws::SdkConfig;
use presence::config::{AwsSettings, ConfigError, Env};
use presence::facilities::{DynamoFacilityStore, FacilityStore};
use presence::history::{HistoryReader, ReadError};
use presence::ingest::Credentials;
use std::sync::Arc;
use std::time::Duration;

/// This function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub aws: AwsSettings,
    pub auth: Authenticator,
    /// `FACILITIES_TABLE`: status and history items (read only).
    pub facilities_table: String,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            aws: AwsSettings::from_env(env)?,
            auth: Authenticator::from_env(env)?,
            facilities_table: env.require("FACILITIES_TABLE")?,
        })
    }
}

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        // A facility's status item: does it exist, and in which region.
        Call::dynamodb("GetItem", Table("FACILITIES_TABLE")),
        // Flip pages, the flip before a range, the online segments of an hour bucket.
        Call::dynamodb("Query", Table("FACILITIES_TABLE")),
        // The status items of a region.
        Call::dynamodb("Query", Index("FACILITIES_TABLE", "by-region")),
        // Opens the connection at cold start.
        Call::dynamodb("DescribeTable", Table("FACILITIES_TABLE")),
        // At cold start, only when JWT_SECRET_ARN is set.
        Call::secrets_manager("GetSecretValue", Secret("JWT_SECRET_ARN")),
    ]
};

/// What the reader talks to.
#[derive(Clone)]
pub struct Ports {
    /// The facilities table.
    pub facilities: Arc<dyn FacilityStore>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ports")
    }
}

/// The ports in AWS: the facilities table through the SDK.
pub fn aws_ports(config: &Config, sdk: &SdkConfig) -> Ports {
    Ports {
        // Reads only: the retention (what writes set as `expires_at`) plays no part.
        facilities: Arc::new(DynamoFacilityStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            config.facilities_table.clone(),
            Duration::ZERO,
        )),
    }
}

/// The cold start in AWS: reads the configuration from `env` (the token secret from Secrets
/// Manager when `JWT_SECRET_ARN` is set) and builds the service with a real DynamoDB client,
/// while a connection to DynamoDB is opened so the first request pays no TLS handshake.
pub async fn build(env: Env) -> Result<HistoryReader, Box<dyn std::error::Error + Send + Sync>> {
    let sdk = presence::aws::sdk_config(&AwsSettings::from_env(&env)?).await;
    let warm_ups: Vec<_> = env
        .get("FACILITIES_TABLE")
        .map(|t| presence::aws::table(&sdk, t))
        .into_iter()
        .collect();
    let (env, ()) = tokio::join!(
        presence::auth::resolve_secret(env, &sdk),
        presence::aws::warm_up(warm_ups)
    );
    let config = Config::from_env(&env?)?;
    let ports = aws_ports(&config, &sdk);
    Ok(service(&config, &ports))
}

/// The service, from its configuration and ports: called by [`build`] (DynamoDB) and by the
/// local stack (its facilities table), so both verify tokens the same way.
pub fn service(config: &Config, ports: &Ports) -> HistoryReader {
    HistoryReader::new(config.auth.clone(), ports.facilities.clone())
}

/// Handles one request. Never fails: every error is an HTTP response.
pub async fn handle(reader: &HistoryReader, req: Request) -> Response<Body> {
    if req.method() != lambda_http::http::Method::GET {
        let e = ReadError::MethodNotAllowed("use GET".into());
        return json(e.status(), e.body(), None);
    }
    let claims = authorizer_claims(&req);
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let credentials = match &claims {
        Some(c) => Credentials::Authorizer(c),
        None => Credentials::Bearer(header),
    };
    let answer = match presence::history::parse_query(req.uri().query()) {
        Ok(query) => reader.answer(credentials, req.uri().path(), &query).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(body) => json(200, body.to_string(), None),
        Err(e) => {
            if let ReadError::Unavailable(source) = &e {
                tracing::warn!(error = %source, "history read failed");
            } else {
                tracing::info!(status = e.status(), error = %e, "history read refused");
            }
            json(e.status(), e.body(), e.retry_after_s())
        }
    }
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
