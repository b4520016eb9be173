//! The pipeline end to end through the real handlers: ingest → SQS → consumer → Redis →
//! push queue; expiry; rollup → DynamoDB. Redis is a real redis-server, SQS and DynamoDB the
//! local emulator through the real SDK clients.

use presence::auth::Authenticator;
use presence::consume::Consumer;
use presence::expiry::Sweeper;
use presence::facilities::{DynamoFacilityStore, FacilityStore};
use presence::ids::{FacilityId, RegionId};
use presence::ingest::Ingest;
use presence::protocol::{PushMessage, QueueMessage, Status};
use presence::queue::SqsQueue;
use presence::rollup::{Rollup, RollupSettings};
use presence::sessions::SessionStore;
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
    let Clients { sqs, ddb, .. } = Clients::new().await;
    let heartbeats = create_queue(&sqs, &unique("heartbeats")).await;
    let push = create_queue(&sqs, &unique("push")).await;
    Aws {
        sqs,
        ddb,
        heartbeats,
        push,
    }
}

/// Fresh queues, a private Redis and a session store on it, and the push queue as the
/// functions publish to it.
struct Fixture {
    aws: Aws,
    store: SessionStore,
    publisher: Arc<SqsQueue>,
    _redis: RedisServer,
}

async fn fixture(ttl_s: u64, partitions: u16) -> Fixture {
    let aws = aws().await;
    let redis = RedisServer::start();
    Fixture {
        store: store(&redis, ttl_s, partitions).await,
        publisher: Arc::new(SqsQueue::new(aws.sqs.clone(), &aws.push)),
        aws,
        _redis: redis,
    }
}

/// A token for `user` at `facility` in `region`, signed with this file's secret.
fn token(user: &str, facility: &str, region: &str) -> String {
    presence_tests::token(SECRET, user, facility, region)
}

/// A rollup of the fixture's store writing to `facilities`, publishing to the push queue.
fn new_rollup(
    fx: &Fixture,
    facilities: Arc<DynamoFacilityStore>,
    settings: RollupSettings,
) -> Rollup {
    Rollup::new(fx.store.clone(), facilities, fx.publisher.clone(), settings)
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
    let valid_token = token("u1", "f1", "r1");

    let before = presence::now_ms();
    let r = heartbeat_ingest::handle(
        &ingest,
        heartbeat_request(Some(&valid_token), r#"{"session_id":"tab-1"}"#),
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
            heartbeat_request(Some(&valid_token), r#"{"session_id":"a/b"}"#),
            400,
            "bad_request",
        ),
        (
            heartbeat_request(
                Some(&valid_token),
                r#"{"session_id":"ok","user_id":"someone-else"}"#,
            ),
            400,
            "bad_request",
        ),
        (
            heartbeat_request(Some(&valid_token), "not json"),
            400,
            "bad_request",
        ),
        (
            heartbeat_request(
                Some(&valid_token),
                format!(r#"{{"session_id":"{}"}}"#, "x".repeat(2000)),
            ),
            413,
            "body_too_large",
        ),
        (
            heartbeat_request(None, r#"{"session_id":"tab-1"}"#),
            401,
            "unauthorized",
        ),
        (
            heartbeat_request(Some("not.a.token"), r#"{"session_id":"tab-1"}"#),
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
        heartbeat_request(Some(&valid_token), r#"{"session_id":"tab-1"}"#),
        before,
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(!body_json(&r).to_string().contains("no-such-queue"));
}

#[tokio::test]
async fn consumer_applies_good_records_fails_bad_ones_and_publishes_flips() {
    let fx = fixture(75, 8).await;
    let (aws, store) = (&fx.aws, &fx.store);
    let consumer = Consumer::new(store.clone(), fx.publisher.clone());
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
    assert_eq!(failed_ids(&response), ["m2", "m3"]);

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
    let s3 = session_record(store, "f3", "s3").await.unwrap();
    assert_eq!(s3.last_ms, now + 5);
}

#[tokio::test]
async fn a_failing_partition_fails_only_its_own_records() {
    let fx = fixture(75, 8).await;
    let store = &fx.store;
    let consumer = Consumer::new(store.clone(), fx.publisher.clone());
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
    let beats = [
        heartbeat("s1", "u1", "f1", "r1", now, false),
        heartbeat("s2", "u2", "f2", "r1", now, false),
    ];
    let response = consume(&consumer, &beats, now).await;
    assert_eq!(failed_ids(&response), ["m0"]);
    assert_eq!(
        facility_status(store, "f2").await.unwrap().status,
        Status::Online
    );
}

#[tokio::test]
async fn a_queue_outage_leaves_flips_unpublished_until_the_rollup_pushes_them() {
    let fx = fixture(75, 4).await;
    let aws = &fx.aws;
    let missing = format!("{}/000000000000/no-such-queue", aws_endpoint());
    let consumer = Consumer::new(
        fx.store.clone(),
        Arc::new(SqsQueue::new(aws.sqs.clone(), missing)),
    );
    let now = presence::now_ms();
    let response = consume(
        &consumer,
        &[heartbeat("s1", "u1", "f1", "r1", now, false)],
        now,
    )
    .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "Redis has the heartbeat; redelivery is not needed"
    );

    let table = unique("facilities");
    create_table(&aws.ddb, "FacilitiesTable", &table).await;
    let settings = RollupSettings {
        republish_after: Duration::from_millis(1),
        ..RollupSettings::default()
    };
    let rollup = new_rollup(&fx, dynamo_facilities(&aws.ddb, &table), settings);
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
    let fx = fixture(1, 4).await;
    let aws = &fx.aws;
    let consumer = Consumer::new(fx.store.clone(), fx.publisher.clone());
    let now = presence::now_ms();
    consume(
        &consumer,
        &[heartbeat("s1", "u1", "f1", "r1", now, false)],
        now,
    )
    .await;
    drain_queue(&aws.sqs, &aws.push).await;

    let sweeper = Sweeper::new(fx.store.clone(), fx.publisher.clone());
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
    let fx = fixture(75, 4).await;
    let store = &fx.store;
    let table = unique("facilities");
    create_table(&fx.aws.ddb, "FacilitiesTable", &table).await;
    let facilities = dynamo_facilities(&fx.aws.ddb, &table);
    let consumer = Consumer::new(store.clone(), fx.publisher.clone());
    let rollup = new_rollup(&fx, facilities.clone(), RollupSettings::default());

    let t = presence::now_ms();
    let beats = [
        heartbeat("s1", "u1", "f1", "r1", t, false),
        heartbeat("s2", "u2", "f2", "r1", t, false),
        heartbeat("s1", "u1", "f1", "r1", t + 1_000, true),
        heartbeat("s1", "u1", "f1", "r1", t + 2_000, false),
    ];
    for (i, b) in beats.iter().enumerate() {
        consume(&consumer, std::slice::from_ref(b), t + i as i64).await;
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
    let fx = fixture(75, 1).await;
    let store = &fx.store;
    let facilities = dynamo_facilities(&fx.aws.ddb, "no-such-table");
    let consumer = Consumer::new(store.clone(), fx.publisher.clone());
    let rollup = new_rollup(&fx, facilities, RollupSettings::default());
    let t = presence::now_ms();
    consume(&consumer, &[heartbeat("s1", "u1", "f1", "r1", t, false)], t).await;

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
