//! Every file under `events/` goes through its function's handler, so local invocation with
//! the sample events (`cargo lambda invoke --data-file`) keeps working. A new file without a
//! case here fails the test.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use presence::auth::Authenticator;
use presence::config::Env;
use presence::consume::Consumer;
use presence::expiry::Sweeper;
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

/// The event in the file at `path`.
fn event<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The one sample event of `function`.
fn only_event<T: serde::de::DeserializeOwned>(function: &str) -> T {
    let [path] = &files(function)[..] else {
        panic!("expected one event in events/{function}")
    };
    event(path)
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
    let Clients { sqs, .. } = Clients::new().await;
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
    let Clients { sqs, .. } = Clients::new().await;
    let push = create_queue(&sqs, &unique("push")).await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 16).await;
    let consumer = Consumer::new(store.clone(), Arc::new(SqsQueue::new(sqs.clone(), &push)));
    let event: SqsEvent = only_event("heartbeat-consumer");
    let response = heartbeat_consumer::handle(&consumer, event, BATCH_T + 5_000).await;
    assert_eq!(
        failed_ids(&response),
        ["5f3c1a2e-0000-4000-8000-000000000005"],
        "only the malformed record fails"
    );
    // icu: online then ended in the batch; er: online (its out-of-order older beat ignored)
    let icu = facility_status(&store, "st-olav-icu").await.unwrap();
    assert_eq!(
        (icu.status, icu.version),
        (presence::protocol::Status::Offline, 2)
    );
    let er = facility_status(&store, "st-olav-er").await.unwrap();
    assert_eq!(
        (er.status, er.version, er.since_ms),
        (presence::protocol::Status::Online, 1, BATCH_T + 1_000)
    );
    assert_eq!(drain_queue(&sqs, &push).await.len(), 3);
}

#[tokio::test]
async fn schedule_events() {
    let Clients { sqs, ddb, .. } = Clients::new().await;
    let push = create_queue(&sqs, &unique("push")).await;
    let table = unique("facilities");
    create_table(&ddb, "FacilitiesTable", &table).await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let publisher = Arc::new(SqsQueue::new(sqs.clone(), &push));

    let event: EventBridgeEvent = only_event("session-expiry");
    let sweeper = Sweeper::new(store.clone(), publisher.clone());
    let report = session_expiry::handle(&sweeper, event, Duration::ZERO, &presence::now_ms).await;
    assert_eq!((report.sweeps, report.errors), (1, 0));

    let event: EventBridgeEvent = only_event("facility-rollup");
    let facilities = dynamo_facilities(&ddb, &table);
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

/// A local WebSocket API whose management endpoint the functions post to; no routes.
async fn management_only_api() -> presence_local::LocalWebSocketApi {
    presence_local::LocalWebSocketApi::start(
        "127.0.0.1:0".parse().unwrap(),
        presence_local::WebSocketApiConfig::default(),
        Arc::new(NoRoutes),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn websocket_events() {
    let clients = Clients::new().await;
    let resources = HubResources::create(&clients).await;
    let redis = RedisServer::start();
    let api = management_only_api().await;
    let env = resources.env(&redis, DEV_SECRET, api.management_endpoint(), &[]);
    let hub = hub_from_env(&env, &clients.sdk).await;
    let registry =
        presence::hub::DynamoConnectionRegistry::new(clients.ddb.clone(), resources.connections);
    let now = presence::now_ms();

    for path in files("ws-connect") {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = match name.as_str() {
            "connect" => 200,
            "bad-token" => 401,
            other => panic!("no expectation for events/ws-connect/{other}.json"),
        };
        let r = ws_connect::handle(&hub, event(&path), now).await;
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
            // One-way routes: applied, and nothing goes back.
            "heartbeat" | "visibility" => "",
            other => panic!("no expectation for events/ws-message/{other}.json"),
        };
        let r = ws_message::handle(&hub, event(&path), now + 60_000).await;
        assert_eq!(r.status_code, 200, "{name}");
        if expected.is_empty() {
            assert!(r.body.is_none(), "{name}: a one-way frame got {r:?}");
            continue;
        }
        // The reply is the route response's body, sent back on the same connection.
        let Some(aws_lambda_events::encodings::Body::Text(body)) = &r.body else {
            panic!("{name}: no reply body: {r:?}")
        };
        let reply: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(reply["type"], expected, "{name}: {body}");
    }

    let conn = registry.get("L0SM9cOFvHcCIhw=").await.unwrap().unwrap();
    assert!(
        conn.hidden,
        "the visibility event hid the sample connection"
    );

    for path in files("ws-disconnect") {
        let r = ws_disconnect::handle(&hub, event(&path), now).await;
        assert_eq!(r.status_code, 200, "disconnect is idempotent");
    }

    let event: SqsEvent = only_event("ws-push");
    let response = ws_push::handle(&hub, event, now).await;
    assert_eq!(
        failed_ids(&response),
        ["7a1c9e10-0000-4000-8000-000000000003"],
        "only the malformed push fails"
    );
}

#[tokio::test]
async fn history_read_events() {
    use presence::facilities::{FacilityStore, MemoryFacilityStore};
    use presence::ids::{FacilityId, RegionId, SessionId, UserId};
    use presence::protocol::{FacilityStatus, Status};
    use presence::sessions::{FacilityState, JournalEntry, Partition, Segment};
    // The sample events' hour: 1795428000000..1795431600000, region trondelag.
    let t = 1_795_428_000_000;
    let store = Arc::new(MemoryFacilityStore::new());
    let flip = |id: &str, status, since_ms, version| FacilityStatus {
        facility_id: FacilityId::parse(id).unwrap(),
        region: RegionId::parse("trondelag").unwrap(),
        status,
        since_ms,
        version,
        online_sessions: u64::from(status == Status::Online),
    };
    let mut entries: Vec<JournalEntry> = (0..3)
        .map(|i| {
            let s = if i % 2 == 0 {
                Status::Online
            } else {
                Status::Offline
            };
            JournalEntry::Flip(flip("st-olav-icu", s, t + 600_000 * i, i as u64 + 1))
        })
        .collect();
    entries.push(JournalEntry::Segment(Segment {
        session_id: SessionId::parse("tab-7f3a").unwrap(),
        user_id: UserId::parse("nurse-ann").unwrap(),
        facility_id: FacilityId::parse("st-olav-icu").unwrap(),
        region: RegionId::parse("trondelag").unwrap(),
        start_ms: t,
        end_ms: t + 3_000_000,
        reason: "ended".into(),
    }));
    // haukeland-ed, of another region (vestland): only the backend reads it.
    let haukeland = FacilityStatus {
        region: RegionId::parse("vestland").unwrap(),
        ..flip("haukeland-ed", Status::Online, t + 300_000, 1)
    };
    entries.push(JournalEntry::Flip(haukeland.clone()));
    store.append_history(&entries, t).await.unwrap();
    for (i, f) in [
        flip("st-olav-icu", Status::Online, t + 1_200_000, 3),
        flip("st-olav-er", Status::Offline, t - 60_000, 4),
        haukeland,
    ]
    .into_iter()
    .enumerate()
    {
        let state = FacilityState { status: f, rev: 1 };
        store
            .put_status(Partition(i as u16), &state, t)
            .await
            .unwrap();
    }
    let auth = Authenticator::from_env(&Env::from_pairs([("JWT_SECRET", DEV_SECRET)])).unwrap();
    let reader = presence::history::HistoryReader::new(auth, store);
    for path in files("history-read") {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = match name.as_str() {
            "region" | "history" | "sessions" | "availability" | "authorizer" => 200,
            // The backend (IAM identity in the context) reads another region.
            "admin-region" | "admin-history" => 200,
            "bad-range" => 400,
            // An admin path without an IAM identity: a user's token does not open it.
            "no-token" | "admin-no-iam" => 401,
            "other-region" => 403,
            "unknown-facility" => 404,
            other => panic!("no expectation for events/history-read/{other}.json"),
        };
        let req = lambda_http::request::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let resp = history_read::handle(&reader, req).await;
        let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        assert_eq!(resp.status(), expected, "{name}: {body}");
        match name.as_str() {
            "region" => assert_eq!(body["facilities"].as_array().unwrap().len(), 2, "{body}"),
            // limit=2 of the hour's three flips: a cursor to the third.
            "history" => {
                assert_eq!(body["flips"].as_array().unwrap().len(), 2, "{body}");
                assert!(body["cursor"].is_string(), "{body}");
            }
            "sessions" => assert_eq!(body["sessions"][0]["session_id"], "tab-7f3a", "{body}"),
            // Online 0-10 min and from 20 min on: 50 of 60 minutes.
            "availability" => {
                assert_eq!(body["flips"], 3, "{body}");
                let share = body["online_share"].as_f64().unwrap();
                assert!((share - 50.0 / 60.0).abs() < 1e-9, "{body}");
            }
            // Claims from the authorizer (porter-bo at st-olav-er): offline all hour.
            "authorizer" => assert_eq!(body["online_share"], 0.0, "{body}"),
            "admin-region" => {
                assert_eq!(body["region"], "vestland", "{body}");
                assert_eq!(
                    body["facilities"][0]["facility_id"], "haukeland-ed",
                    "{body}"
                );
            }
            "admin-history" => {
                assert_eq!(body["facility_id"], "haukeland-ed", "{body}");
                assert_eq!(body["flips"][0]["since_ms"], t + 300_000, "{body}");
            }
            "admin-no-iam" | "no-token" => {
                assert_eq!(body["error"]["code"], "unauthorized", "{name}: {body}")
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn admin_api_events() {
    use presence::hub::ConnectionRegistry;
    let clients = Clients::new().await;
    let resources = HubResources::create(&clients).await;
    let redis = RedisServer::start();
    let api = management_only_api().await;
    // As the template sets it: the function never sees a user's token.
    let env = resources.env(
        &redis,
        DEV_SECRET,
        api.management_endpoint(),
        &[("JWT_AUTHORIZER", "true")],
    );
    let admin = admin_api::service(hub_from_env(&env, &clients.sdk).await);
    let registry =
        presence::hub::DynamoConnectionRegistry::new(clients.ddb.clone(), resources.connections);
    let now = presence::now_ms();
    let porter = presence::ids::UserId::parse("porter-bo").unwrap();
    registry
        .join(&porter, "chat:night-shift", now)
        .await
        .unwrap();

    for path in files("admin-api") {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = match name.as_str() {
            "publish" | "publish-user" => 202,
            "disconnect" | "remove" | "ban" | "unban" | "presence" => 200,
            "bad-group" | "automatic-group" | "unknown-field" => 400,
            "no-iam" => 401,
            other => panic!("no expectation for events/admin-api/{other}.json"),
        };
        let req = lambda_http::request::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let resp = admin_api::handle(&admin, req, now).await;
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        assert_eq!(resp.status(), expected, "{name}: {body}");
        if expected >= 400 {
            assert!(body["error"]["message"].is_string(), "{name}: {body}");
        }
        // In file order: automatic-group, bad-group, ban, disconnect, no-iam, presence,
        // publish-user, publish, remove, unban, unknown-field.
        match name.as_str() {
            "automatic-group" | "bad-group" | "unknown-field" => {
                assert_eq!(body["error"]["code"], "bad_request", "{name}: {body}");
            }
            "no-iam" => assert_eq!(body["error"]["code"], "unauthorized", "{body}"),
            "ban" => {
                assert_eq!(body["banned_until_ms"], now + 3_600_000, "{body}");
                assert!(
                    !registry
                        .is_member(&porter, "chat:night-shift")
                        .await
                        .unwrap(),
                    "the ban removed the member"
                );
            }
            "disconnect" => assert_eq!(body["connections"], 0, "{body}"),
            "presence" => assert_eq!(
                body,
                serde_json::json!({"group": "chat:night-shift", "members": []})
            ),
            "publish" | "publish-user" => assert_eq!(body["seq"], 1, "{name}: {body}"),
            "remove" => assert_eq!(body["removed"], false, "already removed by the ban"),
            "unban" => assert_eq!(body["lifted"], true, "{body}"),
            _ => {}
        }
    }
    let ban = registry
        .ban_of("chat:night-shift", &porter, now)
        .await
        .unwrap();
    assert!(ban.is_none(), "the ban was lifted");
}
