//! A WebSocket client for tests: JSON frames in and out, waiting for a frame by type or by
//! the `ref` of a request.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits for a frame it expects.
pub const FRAME_WAIT: Duration = Duration::from_secs(8);

/// A connected test client.
#[derive(Debug)]
pub struct WsClient {
    socket: Socket,
    next_ref: u64,
}

impl WsClient {
    /// Connects to `url` (with its query); panics when the upgrade is refused.
    pub async fn connect(url: &str) -> Self {
        Self::try_connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
    }

    /// Connects to `url`; the upgrade's refusal as an error.
    pub async fn try_connect(url: &str) -> Result<Self, String> {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            socket,
            next_ref: 0,
        })
    }

    /// Sends a text frame as it is.
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// Sends `frame` with a fresh `ref` and returns the frame that echoes it (skipping
    /// others); panics after [`FRAME_WAIT`].
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_ref += 1;
        let reference = self.next_ref;
        frame["ref"] = reference.into();
        self.send_text(&frame.to_string()).await;
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) if v["ref"] == reference => return v,
                Some(_) => continue,
                None => panic!("no reply to {frame} within {FRAME_WAIT:?}"),
            }
        }
    }

    /// The next JSON frame, or `None` after `wait` or when the socket closed.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(&t).expect("frames are JSON"));
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                _ => return None,
            }
        }
    }

    /// The next frame of type `ty`, skipping others; panics after [`FRAME_WAIT`].
    pub async fn expect(&mut self, ty: &str) -> Value {
        match self.wait_for(ty, FRAME_WAIT).await {
            Some(v) => v,
            None => panic!("no {ty:?} frame within {FRAME_WAIT:?}"),
        }
    }

    /// The next frame of type `ty` within `wait`, skipping others.
    pub async fn wait_for(&mut self, ty: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) if v["type"] == ty => return Some(v),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Whether the server closed the socket within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.socket.next()).await {
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }

    /// Joins `group` and checks the `joined` reply.
    pub async fn join(&mut self, group: &str) {
        let reply = self
            .request(serde_json::json!({"action": "join", "group": group}))
            .await;
        assert_eq!(reply["type"], "joined", "join {group}: {reply}");
    }

    /// Closes the socket from the client side.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
