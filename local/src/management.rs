//! The `@connections/{connectionId}` management API, as `aws-sdk-apigatewaymanagement` calls
//! it: `POST` (PostToConnection), `GET` (GetConnection) and `DELETE` (DeleteConnection).
//!
//! Requests are SigV4-signed by the SDK; the signature is not checked (any credentials work).
//! Errors carry `x-amzn-errortype`, which is what the SDK maps to its typed errors
//! (`is_gone_exception()` and friends).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::Message;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;
use tracing::debug;

use crate::Shared;
use crate::ids::{format_iso8601, new_id};

/// `POST`: one frame to the client — text if the body is UTF-8, binary otherwise.
pub(crate) async fn post_to_connection(
    State(shared): State<Arc<Shared>>,
    Path(connection_id): Path<String>,
    request: Request,
) -> Response {
    shared.meter.management_call();
    // Reading stops at the limit, so an oversize body is never buffered whole.
    let limit = shared.config.max_message_bytes;
    let Ok(data) = axum::body::to_bytes(request.into_body(), limit).await else {
        return aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            Some("Message too long"),
        );
    };
    let Some(connection) = shared.lookup(&connection_id) else {
        return gone();
    };
    let bytes = data.len();
    let message = match String::from_utf8(data.to_vec()) {
        Ok(text) => Message::text(text),
        Err(_) => Message::Binary(data),
    };
    match connection.outbox.try_send(message) {
        Ok(()) => {
            shared.meter.message(bytes);
            debug!(%connection_id, "posted to connection");
            respond(StatusCode::OK, Body::empty())
        }
        // The client is not reading fast enough; do not make the caller wait for it.
        Err(TrySendError::Full(_)) => aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            Some("Too many messages pending for this connection"),
        ),
        Err(TrySendError::Closed(_)) => gone(),
    }
}

/// The body of `GetConnection`, with the field names and date-time strings the SDK parses.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GetConnectionBody {
    connected_at: String,
    identity: Identity,
    last_active_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    source_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
}

/// `GET`: when the connection was opened and last heard from.
pub(crate) async fn get_connection(
    State(shared): State<Arc<Shared>>,
    Path(connection_id): Path<String>,
) -> Response {
    shared.meter.management_call();
    let Some(connection) = shared.lookup(&connection_id) else {
        return gone();
    };
    let body = GetConnectionBody {
        connected_at: format_iso8601(connection.info.connected_at_ms),
        identity: Identity {
            source_ip: connection.info.source_ip.clone(),
            user_agent: connection.info.user_agent.clone(),
        },
        last_active_at: format_iso8601(connection.last_active_ms()),
    };
    match serde_json::to_vec(&body) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(error) => {
            debug!(%error, "could not encode GetConnection");
            aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerErrorException",
                None,
            )
        }
    }
}

/// `DELETE`: the server closes the connection (the client gets a close frame) and
/// `$disconnect` follows. Answers at once; the id is unknown from now on.
pub(crate) async fn delete_connection(
    State(shared): State<Arc<Shared>>,
    Path(connection_id): Path<String>,
) -> Response {
    shared.meter.management_call();
    let Some(connection) = shared.deregister(&connection_id) else {
        return gone();
    };
    connection.request_close(axum::extract::ws::close_code::NORMAL, "");
    respond(StatusCode::NO_CONTENT, Body::empty())
}

/// Any other path: API Gateway's answer to a route it does not know.
pub(crate) async fn not_found() -> Response {
    aws_error(
        StatusCode::FORBIDDEN,
        "ForbiddenException",
        Some("Forbidden"),
    )
}

/// 410 with the body API Gateway sends for an unknown or closed connection.
fn gone() -> Response {
    aws_error(StatusCode::GONE, "GoneException", None)
}

fn aws_error(status: StatusCode, error_type: &'static str, message: Option<&str>) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = json_response(status, body.into_bytes());
    response.headers_mut().insert(
        HeaderName::from_static("x-amzn-errortype"),
        HeaderValue::from_static(error_type),
    );
    response
}

fn json_response(status: StatusCode, json: Vec<u8>) -> Response {
    let mut response = respond(status, Body::from(json));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Every answer carries a request id, which the SDK reports as `request_id()`.
fn respond(status: StatusCode, body: Body) -> Response {
    let mut response = (status, body).into_response();
    if let Ok(request_id) = HeaderValue::from_str(&new_id()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-amzn-requestid"), request_id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{Accepted, OUTBOX_CAPACITY};
    use crate::event::ConnectionInfo;

    #[tokio::test]
    async fn a_full_outbox_answers_429_limit_exceeded() {
        let shared = crate::tests::shared();
        let info = ConnectionInfo {
            id: new_id(),
            connected_at_ms: 0,
            source_ip: "127.0.0.1".to_owned(),
            user_agent: None,
        };
        let id = info.id.clone();
        // Nobody drains this outbox: the client is not reading.
        let accepted = Accepted::new(info, shared.live_guard());
        shared.register(accepted.connection.clone());
        for _ in 0..OUTBOX_CAPACITY {
            let posted = post_to_connection(
                State(shared.clone()),
                Path(id.clone()),
                Request::new(Body::from("x")),
            )
            .await;
            assert_eq!(posted.status(), StatusCode::OK);
        }
        let refused = post_to_connection(
            State(shared.clone()),
            Path(id.clone()),
            Request::new(Body::from("x")),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.headers()["x-amzn-errortype"],
            "LimitExceededException"
        );
        // Every request is a management call; only the posts that got through are messages.
        let usage = shared.meter.usage();
        assert_eq!(usage.management_calls, OUTBOX_CAPACITY as u64 + 1);
        assert_eq!(usage.messages, OUTBOX_CAPACITY as u64);
    }

    #[tokio::test]
    async fn unknown_ids_are_gone_with_the_sdk_error_shape() {
        let shared = crate::tests::shared();
        let response = get_connection(State(shared), Path("nope".to_owned())).await;
        assert_eq!(response.status(), StatusCode::GONE);
        assert_eq!(response.headers()["x-amzn-errortype"], "GoneException");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"message":null}"#);
    }
}
