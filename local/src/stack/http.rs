//! The local HTTP API: `POST /v1/heartbeats` (heartbeat-ingest's own handler), the history
//! read API `GET /v1/regions/{region}/facilities` and `GET /v1/facilities/{facility}/...`
//! (history-read's own handler, on the stack's facilities table), the admin API under
//! `/v1/admin/` (admin-api's own handler, on the stack's hub, and history-read's for the
//! backend's reads `GET /v1/admin/regions/...` and `GET /v1/admin/facilities/...`; the
//! `x-presence-admin-key` header stands in for IAM authorization), the development routes under
//! `/dev/` and the dashboard's files.

use super::Stats;
use super::admin_http::admin_route;
use super::directory::Directory;
use super::simulation::{simulation_start, simulation_status, simulation_stop};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use presence::auth::{DevTokenSigner, Identity};
use presence::ids::{FacilityId, RegionId, UserId};
use presence::ingest::Ingest;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the HTTP routes share.
pub(super) struct AppState {
    pub ingest: Ingest,
    /// history-read's service, on the stack's facilities table.
    pub history: presence::history::HistoryReader,
    /// admin-api's service, on the stack's hub (the one its WebSocket routes use).
    pub admin: presence::admin_api::AdminApi,
    /// `ADMIN_API_KEY`: what an admin request's `x-presence-admin-key` must be.
    pub admin_key: String,
    /// Signs `/dev/token` tokens, when tokens are verified with a secret.
    pub signer: Option<DevTokenSigner>,
    pub directory: Directory,
    pub websocket_url: String,
    pub web_dir: PathBuf,
    pub interval: Duration,
    pub simulations: Mutex<HashMap<RegionId, (usize, tokio::task::JoinHandle<()>)>>,
    /// What AWS would bill (`/dev/stats` `billing`).
    pub meter: Arc<super::Meter>,
    pub stats: Stats,
}

/// The routes.
pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/heartbeats", post(heartbeats_route))
        .route("/v1/regions/{region}/facilities", get(history_route))
        .route("/v1/facilities/{facility}/history", get(history_route))
        .route("/v1/facilities/{facility}/sessions", get(history_route))
        .route("/v1/facilities/{facility}/availability", get(history_route))
        .route("/v1/admin/{*rest}", any(admin_route))
        .route("/dev/config", get(config_route))
        .route("/dev/directory", get(directory_route))
        .route("/dev/token", get(token_route))
        .route("/dev/stats", get(stats_route))
        .route(
            "/dev/simulation",
            get(simulation_status)
                .post(simulation_start)
                .delete(simulation_stop),
        )
        .fallback(get(static_route))
        .with_state(state)
}

async fn heartbeats_route(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Response {
    // An HTTP API request, whatever its answer.
    state.meter.http_request();
    let (parts, body) = req.into_parts();
    // Read a little past the limit so the handler can answer 413 itself.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        let body =
            presence::protocol::ErrorBody::new("body_too_large", "body is too large").to_json();
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    };
    let Some(lreq) = lambda_request(parts, lambda_http::Body::from(bytes.to_vec())) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let resp = state
        .meter
        .invoke(
            super::Function::HeartbeatIngest,
            heartbeat_ingest::handle(&state.ingest, lreq, presence::now_ms()),
        )
        .await;
    axum_response(resp)
}

/// An HTTP request as API Gateway hands it to a function (method, URI, headers, `body`).
fn lambda_request(
    parts: axum::http::request::Parts,
    body: lambda_http::Body,
) -> Option<lambda_http::Request> {
    let mut lreq = lambda_http::http::Request::builder()
        .method(parts.method)
        .uri(parts.uri);
    for (k, v) in &parts.headers {
        lreq = lreq.header(k, v);
    }
    lreq.body(body).ok()
}

/// A function's response as the HTTP API returns it.
pub(super) fn axum_response(resp: lambda_http::Response<lambda_http::Body>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    out.body(axum::body::Body::from(body.to_vec()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The four history read routes, through history-read's handler as API Gateway would invoke
/// it (the handler reads the path and the query string itself).
async fn history_route(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Response {
    state.meter.http_request();
    let (parts, _body) = req.into_parts();
    let Some(lreq) = lambda_request(parts, lambda_http::Body::Empty) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let resp = state
        .meter
        .invoke(
            super::Function::HistoryRead,
            history_read::handle(&state.history, lreq),
        )
        .await;
    axum_response(resp)
}

async fn config_route(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(serde_json::json!({
        "websocket_url": state.websocket_url, "heartbeat_url": "/v1/heartbeats",
        "heartbeat_interval_s": state.interval.as_secs(),
    }))
    .into_response()
}

async fn stats_route(State(state): State<Arc<AppState>>) -> Response {
    let queues: serde_json::Map<String, serde_json::Value> = state
        .stats
        .queues
        .iter()
        .map(|(name, q)| {
            (
                (*name).to_owned(),
                serde_json::json!({ "visible": q.visible(), "in_flight": q.in_flight() }),
            )
        })
        .collect();
    axum::Json(serde_json::json!({
        "connections": state.stats.registry.as_ref().map(|r| r.connection_count()),
        "connection_sample": state.stats.registry.as_ref().map(|r| {
            r.sample(5).into_iter().map(|c| serde_json::json!({"id": c.id, "user": c.user, "connected_ms": c.connected_ms})).collect::<Vec<_>>()
        }),
        "queues": queues,
        "heap": state.stats.heap.and_then(|read| read()),
        "history_items": state.stats.facilities.as_ref().map(|f| f.history_len()),
        "billing": state.meter.billing(),
    }))
    .into_response()
}

async fn directory_route(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(&state.directory).into_response()
}

pub(super) fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        presence::protocol::ErrorBody::new(code, message).to_json(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    user: Option<String>,
    facility: Option<String>,
    region: Option<String>,
    /// The token's lifetime in seconds (default 12 hours).
    exp_s: Option<String>,
    /// Comma-separated entries of the `groups` claim.
    groups: Option<String>,
}

async fn token_route(State(state): State<Arc<AppState>>, Query(q): Query<TokenQuery>) -> Response {
    let parse = || -> Result<Identity, String> {
        let user = q.user.as_deref().ok_or("user is required")?;
        let known = state.directory.users.iter().find(|u| u.id.as_str() == user);
        let facility = q
            .facility
            .clone()
            .or_else(|| known.map(|u| u.facility.to_string()))
            .ok_or("facility is required")?;
        let region = q
            .region
            .clone()
            .or_else(|| known.map(|u| u.region.to_string()))
            .ok_or("region is required")?;
        Ok(Identity {
            user: UserId::parse(user).map_err(|e| e.to_string())?,
            facility: FacilityId::parse(&facility).map_err(|e| e.to_string())?,
            region: RegionId::parse(&region).map_err(|e| e.to_string())?,
        })
    };
    let Some(signer) = &state.signer else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "tokens are verified with JWT_PUBLIC_KEY here: the stack cannot sign any",
        );
    };
    let lifetime = || -> Result<i64, String> {
        match q.exp_s.as_deref() {
            None => Ok(12 * 3600),
            Some(raw) => match raw.parse::<i64>() {
                Ok(s) if (1..=86_400).contains(&s) => Ok(s),
                _ => Err(format!("exp_s must be seconds in 1..=86400, not {raw:?}")),
            },
        }
    };
    let groups: Option<Vec<String>> = q.groups.as_deref().map(|g| {
        g.split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()
    });
    match parse().and_then(|identity| Ok((identity, lifetime()?))) {
        Ok((identity, lifetime)) => {
            let exp = presence::now_ms() / 1000 + lifetime;
            let token = signer.sign_granting(&identity, exp, groups.as_deref());
            axum::Json(serde_json::json!({ "token": token, "exp": exp })).into_response()
        }
        Err(message) => json_error(StatusCode::BAD_REQUEST, "bad_request", message),
    }
}

async fn static_route(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let safe = path.split('/').all(|seg| {
        !seg.is_empty()
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    if !safe {
        return StatusCode::NOT_FOUND.into_response();
    }
    let file = state.web_dir.join(path);
    let Ok(bytes) = tokio::fs::read(&file).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut resp = bytes.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
