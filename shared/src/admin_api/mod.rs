//! The admin API (function admin-api): what the team's backend does over HTTP, under
//! `/v1/admin/`, with IAM (SigV4) authorization: publish to a group or to a user, disconnect
//! a user, remove, ban and unban members of a chat group, read a group's presence.
//!
//! A thin layer over the [`Hub`] the WebSocket functions use: the routes and their bodies
//! are validated here (a 400 names the field, a body over [`MAX_BODY_BYTES`] is 413, unknown
//! fields are refused), and the work is the hub's ([`Hub::publish`], [`Hub::disconnect_user`],
//! [`Hub::remove_member`], [`Hub::ban_member`], [`Hub::unban_member`], [`Hub::presence`]).
//! Nothing changes unless the whole request is valid.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /v1/admin/publish` | `{group, data, from?}` or `{user, data}` | `202 {seq}` |
//! | `POST /v1/admin/users/{user}/disconnect` | none | `200 {connections}` |
//! | `POST /v1/admin/groups/{group}/remove` | `{user}` | `200 {removed}` |
//! | `POST /v1/admin/groups/{group}/ban` | `{user, seconds?}` | `200 {banned_until_ms}` |
//! | `DELETE /v1/admin/groups/{group}/ban/{user}` | none | `200 {lifted}` |
//! | `GET /v1/admin/groups/{group}/presence` | none | `200 {group, members}` |
//!
//! Path parameters are URL-encoded (`chat%3Aops`). Errors are `{"error": {"code", "message"}}`
//! ([`ErrorBody`]): 400 `bad_request`, 401 `unauthorized`, 403 `forbidden`, 404 `not_found`,
//! 405 `method_not_allowed`, 413 `body_too_large`, 503 `unavailable`.
//!
//! Authorization is API Gateway's (`AuthorizationType: AWS_IAM` on every route, so only a
//! caller whose IAM policy allows `execute-api:Invoke` on the route gets through); the
//! function also refuses a request whose context carries no IAM identity
//! ([`crate::http_api::iam_caller`]), so a route left without IAM authorization cannot open the
//! API. The backend's reads of facility status and history, `GET /v1/admin/regions/...` and
//! `GET /v1/admin/facilities/...`, are history-read's ([`crate::history`]), authorized the same
//! way.

mod request;
pub use request::{Matched, Request, Route, decode_path_parameter};

use crate::hub::{ActionError, Hub, HubError};
use crate::protocol::ErrorBody;
use serde_json::{Value, json};

/// The largest request body (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every route's path starts with this.
pub const PATH_PREFIX: &str = "/v1/admin/";

/// Why a request was refused. `Display` is the message the caller reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No IAM identity in the request context.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path is a route's, the method is not: `allow` is the route's method.
    #[error("{message}")]
    MethodNotAllowed {
        message: String,
        allow: &'static str,
    },
    #[error("body is {0} bytes; the limit is {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("{0}")]
    RateLimited(String),
    /// A backend failed; the detail is logged, never sent.
    #[error("{}", crate::hub::error::UNAVAILABLE)]
    Unavailable,
}

impl AdminError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) => 401,
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::TooLarge(_) => 413,
            Self::RateLimited(_) => 429,
            Self::Unavailable => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::BadRequest(_) => "bad_request",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::TooLarge(_) => "body_too_large",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }

    /// Seconds to wait before retrying, where that applies.
    pub fn retry_after_s(&self) -> Option<u32> {
        matches!(self, Self::Unavailable).then_some(5)
    }

    /// The JSON error body; no internal detail.
    pub fn body(&self) -> String {
        ErrorBody::new(self.code(), self.to_string()).to_json()
    }
}

impl From<ActionError> for AdminError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::BadRequest(m) => Self::BadRequest(m),
            ActionError::NotMember(m) => Self::NotFound(m),
            ActionError::RateLimited(m) => Self::RateLimited(m),
            ActionError::Forbidden(m)
            | ActionError::Banned(m)
            | ActionError::TokenExpired(m)
            | ActionError::Unauthorized(m) => Self::Forbidden(m),
            // Logged where it happened (ActionError::backend).
            ActionError::Unavailable => Self::Unavailable,
        }
    }
}

impl From<HubError> for AdminError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::BadRequest(m) => Self::BadRequest(m),
            HubError::Unauthorized(e) => Self::Forbidden(e.to_string()),
            HubError::Unavailable(detail) => {
                tracing::error!(error = %detail, "backend failure in an admin request");
                Self::Unavailable
            }
        }
    }
}

pub(crate) fn bad(message: impl Into<String>) -> AdminError {
    AdminError::BadRequest(message.into())
}

/// A caller's value, shortened for an error message.
pub(crate) fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(40).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    format!("{s:?}")
}

/// The admin service: the hub the WebSocket functions share, driven by the team's backend.
#[derive(Debug, Clone)]
pub struct AdminApi {
    hub: Hub,
}

impl AdminApi {
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }

    /// Validates and serves one request: the status and JSON body of the answer.
    pub async fn answer(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<(u16, Value), AdminError> {
        let request = Request::parse(method, path, body)?;
        self.serve(request, now_ms).await
    }

    /// Serves a validated request.
    pub async fn serve(&self, request: Request, now_ms: i64) -> Result<(u16, Value), AdminError> {
        let hub: &Hub = &self.hub;
        Ok(match request {
            Request::Publish { group, from, data } => {
                let (stored, delivered) = hub
                    .publish(&group, from.as_ref(), data, None, now_ms)
                    .await?;
                tracing::info!(
                    group = %group, seq = stored.seq, delivered = delivered.delivered,
                    gone = delivered.gone.len(), failed = delivered.failed.len(),
                    "admin publish"
                );
                (202, json!({ "seq": stored.seq }))
            }
            Request::Disconnect { user } => {
                let connections = hub.disconnect_user(&user, now_ms).await?;
                tracing::info!(user = %user, connections, "admin disconnect");
                (200, json!({ "connections": connections }))
            }
            Request::Remove { group, user } => {
                let removed = hub.remove_member(&group, &user, now_ms).await?;
                tracing::info!(group = %group, user = %user, removed, "admin remove");
                (200, json!({ "removed": removed }))
            }
            Request::Ban {
                group,
                user,
                seconds,
            } => {
                let until = hub.ban_member(&group, &user, seconds, now_ms).await?;
                tracing::info!(group = %group, user = %user, until_ms = ?until, "admin ban");
                (200, json!({ "banned_until_ms": until }))
            }
            Request::Unban { group, user } => {
                let lifted = hub.unban_member(&group, &user, now_ms).await?;
                tracing::info!(group = %group, user = %user, lifted, "admin unban");
                (200, json!({ "lifted": lifted }))
            }
            Request::Presence { group } => {
                let members = hub.presence(&group).await?;
                (200, json!({ "group": group, "members": members }))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::request::*;
    use super::*;
    use crate::hub::MAX_DATA_BYTES;
    use crate::ids::UserId;
    use crate::protocol::Group;

    fn parse(method: &str, path: &str, body: &str) -> Result<Request, AdminError> {
        Request::parse(method, path, body.as_bytes())
    }

    fn bad_message(method: &str, path: &str, body: &str) -> String {
        match parse(method, path, body) {
            Err(AdminError::BadRequest(m)) => m,
            other => panic!("{method} {path} {body}: expected 400, got {other:?}"),
        }
    }

    #[test]
    fn every_route_parses() {
        let user = |u: &str| UserId::parse(u).unwrap();
        let group = |g: &str| Group::parse(g).unwrap();
        assert_eq!(
            parse(
                "POST",
                "/v1/admin/publish",
                r#"{"group":"chat:ops","data":{"a":1},"from":"ann"}"#
            )
            .unwrap(),
            Request::Publish {
                group: group("chat:ops"),
                from: Some(user("ann")),
                data: json!({"a": 1})
            }
        );
        assert_eq!(
            parse("POST", "/v1/admin/publish", r#"{"user":"ann","data":null}"#).unwrap(),
            Request::Publish {
                group: group("user:ann"),
                from: None,
                data: Value::Null
            }
        );
        assert_eq!(
            parse("POST", "/v1/admin/users/ann/disconnect", "").unwrap(),
            Request::Disconnect { user: user("ann") }
        );
        assert_eq!(
            parse(
                "POST",
                "/v1/admin/groups/chat%3Aops/remove",
                r#"{"user":"ann"}"#
            )
            .unwrap(),
            Request::Remove {
                group: group("chat:ops"),
                user: user("ann")
            }
        );
        // Already decoded, as API Gateway's HTTP APIs pass the path.
        assert_eq!(
            parse(
                "POST",
                "/v1/admin/groups/chat:ops/ban",
                r#"{"user":"ann","seconds":60}"#
            )
            .unwrap(),
            Request::Ban {
                group: group("chat:ops"),
                user: user("ann"),
                seconds: Some(60)
            }
        );
        assert_eq!(
            parse("DELETE", "/v1/admin/groups/chat%3aops/ban/ann", "").unwrap(),
            Request::Unban {
                group: group("chat:ops"),
                user: user("ann")
            }
        );
        assert_eq!(
            parse("GET", "/v1/admin/groups/facility%3Aicu/presence", "").unwrap(),
            Request::Presence {
                group: group("facility:icu")
            }
        );
        for r in Route::ALL {
            assert!(r.key().starts_with(r.method()));
        }
    }

    #[test]
    fn unknown_routes_and_methods() {
        for path in [
            "/v1/admin/",
            "/v1/admin/nope",
            "/v1/admin/publish/",
            "/v1/admin/groups//remove",
            "/v1/admin/groups/chat:ops/ban/",
            "/v1/other",
        ] {
            let e = parse("POST", path, "{}").unwrap_err();
            assert_eq!((e.status(), e.code()), (404, "not_found"), "{path}");
        }
        let e = parse("GET", "/v1/admin/publish", "").unwrap_err();
        assert_eq!((e.status(), e.code()), (405, "method_not_allowed"));
    }

    #[test]
    fn bad_input_names_the_field() {
        let p = "/v1/admin/publish";
        for (body, field) in [
            ("", "empty"),
            ("{", "valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"group":"chat:ops"}"#, "data"),
            (r#"{"data":1}"#, "group or user"),
            (r#"{"group":"chat:ops","user":"ann","data":1}"#, "either"),
            (r#"{"group":"lobby","data":1}"#, "group"),
            (r#"{"group":"chat:a b","data":1}"#, "group"),
            (r#"{"group":7,"data":1}"#, "group must be a string"),
            (r#"{"user":"a/b","data":1}"#, "user"),
            (r#"{"user":"ann","from":"bob","data":1}"#, "from"),
            (r#"{"group":"chat:ops","from":"a b","data":1}"#, "from"),
            (
                r#"{"group":"chat:ops","data":1,"extra":true}"#,
                "unknown field \"extra\"",
            ),
        ] {
            let m = bad_message("POST", p, body);
            assert!(m.contains(field), "{body}: {m}");
        }
        let big = format!(
            r#"{{"group":"chat:ops","data":"{}"}}"#,
            "x".repeat(MAX_DATA_BYTES)
        );
        assert!(bad_message("POST", p, &big).contains("data is"));
        let huge = format!(
            r#"{{"group":"chat:ops","data":"{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        assert_eq!(parse("POST", p, &huge).unwrap_err().status(), 413);

        for (path, body, field) in [
            (
                "/v1/admin/groups/user%3Aann/remove",
                r#"{"user":"ann"}"#,
                "follow identity",
            ),
            (
                "/v1/admin/groups/region:north/ban",
                r#"{"user":"ann"}"#,
                "follow identity",
            ),
            ("/v1/admin/groups/nope/remove", r#"{"user":"ann"}"#, "group"),
            (
                "/v1/admin/groups/chat%ZZ/remove",
                r#"{"user":"ann"}"#,
                "percent-escape",
            ),
            (
                "/v1/admin/groups/chat:ops/remove",
                r#"{}"#,
                "user is required",
            ),
            (
                "/v1/admin/groups/chat:ops/remove",
                r#"{"user":"ann","x":1}"#,
                "unknown field",
            ),
            (
                "/v1/admin/groups/chat:ops/ban",
                r#"{"user":"ann","seconds":-1}"#,
                "seconds",
            ),
            (
                "/v1/admin/groups/chat:ops/ban",
                r#"{"user":"ann","seconds":1.5}"#,
                "seconds",
            ),
            (
                "/v1/admin/groups/chat:ops/ban",
                r#"{"user":"ann","seconds":"9"}"#,
                "seconds",
            ),
            ("/v1/admin/users/a%20b/disconnect", "", "user"),
            ("/v1/admin/users/ann/disconnect", r#"{"x":1}"#, "no body"),
        ] {
            let m = bad_message("POST", path, body);
            assert!(m.contains(field), "{path} {body}: {m}");
        }
        let m = bad_message("DELETE", "/v1/admin/groups/facility:icu/ban/ann", "");
        assert!(m.contains("follow identity"), "{m}");
        assert_eq!(
            parse(
                "POST",
                "/v1/admin/groups/chat:ops/ban",
                r#"{"user":"ann","seconds":null}"#
            )
            .unwrap(),
            Request::Ban {
                group: Group::parse("chat:ops").unwrap(),
                user: UserId::parse("ann").unwrap(),
                seconds: None
            }
        );
    }

    #[test]
    fn errors_map_to_statuses_without_backend_details() {
        let e = AdminError::from(ActionError::Unavailable);
        assert_eq!((e.status(), e.code()), (503, "unavailable"));
        let e = AdminError::from(HubError::Unavailable("AccessDenied arn:...".into()));
        assert!(!e.body().contains("arn"), "{}", e.body());
        assert_eq!(
            AdminError::from(ActionError::NotMember("x".into())).status(),
            404
        );
        assert_eq!(
            AdminError::from(ActionError::Forbidden("x".into())).status(),
            403
        );
        assert_eq!(AdminError::TooLarge(70_000).code(), "body_too_large");
    }
}
