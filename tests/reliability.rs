//! Faults and bad input: poison messages reach the dead-letter queue alone, a crash between
//! Redis and the push queue loses no flip and duplicates none, hostile input changes nothing.

use aws_lambda_events::event::sqs::SqsEvent;
use presence::auth::{Authenticator, DevTokenSigner};
use presence::consume::Consumer;
use presence::facilities::{FacilityStore, MemoryFacilityStore};
use presence::ids::FacilityId;
use presence::ingest::Ingest;
use presence::protocol::{PushMessage, Status};
use presence::queue::MemoryQueue;
use presence::rollup::{Rollup, RollupSettings};
use presence_local::queue::{LocalQueue, QueueConfig, run_event_source};
use presence_tests::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const SECRET: &[u8] = b"reliability-test-secret-0123456789abcdef";

fn pushed_versions(q: &MemoryQueue) -> Vec<(String, u64)> {
    q.drain()
        .iter()
        .filter_map(|b| match serde_json::from_str::<PushMessage>(b) {
            Ok(PushMessage::Status(e)) => {
                Some((e.status.facility_id.to_string(), e.status.version))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn poison_messages_fail_alone_and_reach_the_dead_letter_queue() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let dlq = LocalQueue::new(QueueConfig::new("heartbeats-dlq"), None);
    let mut config = QueueConfig::new("heartbeats");
    config.visibility_timeout = Duration::from_millis(100);
    config.max_receive_count = 3;
    let queue = LocalQueue::new(config, Some(dlq.clone()));
    let consumer = Consumer::new(store.clone(), Arc::new(MemoryQueue::new()));
    let _source = run_event_source(queue.clone(), move |event: SqsEvent| {
        let consumer = consumer.clone();
        async move { heartbeat_consumer::handle(&consumer, event, presence::now_ms()).await }
    });

    let now = presence::now_ms();
    let good: Vec<String> = (0..3)
        .map(|i| heartbeat(&format!("s{i}"), "u1", "f1", "r1", now, false).to_json())
        .collect();
    let bad = vec![
        "{\"v\":1,\"session_id\":".to_owned(),
        format!("{{\"pad\":\"{}\"}}", "x".repeat(10_000)),
        heartbeat("s9", "u1", "f1", "r1", now, false)
            .to_json()
            .replace("\"v\":1", "\"v\":2"),
        heartbeat("s9", "u1", "f1", "r1", now, false)
            .to_json()
            .replace("\"s9\"", "\"s/9\""),
    ];
    for b in good.iter().chain(&bad) {
        queue.send(b.clone());
    }
    for _ in 0..100 {
        if queue.visible() == 0 && queue.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut dead = dlq.drain();
    dead.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(dead, expected, "exactly the bad messages are dead-lettered");
    assert_eq!(
        facility_status(&store, "f1").await.unwrap().online_sessions,
        3
    );

    // The deployed queues dead-letter after the same kind of redrive policy.
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    assert!(
        template.matches("maxReceiveCount: 5").count() >= 2,
        "both queues have a redrive policy"
    );
    assert_eq!(
        QueueConfig::new("x").max_receive_count,
        5,
        "the local stack's queues match it"
    );
}

#[tokio::test]
async fn a_crash_between_redis_and_the_push_queue_is_repaired_exactly_once_per_version() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let broken = Arc::new(MemoryQueue::new());
    broken.set_failing(true); // the process "dies" after the script, before the publish
    let crashed = Consumer::new(store.clone(), broken.clone());
    let healthy_queue = Arc::new(MemoryQueue::new());
    let healthy = Consumer::new(store.clone(), healthy_queue.clone());
    let facilities = Arc::new(MemoryFacilityStore::new());
    let settings = RollupSettings {
        republish_after: Duration::from_millis(1),
        ..RollupSettings::default()
    };
    let rollup = Rollup::new(
        store.clone(),
        facilities.clone(),
        healthy_queue.clone(),
        settings,
    );

    let t = presence::now_ms();
    // f1 flips online through the crashed path; f2 through the healthy one
    consume(&crashed, &[heartbeat("s1", "u1", "f1", "r1", t, false)], t).await;
    consume(&healthy, &[heartbeat("s2", "u2", "f2", "r1", t, false)], t).await;
    assert!(broken.drain().is_empty());
    let mut seen = pushed_versions(&healthy_queue);
    assert_eq!(seen, [("f2".to_owned(), 1)]);

    // the next rollups push f1's flip once and persist both
    rollup.run(t + 10).await;
    rollup.run(t + 20).await;
    seen.extend(pushed_versions(&healthy_queue));
    let mut counts: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for v in seen {
        *counts.entry(v).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([(("f1".to_owned(), 1), 1), (("f2".to_owned(), 1), 1)])
    );
    for f in ["f1", "f2"] {
        let s = facilities
            .status(&FacilityId::parse(f).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.status, s.version), (Status::Online, 1));
    }
}

/// A token for `user` at `facility` (region r1), signed with this file's secret.
fn token_for(user: &str, facility: &str) -> String {
    token(SECRET, user, facility, "r1")
}

#[tokio::test]
async fn another_facility_or_user_cannot_touch_a_session() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let consumer = Consumer::new(store.clone(), Arc::new(MemoryQueue::new()));
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(Authenticator::hs256(SECRET), queue.clone(), 30);
    let t = presence::now_ms();
    let beat = |user: &str, facility: &str, state: &str| {
        heartbeat_request(
            Some(&token_for(user, facility)),
            format!(r#"{{"session_id":"shared-id","state":"{state}"}}"#),
        )
    };
    for (user, facility, state) in [
        ("ann", "f1", "active"),
        ("bo", "f2", "ended"),
        ("eve", "f1", "ended"),
    ] {
        assert_eq!(
            heartbeat_ingest::handle(&ingest, beat(user, facility, state), t)
                .await
                .status(),
            202
        );
    }
    let e = sqs_event(&queue.drain());
    let report = heartbeat_consumer::handle(&consumer, e, t + 1).await;
    assert!(report.batch_item_failures.is_empty());
    let s = session_record(&store, "f1", "shared-id").await.unwrap();
    assert_eq!(
        (s.user_id.as_str(), s.offline_ms),
        ("ann", None),
        "ann's session is untouched"
    );
    assert_eq!(
        facility_status(&store, "f1").await.unwrap().status,
        Status::Online
    );
}

/// Arbitrary bodies: JSON-shaped mutations of a valid one, and raw noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let fields = prop_oneof![
        Just(r#""session_id":"tab-1""#.to_owned()),
        "[a-zA-Z0-9_/ .:{}-]{0,80}".prop_map(|s| format!(r#""session_id":"{s}""#)),
        prop_oneof![Just("active"), Just("ended"), Just("asleep"), Just("")]
            .prop_map(|s| format!(r#""state":"{s}""#)),
        Just(r#""state":7"#.to_owned()),
        Just(r#""user_id":"someone-else""#.to_owned()),
        Just(r#""session_id":null"#.to_owned()),
        "[a-z]{1,8}".prop_map(|k| format!(r#""{k}":1"#)),
    ];
    prop_oneof![
        3 => prop::collection::vec(fields, 0..4).prop_map(|f| format!("{{{}}}", f.join(",")).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (900usize..1500).prop_map(|n| format!(r#"{{"session_id":"{}"}}"#, "a".repeat(n)).into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1200, ..ProptestConfig::default() })]

    /// 1 200 generated bodies: each is a 202 (and one message) or a 4xx JSON error (and no
    /// message); never a 5xx, never a panic.
    #[test]
    fn generated_heartbeat_bodies_get_202_or_a_4xx(body in body()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let queue = Arc::new(MemoryQueue::new());
            let ingest = Ingest::new(Authenticator::hs256(SECRET), queue.clone(), 30);
            let req = heartbeat_request(Some(&token_for("ann", "f1")), body.clone());
            let resp = heartbeat_ingest::handle(&ingest, req, presence::now_ms()).await;
            let status = resp.status().as_u16();
            let queued = queue.drain();
            if status == 202 {
                prop_assert_eq!(queued.len(), 1);
            } else {
                prop_assert!((400..500).contains(&status), "status {}", status);
                prop_assert!(queued.is_empty());
                let v: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
                prop_assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string());
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn forged_unsigned_and_expired_tokens_are_refused_everywhere() {
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(Authenticator::hs256(SECRET), queue.clone(), 30);
    let now_s = presence::now_ms() / 1000;
    let ann = identity("ann", "f1", "r1");
    let good = DevTokenSigner::new(SECRET).sign(&ann, now_s + 600);
    let payload = good.split('.').nth(1).unwrap();
    let tokens = [
        DevTokenSigner::new(b"forged-forged-forged-forged-forged-xx").sign(&ann, now_s + 600),
        DevTokenSigner::new(SECRET).sign(&ann, now_s - 3600),
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
        format!(
            "eyJhbGciOiJub25lIn0.{payload}.{}",
            good.split('.').nth(2).unwrap()
        ),
        format!(
            "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.{payload}.{}",
            good.split('.').nth(2).unwrap()
        ),
        String::new(),
        "a.b.c".into(),
    ];
    for t in tokens {
        let req = heartbeat_request(Some(&t), r#"{"session_id":"tab-1"}"#);
        assert_eq!(
            heartbeat_ingest::handle(&ingest, req, presence::now_ms())
                .await
                .status(),
            401,
            "{t}"
        );
    }
    assert!(queue.drain().is_empty());
}

#[tokio::test]
async fn a_flooding_session_gets_429_with_retry_after() {
    let queue = Arc::new(MemoryQueue::new());
    let ingest = Ingest::new(Authenticator::hs256(SECRET), queue.clone(), 30);
    let token = token_for("ann", "f1");
    let beat = |sid: &str| heartbeat_request(Some(&token), format!(r#"{{"session_id":"{sid}"}}"#));
    let t = presence::now_ms();
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(
            heartbeat_ingest::handle(&ingest, beat("tab-1"), t)
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        10,
        "{statuses:?}"
    );
    let limited = heartbeat_ingest::handle(&ingest, beat("tab-1"), t).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        queue.drain().len(),
        10,
        "refused heartbeats are not enqueued"
    );
    assert_eq!(
        heartbeat_ingest::handle(&ingest, beat("tab-2"), t)
            .await
            .status(),
        202,
        "another session is not limited"
    );
    assert_eq!(
        heartbeat_ingest::handle(&ingest, beat("tab-1"), t + 2_000)
            .await
            .status(),
        202,
        "it refills"
    );
}
