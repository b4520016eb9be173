//! What the local stack bills (`LocalStack::billing`, `GET /dev/stats` `billing`), driven
//! through its real HTTP API and real WebSocket clients: each count moves when, and by as
//! much as, AWS would bill it.

use futures::{SinkExt, StreamExt};
use presence::config::Env;
use presence_local::stack::{Billing, LocalStack, StackOptions};
use presence_tests::*;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long anything asynchronous (a queue batch, a `$connect`) may take.
const WAIT: Duration = Duration::from_secs(10);

const FUNCTIONS: [&str; 10] = [
    "heartbeat-ingest",
    "heartbeat-consumer",
    "session-expiry",
    "facility-rollup",
    "ws-connect",
    "ws-disconnect",
    "ws-message",
    "ws-push",
    "history-read",
    "admin-api",
];

async fn start() -> LocalStack {
    let options = StackOptions {
        http_port: 0,
        ws_port: 0,
        ..StackOptions::default()
    };
    LocalStack::start(&Env::from_pairs::<&str, &str>([]), options)
        .await
        .unwrap()
}

fn nurse_token() -> String {
    token(
        DEV_SECRET.as_bytes(),
        "nurse-ann",
        "st-olav-icu",
        "trondelag",
    )
}

async fn connect(stack: &LocalStack) -> Socket {
    let url = format!("{}?token={}", stack.ws.websocket_url(), nurse_token());
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the stack accepts the token");
    socket
}

/// Polls the stack's billing until `done` holds for what was billed since `before`; fails
/// after [`WAIT`] naming `what`.
async fn wait_for(
    stack: &LocalStack,
    before: &Billing,
    what: &str,
    done: impl Fn(&Billing) -> bool,
) -> Billing {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let delta = stack.billing().since(before);
        if done(&delta) {
            return delta;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; billed since: {delta:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next text frame whose `type` is `kind`, within [`WAIT`].
async fn frame_of_type(socket: &mut Socket, kind: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame"))
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["type"] == kind {
                return value;
            }
        }
    }
}

/// `GET /dev/stats` as JSON.
async fn stats(stack: &LocalStack) -> serde_json::Value {
    let (status, body) = http("GET", &format!("{}/dev/stats", stack.http_url), &[], "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn an_http_heartbeat_bills_the_request_the_ingest_the_queue_and_the_consumer() {
    let stack = start().await;
    let before = stack.billing();
    let (status, body) = http(
        "POST",
        &format!("{}/v1/heartbeats", stack.http_url),
        &[("authorization", &format!("Bearer {}", nurse_token()))],
        r#"{"session_id":"tab-billing","state":"active"}"#,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let sent = stack.billing().since(&before);
    assert_eq!(sent.http_requests, 1, "{sent:#?}");
    assert_eq!(sent.invocations("heartbeat-ingest"), 1, "{sent:#?}");
    assert!(sent.sqs_requests >= 1, "SendMessage: {sent:#?}");
    assert!(sent.lambda_gb_seconds > 0.0, "{sent:#?}");

    // The consumer's batch: a ReceiveMessage and a DeleteMessageBatch on top of the send.
    let consumed = wait_for(&stack, &before, "the consumer's batch", |b| {
        b.invocations("heartbeat-consumer") >= 1 && b.sqs_requests >= 3
    })
    .await;
    assert_eq!(consumed.http_requests, 1, "{consumed:#?}");
    assert_eq!(consumed.invocations("heartbeat-ingest"), 1, "{consumed:#?}");
    assert!(
        consumed.lambda_gb_seconds > sent.lambda_gb_seconds,
        "{consumed:#?}"
    );

    // The development routes and the dashboard's files are not the HTTP API.
    let marker = stack.billing();
    stats(&stack).await;
    let _ = http("GET", &format!("{}/index.html", stack.http_url), &[], "").await;
    assert_eq!(stack.billing().since(&marker).http_requests, 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn a_ping_frame_bills_two_messages_and_one_ws_message_invocation() {
    let stack = start().await;
    let before = stack.billing();
    let mut socket = connect(&stack).await;
    let connected = wait_for(&stack, &before, "$connect", |b| {
        b.invocations("ws-connect") == 1
    })
    .await;
    // The handshake is not a message.
    assert_eq!(connected.websocket_messages, 0, "{connected:#?}");

    let before = stack.billing();
    socket
        .send(Message::text(r#"{"action":"ping"}"#))
        .await
        .unwrap();
    frame_of_type(&mut socket, "pong").await;
    // A WebSocket-level ping is no message: wait for the server's pong before reading.
    socket.send(Message::Ping(vec![7].into())).await.unwrap();
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a pong")
            .expect("the socket is open")
            .expect("a frame");
        if matches!(message, Message::Pong(_)) {
            break;
        }
    }
    let billed = wait_for(&stack, &before, "the ping's invocation", |b| {
        b.invocations("ws-message") >= 1
    })
    .await;
    assert_eq!(billed.websocket_messages, 2, "frame and reply: {billed:#?}");
    assert_eq!(billed.invocations("ws-message"), 1, "{billed:#?}");
    assert_eq!(billed.management_api_calls, 0, "{billed:#?}");
    assert_eq!(billed.http_requests, 0, "{billed:#?}");
    drop(socket);
    stack.shutdown().await;
}

/// API Gateway takes frames up to 32 KiB and messages up to 128 KiB: a 40 000-byte message
/// goes as three frames and is billed as two 32 KB messages (not as three frames), plus its
/// one-frame reply.
#[tokio::test]
async fn a_40_000_byte_message_bills_two_messages_in() {
    let stack = start().await;
    let mut socket = connect(&stack).await;
    let before = stack.billing();
    let frame = |pad: &str| format!(r#"{{"action":"ping","pad":"{pad}"}}"#);
    let body = frame(&"p".repeat(40_000 - frame("").len()));
    assert_eq!(body.len(), 40_000);
    let parts = [&body[..15_000], &body[15_000..30_000], &body[30_000..]];
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        socket
            .send(Message::Frame(Frame::message(
                part.to_string(),
                opcode,
                i == parts.len() - 1,
            )))
            .await
            .unwrap();
    }
    // ws-message refuses a body over 32 KiB with an error reply.
    let reply = frame_of_type(&mut socket, "error").await;
    assert_eq!(reply["code"], "too_large", "{reply}");
    let billed = wait_for(&stack, &before, "the invocation", |b| {
        b.invocations("ws-message") >= 1
    })
    .await;
    assert_eq!(billed.websocket_messages, 2 + 1, "{billed:#?}");
    assert_eq!(billed.invocations("ws-message"), 1, "{billed:#?}");
    drop(socket);
    stack.shutdown().await;
}

#[tokio::test]
async fn connection_minutes_grow_while_a_socket_is_open_and_stop_when_it_closes() {
    let stack = start().await;
    let before = stack.billing();
    let mut socket = connect(&stack).await;
    let open = Duration::from_millis(600);
    let grown = wait_for(&stack, &before, "600 ms of connection time", |b| {
        b.connection_minutes >= open.as_secs_f64() / 60.0
    })
    .await;
    assert!(grown.connection_minutes < 1.0, "{grown:#?}");

    socket.close(None).await.unwrap();
    while let Some(Ok(_)) = socket.next().await {}
    wait_for(&stack, &before, "$disconnect", |b| {
        b.invocations("ws-disconnect") == 1
    })
    .await;
    let closed = stack.billing();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = stack.billing().since(&closed);
    assert_eq!(later.connection_minutes, 0.0, "{later:#?}");
    stack.shutdown().await;
}

#[tokio::test]
async fn connect_bills_dynamodb_writes_and_dev_stats_shows_every_counter() {
    let stack = start().await;
    let before = stack.billing();
    let socket = connect(&stack).await;
    // `$connect` registers the connection: a PutItem of a connection item (under 1 KB).
    let connected = wait_for(&stack, &before, "the connection's PutItem", |b| {
        b.invocations("ws-connect") == 1 && b.dynamodb_write_units >= 1.0
    })
    .await;
    assert!(connected.lambda_gb_seconds > 0.0, "{connected:#?}");

    let stats = stats(&stack).await;
    let billing = stats["billing"].as_object().expect("a billing object");
    let mut keys: Vec<&str> = billing.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "connection_minutes",
            "dynamodb_read_units",
            "dynamodb_write_units",
            "http_requests",
            "lambda_gb_seconds",
            "lambda_invocations",
            "management_api_calls",
            "sqs_requests",
            "websocket_messages",
        ]
    );
    let invocations = billing["lambda_invocations"].as_object().unwrap();
    let mut names: Vec<&str> = invocations.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = FUNCTIONS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(invocations["ws-connect"], 1);
    for (key, value) in billing {
        if key != "lambda_invocations" {
            assert!(value.is_number(), "{key}: {value}");
        }
    }
    // The same counters as in-process.
    let parsed: Billing = serde_json::from_value(stats["billing"].clone()).unwrap();
    assert!(parsed.dynamodb_write_units >= 1.0, "{parsed:#?}");
    assert_eq!(parsed.invocations("ws-connect"), 1);
    drop(socket);
    stack.shutdown().await;
}
