//! The pipeline end to end through the real handlers: ingest → SQS → consumer → Redis →
//! push queue; expiry; rollup → DynamoDB. Redis is a real redis-server, SQS and DynamoDB the
//! local emulator through the real SDK clients.

use presence::auth::{Authenticator, DevTokenSigner, Identity};
use presence::consume::Consumer;
use presence::expiry::Sweeper;
use presence::facilities::{DynamoFacilityStore, FacilityStore};
use presence::ids::{FacilityId, RegionId, UserId};
use presence::ingest::Ingest;
use presence::protocol::{PushMessage, QueueMessage, Status};
use presence::queue::SqsQueue;
use presence::rollup::{Rollup, RollupSettings};
use presence_tests::*;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &[u8] = b"pipeline-test-secret-0123456789abcdef";

struct Aws {
    sqs: aws_sdk_sqs::Client,
    ddb: aws_sdk_dynamodb::Client,
    heartbeats: String,
    push: String,
}

async fn aws() -> Aws {
    let sdk = sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let heartbeats = create_queue(&sqs, &unique("heartbeats")).await;
    let push = create_queue(&sqs, &unique("push")).await;
    Aws {
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        sqs,
        heartbeats,
        push,
    }
}

fn token(user: &str, facility: &str, region: &str) -> String {
    let id = Identity {
        user: UserId::parse(user).unwrap(),
        facility: FacilityId::parse(facility).unwrap(),
        region: RegionId::parse(region).unwrap(),
    };
    DevTokenSigner::new(SECRET).sign(&id, presence::now_ms() / 1000 + 600)
}

fn request(auth: Option<&str>, body: &str) -> lambda_http::Request {
    let mut b = lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://api.example/v1/heartbeats");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(lambda_http::Body::from(body.to_owned())).unwrap()
}

fn body_json(r: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
    serde_json::from_slice(r.body().as_ref()).unwrap()
}

fn statuses(bodies: &[String]) -> Vec<presence::protocol::FacilityStatus> {
    bodies
        .iter()
        .map(|b| match serde_json::from_str::<PushMessage>(b).unwrap() {
            PushMessage::Status(e) => e.status,
            other => panic!("expected a status event, got {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn ingest_answers_and_enqueues_with_identity_from_the_token() {
    let aws = aws().await;
    let ingest = Ingest::new(
        Authenticator::hs256(SECRET),
        Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.heartbeats)),
        30,
    );
    let bearer = format!("Bearer {}", token("u1", "f1", "r1"));

    let before = presence::now_ms();
    let r = heartbeat_ingest::handle(
        &ingest,
        request(Some(&bearer), r#"{"session_id":"tab-1"}"#),
        before,
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(body_json(&r), serde_json::json!({"interval_s": 30}));
    let queued = drain_queue(&aws.sqs, &aws.heartbeats).await;
    assert_eq!(queued.len(), 1);
    let m = QueueMessage::parse(&queued[0]).unwrap();
    assert_eq!(
        (
            m.user_id.as_str(),
            m.facility_id.as_str(),
            m.region.as_str(),
            m.at_ms
        ),
        ("u1", "f1", "r1", before)
    );

    // bad input: a JSON error, nothing enqueued
    let cases = [
        (
            request(Some(&bearer), r#"{"session_id":"a/b"}"#),
            400,
            "bad_request",
        ),
        (
            request(
                Some(&bearer),
                r#"{"session_id":"ok","user_id":"someone-else"}"#,
            ),
            400,
            "bad_request",
        ),
        (request(Some(&bearer), "not json"), 400, "bad_request"),
        (
            request(
                Some(&bearer),
                &format!(r#"{{"session_id":"{}"}}"#, "x".repeat(2000)),
            ),
            413,
            "body_too_large",
        ),
        (
            request(None, r#"{"session_id":"tab-1"}"#),
            401,
            "unauthorized",
        ),
        (
            request(Some("Bearer not.a.token"), r#"{"session_id":"tab-1"}"#),
            401,
            "unauthorized",
        ),
    ];
    for (req, status, code) in cases {
        let r = heartbeat_ingest::handle(&ingest, req, before).await;
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["content-type"], "application/json");
        let body = body_json(&r);
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    assert!(drain_queue(&aws.sqs, &aws.heartbeats).await.is_empty());

    // a beacon (no headers) carries its token in the query
    let beacon = lambda_http::http::Request::builder()
        .method("POST")
        .uri(format!(
            "https://api.example/v1/heartbeats?token={}",
            token("u1", "f1", "r1")
        ))
        .body(lambda_http::Body::from(
            r#"{"session_id":"tab-1","state":"ended"}"#,
        ))
        .unwrap();
    assert_eq!(
        heartbeat_ingest::handle(&ingest, beacon, before + 1)
            .await
            .status(),
        202
    );
    assert_eq!(drain_queue(&aws.sqs, &aws.heartbeats).await.len(), 1);

    // the queue is unavailable: 503 with Retry-After, no internal detail
    let missing = format!("{}/000000000000/no-such-queue", aws_endpoint());
    let broken = Ingest::new(
        Authenticator::hs256(SECRET),
        Arc::new(SqsQueue::new(aws.sqs.clone(), missing)),
        30,
    );
    let r = heartbeat_ingest::handle(
        &broken,
        request(Some(&bearer), r#"{"session_id":"tab-1"}"#),
        before,
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(!body_json(&r).to_string().contains("no-such-queue"));
}

#[tokio::test]
async fn consumer_applies_good_records_fails_bad_ones_and_publishes_flips() {
    let aws = aws().await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 8).await;
    let consumer = Consumer::new(
        store.clone(),
        Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.push)),
    );
    let now = presence::now_ms();
    let bodies = vec![
        heartbeat("s1", "u1", "f1", "r1", now, false).to_json(),
        heartbeat("s1", "u1", "f1", "r1", now, false).to_json(), // duplicate
        "{\"v\":1,".to_owned(),                                  // malformed
        heartbeat("s2", "u2", "f2", "r1", now, false)
            .to_json()
            .replace("\"v\":1", "\"v\":9"), // wrong version
        heartbeat("s3", "u3", "f3", "r1", now + 5, false).to_json(),
        heartbeat("s3", "u3", "f3", "r1", now + 2, false).to_json(), // out of order
    ];
    let response = heartbeat_consumer::handle(&consumer, sqs_event(&bodies), now + 10).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m2", "m3"]);

    let pushed = statuses(&drain_queue(&aws.sqs, &aws.push).await);
    let mut online: Vec<_> = pushed
        .iter()
        .map(|s| (s.facility_id.as_str(), s.status, s.version))
        .collect();
    online.sort();
    assert_eq!(
        online,
        [("f1", Status::Online, 1), ("f3", Status::Online, 1)]
    );
    for f in ["f1", "f3"] {
        let p = store
            .partitioner()
            .partition_of(&FacilityId::parse(f).unwrap());
        assert!(
            store
                .collect(p, 10, 10, i64::MAX, i64::MAX)
                .await
                .unwrap()
                .stale_unpublished
                .is_empty(),
            "{f} acknowledged"
        );
    }
    let s3 = store
        .session(
            &FacilityId::parse("f3").unwrap(),
            &presence::ids::SessionId::parse("s3").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s3.last_ms, now + 5);
}

#[tokio::test]
async fn a_failing_partition_fails_only_its_own_records() {
    let aws = aws().await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 8).await;
    let consumer = Consumer::new(
        store.clone(),
        Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.push)),
    );
    let (f1, f2) = (
        FacilityId::parse("f1").unwrap(),
        FacilityId::parse("f2").unwrap(),
    );
    assert_ne!(
        store.partitioner().partition_of(&f1),
        store.partitioner().partition_of(&f2)
    );
    // Break f1's partition: its session key holds a string, so its script fails at once.
    let p1 = store.partitioner().partition_of(&f1);
    let _: () = redis::cmd("SET")
        .arg(format!("{}:s:f1/s1", p1.prefix()))
        .arg("x")
        .query_async(&mut store.connection())
        .await
        .unwrap();

    let now = presence::now_ms();
    let bodies = vec![
        heartbeat("s1", "u1", "f1", "r1", now, false).to_json(),
        heartbeat("s2", "u2", "f2", "r1", now, false).to_json(),
    ];
    let response = heartbeat_consumer::handle(&consumer, sqs_event(&bodies), now).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m0"]);
    assert_eq!(
        store.facility(&f2).await.unwrap().unwrap().status,
        Status::Online
    );
}

#[tokio::test]
async fn a_queue_outage_leaves_flips_unpublished_until_the_rollup_pushes_them() {
    let aws = aws().await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let missing = format!("{}/000000000000/no-such-queue", aws_endpoint());
    let consumer = Consumer::new(
        store.clone(),
        Arc::new(SqsQueue::new(aws.sqs.clone(), missing)),
    );
    let now = presence::now_ms();
    let response = heartbeat_consumer::handle(
        &consumer,
        sqs_event(&[heartbeat("s1", "u1", "f1", "r1", now, false).to_json()]),
        now,
    )
    .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "Redis has the heartbeat; redelivery is not needed"
    );

    let table = unique("facilities");
    create_table(&aws.ddb, "FacilitiesTable", &table).await;
    let facilities = Arc::new(DynamoFacilityStore::new(
        aws.ddb.clone(),
        &table,
        Duration::from_secs(86_400),
    ));
    let settings = RollupSettings {
        republish_after: Duration::from_millis(1),
        ..RollupSettings::default()
    };
    let rollup = Rollup::new(
        store.clone(),
        facilities,
        Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.push)),
        settings,
    );
    let report = rollup.run(now + 100).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.republished, 1);
    let pushed = statuses(&drain_queue(&aws.sqs, &aws.push).await);
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (
            pushed[0].facility_id.as_str(),
            pushed[0].status,
            pushed[0].version
        ),
        ("f1", Status::Online, 1)
    );
    // published once: the next run has nothing to re-publish
    assert_eq!(rollup.run(now + 200).await.republished, 0);
}

#[tokio::test]
async fn expiry_sweeps_within_its_window_and_reports_lateness() {
    let aws = aws().await;
    let redis = RedisServer::start();
    let store = store(&redis, 1, 4).await;
    let publisher = Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.push));
    let consumer = Consumer::new(store.clone(), publisher.clone());
    let now = presence::now_ms();
    heartbeat_consumer::handle(
        &consumer,
        sqs_event(&[heartbeat("s1", "u1", "f1", "r1", now, false).to_json()]),
        now,
    )
    .await;
    drain_queue(&aws.sqs, &aws.push).await;

    let sweeper = Sweeper::new(store.clone(), publisher);
    let schedule: aws_lambda_events::event::eventbridge::EventBridgeEvent =
        serde_json::from_str(include_str!("../events/session-expiry/schedule.json")).unwrap();
    let report = session_expiry::handle(
        &sweeper,
        schedule,
        Duration::from_secs(3),
        &presence::now_ms,
    )
    .await;
    assert_eq!(report.claimed, 1);
    assert!(
        report.sweeps >= 2,
        "kept sweeping in its window: {report:?}"
    );
    // claimed within about a second of the deadline (the sweeper wakes at most once a second)
    assert!(report.max_lateness_ms() <= 1_500, "{report:?}");
    let pushed = statuses(&drain_queue(&aws.sqs, &aws.push).await);
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (pushed[0].status, pushed[0].since_ms, pushed[0].version),
        (Status::Offline, now + 1_000, 2)
    );
}

#[tokio::test]
async fn rollup_persists_status_history_and_segments() {
    let aws = aws().await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let table = unique("facilities");
    create_table(&aws.ddb, "FacilitiesTable", &table).await;
    let facilities = Arc::new(DynamoFacilityStore::new(
        aws.ddb.clone(),
        &table,
        Duration::from_secs(86_400),
    ));
    let publisher = Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.push));
    let consumer = Consumer::new(store.clone(), publisher.clone());
    let rollup = Rollup::new(
        store.clone(),
        facilities.clone(),
        publisher,
        RollupSettings::default(),
    );

    let t = presence::now_ms();
    let beats = [
        heartbeat("s1", "u1", "f1", "r1", t, false),
        heartbeat("s2", "u2", "f2", "r1", t, false),
        heartbeat("s1", "u1", "f1", "r1", t + 1_000, true),
        heartbeat("s1", "u1", "f1", "r1", t + 2_000, false),
    ];
    for (i, b) in beats.iter().enumerate() {
        heartbeat_consumer::handle(&consumer, sqs_event(&[b.to_json()]), t + i as i64).await;
    }
    let schedule: aws_lambda_events::event::eventbridge::EventBridgeEvent =
        serde_json::from_str(include_str!("../events/facility-rollup/schedule.json")).unwrap();
    let summary = facility_rollup::handle(&rollup, schedule.clone(), t + 3_000)
        .await
        .unwrap();
    assert_eq!(summary["statuses_written"], 2, "{summary}");

    let f1 = FacilityId::parse("f1").unwrap();
    let stored = facilities.status(&f1).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.status,
            stored.version,
            stored.since_ms,
            stored.online_sessions
        ),
        (Status::Online, 3, t + 2_000, 1)
    );
    let region = facilities
        .region(&RegionId::parse("r1").unwrap())
        .await
        .unwrap();
    assert_eq!(region.len(), 2);
    let flips: Vec<_> = facilities
        .flips(&f1, t - 1, t + 10_000)
        .await
        .unwrap()
        .iter()
        .map(|f| (f.status, f.version))
        .collect();
    assert_eq!(
        flips,
        [
            (Status::Online, 1),
            (Status::Offline, 2),
            (Status::Online, 3)
        ]
    );
    // who was online at f1 half a second in: u1's finished segment
    let at = facilities.online_at(&f1, t + 500).await.unwrap();
    assert_eq!(at.len(), 1);
    assert_eq!(
        (at[0].user_id.as_str(), at[0].start_ms, at[0].end_ms),
        ("u1", t, t + 1_000)
    );
    assert!(
        facilities
            .online_at(&f1, t + 1_500)
            .await
            .unwrap()
            .is_empty(),
        "nobody between the segments"
    );

    // nothing changed: nothing to write; an older version never wins
    let again = facility_rollup::handle(&rollup, schedule, t + 4_000)
        .await
        .unwrap();
    assert_eq!(
        (
            again["statuses_written"].as_u64(),
            again["history_entries"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let old = presence::sessions::FacilityState {
        status: presence::protocol::FacilityStatus {
            version: 2,
            status: Status::Offline,
            ..stored.clone()
        },
        rev: 999,
    };
    assert!(
        !facilities
            .put_status(store.partitioner().partition_of(&f1), &old, t)
            .await
            .unwrap()
    );
    assert_eq!(facilities.status(&f1).await.unwrap().unwrap(), stored);
}

#[tokio::test]
async fn rollup_keeps_the_journal_when_dynamodb_fails() {
    let aws = aws().await;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 1).await;
    let facilities = Arc::new(DynamoFacilityStore::new(
        aws.ddb.clone(),
        "no-such-table",
        Duration::from_secs(86_400),
    ));
    let publisher = Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.push));
    let consumer = Consumer::new(store.clone(), publisher.clone());
    let rollup = Rollup::new(
        store.clone(),
        facilities,
        publisher,
        RollupSettings::default(),
    );
    let t = presence::now_ms();
    heartbeat_consumer::handle(
        &consumer,
        sqs_event(&[heartbeat("s1", "u1", "f1", "r1", t, false).to_json()]),
        t,
    )
    .await;

    let schedule: aws_lambda_events::event::eventbridge::EventBridgeEvent =
        serde_json::from_str(include_str!("../events/facility-rollup/schedule.json")).unwrap();
    let err = facility_rollup::handle(&rollup, schedule, t + 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("partition"), "{err}");
    let p = store
        .partitioner()
        .partition_of(&FacilityId::parse("f1").unwrap());
    let c = store.collect(p, 10, 10, 0, i64::MAX).await.unwrap();
    assert_eq!((c.journal_len, c.dirty.len()), (1, 1), "nothing forgotten");
}
