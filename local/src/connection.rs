//! One accepted WebSocket connection, from the completed upgrade to its single `$disconnect`.
//!
//! Three tasks per connection, so that no side can hold up another:
//! - the *connection task* ([`run`]) reads frames and watches the timers and close requests;
//! - the *writer* owns the sending half, fed by the bounded outbox the management API posts to,
//!   so a slow client delays only its own writer (and eventually fills its outbox → 429);
//! - the *dispatcher* invokes the selected route (`$default` or a one-way custom route) for
//!   each data message, one at a time and in order, while the connection task keeps reading (so
//!   pings and the idle timer stay live even while a handler is slow).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::event::{ConnectionInfo, Inbound};
use crate::{LiveGuard, Route, Shared};
use aws_lambda_events::encodings::Body;

/// Frames a connection's outbox holds before `PostToConnection` answers 429.
pub(crate) const OUTBOX_CAPACITY: usize = 256;

/// How long a close handshake may take: after sending our close frame we wait this long for the
/// client's reply (and for the writer to get the frame out) before dropping the TCP stream.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// After closing because of an oversize frame the reading half is unusable, and the rest of that
/// frame is still unread: dropping the socket at once would make the kernel answer with a TCP
/// reset, which can destroy our close frame in the client's buffer before it is read. Keep the
/// socket this long so the client sees the 1009.
const OVERSIZE_LINGER: Duration = Duration::from_millis(200);

/// A connection as the registry (and so the management API) sees it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) info: Arc<ConnectionInfo>,
    /// Last time a frame (of any kind, pings included) arrived from the client.
    last_active_ms: AtomicI64,
    /// Frames for the client (`PostToConnection`), drained by the writer.
    pub(crate) outbox: mpsc::Sender<Message>,
    /// Asks the connection task to close (`DeleteConnection`).
    close: mpsc::UnboundedSender<CloseRequest>,
}

impl Connection {
    pub(crate) fn last_active_ms(&self) -> i64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// Asks the connection to close with this frame. Returns at once; the connection task sends
    /// the frame, finishes the handshake and invokes `$disconnect`.
    pub(crate) fn request_close(&self, code: u16, reason: &'static str) {
        // An error means the task has already ended, i.e. the connection is closing anyway.
        let _ = self.close.send(CloseRequest { code, reason });
    }
}

/// Why the server closes a connection: the close frame it sends, also reported to
/// `$disconnect`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

/// Everything the connection task needs, created when `$connect` accepts and handed to the
/// upgrade callback (or to the failed-upgrade path).
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) connection: Arc<Connection>,
    outbox: mpsc::Receiver<Message>,
    close: mpsc::UnboundedReceiver<CloseRequest>,
    /// When `$connect` accepted; the maximum connection duration counts from here.
    accepted_at: Instant,
    /// Keeps `shutdown()` waiting until this connection's `$disconnect` has returned.
    pub(crate) live: LiveGuard,
}

impl Accepted {
    pub(crate) fn new(info: ConnectionInfo, live: LiveGuard) -> Self {
        let (outbox_tx, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
        let (close_tx, close_rx) = mpsc::unbounded_channel();
        let connection = Arc::new(Connection {
            last_active_ms: AtomicI64::new(info.connected_at_ms),
            info: Arc::new(info),
            outbox: outbox_tx,
            close: close_tx,
        });
        Self {
            connection,
            outbox: outbox_rx,
            close: close_rx,
            accepted_at: Instant::now(),
            live,
        }
    }
}

/// How the reading loop ended.
#[derive(Debug)]
enum End {
    /// The client sent a close frame; tungstenite answers it for us.
    ClientClosed { code: u16, reason: String },
    /// The stream ended or failed without a close frame (reset, EOF, write failure).
    Vanished { detail: String },
    /// We close: send this frame. `await_reply` is false when the reading half already failed
    /// (an oversize or malformed frame), so no reply can be read.
    ServerClose {
        request: CloseRequest,
        await_reply: bool,
    },
}

/// Runs the connection until it ends, then deregisters it and invokes `$disconnect` once.
pub(crate) async fn run(shared: Arc<Shared>, accepted: Accepted, socket: WebSocket) {
    let Accepted {
        connection,
        outbox,
        close: mut close_requests,
        accepted_at,
        live,
    } = accepted;
    let id = connection.info.id.clone();
    let config = &shared.config;
    let (sink, mut stream) = socket.split();
    let (close_tx, close_rx) = oneshot::channel();
    let mut writer = tokio::spawn(write_loop(id.clone(), sink, outbox, close_rx));
    let (dispatch_tx, dispatch_rx) = mpsc::unbounded_channel();
    let dispatcher = tokio::spawn(dispatch_loop(
        shared.clone(),
        connection.clone(),
        dispatch_rx,
    ));
    let mut shutdown = shared.shutdown.subscribe();
    let max_at = deadline(accepted_at, config.max_connection);
    let mut last_frame = Instant::now();

    let end = loop {
        let idle_at = deadline(last_frame, config.idle_timeout);
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(message)) => {
                    last_frame = Instant::now();
                    connection
                        .last_active_ms
                        .store(crate::ids::now_ms(), Ordering::Relaxed);
                    let inbound = match message {
                        Message::Text(text) => {
                            shared.meter.message(text.len());
                            Inbound::Text(text.as_str().to_owned())
                        }
                        Message::Binary(bytes) => {
                            shared.meter.message(bytes.len());
                            Inbound::Binary(bytes.to_vec())
                        }
                        // Control frames only count as activity; tungstenite answers pings.
                        Message::Ping(_) | Message::Pong(_) => continue,
                        Message::Close(frame) => break client_closed(frame),
                    };
                    // The dispatcher outlives this loop, so the send cannot fail.
                    let _ = dispatch_tx.send(inbound);
                }
                Some(Err(error)) => break classify_read_error(error),
                None => break End::Vanished { detail: "stream ended without a close frame".into() },
            },
            () = tokio::time::sleep_until(idle_at) => {
                break End::ServerClose { request: GOING_AWAY, await_reply: true };
            }
            () = tokio::time::sleep_until(max_at) => {
                break End::ServerClose { request: GOING_AWAY, await_reply: true };
            }
            Some(request) = close_requests.recv() => {
                break End::ServerClose { request, await_reply: true };
            }
            _ = shutdown.wait_for(|&stopping| stopping) => {
                break End::ServerClose { request: GOING_AWAY, await_reply: true };
            }
            _ = &mut writer => {
                break End::Vanished { detail: "write to the client failed".into() };
            }
        }
    };

    // From here on the management API answers 410 Gone for this id, as API Gateway does once a
    // connection is closing.
    shared.deregister(&id);

    let (code, reason) = match end {
        End::ClientClosed { code, reason } => {
            // Dropping the sender stops the writer. Keep reading so tungstenite flushes its
            // reply to the client's close frame, and the client sees a clean close.
            drop(close_tx);
            let _ = tokio::time::timeout(CLOSE_GRACE, drain(&mut stream)).await;
            (code, reason)
        }
        End::Vanished { detail } => {
            debug!(connection_id = %id, %detail, "client vanished");
            (
                close_code::ABNORMAL,
                "Connection closed abnormally".to_owned(),
            )
        }
        End::ServerClose {
            request,
            await_reply,
        } => {
            let _ = close_tx.send(request);
            if await_reply {
                // The reply comes through the reading half; tungstenite ends the stream after it.
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    let _ = (&mut writer).await;
                    drain(&mut stream).await;
                })
                .await;
            } else {
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
                tokio::time::sleep(OVERSIZE_LINGER).await;
            }
            (request.code, request.reason.to_owned())
        }
    };
    // Dropping both halves closes the TCP stream.
    writer.abort();
    drop(stream);

    // Messages that arrived before the close are still delivered, then `$disconnect`.
    drop(dispatch_tx);
    let _ = dispatcher.await;
    info!(connection_id = %id, code, %reason, "disconnected");
    shared.disconnect(&connection.info, code, &reason).await;
    drop(live);
}

/// `from + after`, capped at 30 years (which always fits in an `Instant`): a configured
/// `Duration::MAX` means "never", not an overflow panic.
fn deadline(from: Instant, after: Duration) -> Instant {
    const NEVER: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);
    from.checked_add(after.min(NEVER)).unwrap_or(from)
}

/// Reads (and discards) until the stream ends, which lets tungstenite finish a close handshake.
async fn drain(stream: &mut futures::stream::SplitStream<WebSocket>) {
    while let Some(Ok(_)) = stream.next().await {}
}

/// The close frame for the idle timeout, the maximum connection duration and `shutdown()`.
const GOING_AWAY: CloseRequest = CloseRequest {
    code: close_code::AWAY,
    reason: "Going away",
};

fn client_closed(frame: Option<CloseFrame>) -> End {
    match frame {
        Some(frame) => End::ClientClosed {
            code: frame.code,
            reason: frame.reason.as_str().to_owned(),
        },
        // The wording of API Gateway's own `$disconnect` event for a close frame without code.
        None => End::ClientClosed {
            code: close_code::STATUS,
            reason: "Client-side close frame status not set".to_owned(),
        },
    }
}

/// Maps a read error to how API Gateway would end the connection.
fn classify_read_error(error: axum::Error) -> End {
    use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};

    let error = match error.into_inner().downcast::<WsError>() {
        Ok(error) => *error,
        Err(other) => {
            return End::Vanished {
                detail: other.to_string(),
            };
        }
    };
    match error {
        // Frame over `max_frame_bytes` or message over `max_message_bytes`.
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            debug!(size, max_size, "frame or message too big");
            End::ServerClose {
                request: CloseRequest {
                    code: close_code::SIZE,
                    reason: "Message too big",
                },
                await_reply: false,
            }
        }
        WsError::Utf8(_) => End::ServerClose {
            request: CloseRequest {
                code: close_code::INVALID,
                reason: "Invalid UTF-8",
            },
            await_reply: false,
        },
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Vanished {
            detail: "connection reset without a close frame".into(),
        },
        WsError::Protocol(protocol) => {
            debug!(%protocol, "protocol error");
            End::ServerClose {
                request: CloseRequest {
                    code: close_code::PROTOCOL,
                    reason: "Protocol error",
                },
                await_reply: false,
            }
        }
        other => End::Vanished {
            detail: other.to_string(),
        },
    }
}

/// Sends the outbox to the client until told to close (then sends the close frame) or the
/// connection fails.
async fn write_loop(
    id: String,
    mut sink: SplitSink<WebSocket, Message>,
    mut outbox: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<CloseRequest>,
) {
    loop {
        tokio::select! {
            // A close request wins over queued posts: API Gateway drops undelivered messages.
            biased;
            request = &mut close => {
                if let Ok(CloseRequest { code, reason }) = request {
                    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
                    if let Err(error) = sink.send(Message::Close(Some(frame))).await {
                        debug!(connection_id = %id, %error, "could not send close frame");
                    }
                }
                return;
            }
            message = outbox.recv() => {
                let Some(message) = message else { return };
                if let Err(error) = sink.send(message).await {
                    warn!(connection_id = %id, %error, "could not deliver a posted message");
                    return;
                }
            }
        }
    }
}

/// The route a data message goes to, as API Gateway's route selection expression
/// `$request.body.action` picks it: a one-way custom route when the message is a JSON object
/// whose `action` is a string equal to its key, `$default` otherwise.
pub(crate) fn select_route(one_way_routes: &[String], inbound: &Inbound) -> Route {
    /// Only `action` is read; the other members are skipped without being kept.
    #[derive(serde::Deserialize)]
    struct Selection {
        action: Option<serde_json::Value>,
    }
    let Inbound::Text(text) = inbound else {
        return Route::Default;
    };
    if one_way_routes.is_empty() {
        return Route::Default;
    }
    // Only an object: serde would also read a struct from an array (`["heartbeat"]`).
    if !text.trim_start().starts_with('{') {
        return Route::Default;
    }
    match serde_json::from_str::<Selection>(text) {
        Ok(Selection {
            action: Some(serde_json::Value::String(action)),
        }) if one_way_routes.contains(&action) => Route::Custom(action),
        _ => Route::Default,
    }
}

/// Invokes the selected route for each data message, in arrival order, one at a time. With a
/// route response on `$default` (two-way communication), the integration's response body goes
/// back to the client as a frame, as API Gateway does; without one it is discarded, and so is
/// every one-way custom route's.
async fn dispatch_loop(
    shared: Arc<Shared>,
    connection: Arc<Connection>,
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
) {
    let info = &connection.info;
    while let Some(message) = inbound.recv().await {
        let route = select_route(&shared.config.one_way_routes, &message);
        let two_way = route == Route::Default && shared.config.default_route_response;
        let event = shared.events.message(info, &route, message);
        let route_key = route.route_key().to_owned();
        let response = shared.invoke(route, event).await;
        if !(200..300).contains(&response.status_code) {
            debug!(
                connection_id = %info.id,
                route = %route_key,
                status = response.status_code,
                "a message route returned a non-2xx status"
            );
        }
        if !two_way {
            continue;
        }
        let (frame, bytes) = match response.body {
            Some(Body::Text(text)) if !text.is_empty() => {
                let bytes = text.len();
                (Message::Text(Utf8Bytes::from(text)), bytes)
            }
            Some(Body::Binary(bytes)) if !bytes.is_empty() => {
                let len = bytes.len();
                (Message::Binary(bytes.into()), len)
            }
            _ => continue,
        };
        // The same outbox as posted frames, so the client sees them in the order they were
        // produced; a client that does not read loses the route response, as a post would
        // get 429.
        match connection.outbox.try_send(frame) {
            Ok(()) => shared.meter.message(bytes),
            Err(error) => {
                warn!(connection_id = %info.id, %error, "route response not delivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_selection_follows_the_action_of_a_json_object() {
        let keys = vec!["heartbeat".to_owned(), "visibility".to_owned()];
        let text = |s: &str| Inbound::Text(s.to_owned());
        let custom = |k: &str| Route::Custom(k.to_owned());
        assert_eq!(
            select_route(&keys, &text(r#"{"action":"heartbeat","session_id":"s"}"#)),
            custom("heartbeat")
        );
        assert_eq!(
            select_route(
                &keys,
                &text(r#" {"ref":1,"data":{"action":"x"},"action":"visibility"}"#)
            ),
            custom("visibility")
        );
        for other in [
            r#"{"action":"ping"}"#,
            r#"{"action":"Heartbeat"}"#,
            r#"{"action":["heartbeat"]}"#,
            r#"{"action":null}"#,
            r#"{"data":{"action":"heartbeat"}}"#,
            r#"["heartbeat"]"#,
            r#""heartbeat""#,
            r#"{"action":"heartbeat""#,
            "heartbeat",
            "",
        ] {
            assert_eq!(select_route(&keys, &text(other)), Route::Default, "{other}");
        }
        assert_eq!(
            select_route(
                &keys,
                &Inbound::Binary(br#"{"action":"heartbeat"}"#.to_vec())
            ),
            Route::Default
        );
        assert_eq!(
            select_route(&[], &text(r#"{"action":"heartbeat"}"#)),
            Route::Default
        );
    }
}
