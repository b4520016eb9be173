//! admin-api: the admin API of the team's backend behind the API Gateway HTTP API, with IAM
//! authorization on every route.
//!
//! `POST /v1/admin/publish`, `POST /v1/admin/users/{user}/disconnect`,
//! `POST /v1/admin/groups/{group}/remove`, `POST /v1/admin/groups/{group}/ban`,
//! `DELETE /v1/admin/groups/{group}/ban/{user}`, `GET /v1/admin/groups/{group}/presence`: the
//! HTTP edge of [`presence::admin_api`], over the same hub as the WebSocket functions. Checks
//! that API Gateway authorized the request with IAM, reads the method, the path and the body,
//! and maps the outcome to 2xx or a JSON error (docs/deploy.md, "The admin API").

use lambda_http::{Body, Request, RequestExt, Response, request::RequestContext};
use presence::admin_api::{AdminApi, AdminError};
use presence::aws::{SdkConfig, WarmUp};
use presence::config::{AwsSettings, Env};
use presence::http_api::NO_IAM_IDENTITY;
use presence::hub::{Hub, HubConfig, HubPorts};
use presence::sessions::RedisConnection;

/// The AWS calls this function's code makes, on what (tests/permissions.rs checks this list
/// against the code and against the function's policy in template.yaml).
pub const AWS_CALLS: &[presence::permissions::Call] = {
    use presence::permissions::{Call, On::*};
    &[
        // Opens the connection at cold start.
        Call::dynamodb("DescribeTable", Table("CONNECTIONS_TABLE")),
        // A connection, and whether a ban is in force.
        Call::dynamodb("GetItem", Table("CONNECTIONS_TABLE")),
        // A ban.
        Call::dynamodb("PutItem", Table("CONNECTIONS_TABLE")),
        // Closed and gone connections, memberships left, bans lifted.
        Call::dynamodb("DeleteItem", Table("CONNECTIONS_TABLE")),
        // Members of a chat group; a user's connections and groups; the automatic groups.
        Call::dynamodb("Query", Table("CONNECTIONS_TABLE")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-user")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-facility")),
        Call::dynamodb("Query", Index("CONNECTIONS_TABLE", "by-region")),
        // Publish: the group's head (its newest seq), then the message, the head and the
        // evicted oldest in one transaction.
        Call::dynamodb("GetItem", Table("MESSAGES_TABLE")),
        Call::dynamodb("TransactWriteItems", Table("MESSAGES_TABLE")).transacting(&[
            "UpdateItem",
            "PutItem",
            "DeleteItem",
        ]),
        Call::management_api("PostToConnection", Connections("WEBSOCKET_ENDPOINT")),
        // Disconnecting a user closes their sockets.
        Call::management_api("DeleteConnection", Connections("WEBSOCKET_ENDPOINT")),
        // Opens the connection at cold start.
        Call::management_api("GetConnection", Connections("WEBSOCKET_ENDPOINT")),
        // Flips of the sessions of closed connections, and member.offline.
        Call::sqs("SendMessageBatch", Queue("PUSH_QUEUE_URL")),
        Call::sqs("GetQueueAttributes", Queue("PUSH_QUEUE_URL")),
        // The partition ledger (facilities table), when a partition starts an epoch.
        Call::dynamodb("UpdateItem", Table("FACILITIES_TABLE")),
    ]
};

/// Why the function could not start.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// The connections opened during the cold start: the connections table, the push queue and
/// the management API (a missing variable is skipped here and reported by
/// [`HubConfig::from_env`]).
pub fn warm_ups(env: &Env, sdk: &SdkConfig) -> Vec<WarmUp> {
    [
        env.get("CONNECTIONS_TABLE")
            .map(|t| presence::aws::table(sdk, t)),
        env.get("PUSH_QUEUE_URL")
            .map(|q| presence::aws::queue(sdk, q)),
        env.get("WEBSOCKET_ENDPOINT")
            .map(|e| presence::aws::connections(sdk, e)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The cold start in AWS: the hub's configuration from `env` (as the WebSocket functions
/// read it; `JWT_AUTHORIZER=true`, as this function never sees a user's token), Redis and the
/// AWS clients, while connections to the endpoints it calls are opened.
pub async fn build(env: Env) -> Result<AdminApi, BuildError> {
    let sdk = presence::aws::sdk_config(&AwsSettings::from_env(&env)?).await;
    let warm = warm_ups(&env, &sdk);
    let start = async {
        let config = HubConfig::from_env(&env)?;
        let redis = RedisConnection::connect(&config.redis).await?;
        let hub = Hub::new(&config, redis, HubPorts::aws(&config, &sdk));
        Ok::<_, BuildError>(service(hub))
    };
    let (api, ()) = tokio::join!(start, presence::aws::warm_up(warm));
    api
}

/// The service over `hub`: called by [`build`] and by the local stack (with its own hub, the
/// one its WebSocket routes use).
pub fn service(hub: Hub) -> AdminApi {
    AdminApi::new(hub)
}

/// Handles one request received at `now_ms`. Never fails: every error is an HTTP response.
pub async fn handle(api: &AdminApi, req: Request, now_ms: i64) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    // The path without the stage (API Gateway's rawPath), else the URI's.
    let path = match req.raw_http_path() {
        "" => req.uri().path().to_owned(),
        raw => raw.to_owned(),
    };
    let caller = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => presence::http_api::iam_caller(ctx),
        _ => None,
    };
    let Some(caller) = caller else {
        let e = AdminError::Unauthorized(NO_IAM_IDENTITY.into());
        tracing::warn!(
            method,
            path,
            "admin request without an IAM identity refused"
        );
        return error(&e);
    };
    match api
        .answer(&method, &path, req.body().as_ref(), now_ms)
        .await
    {
        Ok((status, body)) => {
            tracing::info!(caller, method, path, status, "admin request");
            json(status, body.to_string(), None)
        }
        Err(e) => {
            tracing::info!(caller, method, path, status = e.status(), error = %e, "admin request refused");
            error(&e)
        }
    }
}

fn error(e: &AdminError) -> Response<Body> {
    let mut resp = json(e.status(), e.body(), e.retry_after_s());
    if let AdminError::MethodNotAllowed { allow, .. } = e {
        resp.headers_mut()
            .insert("allow", lambda_http::http::HeaderValue::from_static(allow));
    }
    resp
}

fn json(status: u16, body: String, retry_after_s: Option<u32>) -> Response<Body> {
    presence::http_api::json_response(status, body, retry_after_s).map(Body::from)
}
