//! Outages of the real servers: Redis and the AWS endpoint stop and come back. Handlers
//! report failures (batch item failures, 503, errors) so nothing is lost, and recover by
//! themselves when the service returns.

use presence::auth::Authenticator;
use presence::consume::Consumer;
use presence::ids::FacilityId;
use presence::ingest::Ingest;
use presence::queue::{MemoryQueue, SqsQueue};
use presence::rollup::{Rollup, RollupSettings};
use presence_tests::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn redis_down_fails_the_batch_and_recovers_when_it_returns() {
    let redis = RedisServer::start();
    let port = redis.port;
    let store = store(&redis, 75, 4).await;
    let consumer = Consumer::new(store.clone(), Arc::new(MemoryQueue::new()));
    let t = presence::now_ms();
    let first = consume(&consumer, &[heartbeat("s1", "u1", "f1", "r1", t, false)], t).await;
    assert!(first.batch_item_failures.is_empty());

    drop(redis); // Redis stops
    let started = Instant::now();
    let beats = [
        heartbeat("s2", "u2", "f2", "r1", t, false),
        heartbeat("s3", "u3", "f3", "r1", t, false),
    ];
    let down = consume(&consumer, &beats, t).await;
    assert_eq!(
        down.batch_item_failures.len(),
        2,
        "every record is reported, nothing is lost"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded retries: {:?}",
        started.elapsed()
    );

    let _back = RedisServer::start_on(port, &[]); // Redis returns (empty: it had no persistence)
    let mut recovered = false;
    for _ in 0..50 {
        let r = consume(&consumer, &beats, t + 1).await;
        if r.batch_item_failures.is_empty() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the same connection recovers by itself");
    assert_eq!(
        facility_status(&store, "f2").await.unwrap().online_sessions,
        1
    );
}

#[tokio::test]
async fn the_queue_and_table_endpoint_down_gives_503_and_errors_then_recovers() {
    let emulator = Emulator::start_on(free_port());
    let port = emulator.port;
    let Clients { sqs, ddb, .. } = Clients::at(&emulator.url()).await;
    let url = create_queue(&sqs, "heartbeats").await;
    create_table(&ddb, "FacilitiesTable", "facilities").await;

    let secret = b"outage-test-secret-0123456789abcdef-xx";
    let ingest = Ingest::new(
        Authenticator::hs256(secret),
        Arc::new(SqsQueue::new(sqs.clone(), &url)),
        30,
    );
    let token = token(secret, "u1", "f1", "r1");
    let beat = || heartbeat_request(Some(&token), r#"{"session_id":"tab-1"}"#);
    assert_eq!(
        heartbeat_ingest::handle(&ingest, beat(), presence::now_ms())
            .await
            .status(),
        202
    );

    let redis = RedisServer::start();
    let store = store(&redis, 75, 1).await;
    let consumer = Consumer::new(store.clone(), Arc::new(MemoryQueue::new()));
    let t = presence::now_ms();
    consume(&consumer, &[heartbeat("s1", "u1", "f1", "r1", t, false)], t).await;
    let rollup = Rollup::new(
        store.clone(),
        dynamo_facilities(&ddb, "facilities"),
        Arc::new(MemoryQueue::new()),
        RollupSettings::default(),
    );

    // the endpoint goes away
    drop(emulator);
    let started = Instant::now();
    let r = heartbeat_ingest::handle(&ingest, beat(), presence::now_ms()).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let report = rollup.run(t + 10).await;
    assert!(!report.errors.is_empty(), "the rollup reports the failure");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded retries: {:?}",
        started.elapsed()
    );
    let p = store
        .partitioner()
        .partition_of(&FacilityId::parse("f1").unwrap());
    assert!(
        store
            .collect(p, 10, 10, 0, i64::MAX)
            .await
            .unwrap()
            .journal_len
            > 0,
        "nothing persisted is forgotten"
    );

    // it comes back (empty, like a new deployment's resources): the same clients recover
    let _emulator = Emulator::start_on(port);
    let url2 = create_queue(&sqs, "heartbeats").await;
    assert_eq!(url2, url);
    create_table(&ddb, "FacilitiesTable", "facilities").await;
    assert_eq!(
        heartbeat_ingest::handle(&ingest, beat(), presence::now_ms())
            .await
            .status(),
        202
    );
    let report = rollup.run(t + 20).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        store
            .collect(p, 10, 10, 0, i64::MAX)
            .await
            .unwrap()
            .journal_len,
        0,
        "the backlog is persisted"
    );
}
