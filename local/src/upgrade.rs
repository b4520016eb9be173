//! `GET /{stage}`: the WebSocket handshake, gated by the `$connect` integration.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lambda_events::encodings::Body as LambdaBody;
use aws_lambda_events::event::apigw::ApiGatewayProxyResponse;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tracing::{debug, info, warn};

use crate::connection::{self, Accepted};
use crate::event::{ConnectionInfo, user_agent};
use crate::ids::{new_id, now_ms};
use crate::{Route, Shared};

/// Read buffer per connection; larger frames are still read, in several reads.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Invokes `$connect` *before* answering the handshake, like API Gateway: a non-2xx answer
/// refuses the upgrade with that status; a 2xx answer registers the connection (so the
/// management API knows it from now on) and switches protocols.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let info = ConnectionInfo {
        id: new_id(),
        connected_at_ms: now_ms(),
        source_ip: peer.ip().to_string(),
        user_agent: user_agent(&headers),
    };
    let event = shared.events.connect(&info, &headers, uri.query());
    // The integration runs in its own task: if the client goes away while it runs (and this
    // handler's future is dropped), an accepted connection still gets its `$disconnect`, as
    // the integration may already have registered it.
    let (tx, rx) = tokio::sync::oneshot::channel();
    {
        let shared = shared.clone();
        let info = info.clone();
        tokio::spawn(async move {
            let response = shared.invoke(Route::Connect, event).await;
            let accepted = (200..300).contains(&response.status_code);
            if tx.send(response).is_err() && accepted {
                warn!(connection_id = %info.id, "client left during $connect");
                shared
                    .disconnect(
                        &info,
                        axum::extract::ws::close_code::ABNORMAL,
                        "Connection closed abnormally",
                    )
                    .await;
            }
        });
    }
    let Ok(response) = rx.await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    if !(200..300).contains(&response.status_code) {
        info!(
            connection_id = %info.id,
            status = response.status_code,
            "$connect refused the connection"
        );
        return refusal(response);
    }

    // Small buffers: frames here are small and connections many (tungstenite's 128 KiB
    // defaults cost 256 KiB of zeroed memory per connection).
    let mut upgrade = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_frame_size(shared.config.max_frame_bytes)
        .max_message_size(shared.config.max_message_bytes);
    // A `$connect` integration chooses the subprotocol by answering with this header.
    if let Some(protocol) = response.headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        upgrade.set_selected_protocol(protocol.clone());
    }

    info!(connection_id = %info.id, source_ip = %info.source_ip, "connected");
    let accepted = Accepted::new(info, shared.live_guard());
    shared.register(accepted.connection.clone());

    // Exactly one of the two callbacks runs; whichever does takes the connection.
    let slot = Arc::new(Mutex::new(Some(accepted)));
    let on_failed = {
        let shared = shared.clone();
        let slot = slot.clone();
        move |error: axum::Error| {
            let Some(accepted) = take(&slot) else { return };
            warn!(connection_id = %accepted.connection.info.id, %error, "upgrade failed after $connect");
            tokio::spawn(async move {
                let id = accepted.connection.info.id.clone();
                shared.deregister(&id);
                shared
                    .disconnect(
                        &accepted.connection.info,
                        axum::extract::ws::close_code::ABNORMAL,
                        "Connection closed abnormally",
                    )
                    .await;
                drop(accepted);
            });
        }
    };
    upgrade
        .on_failed_upgrade(on_failed)
        .on_upgrade(move |socket| async move {
            if let Some(accepted) = take(&slot) {
                connection::run(shared, accepted, socket).await;
            }
        })
}

fn take(slot: &Mutex<Option<Accepted>>) -> Option<Accepted> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The HTTP answer to a refused handshake: the integration's status, headers and body.
fn refusal(response: ApiGatewayProxyResponse) -> Response {
    // A status that is not a final HTTP status is a malformed integration response, which API
    // Gateway reports as 502.
    let status = u16::try_from(response.status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .filter(|status| !status.is_informational() && !status.is_success())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let body = match response.body {
        Some(LambdaBody::Text(text)) if response.is_base64_encoded => {
            STANDARD.decode(&text).unwrap_or_else(|error| {
                debug!(%error, "$connect body marked base64 but is not; sending it as is");
                text.into_bytes()
            })
        }
        Some(LambdaBody::Text(text)) => text.into_bytes(),
        Some(LambdaBody::Binary(bytes)) => bytes,
        _ => Vec::new(),
    };
    let mut refused = (status, Body::from(body)).into_response();
    for (name, value) in &response.headers {
        // Framing is ours to decide.
        if name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
            && name != header::CONNECTION
            && name != header::UPGRADE
        {
            refused.headers_mut().append(name.clone(), value.clone());
        }
    }
    refused
}
