//! The local stack, started in-process the way `scripts/run.sh` starts it: it reads every
//! function's settings the way the function does, and refuses what the functions refuse.

use futures::StreamExt;
use presence::config::Env;
use presence_local::stack::{LocalStack, StackOptions};
use presence_tests::*;

fn options() -> StackOptions {
    StackOptions {
        http_port: 0,
        ws_port: 0,
        ..StackOptions::default()
    }
}

/// Settings a deployment changes, each away from its default.
fn tuned() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SESSION_TTL_SECONDS", "40"),
        ("HEARTBEAT_INTERVAL_SECONDS", "12"),
        ("PARTITIONS", "8"),
        ("LOSS_HOLD_SECONDS", "17"),
        ("HISTORY_RETENTION_DAYS", "30"),
        ("REPUBLISH_AFTER_SECONDS", "9"),
        ("SWEEP_WINDOW_SECONDS", "20"),
        ("JWT_SECRET", "a-deployment-secret-of-32-bytes-at-least"),
        ("JWT_ISSUER", "https://issuer.example"),
        ("MESSAGE_RETENTION_SECONDS", "3600"),
        ("MESSAGE_RETENTION_COUNT", "50"),
        ("JOIN_POLICY", "claim"),
        ("TOKEN_EXPIRY_GRACE_SECONDS", "15"),
    ]
}

#[tokio::test]
async fn the_same_environment_gives_the_stack_and_each_function_the_same_settings() {
    let stack = LocalStack::start(&Env::from_pairs(tuned()), options())
        .await
        .unwrap();
    let local = stack.settings();
    // What the template gives each function in AWS, on top of the same tuned variables.
    let mut lambda = tuned();
    let redis = stack.redis_url.clone();
    let mgmt = stack.ws.management_endpoint();
    lambda.extend([
        ("REDIS_URL", redis.as_str()),
        (
            "HEARTBEAT_QUEUE_URL",
            "https://sqs.eu-north-1.amazonaws.com/1/heartbeats",
        ),
        (
            "PUSH_QUEUE_URL",
            "https://sqs.eu-north-1.amazonaws.com/1/push",
        ),
        ("FACILITIES_TABLE", "facilities"),
        ("CONNECTIONS_TABLE", "connections"),
        ("MESSAGES_TABLE", "messages"),
        ("WEBSOCKET_ENDPOINT", mgmt.as_str()),
    ]);
    let env = Env::from_pairs(lambda);
    let ingest = heartbeat_ingest::Config::from_env(&env).unwrap();
    let consumer = heartbeat_consumer::Config::from_env(&env).unwrap();
    let expiry = session_expiry::Config::from_env(&env).unwrap();
    let rollup = facility_rollup::Config::from_env(&env).unwrap();
    let hub = presence::hub::HubConfig::from_env(&env).unwrap();
    for sessions in [
        &local.ingest.sessions,
        &local.consumer.sessions,
        &local.expiry.pipeline.sessions,
        &local.rollup.pipeline.sessions,
        &local.hub.sessions,
    ] {
        assert_eq!(*sessions, ingest.sessions);
        assert_eq!(*sessions, consumer.sessions);
        assert_eq!(*sessions, expiry.pipeline.sessions);
        assert_eq!(*sessions, rollup.pipeline.sessions);
        assert_eq!(*sessions, hub.sessions);
    }
    assert_eq!(local.rollup.history_retention, rollup.history_retention);
    assert_eq!(local.rollup.republish_after, rollup.republish_after);
    assert_eq!(local.expiry.sweep_window, expiry.sweep_window);
    assert_eq!(local.consumer.redis, consumer.redis);
    // Tokens: the same key and checks (the issuer is required by both).
    assert_eq!(
        format!("{:?}", local.ingest.auth),
        format!("{:?}", ingest.auth)
    );
    assert_eq!(format!("{:?}", local.hub.auth), format!("{:?}", hub.auth));
    // Messaging: retention, the join policy and the token grace.
    assert_eq!(local.hub.retention, hub.retention);
    assert_eq!(hub.retention.max_count, 50);
    assert_eq!(local.hub.join_policy, hub.join_policy);
    assert_eq!(hub.join_policy, presence::hub::JoinPolicy::Claim);
    assert_eq!(local.hub.token_grace, hub.token_grace);
    assert_eq!(hub.token_grace.as_secs(), 15);
    let history = history_read::Config::from_env(&env).unwrap();
    assert_eq!(
        format!("{:?}", local.history.auth),
        format!("{:?}", history.auth)
    );
    assert_eq!(
        local.history.facilities_table, local.rollup.pipeline.facilities_table,
        "history-read reads the table the rollup writes"
    );
    // And they are the tuned values, not the defaults.
    assert_eq!(ingest.sessions.ttl.as_secs(), 40);
    assert_eq!(rollup.history_retention.as_secs(), 30 * 86_400);
    assert_eq!(rollup.republish_after.as_secs(), 9);
    stack.shutdown().await;
}

/// A token signed with the development secret whose `nbf` lies `ahead_s` in the future.
fn token_not_before(ahead_s: i64) -> String {
    let now = presence::now_ms() / 1000;
    let claims = serde_json::json!({"sub": "doctor-bo", "facility": "st-olav-er",
        "region": "trondelag", "exp": now + 3600, "nbf": now + ahead_s});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(DEV_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused_like_an_expired_one() {
    let stack = LocalStack::start(&Env::from_pairs::<&str, &str>([]), options())
        .await
        .unwrap();
    let early = token_not_before(3600);
    let bearer = format!("Bearer {early}");
    let body = r#"{"session_id":"tab-early","state":"active"}"#;
    let url = format!("{}/v1/heartbeats", stack.http_url);
    let (status, text) = http("POST", &url, &[("authorization", &bearer)], body).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("not valid yet"), "{text}");
    // Nothing was enqueued, so nothing went online.
    let (_, stats) = http("GET", &format!("{}/dev/stats", stack.http_url), &[], "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["queues"]["heartbeats"]["visible"], 0);
    assert_eq!(stats["queues"]["heartbeats"]["in_flight"], 0);

    // The WebSocket upgrade is refused with 401, and no connection is registered.
    let ws = format!(
        "{}?token={early}&session_id=tab-early",
        stack.ws.websocket_url()
    );
    match tokio_tungstenite::connect_async(ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("the upgrade was not refused: {:?}", other.map(|_| ())),
    }
    let (_, stats) = http("GET", &format!("{}/dev/stats", stack.http_url), &[], "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["connections"], 0);

    // The same token without the future nbf works (the check is the nbf, nothing else).
    let fine = token_not_before(-60);
    let (status, _) = http(
        "POST",
        &url,
        &[("authorization", &format!("Bearer {fine}"))],
        body,
    )
    .await;
    assert_eq!(status, 202);
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{}?token={fine}", stack.ws.websocket_url()))
            .await
            .expect("a valid token connects");
    let _ = socket.close(None).await;
    let _ = socket.next().await;
    stack.shutdown().await;
}

#[tokio::test]
async fn a_malformed_local_setting_stops_the_start_naming_it() {
    for (name, value) in [
        ("WS_DROP_DISCONNECT_RATE", "1.5"),
        ("WS_DROP_DISCONNECT_RATE", "often"),
        ("SESSION_TTL_SECONDS", "0"),
    ] {
        let err = LocalStack::start(&Env::from_pairs([(name, value)]), options())
            .await
            .expect_err("a malformed setting must stop the start");
        assert!(err.to_string().contains(name), "{name}={value}: {err}");
    }
}

/// The next `facility.status` frame for `facility` on `ws`, within `within`.
async fn status_of(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    facility: &str,
    within: std::time::Duration,
) -> Option<String> {
    let until = tokio::time::Instant::now() + within;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.next()).await {
        let Ok(text) = m.into_text() else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(st) = presence::protocol::statuses_in(&v)
            .into_iter()
            .rev()
            .find(|st| st["facility_id"] == facility)
        {
            return st["status"].as_str().map(str::to_owned);
        }
    }
    None
}

/// API Gateway may never deliver `$disconnect`: with every one dropped, a browser that
/// vanishes (no close frame, no `$disconnect`) still goes offline within the TTL + 2 s. (The
/// TTL is above the sweeper's longest pause, 5 s, as any real TTL is.)
#[tokio::test]
async fn a_vanished_browser_goes_offline_in_time_without_any_disconnect() {
    const TTL_S: u64 = 6;
    let env = Env::from_pairs([
        ("SESSION_TTL_SECONDS", TTL_S.to_string()),
        ("HEARTBEAT_INTERVAL_SECONDS", "2".to_owned()),
        ("WS_DROP_DISCONNECT_RATE", "1".to_owned()),
        ("EXPIRY_SCHEDULE_SECONDS", "30".to_owned()),
    ]);
    let stack = LocalStack::start(&env, options()).await.unwrap();
    let token =
        |user: &str, facility: &str| token(DEV_SECRET.as_bytes(), user, facility, "trondelag");
    let url = stack.ws.websocket_url();
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!(
        "{url}?token={}",
        token("nurse-ann", "st-olav-icu")
    ))
    .await
    .unwrap();
    // The browser's socket carries its session; it never heartbeats again, then vanishes.
    let (browser, _) = tokio_tungstenite::connect_async(format!(
        "{url}?token={}&session_id=tab-vanishing",
        token("doctor-bo", "st-olav-er")
    ))
    .await
    .unwrap();
    let online = status_of(
        &mut watcher,
        "st-olav-er",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(online.as_deref(), Some("online"));
    let vanished = std::time::Instant::now();
    drop(browser); // the TCP connection ends: no close frame, and no $disconnect is delivered
    let bound = std::time::Duration::from_secs(TTL_S + 2);
    let offline = status_of(&mut watcher, "st-olav-er", bound).await;
    assert_eq!(
        offline.as_deref(),
        Some("offline"),
        "not offline within {bound:?} of vanishing"
    );
    let took = vanished.elapsed();
    println!("offline {} ms after the browser vanished", took.as_millis());
    // Not before the session's deadline: nothing told the hub the socket was gone.
    assert!(
        took >= std::time::Duration::from_secs(TTL_S - 1),
        "offline after {took:?}: was a $disconnect delivered?"
    );
    stack.shutdown().await;
}

/// Through the whole local stack (in-memory tables, metered): sockets whose page said it is
/// hidden get no region status events, except their own facility's.
#[tokio::test]
async fn hidden_sockets_of_the_stack_get_only_their_own_facilitys_events() {
    use futures::SinkExt;
    let stack = LocalStack::start(&Env::from_pairs([("LOSS_HOLD_SECONDS", "0")]), options())
        .await
        .unwrap();
    let token = |user: &str, facility: &str| token(DEV_SECRET.as_bytes(), user, facility, "north");
    let url = stack.ws.websocket_url();
    let mut sockets = Vec::new();
    for i in 0..10 {
        let facility = if i < 3 { "f0" } else { "f1" };
        let (ws, _) = tokio_tungstenite::connect_async(format!(
            "{url}?token={}",
            token(&format!("u{i}"), facility)
        ))
        .await
        .unwrap();
        sockets.push(ws);
    }
    // u1, u2 (at f0) and u3..u9 (at f1) hide; u0 stays visible
    for ws in &mut sockets[1..] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"action":"visibility","visible":false}"#,
        ))
        .await
        .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_flipper, _) = tokio_tungstenite::connect_async(format!(
        "{url}?token={}&session_id=flip-1",
        token("bo", "f0")
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    for ws in &mut sockets {
        got.push(
            status_of(ws, "f0", std::time::Duration::from_millis(1500))
                .await
                .is_some(),
        );
    }
    assert_eq!(
        got,
        [
            true, true, true, false, false, false, false, false, false, false
        ],
        "who saw f0 go online"
    );
    stack.shutdown().await;
}
