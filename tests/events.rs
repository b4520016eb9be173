//! Every file under `events/` goes through its function's handler, so local invocation with
//! the sample events (`cargo lambda invoke --data-file`) keeps working. A new file without a
//! case here fails the test.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use presence::auth::Authenticator;
use presence::config::Env;
use presence::consume::Consumer;
use presence::expiry::Sweeper;
use presence::facilities::DynamoFacilityStore;
use presence::ingest::Ingest;
use presence::queue::SqsQueue;
use presence::rollup::{Rollup, RollupSettings};
use presence_tests::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The receive time of the sample SQS batch.
const BATCH_T: i64 = 1_795_431_600_000;

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn files(function: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(events_dir().join(function))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn every_event_folder_is_a_function_and_covered() {
    let mut folders: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let functions_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    for f in &folders {
        assert!(
            functions_dir.join(f).join("src/main.rs").exists(),
            "events/{f} names no function"
        );
    }
    for f in std::fs::read_dir(functions_dir).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            folders.contains(&name),
            "function {name} has no sample events"
        );
    }
}

#[tokio::test]
async fn heartbeat_ingest_events() {
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = create_queue(&sqs, &unique("heartbeats")).await;
    let auth = Authenticator::from_env(&Env::from_pairs([("JWT_SECRET", DEV_SECRET)])).unwrap();
    let ingest = Ingest::new(auth, Arc::new(SqsQueue::new(sqs.clone(), &url)), 30);
    for path in files("heartbeat-ingest") {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = match name.as_str() {
            "valid" | "ended" | "authorizer" => 202,
            "bad-body" => 400,
            "bad-token" => 401,
            other => panic!("no expectation for events/heartbeat-ingest/{other}.json"),
        };
        let req = lambda_http::request::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let resp = heartbeat_ingest::handle(&ingest, req, presence::now_ms()).await;
        assert_eq!(resp.status(), expected, "{name}: {:?}", resp.body());
        let queued = drain_queue(&sqs, &url).await;
        assert_eq!(queued.len(), usize::from(expected == 202), "{name}");
        if name == "authorizer" {
            let m = presence::protocol::QueueMessage::parse(&queued[0]).unwrap();
            assert_eq!(
                (m.user_id.as_str(), m.facility_id.as_str()),
                ("porter-bo", "st-olav-er"),
                "claims from the authorizer"
            );
        }
    }
}

#[tokio::test]
async fn heartbeat_consumer_events() {
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let push = create_queue(&sqs, &unique("push")).await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 16).await;
    let consumer = Consumer::new(store.clone(), Arc::new(SqsQueue::new(sqs.clone(), &push)));
    let [path] = &files("heartbeat-consumer")[..] else {
        panic!("expected one consumer event")
    };
    let event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let response = heartbeat_consumer::handle(&consumer, event, BATCH_T + 5_000).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["5f3c1a2e-0000-4000-8000-000000000005"],
        "only the malformed record fails"
    );
    // icu: online then ended in the batch; er: online (its out-of-order older beat ignored)
    let icu = store
        .facility(&presence::ids::FacilityId::parse("st-olav-icu").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (icu.status, icu.version),
        (presence::protocol::Status::Offline, 2)
    );
    let er = store
        .facility(&presence::ids::FacilityId::parse("st-olav-er").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (er.status, er.version, er.since_ms),
        (presence::protocol::Status::Online, 1, BATCH_T + 1_000)
    );
    assert_eq!(drain_queue(&sqs, &push).await.len(), 3);
}

#[tokio::test]
async fn schedule_events() {
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let push = create_queue(&sqs, &unique("push")).await;
    let table = unique("facilities");
    create_table(&ddb, "FacilitiesTable", &table).await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let publisher = Arc::new(SqsQueue::new(sqs.clone(), &push));

    let [path] = &files("session-expiry")[..] else {
        panic!("expected one expiry event")
    };
    let event: EventBridgeEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sweeper = Sweeper::new(store.clone(), publisher.clone());
    let report = session_expiry::handle(&sweeper, event, Duration::ZERO, &presence::now_ms).await;
    assert_eq!((report.sweeps, report.errors), (1, 0));

    let [path] = &files("facility-rollup")[..] else {
        panic!("expected one rollup event")
    };
    let event: EventBridgeEvent =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let facilities = Arc::new(DynamoFacilityStore::new(
        ddb,
        &table,
        Duration::from_secs(86_400),
    ));
    let rollup = Rollup::new(store, facilities, publisher, RollupSettings::default());
    facility_rollup::handle(&rollup, event, presence::now_ms())
        .await
        .unwrap();
}

/// A WebSocket API nobody connects to: its management API answers 410 for every id, as API
/// Gateway does for the sample events' made-up connection.
struct NoRoutes;

#[async_trait::async_trait]
impl presence_local::WebSocketRoutes for NoRoutes {
    async fn invoke(
        &self,
        _route: presence_local::Route,
        _event: aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest,
    ) -> aws_lambda_events::event::apigw::ApiGatewayProxyResponse {
        presence::hub::route_response(200, None)
    }
}

fn ws_event(path: &Path) -> aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn websocket_events() {
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("connections");
    create_table(&ddb, "ConnectionsTable", &table).await;
    let facilities = unique("facilities");
    create_table(&ddb, "FacilitiesTable", &facilities).await;
    let redis = RedisServer::start();
    let api = presence_local::LocalWebSocketApi::start(
        "127.0.0.1:0".parse().unwrap(),
        presence_local::WebSocketApiConfig::default(),
        Arc::new(NoRoutes),
    )
    .await
    .unwrap();
    let env = Env::from_pairs([
        ("REDIS_URL", redis.url()),
        ("JWT_SECRET", DEV_SECRET.to_owned()),
        ("CONNECTIONS_TABLE", table.clone()),
        ("FACILITIES_TABLE", facilities),
        ("WEBSOCKET_ENDPOINT", api.management_endpoint()),
        (
            "HEARTBEAT_QUEUE_URL",
            create_queue(&sqs, &unique("heartbeats")).await,
        ),
        ("PUSH_QUEUE_URL", create_queue(&sqs, &unique("push")).await),
        ("AWS_ENDPOINT_URL", aws_endpoint()),
    ]);
    let hub = hub_from_env(&env, &sdk).await;
    let registry = presence::hub::DynamoConnectionRegistry::new(ddb.clone(), table.clone());
    let now = presence::now_ms();

    for path in files("ws-connect") {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = match name.as_str() {
            "connect" => 200,
            "bad-token" => 401,
            other => panic!("no expectation for events/ws-connect/{other}.json"),
        };
        let r = ws_connect::handle(&hub, ws_event(&path), now).await;
        assert_eq!(r.status_code, expected, "{name}");
    }
    use presence::hub::ConnectionRegistry;
    let conn = registry
        .get("L0SM9cOFvHcCIhw=")
        .await
        .unwrap()
        .expect("the sample connection is registered");
    assert_eq!(
        (
            conn.user.as_str(),
            conn.session_id.as_ref().map(|s| s.as_str())
        ),
        ("nurse-ann", Some("tab-7f3a"))
    );

    for path in files("ws-message") {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = match name.as_str() {
            "ping" => "pong",
            "join" => "joined",
            "send" => "sent",
            "bad-frame" => "error",
            other => panic!("no expectation for events/ws-message/{other}.json"),
        };
        let r = ws_message::handle(&hub, ws_event(&path), now + 60_000).await;
        assert_eq!(r.status_code, 200, "{name}");
        // The reply is the route response's body, sent back on the same connection.
        let Some(aws_lambda_events::encodings::Body::Text(body)) = &r.body else {
            panic!("{name}: no reply body: {r:?}")
        };
        let reply: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(reply["type"], expected, "{name}: {body}");
    }

    for path in files("ws-disconnect") {
        let r = ws_disconnect::handle(&hub, ws_event(&path), now).await;
        assert_eq!(r.status_code, 200, "disconnect is idempotent");
    }

    let [path] = &files("ws-push")[..] else {
        panic!("expected one ws-push event")
    };
    let event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let response = ws_push::handle(&hub, event, now).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["7a1c9e10-0000-4000-8000-000000000003"],
        "only the malformed push fails"
    );
}
