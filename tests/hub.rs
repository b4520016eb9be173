//! The WebSocket hub end to end: real WebSocket clients through the local API Gateway
//! WebSocket API, the four ws functions' handlers in-process, Redis, and the DynamoDB
//! connections table and SQS queues on the local emulator.

use futures::{SinkExt, StreamExt};
use presence::hub::registry::{Connection, ConnectionRegistry, DynamoConnectionRegistry};
use presence::hub::{Hub, HubSettings, ServerMessage};
use presence::ids::{FacilityId, RegionId, UserId};
use presence_local::rng::Rng;
use presence_local::stack::HubRoutes;
use presence_local::{LocalWebSocketApi, WebSocketApiConfig};
use presence_tests::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "hub-test-secret-0123456789abcdef-0123";
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Stack {
    api: LocalWebSocketApi,
    hub: Hub,
    registry: DynamoConnectionRegistry,
    _redis: RedisServer,
    _pumps: Vec<SqsPump>,
    _sweeper: AbortOnDrop,
}

/// A task stopped when the stack is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn stack(config: WebSocketApiConfig) -> Stack {
    stack_limited(config, 20, 10.0).await
}

/// A stack whose hub allows `burst` frames per connection, refilled at `per_second`.
async fn stack_limited(config: WebSocketApiConfig, burst: u32, per_second: f64) -> Stack {
    let clients = Clients::new().await;
    let resources = HubResources::create(&clients).await;
    let redis = RedisServer::start();
    let routes = Arc::new(HubRoutes::default());
    let config = HubRoutes::api_config(config);
    let api = LocalWebSocketApi::start("127.0.0.1:0".parse().unwrap(), config, routes.clone())
        .await
        .unwrap();
    // The functions' own variables, as the template sets them.
    let env = resources.env(
        &redis,
        SECRET,
        api.management_endpoint(),
        // A short grace, so a closed socket's session goes offline within the tests' waits.
        &[("PARTITIONS", "4"), ("DISCONNECT_GRACE_SECONDS", "1")],
    );
    let settings = HubSettings {
        frame_burst: burst,
        frames_per_second: per_second,
        ..HubSettings::default()
    };
    let hub = hub_from_env(&env, &clients.sdk)
        .await
        .with_settings(settings);
    routes.serve(hub.clone());

    // Lambda's event source mappings: heartbeat queue → consumer, push queue → ws-push.
    let consumer_config = heartbeat_consumer::Config::from_env(&env).unwrap();
    let conn = presence::sessions::RedisConnection::connect(&consumer_config.redis)
        .await
        .unwrap();
    let consumer = heartbeat_consumer::service(
        &consumer_config,
        conn,
        &consumer_config.session_ports(&clients.sdk),
    );
    let consumer_pump = SqsPump::start(clients.sqs.clone(), resources.heartbeats, move |event| {
        let consumer = consumer.clone();
        async move { heartbeat_consumer::handle(&consumer, event, presence::now_ms()).await }
    });
    let push_hub = hub.clone();
    let push_pump = SqsPump::start(clients.sqs, resources.push, move |event| {
        let hub = push_hub.clone();
        async move { ws_push::handle(&hub, event, presence::now_ms()).await }
    });
    // The sweeper, as its schedule would run it (more often).
    let expiry_config = session_expiry::Config::from_env(&env).unwrap();
    let sweeper = session_expiry::service(
        &expiry_config,
        presence::sessions::RedisConnection::connect(&expiry_config.pipeline.redis)
            .await
            .unwrap(),
        &expiry_config.pipeline.session_ports(&clients.sdk),
    );
    let sweeping = tokio::spawn(async move {
        loop {
            sweeper.run(&presence::now_ms, Duration::ZERO).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Stack {
        api,
        hub,
        registry: DynamoConnectionRegistry::new(clients.ddb, resources.connections),
        _redis: redis,
        _pumps: vec![consumer_pump, push_pump],
        _sweeper: AbortOnDrop(sweeping),
    }
}

/// A token for `user` at `facility` in `region`, signed with the hub's secret.
fn token(user: &str, facility: &str, region: &str) -> String {
    presence_tests::token(SECRET.as_bytes(), user, facility, region)
}

async fn connect(s: &Stack, user: &str, facility: &str, region: &str, session: Option<&str>) -> Ws {
    let mut url = format!(
        "{}?token={}",
        s.api.websocket_url(),
        token(user, facility, region)
    );
    if let Some(sid) = session {
        url.push_str(&format!("&session_id={sid}"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next JSON message, or None after `wait`.
async fn next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// The next message of type `ty`, skipping others; fails after 5 s.
async fn expect(ws: &mut Ws, ty: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(ws, left).await {
            Some(v) if v["type"] == ty => return v,
            Some(_) => continue,
            None => panic!("no {ty:?} message within 5 s"),
        }
    }
}

/// Every message that arrives within `wait`.
async fn quiet(ws: &mut Ws, wait: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Some(v) = next(ws, wait).await {
        got.push(v);
    }
    got
}

async fn wait_until<F: Fn() -> Fut, Fut: std::future::Future<Output = bool>>(what: &str, f: F) {
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_bad_token_is_refused_at_connect_and_nothing_is_registered() {
    let s = stack(WebSocketApiConfig::default()).await;
    let url = format!("{}?token=not-a-token", s.api.websocket_url());
    let err = tokio_tungstenite::connect_async(url)
        .await
        .expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
    let forged = presence_tests::token(b"another-secret-another-secret-another", "u", "f", "r");
    assert!(
        tokio_tungstenite::connect_async(format!("{}?token={forged}", s.api.websocket_url()))
            .await
            .is_err()
    );
    assert!(s.api.connection_ids().is_empty());
    assert!(
        s.registry
            .region_connections(&RegionId::parse("r").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.registry
            .user_connections(&UserId::parse("u").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn send_reaches_every_device_and_others_excludes_the_sender() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut a1 = connect(&s, "ann", "icu", "north", None).await;
    let mut a2 = connect(&s, "ann", "icu", "north", None).await;
    let mut b = connect(&s, "bo", "er", "north", None).await;

    send(
        &mut a1,
        json!({"action":"join","group":"chat:ward","ref":"j"}),
    )
    .await;
    let joined = expect(&mut a1, "joined").await;
    assert_eq!(
        (joined["group"].as_str(), joined["ref"].as_str()),
        (Some("chat:ward"), Some("j"))
    );
    assert_eq!(
        expect(&mut a2, "joined").await["group"],
        "chat:ward",
        "the other device joined too"
    );
    send(&mut b, json!({"action":"join","group":"chat:ward"})).await;
    expect(&mut b, "joined").await;
    assert_eq!(expect(&mut a1, "member.joined").await["user"], "bo");

    send(
        &mut a1,
        json!({"action":"send","group":"chat:ward","data":{"t":1}}),
    )
    .await;
    for ws in [&mut a1, &mut a2, &mut b] {
        let m = expect(ws, "message").await;
        assert_eq!(
            (m["from"].as_str(), m["data"].clone()),
            (Some("ann"), json!({"t":1}))
        );
    }
    assert_eq!(expect(&mut a1, "sent").await["delivered"], 3);
    send(
        &mut a1,
        json!({"action":"send","group":"chat:ward","data":{"t":2},"others":true,"ref":9}),
    )
    .await;
    assert_eq!(expect(&mut a2, "message").await["data"], json!({"t":2}));
    assert_eq!(expect(&mut b, "message").await["data"], json!({"t":2}));
    let sent = expect(&mut a1, "sent").await;
    assert_eq!(
        (sent["delivered"].as_u64(), sent["ref"].as_u64()),
        (Some(2), Some(9))
    );
    assert!(
        quiet(&mut a1, Duration::from_millis(300))
            .await
            .iter()
            .all(|m| m["type"] != "message"),
        "the sender got its own message"
    );

    send(&mut b, json!({"action":"members","group":"chat:ward"})).await;
    assert_eq!(
        expect(&mut b, "members").await["users"],
        json!(["ann", "bo"])
    );
}

#[tokio::test]
async fn leave_from_one_device_leaves_on_all_and_tells_the_others_once() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut a1 = connect(&s, "ann", "icu", "north", None).await;
    let mut a2 = connect(&s, "ann", "icu", "north", None).await;
    let mut b = connect(&s, "bo", "er", "north", None).await;
    for ws in [&mut a1, &mut b] {
        send(ws, json!({"action":"join","group":"chat:ward"})).await;
        expect(ws, "joined").await;
    }
    quiet(&mut a2, Duration::from_millis(200)).await;
    quiet(&mut b, Duration::from_millis(200)).await;

    send(
        &mut a2,
        json!({"action":"leave","group":"chat:ward","ref":"l"}),
    )
    .await;
    assert_eq!(expect(&mut a2, "left").await["ref"], "l");
    assert_eq!(expect(&mut a1, "left").await["group"], "chat:ward");
    let left = expect(&mut b, "member.left").await;
    assert_eq!(left["user"], "ann");
    assert!(
        quiet(&mut b, Duration::from_millis(300))
            .await
            .iter()
            .all(|m| m["type"] != "member.left"),
        "exactly one member.left"
    );

    send(
        &mut b,
        json!({"action":"send","group":"chat:ward","data":"after"}),
    )
    .await;
    expect(&mut b, "message").await;
    for ws in [&mut a1, &mut a2] {
        assert!(
            quiet(ws, Duration::from_millis(300))
                .await
                .iter()
                .all(|m| m["type"] != "message"),
            "left devices still got messages"
        );
    }
    // ann is no member any more: sending is refused
    send(
        &mut a1,
        json!({"action":"send","group":"chat:ward","data":"x","ref":3}),
    )
    .await;
    let err = expect(&mut a1, "error").await;
    assert_eq!(
        (
            err["code"].as_str(),
            err["action"].as_str(),
            err["ref"].as_u64()
        ),
        (Some("not_member"), Some("send"), Some(3))
    );
}

#[tokio::test]
async fn a_membership_survives_a_reconnect() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut a = connect(&s, "ann", "icu", "north", None).await;
    send(&mut a, json!({"action":"join","group":"chat:ward"})).await;
    expect(&mut a, "joined").await;
    a.close(None).await.unwrap();
    drop(a);
    wait_until("the connection to be removed", || async {
        s.registry
            .user_connections(&UserId::parse("ann").unwrap())
            .await
            .unwrap()
            .is_empty()
    })
    .await;

    let mut a = connect(&s, "ann", "icu", "north", None).await;
    let mut b = connect(&s, "bo", "er", "north", None).await;
    send(&mut b, json!({"action":"join","group":"chat:ward"})).await;
    expect(&mut b, "joined").await;
    send(
        &mut b,
        json!({"action":"send","group":"chat:ward","data":"hello again"}),
    )
    .await;
    assert_eq!(expect(&mut a, "message").await["data"], "hello again");
}

#[tokio::test]
async fn a_flip_reaches_the_regions_sockets_as_a_status_event() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut watcher = connect(&s, "ann", "icu", "north", None).await;
    let mut elsewhere = connect(&s, "cy", "depot", "south", None).await;

    // presence from the socket: a session bound at connect puts er online
    let _bo = connect(&s, "bo", "er", "north", Some("tab-b")).await;
    let e = expect(&mut watcher, "facility.status").await;
    assert_eq!(
        (
            e["facility_id"].as_str(),
            e["status"].as_str(),
            e["version"].as_u64()
        ),
        (Some("er"), Some("online"), Some(1))
    );

    // a heartbeat frame is one-way: applied to Redis directly, nothing comes back
    let mut dee = connect(&s, "dee", "lab", "north", None).await;
    send(
        &mut dee,
        json!({"action":"heartbeat","session_id":"tab-d","ref":"h"}),
    )
    .await;
    let e = expect(&mut watcher, "facility.status").await;
    assert_eq!(
        (e["facility_id"].as_str(), e["status"].as_str()),
        (Some("lab"), Some("online"))
    );
    assert!(
        quiet(&mut elsewhere, Duration::from_millis(300))
            .await
            .iter()
            .all(|m| m["type"] != "facility.status"),
        "another region saw it"
    );
    let back = quiet(&mut dee, Duration::from_millis(300)).await;
    assert!(
        back.iter().all(|m| m["type"] == "facility.status"),
        "a heartbeat frame got an answer: {back:?}"
    );

    send(&mut watcher, json!({"action":"snapshot","ref":1})).await;
    let snap = expect(&mut watcher, "snapshot").await;
    assert_eq!(
        snap["interval_s"], 60,
        "the snapshot tells the heartbeat interval"
    );
    let ids: Vec<_> = snap["facilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["facility_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["er", "lab"]);
    send(&mut watcher, json!({"action":"snapshot","region":"south"})).await;
    assert_eq!(expect(&mut watcher, "error").await["code"], "forbidden");
}

#[tokio::test]
async fn vanished_and_stale_connections_are_cleaned_up() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut watcher = connect(&s, "ann", "icu", "north", None).await;
    // a client that vanishes without a close frame, holding a session
    let ghost = connect(&s, "bo", "er", "north", Some("tab-g")).await;
    expect(&mut watcher, "facility.status").await;
    drop(ghost);
    wait_until("the vanished connection to be removed", || async {
        s.registry
            .user_connections(&UserId::parse("bo").unwrap())
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let e = expect(&mut watcher, "facility.status").await;
    assert_eq!(
        (e["facility_id"].as_str(), e["status"].as_str()),
        (Some("er"), Some("offline")),
        "its session ended a grace after the socket"
    );

    // a connection API Gateway no longer knows (a missed $disconnect): the first push deletes it
    let stale = Connection {
        id: "StaleConnId0=".into(),
        user: UserId::parse("zed").unwrap(),
        facility: FacilityId::parse("icu").unwrap(),
        region: RegionId::parse("north").unwrap(),
        session_id: None,
        connected_ms: presence::now_ms() - 60_000,
        hidden: false,
        grant: Default::default(),
    };
    s.registry.register(&stale).await.unwrap();
    // one still connecting: API Gateway answers 410 until its $connect finishes
    let connecting = Connection {
        id: "YoungConnId0=".into(),
        connected_ms: presence::now_ms(),
        hidden: false,
        grant: Default::default(),
        ..stale.clone()
    };
    s.registry.register(&connecting).await.unwrap();
    let push = presence::protocol::PushMessage::Deliver(presence::protocol::Delivery {
        to: presence::protocol::Target::Group(presence::hub::Group::parse("region:north").unwrap()),
        data: json!({"type":"notice"}),
        except: None,
    });
    let report = s.hub.push(&push, presence::now_ms()).await.unwrap();
    assert_eq!(report.gone, ["StaleConnId0="]);
    assert_eq!(report.delivered, 1);
    assert!(s.registry.get("StaleConnId0=").await.unwrap().is_none());
    assert!(
        s.registry.get("YoungConnId0=").await.unwrap().is_some(),
        "a connection still connecting is kept"
    );
    assert_eq!(
        expect(&mut watcher, "notice").await,
        json!({"type":"notice"})
    );
}

#[tokio::test]
async fn bad_frames_get_an_error_and_the_connection_stays_usable() {
    // Let frames larger than the hub's own limit reach it, to exercise its check.
    let s = stack(WebSocketApiConfig {
        max_frame_bytes: 256 * 1024,
        ..WebSocketApiConfig::default()
    })
    .await;
    let mut a = connect(&s, "ann", "icu", "north", None).await;
    let cases = [
        ("not json".to_owned(), "bad_request"),
        (json!({"action":"dance"}).to_string(), "unknown_action"),
        (json!({"action":"join"}).to_string(), "bad_request"),
        (
            json!({"action":"join","group":"region:north"}).to_string(),
            "forbidden",
        ),
        (
            json!({"action":"leave","group":"user:ann"}).to_string(),
            "forbidden",
        ),
        (
            json!({"action":"send","group":"chat:none","data":1}).to_string(),
            "not_member",
        ),
        (
            json!({"action":"ping","pad":"x".repeat(40_000)}).to_string(),
            "too_large",
        ),
    ];
    for (frame, code) in cases {
        a.send(Message::text(frame.clone())).await.unwrap();
        let err = expect(&mut a, "error").await;
        assert_eq!(err["code"], code, "{}", &frame[..frame.len().min(60)]);
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    send(&mut a, json!({"action":"ping","ref":"still-here"})).await;
    assert_eq!(expect(&mut a, "pong").await["ref"], "still-here");
}

/// 1 000 generated bad frames through the real WebSocket API: each gets exactly one `error`
/// reply, the connection stays usable, and no membership is created.
#[tokio::test]
async fn generated_bad_frames_each_get_an_error_and_change_nothing() {
    let s = stack_limited(WebSocketApiConfig::default(), 10_000, 10_000.0).await;
    let mut a = connect(&s, "ann", "icu", "north", None).await;
    let mut rng = Rng::new(0x5EED_1234_ABCD_0001);
    let groups = [
        "region:north",
        "facility:icu",
        "user:ann",
        "chat:",
        "chat:a b",
        "admin:x",
        "nogroup",
        "chat:ok/../x",
        "",
    ];
    let mut frames = Vec::new();
    for i in 0..1000 {
        let g = groups[rng.below(groups.len() as u64) as usize];
        let frame = match rng.below(12) {
            0 => format!("{{\"action\":\"act{i}\"}}"),
            1 => json!({"action":"join","group":g}).to_string(),
            2 => json!({"action":"leave","group":g}).to_string(),
            3 => json!({"action":"send","group":"chat:secret","data":i}).to_string(),
            4 => json!({"action":"members","group":"chat:secret"}).to_string(),
            5 => json!({"action":"heartbeat","session_id":"a/b"}).to_string(),
            6 => json!({"action":"join"}).to_string(),
            7 => json!({"action":["ping"]}).to_string(),
            8 => json!({"action":"snapshot","region":"south"}).to_string(),
            9 => format!("{{\"action\":\"ping\",\"ref\":{{\"n\":{i}}}}}"),
            10 => "x".repeat(rng.below(100) as usize + 1),
            _ => json!([i, "ping"]).to_string(),
        };
        frames.push(frame);
    }
    for (i, frame) in frames.iter().enumerate() {
        a.send(Message::text(frame.clone())).await.unwrap();
        let reply = next_reply(&mut a).await;
        assert_eq!(reply["type"], "error", "frame {i} {frame:?} got {reply}");
    }
    send(&mut a, json!({"action":"ping"})).await;
    expect(&mut a, "pong").await;
    assert!(s.registry.members("chat:secret").await.unwrap().is_empty());
    for g in groups {
        if let Ok(presence::hub::Group::Free(name)) = presence::hub::Group::parse(g) {
            assert!(
                s.registry.members(&name).await.unwrap().is_empty(),
                "{name}"
            );
        }
    }
}

async fn next_reply(ws: &mut Ws) -> Value {
    next(ws, Duration::from_secs(5))
        .await
        .expect("a reply within 5 s")
}

#[tokio::test]
async fn a_flooding_connection_is_rate_limited_and_recovers() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut a = connect(&s, "ann", "icu", "north", None).await;
    for i in 0..40 {
        send(&mut a, json!({"action":"ping","ref":i})).await;
    }
    let replies = quiet(&mut a, Duration::from_millis(800)).await;
    let pongs = replies.iter().filter(|m| m["type"] == "pong").count();
    let limited = replies
        .iter()
        .filter(|m| m["type"] == "error" && m["code"] == "rate_limited")
        .count();
    assert_eq!(pongs + limited, 40, "{replies:?}");
    assert!(
        limited >= 10 && pongs >= 20,
        "pongs {pongs}, limited {limited}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&mut a, json!({"action":"ping","ref":"later"})).await;
    assert_eq!(expect(&mut a, "pong").await["ref"], "later");
}

/// Clients that leave at any point of the handshake or right after it leave no connection
/// registered and no session online.
#[tokio::test]
async fn clients_leaving_at_any_moment_leave_nothing_behind() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut tasks = Vec::new();
    for i in 0..120u64 {
        let url = format!(
            "{}?token={}&session_id=tab-{i}",
            s.api.websocket_url(),
            token(&format!("u{i}"), &format!("f{}", i % 7), "north")
        );
        tasks.push((
            i,
            tokio::spawn(async move {
                if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await {
                    if i % 2 == 0 {
                        let _ = ws
                            .send(Message::text(
                                json!({"action":"heartbeat","session_id":format!("tab-{i}")})
                                    .to_string(),
                            ))
                            .await;
                    }
                    tokio::time::sleep(Duration::from_millis(i % 11)).await;
                }
            }),
        ));
    }
    for (i, task) in tasks {
        if i % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(i % 4)).await;
            task.abort();
        } else {
            let _ = task.await;
        }
    }
    let north = RegionId::parse("north").unwrap();
    for _ in 0..100 {
        if s.registry
            .region_connections(&north)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = s.registry.region_connections(&north).await.unwrap();
    assert!(
        left.is_empty(),
        "{} connections left registered: {left:?}",
        left.len()
    );
}

/// A browser's leader tab closes and another tab of it takes the session over on its own
/// socket: the facility never shows offline. When the last socket closes, the session goes
/// offline a grace (1 s here) later; a `heartbeat` frame without a session is an error posted
/// back (its route is one-way).
#[tokio::test]
async fn a_new_leader_tab_takes_the_session_over_without_a_flap() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut watcher = connect(&s, "ann", "icu", "north", None).await;
    let leader = connect(&s, "bo", "er", "north", Some("browser-1")).await;
    let e = expect(&mut watcher, "facility.status").await;
    assert_eq!(
        (e["facility_id"].as_str(), e["status"].as_str()),
        (Some("er"), Some("online"))
    );

    let mut other_tab = connect(&s, "bo", "er", "north", None).await;
    send(&mut other_tab, json!({"action":"heartbeat"})).await;
    let e = expect(&mut other_tab, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["action"].as_str()),
        (Some("bad_request"), Some("heartbeat"))
    );

    // the old leader goes; the other tab takes over at once, as the client does
    drop(leader);
    send(
        &mut other_tab,
        json!({"action":"heartbeat","session_id":"browser-1"}),
    )
    .await;
    let seen = quiet(&mut watcher, Duration::from_millis(3000)).await;
    assert!(
        seen.iter().all(|m| m["type"] != "facility.status"),
        "the facility flapped during the leader change: {seen:?}"
    );
    let bound = s
        .registry
        .user_connections(&UserId::parse("bo").unwrap())
        .await
        .unwrap();
    assert_eq!(bound.len(), 1, "the old leader's connection is gone");
    assert_eq!(
        s.registry
            .get(&bound[0])
            .await
            .unwrap()
            .unwrap()
            .session_id
            .map(|s| s.to_string()),
        Some("browser-1".to_owned()),
        "the new leader's socket carries the session"
    );

    // the last tab closes: offline about a grace later, at the close plus the grace
    let closed_ms = presence::now_ms();
    drop(other_tab);
    let e = expect(&mut watcher, "facility.status").await;
    assert_eq!(
        (e["facility_id"].as_str(), e["status"].as_str()),
        (Some("er"), Some("offline"))
    );
    let since = e["since_ms"].as_i64().unwrap();
    assert!(
        (closed_ms..closed_ms + 2_000).contains(&since),
        "offline since {since}, closed at {closed_ms}"
    );
}

/// Whether `user`'s (only) connection is registered as hidden.
async fn hidden_flag(s: &Stack, user: &str) -> Option<bool> {
    let ids = s
        .registry
        .user_connections(&UserId::parse(user).unwrap())
        .await
        .unwrap();
    let c = s.registry.get(ids.first()?).await.unwrap()?;
    Some(c.hidden)
}

/// A hidden page's socket gets no region status events but its own facility's; shown again,
/// it gets them again.
#[tokio::test]
async fn a_hidden_socket_gets_only_its_own_facilitys_events() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut hidden = connect(&s, "ann", "icu", "north", None).await;
    let mut visible = connect(&s, "cy", "lab", "north", None).await;
    send(&mut hidden, json!({"action":"visibility","visible":false})).await;
    let answered = quiet(&mut hidden, Duration::from_millis(300)).await;
    assert!(answered.is_empty(), "a visibility frame got {answered:?}");
    wait_until("the connection to be marked hidden", || async {
        hidden_flag(&s, "ann").await == Some(true)
    })
    .await;

    let _er = connect(&s, "bo", "er", "north", Some("tab-er")).await;
    let e = expect(&mut visible, "facility.status").await;
    assert_eq!(e["facility_id"], "er");
    let got = quiet(&mut hidden, Duration::from_millis(500)).await;
    assert!(got.is_empty(), "a hidden socket got {got:?}");

    // its own facility's events still flow
    let _icu = connect(&s, "dee", "icu", "north", Some("tab-icu")).await;
    let e = expect(&mut hidden, "facility.status").await;
    assert_eq!(e["facility_id"], "icu");

    // shown again: region events flow again
    send(&mut hidden, json!({"action":"visibility","visible":true})).await;
    wait_until("the connection to be marked visible", || async {
        hidden_flag(&s, "ann").await == Some(false)
    })
    .await;
    let _depot = connect(&s, "eve", "depot", "north", Some("tab-depot")).await;
    let e = expect(&mut hidden, "facility.status").await;
    assert_eq!(e["facility_id"], "depot");
    // nothing was answered to the visibility frames themselves
    send(&mut hidden, json!({"action":"ping","ref":"p"})).await;
    assert_eq!(expect(&mut hidden, "pong").await["ref"], "p");
}

/// Forty facilities of a region flip within a moment: the watcher gets a few frames, not
/// forty, and ends at every facility's final state (versions order everything).
#[tokio::test]
async fn a_burst_of_flips_in_a_region_is_coalesced_into_few_frames() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut watcher = connect(&s, "ann", "icu", "north", None).await;
    let mut sockets = Vec::new();
    for i in 0..40 {
        sockets.push(
            connect(
                &s,
                &format!("u{i}"),
                &format!("f{i:02}"),
                "north",
                Some(&format!("t{i}")),
            )
            .await,
        );
    }
    let mut frames = 0;
    let mut online = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while online.len() < 40 && tokio::time::Instant::now() < deadline {
        let Some(m) = next(&mut watcher, Duration::from_secs(3)).await else {
            break;
        };
        let statuses = match m["type"].as_str() {
            Some("facility.status") => vec![m.clone()],
            Some("facility.statuses") => m["statuses"].as_array().unwrap().clone(),
            _ => continue,
        };
        frames += 1;
        for st in statuses {
            online.insert(
                st["facility_id"].as_str().unwrap().to_owned(),
                st["status"].clone(),
            );
        }
    }
    assert_eq!(online.len(), 40, "every facility reached the watcher");
    assert!(online.values().all(|v| v == "online"));
    assert!(frames <= 15, "{frames} frames for 40 flips");
}

/// Every flip spaced beyond the coalescing window reaches a watching socket exactly once; of
/// flips within one window only the newest version of a facility goes out. Hidden sockets of
/// other facilities get none.
#[tokio::test]
async fn each_flip_reaches_a_watcher_exactly_once() {
    let s = stack(WebSocketApiConfig::default()).await;
    let mut watcher = connect(&s, "ann", "icu", "north", None).await;
    let mut hidden = Vec::new();
    for i in 0..6 {
        let mut ws = connect(&s, &format!("h{i}"), "lab", "north", None).await;
        send(&mut ws, json!({"action":"visibility","visible":false})).await;
        hidden.push(ws);
    }
    let mut flipper = connect(&s, "bo", "er", "north", None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, spacing) in [1_000u64, 1_000, 1_000, 1_000, 200, 200, 200, 200]
        .into_iter()
        .enumerate()
    {
        let session = format!("fl-{}", i / 2);
        let frame = if i % 2 == 0 {
            json!({"action":"heartbeat","session_id":session})
        } else {
            json!({"action":"heartbeat","session_id":session,"state":"ended"})
        };
        send(&mut flipper, frame).await;
        tokio::time::sleep(Duration::from_millis(spacing)).await;
    }
    let got = quiet(&mut watcher, Duration::from_millis(2_000)).await;
    let versions: Vec<u64> = got
        .iter()
        .flat_map(presence::protocol::statuses_in)
        .filter(|st| st["facility_id"] == "er")
        .map(|st| st["version"].as_u64().unwrap())
        .collect();
    // spaced flips each arrive; within a window only the newest version of a facility goes
    assert_eq!(versions[..5], [1, 2, 3, 4, 5], "frames: {got:?}");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    assert_eq!(versions.last(), Some(&8));
    for ws in &mut hidden {
        let got = quiet(ws, Duration::from_millis(100)).await;
        assert!(got.is_empty(), "a hidden socket got {got:?}");
    }
}

#[tokio::test]
async fn a_token_renewed_on_one_function_instance_is_honoured_by_another() {
    let s = stack(WebSocketApiConfig::default()).await;
    // A token that expires in a second.
    let signer = presence::auth::DevTokenSigner::new(SECRET.as_bytes());
    let short = signer.sign(
        &identity("ann", "icu", "north"),
        presence::now_ms() / 1000 + 1,
    );
    let url = format!("{}?token={short}", s.api.websocket_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let id = s
        .registry
        .user_connections(&UserId::parse("ann").unwrap())
        .await
        .unwrap()
        .pop()
        .unwrap();
    // Another warm instance of ws-message: its own connection cache, the same registry.
    let other = s.hub.clone().with_settings(*s.hub.settings());
    let ping = r#"{"action":"ping"}"#;
    let reply = other.message(&id, ping, presence::now_ms()).await.unwrap();
    assert!(
        matches!(reply, Some(ServerMessage::Pong { .. })),
        "{reply:?}"
    );

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let fresh = signer.sign(
        &identity("ann", "icu", "north"),
        presence::now_ms() / 1000 + 600,
    );
    send(&mut ws, json!({"action": "auth", "token": fresh, "ref": 1})).await;
    assert_eq!(expect(&mut ws, "authed").await["ref"], 1);
    // The other instance remembers the old expiry, reads the renewed one and serves.
    let reply = other.message(&id, ping, presence::now_ms()).await.unwrap();
    assert!(
        matches!(reply, Some(ServerMessage::Pong { .. })),
        "{reply:?}"
    );
}
