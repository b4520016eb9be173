//! The local HTTP API's admin routes (`/v1/admin/`), as API Gateway serves them with IAM
//! authorization: the `x-presence-admin-key` header stands in for the SigV4 signature.

use super::http::{AppState, axum_response, json_error};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The header that stands in for IAM authorization on the local admin routes.
pub const ADMIN_KEY_HEADER: &str = "x-presence-admin-key";

/// The largest admin request body the local API reads; admin-api answers 413 itself above
/// its own limit (64 KiB), as it would behind API Gateway (whose limit is 10 MB).
const ADMIN_READ_LIMIT: usize = 1024 * 1024;

/// Which function an admin route is integrated with, with the route's key and path
/// parameters (as sent).
enum AdminTarget<'a> {
    /// admin-api's routes.
    Admin(presence::admin_api::Route, Vec<(&'static str, &'a str)>),
    /// The backend's history reads, history-read's (`GET` only).
    History(String, Vec<(&'static str, &'a str)>),
}

impl<'a> AdminTarget<'a> {
    /// The route `method path` is, as API Gateway matches it; `None`: no route.
    fn of(method: &str, path: &'a str) -> Option<Self> {
        use presence::history::{Access, route_of_path};
        if let Some(m) = route_of_path(path).filter(|m| m.access == Access::Backend) {
            return (method == "GET")
                .then(|| Self::History(format!("GET {}", m.template), vec![m.param]));
        }
        presence::admin_api::Route::of_path(path)
            .filter(|(r, _)| r.method() == method)
            .map(|(r, params)| Self::Admin(r, params))
    }

    fn key(&self) -> String {
        match self {
            Self::Admin(route, _) => route.key(),
            Self::History(key, _) => key.clone(),
        }
    }

    fn params(&self) -> &[(&'static str, &'a str)] {
        match self {
            Self::Admin(_, params) | Self::History(_, params) => params,
        }
    }
}

/// The admin routes, as API Gateway serves them with `AuthorizationType: AWS_IAM`: a request
/// no route matches is 404 and one without valid credentials 401, and neither reaches a
/// function; otherwise the route's function is invoked (history-read for the backend's reads
/// `GET /v1/admin/regions/{region}/facilities` and `GET /v1/admin/facilities/{facility}/...`,
/// admin-api for the rest) with the request context API Gateway fills in for a signed request
/// (`requestContext.authorizer.iam`). The key header stands in for the SigV4 signature and is
/// not passed on.
pub(super) async fn admin_route(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Response {
    // An HTTP API request, whatever its answer.
    state.meter.http_request();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let method = parts.method.as_str().to_owned();
    let Some(target) = AdminTarget::of(&method, &path) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route {method} {path}"),
        );
    };
    let key = parts
        .headers
        .get(ADMIN_KEY_HEADER)
        .and_then(|v| v.to_str().ok());
    if !key.is_some_and(|k| same_key(k, &state.admin_key)) {
        let problem = if key.is_some() { "wrong" } else { "missing" };
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{ADMIN_KEY_HEADER} is {problem}: the local admin API takes the key set by \
                 ADMIN_API_KEY, where API Gateway takes a request signed with AWS credentials"
            ),
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, ADMIN_READ_LIMIT).await else {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "body is too large",
        );
    };
    let params: Vec<(&str, String)> = target
        .params()
        .iter()
        .map(|(name, raw)| {
            let value = presence::admin_api::decode_path_parameter(raw)
                .unwrap_or_else(|| (*raw).to_owned());
            (*name, value)
        })
        .collect();
    let event = admin_event(&parts, &target.key(), &params, &bytes, presence::now_ms());
    let lreq = match lambda_http::request::from_str(&event.to_string()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "admin request not converted to an API Gateway event");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let resp = match target {
        AdminTarget::Admin(..) => {
            state
                .meter
                .invoke(
                    super::Function::AdminApi,
                    admin_api::handle(&state.admin, lreq, presence::now_ms()),
                )
                .await
        }
        AdminTarget::History(..) => {
            state
                .meter
                .invoke(
                    super::Function::HistoryRead,
                    history_read::handle(&state.history, lreq),
                )
                .await
        }
    };
    axum_response(resp)
}

/// Compares keys without stopping at the first difference.
fn same_key(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The local account and caller an admin request is signed by.
const LOCAL_ACCOUNT: &str = "000000000000";

/// An HTTP API (payload 2.0) event for an admin request, as API Gateway builds it for a
/// request it authorized with IAM.
fn admin_event(
    parts: &axum::http::request::Parts,
    route_key: &str,
    params: &[(&str, String)],
    body: &[u8],
    now_ms: i64,
) -> serde_json::Value {
    use base64::Engine as _;
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        if k.as_str() == ADMIN_KEY_HEADER {
            continue;
        }
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_owned(), v.into());
            }
        }
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let host = header("host").unwrap_or_else(|| "localhost".into());
    let user_agent = header("user-agent").unwrap_or_default();
    let (body, base64) = match (body.is_empty(), std::str::from_utf8(body)) {
        (true, _) => (serde_json::Value::Null, false),
        (false, Ok(text)) => (text.into(), false),
        (false, Err(_)) => (
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into(),
            true,
        ),
    };
    // HTTP APIs pass the path URL-decoded (`rawPath`, `http.path`), as they do its parameters.
    // (Kept encoded when decoding would make it something else than the same path.)
    let raw_path = parts.uri.path();
    let decoded: Option<Vec<String>> = raw_path
        .split('/')
        .map(|segment| {
            presence::admin_api::decode_path_parameter(segment).filter(|s| {
                s.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#'))
            })
        })
        .collect();
    let path = decoded.map_or_else(|| raw_path.to_owned(), |segments| segments.join("/"));
    let path_parameters: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone().into()))
        .collect();
    serde_json::json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "pathParameters": if path_parameters.is_empty() { serde_json::Value::Null } else { path_parameters.into() },
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": crate::ids::new_id(),
            "routeKey": route_key,
            "stage": "$default",
            "timeEpoch": now_ms,
            "authorizer": {
                "iam": {
                    "accessKey": "AKIALOCALADMIN000000",
                    "accountId": LOCAL_ACCOUNT,
                    "callerId": "AIDALOCALADMIN000000",
                    "cognitoIdentity": null,
                    "principalOrgId": null,
                    "userArn": format!("arn:aws:iam::{LOCAL_ACCOUNT}:user/presence-local-admin"),
                    "userId": "AIDALOCALADMIN000000",
                }
            }
        },
        "body": body,
        "isBase64Encoded": base64,
    })
}
