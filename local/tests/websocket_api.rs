//! The local API Gateway WebSocket API, driven by real WebSocket clients (tokio-tungstenite)
//! and the real `aws-sdk-apigatewaymanagement` client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_lambda_events::event::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_sdk_apigatewaymanagement::Client as ManagementClient;
use aws_sdk_apigatewaymanagement::config::Credentials;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::{SinkExt, StreamExt};
use presence_local::{LocalWebSocketApi, Route, WebSocketApiConfig, WebSocketRoutes};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any expected event may take; generous, tests normally see it in milliseconds.
const WAIT: Duration = Duration::from_secs(5);

/// What the integrations saw.
#[derive(Debug, Clone)]
struct Recorded {
    route: Route,
    connection_id: String,
    query: HashMap<String, String>,
    body: Option<String>,
    is_base64_encoded: bool,
    event_type: Option<String>,
    route_key: Option<String>,
    disconnect_code: Option<i64>,
}

/// Test integrations: record every event; `$connect` needs a `token` query parameter (401
/// otherwise); `$default` answers a body of `echo:<x>` with `re:<x>` (which reaches the client
/// only with a route response) and anything else with no body. A `$default` body of `block`
/// waits for a permit of `gate`. A custom route always answers a body, `custom:<key>`, which
/// must never reach the client.
struct Recorder {
    events: Mutex<Vec<Recorded>>,
    gate: Semaphore,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            events: Mutex::default(),
            gate: Semaphore::new(0),
        }
    }
}

#[async_trait::async_trait]
impl WebSocketRoutes for Recorder {
    async fn invoke(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let ctx = &event.request_context;
        let query: HashMap<String, String> = event
            .query_string_parameters
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let body = event.body.clone();
        self.events.lock().unwrap().push(Recorded {
            route: route.clone(),
            connection_id: ctx.connection_id.clone().unwrap_or_default(),
            query: query.clone(),
            body: body.clone(),
            is_base64_encoded: event.is_base64_encoded,
            event_type: ctx.event_type.clone(),
            route_key: ctx.route_key.clone(),
            disconnect_code: ctx.disconnect_status_code,
        });
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = 200;
        match route {
            Route::Connect if !query.contains_key("token") => response.status_code = 401,
            Route::Default => {
                if body.as_deref() == Some("block") {
                    let _permit = self.gate.acquire().await.unwrap();
                }
                // A body to send back when `$default` has a route response.
                if let Some(text) = body.as_deref().and_then(|b| b.strip_prefix("echo:")) {
                    response.body = Some(aws_lambda_events::encodings::Body::Text(format!(
                        "re:{text}"
                    )));
                }
                // Out-of-order delivery would show if invocations overlapped.
                if let Some(delay) = body.as_deref().and_then(|b| b.strip_prefix("seq-")) {
                    let n: u64 = delay.parse().unwrap();
                    tokio::time::sleep(Duration::from_millis(20u64.saturating_sub(n))).await;
                }
            }
            Route::Custom(key) => {
                response.body = Some(aws_lambda_events::encodings::Body::Text(format!(
                    "custom:{key}"
                )));
            }
            _ => {}
        }
        response
    }
}

impl Recorder {
    fn snapshot(&self) -> Vec<Recorded> {
        self.events.lock().unwrap().clone()
    }

    fn of(&self, route: Route, connection_id: &str) -> Vec<Recorded> {
        self.snapshot()
            .into_iter()
            .filter(|e| e.route == route && e.connection_id == connection_id)
            .collect()
    }

    /// Polls until `done` holds for the recorded events, or fails after [`WAIT`].
    async fn wait_until(&self, what: &str, done: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let start = Instant::now();
        loop {
            let events = self.snapshot();
            if done(&events) {
                return events;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}; events: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_for_disconnect(&self, connection_id: &str) -> Recorded {
        let events = self
            .wait_until("$disconnect", |events| {
                events
                    .iter()
                    .any(|e| e.route == Route::Disconnect && e.connection_id == connection_id)
            })
            .await;
        events
            .into_iter()
            .find(|e| e.route == Route::Disconnect && e.connection_id == connection_id)
            .unwrap()
    }

    /// The connection id of the most recent accepted `$connect`.
    fn last_connection_id(&self) -> String {
        self.snapshot()
            .into_iter()
            .rev()
            .find(|e| e.route == Route::Connect && e.query.contains_key("token"))
            .map(|e| e.connection_id)
            .expect("a $connect event")
    }
}

async fn start(config: WebSocketApiConfig) -> (LocalWebSocketApi, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let api = LocalWebSocketApi::start("127.0.0.1:0".parse().unwrap(), config, recorder.clone())
        .await
        .unwrap();
    (api, recorder)
}

async fn management_client(api: &LocalWebSocketApi) -> ManagementClient {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(api.management_endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .load()
        .await;
    ManagementClient::new(&config)
}

async fn connect(api: &LocalWebSocketApi, query: &str) -> Client {
    let (ws, _response) = connect_async(format!("{}?{query}", api.websocket_url()))
        .await
        .expect("handshake");
    ws
}

/// The next frame from the server, failing after [`WAIT`].
async fn next(ws: &mut Client) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame from the server")
}

/// Reads until the server's close frame and returns its code, then keeps reading until the
/// stream ends, so the client's reply goes out and the handshake completes (as in a browser).
async fn expect_close(ws: &mut Client) -> u16 {
    let code = loop {
        match next(ws).await {
            Some(Ok(Message::Close(Some(frame)))) => break frame.code.into(),
            Some(Ok(Message::Close(None))) => break 1005,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    drain(ws).await;
    code
}

/// Reads until the stream ends.
async fn drain(ws: &mut Client) {
    while let Some(Ok(_)) = next(ws).await {}
}

#[tokio::test]
async fn connect_without_token_is_refused_at_the_upgrade() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;

    let error = connect_async(format!("{}?session_id=s1", api.websocket_url()))
        .await
        .expect_err("the handshake must be refused");
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 401);
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }

    assert!(api.connection_ids().is_empty());
    let events = recorder.snapshot();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].route, Route::Connect);
    assert_eq!(
        events[0].query.get("session_id").map(String::as_str),
        Some("s1")
    );

    // Nothing else follows for a refused client.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(recorder.snapshot().len(), 1);
    api.shutdown().await;
}

#[tokio::test]
async fn connect_message_post_get_close_then_gone() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let management = management_client(&api).await;

    let mut ws = connect(&api, "token=t&session_id=s1").await;
    let id = recorder.last_connection_id();
    let connect_event = &recorder.of(Route::Connect, &id)[0];
    assert_eq!(
        connect_event.query.get("token").map(String::as_str),
        Some("t")
    );
    assert_eq!(
        connect_event.query.get("session_id").map(String::as_str),
        Some("s1")
    );
    assert_eq!(connect_event.route_key.as_deref(), Some("$connect"));
    assert_eq!(connect_event.event_type.as_deref(), Some("CONNECT"));
    assert_eq!(id.len(), 16);
    assert!(id.ends_with('='));
    assert_eq!(api.connection_ids(), vec![id.clone()]);

    // A text frame becomes a $default event with that body.
    ws.send(Message::text(r#"{"action":"subscribe"}"#))
        .await
        .unwrap();
    // A binary frame arrives base64-encoded.
    ws.send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    let events = recorder
        .wait_until("two $default events", |events| {
            events.iter().filter(|e| e.route == Route::Default).count() == 2
        })
        .await;
    let messages: Vec<&Recorded> = events
        .iter()
        .filter(|e| e.route == Route::Default)
        .collect();
    assert_eq!(messages[0].connection_id, id);
    assert_eq!(
        messages[0].body.as_deref(),
        Some(r#"{"action":"subscribe"}"#)
    );
    assert!(!messages[0].is_base64_encoded);
    assert_eq!(messages[0].event_type.as_deref(), Some("MESSAGE"));
    assert_eq!(messages[1].body.as_deref(), Some("AJ+Slg=="));
    assert!(messages[1].is_base64_encoded);

    // PostToConnection delivers one frame to the client.
    management
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(r#"{"type":"facility.status"}"#))
        .send()
        .await
        .expect("post");
    match next(&mut ws).await {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), r#"{"type":"facility.status"}"#),
        other => panic!("expected the posted text frame, got {other:?}"),
    }
    // Bytes that are not UTF-8 go as a binary frame.
    management
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![0xff, 0xfe]))
        .send()
        .await
        .expect("post binary");
    match next(&mut ws).await {
        Some(Ok(Message::Binary(bytes))) => assert_eq!(&bytes[..], &[0xff, 0xfe]),
        other => panic!("expected the posted binary frame, got {other:?}"),
    }

    // GetConnection.
    let connection = management
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("get");
    assert!(connection.connected_at().is_some());
    assert!(connection.last_active_at().is_some());
    assert_eq!(
        connection.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );

    // A body over the message limit is refused.
    let too_big = management
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await
        .expect_err("oversize post");
    assert!(
        too_big
            .into_service_error()
            .is_payload_too_large_exception(),
        "expected PayloadTooLargeException"
    );

    // The client closes: exactly one $disconnect, with its close code.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    drain(&mut ws).await;
    let disconnect = recorder.wait_for_disconnect(&id).await;
    assert_eq!(disconnect.disconnect_code, Some(1000));
    assert_eq!(disconnect.route_key.as_deref(), Some("$disconnect"));
    assert_eq!(disconnect.event_type.as_deref(), Some("DISCONNECT"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(recorder.of(Route::Disconnect, &id).len(), 1);
    assert!(api.connection_ids().is_empty());

    // The id is gone for every management call.
    let gone = management
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("late"))
        .send()
        .await
        .expect_err("post after close");
    assert!(gone.into_service_error().is_gone_exception());
    let gone = management
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect_err("get after close");
    assert!(gone.into_service_error().is_gone_exception());
    let gone = management
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect_err("delete after close");
    assert!(gone.into_service_error().is_gone_exception());

    api.shutdown().await;
}

#[tokio::test]
async fn client_vanishing_without_close_frame_triggers_disconnect_1006() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();

    // Drop the TCP stream without a close handshake.
    drop(ws);

    let disconnect = recorder.wait_for_disconnect(&id).await;
    assert_eq!(disconnect.disconnect_code, Some(1006));
    assert!(api.connection_ids().is_empty());
    api.shutdown().await;
}

#[tokio::test]
async fn delete_connection_closes_the_client_and_triggers_disconnect() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let management = management_client(&api).await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();

    management
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete");
    // Unknown to the management API at once.
    let gone = management
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("post after delete");
    assert!(gone.into_service_error().is_gone_exception());

    assert_eq!(expect_close(&mut ws).await, 1000);
    let disconnect = recorder.wait_for_disconnect(&id).await;
    assert_eq!(disconnect.disconnect_code, Some(1000));
    assert_eq!(recorder.of(Route::Disconnect, &id).len(), 1);
    api.shutdown().await;
}

#[tokio::test]
async fn idle_timeout_closes_a_silent_connection() {
    let config = WebSocketApiConfig {
        idle_timeout: Duration::from_millis(300),
        max_connection: Duration::from_secs(30),
        ..WebSocketApiConfig::default()
    };
    let (api, recorder) = start(config).await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();
    let opened = Instant::now();

    assert_eq!(expect_close(&mut ws).await, 1001);
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_millis(250),
        "closed after {elapsed:?}"
    );
    let disconnect = recorder.wait_for_disconnect(&id).await;
    assert_eq!(disconnect.disconnect_code, Some(1001));
    api.shutdown().await;
}

#[tokio::test]
async fn pings_keep_a_connection_alive_until_the_maximum_duration() {
    let config = WebSocketApiConfig {
        idle_timeout: Duration::from_millis(300),
        max_connection: Duration::from_millis(700),
        ..WebSocketApiConfig::default()
    };
    let (api, recorder) = start(config).await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();
    let opened = Instant::now();

    // Ping every 100 ms (well inside the idle timeout) until the server closes.
    let code = loop {
        tokio::select! {
            frame = next(&mut ws) => match frame {
                Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                ws.send(Message::Ping(Vec::new().into())).await.unwrap();
            }
        }
    };
    let elapsed = opened.elapsed();
    drain(&mut ws).await;
    assert_eq!(code, 1001);
    // Idle would have closed it at ~300 ms; the maximum duration closes it at ~700 ms.
    assert!(
        elapsed >= Duration::from_millis(600),
        "closed after {elapsed:?}"
    );
    let disconnect = recorder.wait_for_disconnect(&id).await;
    assert_eq!(disconnect.disconnect_code, Some(1001));
    api.shutdown().await;
}

#[tokio::test]
async fn oversize_frame_closes_with_1009() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();

    // One 40 KiB frame: over API Gateway's 32 KiB frame limit.
    ws.send(Message::text("x".repeat(40 * 1024))).await.unwrap();

    assert_eq!(expect_close(&mut ws).await, 1009);
    let disconnect = recorder.wait_for_disconnect(&id).await;
    assert_eq!(disconnect.disconnect_code, Some(1009));
    assert!(recorder.of(Route::Default, &id).is_empty());
    api.shutdown().await;
}

#[tokio::test]
async fn oversize_message_closes_with_1009() {
    // A frame limit above the message limit, so that the message limit is what trips.
    let config = WebSocketApiConfig {
        max_frame_bytes: 8 * 1024,
        max_message_bytes: 1024,
        ..WebSocketApiConfig::default()
    };
    let (api, recorder) = start(config).await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();

    ws.send(Message::text("small")).await.unwrap();
    ws.send(Message::text("y".repeat(2048))).await.unwrap();

    assert_eq!(expect_close(&mut ws).await, 1009);
    let disconnect = recorder.wait_for_disconnect(&id).await;
    assert_eq!(disconnect.disconnect_code, Some(1009));
    let messages = recorder.of(Route::Default, &id);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body.as_deref(), Some("small"));
    api.shutdown().await;
}

#[tokio::test]
async fn messages_from_one_client_arrive_in_order() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();

    // Earlier messages take longer to handle, so overlapping invocations would reorder them.
    let sent: Vec<String> = (0..20).map(|i| format!("seq-{i}")).collect();
    for body in &sent {
        ws.send(Message::text(body.clone())).await.unwrap();
    }
    let events = recorder
        .wait_until("20 $default events", |events| {
            events.iter().filter(|e| e.route == Route::Default).count() == 20
        })
        .await;
    let received: Vec<String> = events
        .into_iter()
        .filter(|e| e.route == Route::Default && e.connection_id == id)
        .filter_map(|e| e.body)
        .collect();
    assert_eq!(received, sent);
    drop(ws);
    api.shutdown().await;
    // `$disconnect` comes after every message.
    assert_eq!(
        recorder.snapshot().last().map(|e| e.route.clone()),
        Some(Route::Disconnect)
    );
}

#[tokio::test]
async fn connections_are_handled_concurrently() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let mut a = connect(&api, "token=a").await;
    let id_a = recorder.last_connection_id();
    let mut b = connect(&api, "token=b").await;
    let id_b = recorder.last_connection_id();

    // A's handler blocks; B's message is still handled.
    a.send(Message::text("block")).await.unwrap();
    recorder
        .wait_until("A's blocking message", |events| {
            events
                .iter()
                .any(|e| e.connection_id == id_a && e.route == Route::Default)
        })
        .await;
    b.send(Message::text("hello")).await.unwrap();
    recorder
        .wait_until("B's message while A is blocked", |events| {
            events
                .iter()
                .any(|e| e.connection_id == id_b && e.route == Route::Default)
        })
        .await;
    recorder.gate.add_permits(1);
    drop((a, b));
    api.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_a_disconnect_each() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let a = connect(&api, "token=a").await;
    let id_a = recorder.last_connection_id();
    let b = connect(&api, "token=b").await;
    let id_b = recorder.last_connection_id();
    assert_eq!(api.connection_ids().len(), 2);

    // The clients keep reading (as browsers do), so the close handshakes complete.
    let readers = [a, b].map(|mut ws| tokio::spawn(async move { expect_close(&mut ws).await }));
    api.shutdown().await;

    // `shutdown` returns after every $disconnect.
    assert_eq!(recorder.of(Route::Disconnect, &id_a).len(), 1);
    assert_eq!(recorder.of(Route::Disconnect, &id_b).len(), 1);
    for reader in readers {
        assert_eq!(reader.await.unwrap(), 1001);
    }
}

#[tokio::test]
async fn unknown_paths_and_stageless_urls() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;

    // `/` accepts upgrades too.
    let root = format!("ws://{}/?token=t", api.local_addr());
    let (mut ws, _) = connect_async(root).await.expect("handshake on /");
    let id = recorder.last_connection_id();

    // `/@connections/{id}` without the stage works for the management API.
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", api.local_addr()))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "local"))
        .load()
        .await;
    let stageless = ManagementClient::new(&config);
    stageless
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("hi"))
        .send()
        .await
        .expect("post without stage");
    match next(&mut ws).await {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "hi"),
        other => panic!("expected the posted frame, got {other:?}"),
    }

    // A wrong stage is refused like API Gateway does.
    let error = connect_async(format!("ws://{}/prod?token=t", api.local_addr()))
        .await
        .expect_err("wrong stage");
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status().as_u16(), 403);
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
    drop(ws);
    api.shutdown().await;
}

/// Clients that give up at any point of the handshake or right after it: every accepted
/// `$connect` is matched by exactly one `$disconnect`.
#[tokio::test]
async fn every_accepted_connect_gets_a_disconnect_whenever_the_client_leaves() {
    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let url = format!("{}?token=t", api.websocket_url());
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let url = url.clone();
        let task = tokio::spawn(async move {
            if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
                tokio::time::sleep(Duration::from_millis(i % 7)).await;
                drop(ws);
            }
        });
        tasks.push((i, task));
    }
    for (i, task) in tasks {
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_micros(300 * (i % 5))).await;
            task.abort();
        } else {
            let _ = task.await;
        }
    }
    let accepted = |r: &Recorder| {
        let events = r.snapshot();
        let connects: std::collections::BTreeSet<String> = events
            .iter()
            .filter(|e| e.route == Route::Connect)
            .map(|e| e.connection_id.clone())
            .collect();
        let disconnects: Vec<String> = events
            .iter()
            .filter(|e| e.route == Route::Disconnect)
            .map(|e| e.connection_id.clone())
            .collect();
        (connects, disconnects)
    };
    for _ in 0..100 {
        let (c, d) = accepted(&recorder);
        if c.len() == d.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (connects, disconnects) = accepted(&recorder);
    let unique: std::collections::BTreeSet<String> = disconnects.iter().cloned().collect();
    assert_eq!(unique.len(), disconnects.len(), "one $disconnect each");
    let missing: Vec<_> = connects.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "{} of {} connections never got $disconnect",
        missing.len(),
        connects.len()
    );
    assert!(api.connection_ids().is_empty());
}

#[tokio::test]
async fn default_route_responses_reach_the_client_only_when_configured() {
    for two_way in [false, true] {
        let (api, recorder) = start(WebSocketApiConfig {
            default_route_response: two_way,
            ..WebSocketApiConfig::default()
        })
        .await;
        let mut ws = connect(&api, "token=t").await;
        let id = recorder.last_connection_id();
        ws.send(Message::text("echo:a")).await.unwrap();
        ws.send(Message::text("no reply")).await.unwrap();
        ws.send(Message::text("echo:b")).await.unwrap();
        recorder
            .wait_until("3 $default events", |events| {
                events.iter().filter(|e| e.route == Route::Default).count() == 3
            })
            .await;
        // A posted marker after the three: whatever the client reads before it came from
        // the route responses.
        management_client(&api)
            .await
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new("marker"))
            .send()
            .await
            .unwrap();
        let mut got = Vec::new();
        loop {
            match next(&mut ws).await {
                Some(Ok(Message::Text(t))) if t.as_str() == "marker" => break,
                Some(Ok(Message::Text(t))) => got.push(t.to_string()),
                other => panic!("unexpected {other:?}"),
            }
        }
        let expected: Vec<String> = if two_way {
            vec!["re:a".into(), "re:b".into()]
        } else {
            vec![]
        };
        assert_eq!(got, expected, "two-way {two_way}");
        drop(ws);
        api.shutdown().await;
    }
}

/// API Gateway delivers `$disconnect` on a best-effort basis; the local API drops the share
/// `drop_disconnect_rate` of them on purpose, and still forgets the connection.
#[tokio::test]
async fn a_dropped_disconnect_is_never_delivered_but_the_connection_is_gone() {
    for (rate, expected) in [(1.0, 0), (0.0, 1)] {
        let (api, recorder) = start(WebSocketApiConfig {
            drop_disconnect_rate: rate,
            ..WebSocketApiConfig::default()
        })
        .await;
        let mut ws = connect(&api, "token=ok").await;
        let id = recorder.last_connection_id();
        ws.close(None).await.unwrap();
        drain(&mut ws).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            recorder.of(Route::Disconnect, &id).len(),
            expected,
            "rate {rate}"
        );
        assert!(api.connection_ids().is_empty(), "rate {rate}");
        api.shutdown().await;
    }
}

/// With custom routes configured (route selection on `action`), a frame whose `action` is one
/// of their keys reaches the integration on that route and its answer never reaches the
/// client; every other frame goes to `$default`, whose reply does. One connection's frames
/// are handled in order whatever their route. The API meters both ways.
#[tokio::test]
async fn one_way_custom_routes_reach_the_integration_and_never_reply() {
    let (api, recorder) = start(WebSocketApiConfig {
        default_route_response: true,
        one_way_routes: vec!["heartbeat".into(), "visibility".into()],
        ..WebSocketApiConfig::default()
    })
    .await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();
    let sent = [
        r#"{"action":"visibility","hidden":true}"#,
        "echo:a",
        r#"{"action":"heartbeat","session_id":"s1"}"#,
        r#"{"action":"ping"}"#,
        r#"{"action":"VISIBILITY"}"#,
        "echo:b",
    ];
    for frame in sent {
        ws.send(Message::text(frame)).await.unwrap();
    }
    let events = recorder
        .wait_until("6 message events", |events| {
            events
                .iter()
                .filter(|e| e.event_type.as_deref() == Some("MESSAGE"))
                .count()
                == sent.len()
        })
        .await;
    let messages: Vec<(Route, Option<String>, Option<String>)> = events
        .into_iter()
        .filter(|e| e.connection_id == id && e.event_type.as_deref() == Some("MESSAGE"))
        .map(|e| (e.route, e.route_key, e.body))
        .collect();
    let custom = |key: &str| Route::Custom(key.to_owned());
    let expected: Vec<(Route, Option<String>, Option<String>)> = [
        (custom("visibility"), "visibility"),
        (Route::Default, "$default"),
        (custom("heartbeat"), "heartbeat"),
        (Route::Default, "$default"),
        (Route::Default, "$default"),
        (Route::Default, "$default"),
    ]
    .into_iter()
    .zip(sent)
    .map(|((route, key), body)| (route, Some(key.to_owned()), Some(body.to_owned())))
    .collect();
    assert_eq!(messages, expected);

    // A posted marker after the six: what the client reads before it came from route
    // responses, and only `$default`'s are there.
    management_client(&api)
        .await
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("marker"))
        .send()
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        match next(&mut ws).await {
            Some(Ok(Message::Text(t))) if t.as_str() == "marker" => break,
            Some(Ok(Message::Text(t))) => got.push(t.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, ["re:a", "re:b"]);

    // Billed: 6 frames in, 2 route responses and 1 post out; 1 management call.
    let usage = api.usage();
    assert_eq!(usage.messages, 6 + 2 + 1, "{usage:?}");
    assert_eq!(usage.management_calls, 1, "{usage:?}");
    assert!(usage.connection_ms > 0, "{usage:?}");
    drop(ws);
    api.shutdown().await;
}

/// Messages are metered in 32 KB units, and only data frames count: a 40 000-byte message
/// (sent as two frames under the 32 KiB frame limit) is 2, a ping is none. Connection time
/// stops growing once the connection is closed.
#[tokio::test]
async fn messages_are_metered_in_32_kb_units_and_connection_time_stops_at_close() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let (api, recorder) = start(WebSocketApiConfig::default()).await;
    let mut ws = connect(&api, "token=t").await;
    let id = recorder.last_connection_id();
    let body = "z".repeat(40_000);
    let (first, second) = body.split_at(20_000);
    ws.send(Message::Frame(Frame::message(
        first.to_owned(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        second.to_owned(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    ws.send(Message::Ping(vec![1, 2, 3].into())).await.unwrap();
    ws.send(Message::text("small")).await.unwrap();
    let events = recorder
        .wait_until("2 $default events", |events| {
            events.iter().filter(|e| e.route == Route::Default).count() == 2
        })
        .await;
    let bodies: Vec<usize> = events
        .iter()
        .filter(|e| e.route == Route::Default)
        .filter_map(|e| e.body.as_ref().map(String::len))
        .collect();
    assert_eq!(bodies, [40_000, 5]);
    assert_eq!(api.usage().messages, 2 + 1);

    ws.close(None).await.unwrap();
    drain(&mut ws).await;
    recorder.wait_for_disconnect(&id).await;
    let closed = api.usage().connection_ms;
    assert!(closed > 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        api.usage().connection_ms,
        closed,
        "a closed connection stops counting"
    );
    assert_eq!(api.usage().management_calls, 0);
    api.shutdown().await;
}
