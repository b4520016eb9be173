//! Outages of the real servers: Redis and the AWS endpoint stop and come back. Handlers
//! report failures (batch item failures, 503, errors) so nothing is lost, and recover by
//! themselves when the service returns.

use presence::auth::{Authenticator, DevTokenSigner, Identity};
use presence::consume::Consumer;
use presence::facilities::DynamoFacilityStore;
use presence::ids::{FacilityId, RegionId, UserId};
use presence::ingest::Ingest;
use presence::queue::{MemoryQueue, SqsQueue};
use presence::rollup::{Rollup, RollupSettings};
use presence_tests::*;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn redis_down_fails_the_batch_and_recovers_when_it_returns() {
    let redis = RedisServer::start();
    let port = redis.port;
    let store = store(&redis, 75, 4).await;
    let consumer = Consumer::new(store.clone(), Arc::new(MemoryQueue::new()));
    let t = presence::now_ms();
    let first = heartbeat_consumer::handle(
        &consumer,
        sqs_event(&[heartbeat("s1", "u1", "f1", "r1", t, false).to_json()]),
        t,
    )
    .await;
    assert!(first.batch_item_failures.is_empty());

    drop(redis); // Redis stops
    let started = Instant::now();
    let bodies = vec![
        heartbeat("s2", "u2", "f2", "r1", t, false).to_json(),
        heartbeat("s3", "u3", "f3", "r1", t, false).to_json(),
    ];
    let down = heartbeat_consumer::handle(&consumer, sqs_event(&bodies), t).await;
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
        let r = heartbeat_consumer::handle(&consumer, sqs_event(&bodies), t + 1).await;
        if r.batch_item_failures.is_empty() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the same connection recovers by itself");
    assert_eq!(
        store
            .facility(&FacilityId::parse("f2").unwrap())
            .await
            .unwrap()
            .unwrap()
            .online_sessions,
        1
    );
}

/// A moto server that is stopped when dropped.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto(port: u16) -> Emulator {
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server on PATH");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Emulator(child)
}

#[tokio::test]
async fn the_queue_and_table_endpoint_down_gives_503_and_errors_then_recovers() {
    let port = free_port();
    let emulator = moto(port);
    let endpoint = format!("http://127.0.0.1:{port}");
    let sdk = presence::aws::local_sdk_config(&endpoint).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let url = create_queue(&sqs, "heartbeats").await;
    create_table(&ddb, "FacilitiesTable", "facilities").await;

    let secret = b"outage-test-secret-0123456789abcdef-xx";
    let ingest = Ingest::new(
        Authenticator::hs256(secret),
        Arc::new(SqsQueue::new(sqs.clone(), &url)),
        30,
    );
    let identity = Identity {
        user: UserId::parse("u1").unwrap(),
        facility: FacilityId::parse("f1").unwrap(),
        region: RegionId::parse("r1").unwrap(),
    };
    let token = DevTokenSigner::new(secret).sign(&identity, presence::now_ms() / 1000 + 600);
    let beat = || {
        lambda_http::http::Request::builder()
            .method("POST")
            .uri("https://api.example/v1/heartbeats")
            .header("authorization", format!("Bearer {token}"))
            .body(lambda_http::Body::from(r#"{"session_id":"tab-1"}"#))
            .unwrap()
    };
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
    heartbeat_consumer::handle(
        &consumer,
        sqs_event(&[heartbeat("s1", "u1", "f1", "r1", t, false).to_json()]),
        t,
    )
    .await;
    let facilities = Arc::new(DynamoFacilityStore::new(
        ddb.clone(),
        "facilities",
        Duration::from_secs(86_400),
    ));
    let rollup = Rollup::new(
        store.clone(),
        facilities,
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
    let _emulator = moto(port);
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
