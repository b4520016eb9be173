//! history-read: the facility history read API behind the API Gateway HTTP API.
//!
//! `GET /v1/regions/{region}/facilities`, `GET /v1/facilities/{facility}/history`,
//! `.../sessions` and `.../availability` for a user's token (its own region), and the same
//! routes under `/v1/admin/` for the team's backend (IAM authorization, every region): the
//! HTTP edge of [`presence::history`]. Reads the authorizer claims or the `Authorization`
//! header (user routes) or the IAM identity of the request context (backend routes), the path
//! and the query string, and maps the outcome to 200 or a JSON error (docs/architecture.md,
//! "History read API").

use lambda_http::{Body, Request, RequestExt, Response, request::RequestContext};
use presence::auth::Authenticator;
use presence::aws::SdkConfig;
use presence::config::{AwsSettings, ConfigError, Env};
use presence::facilities::{DynamoFacilityStore, FacilityStore};
use presence::history::{Caller, HistoryReader, ReadError, Reader};
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
    // The JWT authorizer's claims (user routes) and the IAM identity (the backend's routes
    // under /v1/admin/, `AuthorizationType: AWS_IAM`), as API Gateway put them in the context.
    let (claims, iam) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            presence::http_api::authorizer_claims(ctx),
            presence::http_api::iam_caller(ctx),
        ),
        _ => (None, None),
    };
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let caller = Caller {
        credentials: match &claims {
            Some(c) => Credentials::Authorizer(c),
            None => Credentials::Bearer(header),
        },
        iam: iam.as_deref(),
    };
    let path = req.uri().path();
    let answer = match presence::history::parse_query(req.uri().query()) {
        Ok(query) => reader.answer(caller, path, &query).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok((who, body)) => {
            // The backend's reads are logged with the caller, as admin-api logs its requests.
            if let Reader::Backend(caller) = &who {
                tracing::info!(caller, path, "backend history read");
            }
            json(200, body.to_string(), None)
        }
        Err(e) => {
            if let ReadError::Unavailable(source) = &e {
                tracing::warn!(error = %source, "history read failed");
            } else {
                tracing::info!(status = e.status(), error = %e, path, "history read refused");
            }
            json(e.status(), e.body(), e.retry_after_s())
        }
    }
}

fn json(status: u16, body: String, retry_after_s: Option<u32>) -> Response<Body> {
    presence::http_api::json_response(status, body, retry_after_s).map(Body::from)
}
