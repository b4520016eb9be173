//! Redis loses its data (`FLUSHALL`, a restart without persistence): facilities do not all
//! flip offline. The loss is seen (the partition's epoch key is gone), offline flips are held
//! for one TTL while sessions come back, versions continue above what DynamoDB holds, and
//! facilities whose sessions never come back go offline after the hold.

use presence::config::SessionSettings;
use presence::facilities::{FacilityStore, MemoryFacilityStore};
use presence::ids::FacilityId;
use presence::ledger::MemoryPartitionLedger;
use presence::protocol::{PushMessage, Status, Target};
use presence::queue::MemoryQueue;
use presence::rollup::{Rollup, RollupSettings};
use presence::sessions::{RedisConnection, SessionStore};
use presence_tests::{RedisServer, heartbeat};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const S: i64 = 1000;

fn flips(q: &MemoryQueue) -> Vec<(String, Status, u64)> {
    q.drain()
        .iter()
        .filter_map(|b| match serde_json::from_str::<PushMessage>(b) {
            Ok(PushMessage::Status(e)) => Some((
                e.status.facility_id.to_string(),
                e.status.status,
                e.status.version,
            )),
            _ => None,
        })
        .collect()
}

/// What a client shows: the status of the newest version it received per facility.
fn client_view(board: &mut BTreeMap<String, (Status, u64)>, events: &[(String, Status, u64)]) {
    for (f, s, v) in events {
        let held = board.get(f).map(|(_, v)| *v).unwrap_or(0);
        if *v > held {
            board.insert(f.clone(), (*s, *v));
        }
    }
}

#[tokio::test]
async fn a_wiped_redis_holds_offline_flips_and_keeps_versions_growing() {
    let redis = RedisServer::start();
    let settings = SessionSettings {
        ttl: Duration::from_secs(75),
        heartbeat_interval: Duration::from_secs(30),
        partitions: 1,
        loss_hold: Duration::from_secs(75),
        disconnect_grace: Duration::from_secs(10),
    };
    let store = SessionStore::new(
        RedisConnection::connect(&redis.settings()).await.unwrap(),
        &settings,
    );
    let p = store
        .partitioner()
        .partition_of(&FacilityId::parse("a").unwrap());
    let push = Arc::new(MemoryQueue::new());
    let facilities = Arc::new(MemoryFacilityStore::new());
    let rollup = Rollup::new(
        store.clone(),
        facilities.clone(),
        push.clone(),
        RollupSettings {
            republish_after: Duration::from_secs(3600),
            ..RollupSettings::default()
        },
    );
    let apply = |now: i64, beats: Vec<presence::protocol::QueueMessage>| {
        let store = store.clone();
        let push = push.clone();
        async move {
            let applied = store.apply(p, now, &beats).await.unwrap();
            let f: Vec<_> = applied.flips.into_iter().map(|f| (p, f)).collect();
            presence::flips::publish_flips(&store, push.as_ref(), &f).await;
        }
    };
    let mut board = BTreeMap::new();

    // Before the loss: a has two sessions and flips a few times, b has one; all persisted.
    let t0 = 1_763_900_000_000;
    store.sweep(p, t0, 10).await.unwrap(); // a new Redis: its first hold passes unnoticed
    let t = t0 + 80 * S;
    apply(
        t,
        vec![
            heartbeat("a1", "u1", "a", "r", t, false),
            heartbeat("a2", "u2", "a", "r", t, false),
            heartbeat("b1", "u3", "b", "r", t, false),
        ],
    )
    .await;
    apply(
        t + S,
        vec![
            heartbeat("a1", "u1", "a", "r", t + S, true),
            heartbeat("a2", "u2", "a", "r", t + S, true),
        ],
    )
    .await;
    apply(
        t + 2 * S,
        vec![
            heartbeat("a1", "u1", "a", "r", t + 2 * S, false),
            heartbeat("a2", "u2", "a", "r", t + 2 * S, false),
        ],
    )
    .await;
    assert!(rollup.run(t + 3 * S).await.errors.is_empty());
    client_view(&mut board, &flips(&push));
    let a = FacilityId::parse("a").unwrap();
    let b = FacilityId::parse("b").unwrap();
    assert_eq!(
        facilities
            .status(&a)
            .await
            .unwrap()
            .map(|s| (s.status, s.version)),
        Some((Status::Online, 3))
    );
    assert_eq!(
        facilities
            .status(&b)
            .await
            .unwrap()
            .map(|s| (s.status, s.version)),
        Some((Status::Online, 1))
    );

    // The loss.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut store.connection())
        .await
        .unwrap();
    let l = t + 10 * S;

    // One of a's sessions comes back and ends again; b's never comes back.
    apply(
        l + 10 * S,
        vec![heartbeat("a1", "u1", "a", "r", l + 10 * S, false)],
    )
    .await;
    apply(
        l + 20 * S,
        vec![heartbeat("a1", "u1", "a", "r", l + 20 * S, true)],
    )
    .await;
    let during_hold = flips(&push);
    assert!(
        during_hold.iter().all(|(_, s, _)| *s == Status::Online),
        "no offline flip during the hold: {during_hold:?}"
    );
    client_view(&mut board, &during_hold);

    // The rollup sees Redis behind DynamoDB and re-issues a's status above the stored version.
    assert!(rollup.run(l + 30 * S).await.errors.is_empty());
    let reseeded = flips(&push);
    assert!(
        reseeded
            .iter()
            .any(|(f, s, v)| f == "a" && *s == Status::Online && *v > 3),
        "{reseeded:?}"
    );
    client_view(&mut board, &reseeded);
    assert_eq!(
        board.get("a").map(|x| x.0),
        Some(Status::Online),
        "clients still show a online"
    );
    assert_eq!(
        board.get("b").map(|x| x.0),
        Some(Status::Online),
        "clients still show b online"
    );

    // After the hold: a (no session left) flips offline on the next sweep; the rollup
    // reconciles b, which Redis no longer knows, offline too.
    let released = store.sweep(p, l + 100 * S, 10).await.unwrap();
    let f: Vec<_> = released.flips.into_iter().map(|f| (p, f)).collect();
    presence::flips::publish_flips(&store, push.as_ref(), &f).await;
    assert!(rollup.run(l + 101 * S).await.errors.is_empty());
    assert!(rollup.run(l + 102 * S).await.errors.is_empty());
    client_view(&mut board, &flips(&push));
    assert_eq!(board.get("a").map(|x| x.0), Some(Status::Offline));
    assert_eq!(board.get("b").map(|x| x.0), Some(Status::Offline));
    let stored_a = facilities.status(&a).await.unwrap().unwrap();
    let stored_b = facilities.status(&b).await.unwrap().unwrap();
    assert_eq!(
        (stored_a.status, stored_b.status),
        (Status::Offline, Status::Offline),
        "DynamoDB ends correct"
    );
    assert!(
        stored_a.version > 4 && stored_b.version > 1,
        "versions kept growing: {stored_a:?} {stored_b:?}"
    );
}

fn resyncs(bodies: &[String]) -> usize {
    bodies
        .iter()
        .filter(|b| {
            matches!(serde_json::from_str::<PushMessage>(b),
                Ok(PushMessage::Deliver(d)) if d.to == Target::All && d.data["type"] == "resync")
        })
        .count()
}

fn settings(hold_s: u64) -> SessionSettings {
    SessionSettings {
        ttl: Duration::from_secs(75),
        heartbeat_interval: Duration::from_secs(30),
        partitions: 1,
        loss_hold: Duration::from_secs(hold_s),
        disconnect_grace: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn a_first_start_is_not_a_loss_but_a_wipe_after_it_is() {
    let redis = RedisServer::start();
    let ledger = Arc::new(MemoryPartitionLedger::new());
    let store = SessionStore::new(
        RedisConnection::connect(&redis.settings()).await.unwrap(),
        &settings(75),
    )
    .with_ledger(ledger.clone());
    let p = store
        .partitioner()
        .partition_of(&FacilityId::parse("a").unwrap());
    let statuses = |flips: &[presence::protocol::FacilityStatus]| {
        flips.iter().map(|f| f.status).collect::<Vec<_>>()
    };

    // The first heartbeat that ever lands in the partition, then its end: offline at once.
    let t = 1_763_900_000_000;
    let on = store
        .apply(p, t, &[heartbeat("s1", "u1", "a", "r", t, false)])
        .await
        .unwrap();
    assert_eq!(statuses(&on.flips), [Status::Online]);
    let off = store
        .apply(p, t + S, &[heartbeat("s1", "u1", "a", "r", t + S, true)])
        .await
        .unwrap();
    assert_eq!(
        statuses(&off.flips),
        [Status::Offline],
        "a fresh partition holds nothing"
    );

    // Redis loses its data: the next epoch is held, as the ledger knows one came before.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut store.connection())
        .await
        .unwrap();
    let l = t + 10 * S;
    let on = store
        .apply(p, l, &[heartbeat("s2", "u1", "a", "r", l, false)])
        .await
        .unwrap();
    assert_eq!(statuses(&on.flips), [Status::Online]);
    let off = store
        .apply(p, l + S, &[heartbeat("s2", "u1", "a", "r", l + S, true)])
        .await
        .unwrap();
    assert!(off.flips.is_empty(), "held after a loss: {:?}", off.flips);
    let released = store.sweep(p, l + 80 * S, 10).await.unwrap();
    assert_eq!(statuses(&released.flips), [Status::Offline]);
}

#[tokio::test]
async fn after_a_loss_the_rollup_asks_every_client_to_resync_once() {
    let redis = RedisServer::start();
    let store = SessionStore::new(
        RedisConnection::connect(&redis.settings()).await.unwrap(),
        &settings(5),
    )
    .with_ledger(Arc::new(MemoryPartitionLedger::new()));
    let p = store
        .partitioner()
        .partition_of(&FacilityId::parse("a").unwrap());
    let push = Arc::new(MemoryQueue::new());
    let rollup = Rollup::new(
        store.clone(),
        Arc::new(MemoryFacilityStore::new()),
        push.clone(),
        RollupSettings::default(),
    );
    let t = 1_763_900_000_000;
    // Online, pushed to clients, not yet persisted by the rollup...
    store
        .apply(p, t, &[heartbeat("s1", "u1", "a", "r", t, false)])
        .await
        .unwrap();
    // ...when Redis loses its data. The session never comes back.
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut store.connection())
        .await
        .unwrap();
    let l = t + 10 * S;
    store.sweep(p, l, 10).await.unwrap(); // the sweeper starts the new epoch
    assert!(rollup.run(l + 2 * S).await.errors.is_empty());
    assert_eq!(resyncs(&push.drain()), 0, "not during the hold");
    let report = rollup.run(l + 6 * S).await;
    assert!(report.errors.is_empty());
    assert_eq!(report.resyncs, 1);
    assert_eq!(resyncs(&push.drain()), 1, "once the hold is over");
    assert!(rollup.run(l + 7 * S).await.errors.is_empty());
    assert_eq!(resyncs(&push.drain()), 0, "once per loss");
    // The snapshot clients take then no longer shows the facility.
    let snapshot = store
        .snapshot(&presence::ids::RegionId::parse("r").unwrap())
        .await
        .unwrap();
    assert!(
        snapshot.iter().all(|f| f.status == Status::Offline),
        "{snapshot:?}"
    );
}

#[tokio::test]
async fn a_deployment_older_than_the_ledger_still_holds_after_its_next_loss() {
    let redis = RedisServer::start();
    let conn = RedisConnection::connect(&redis.settings()).await.unwrap();
    // Before the upgrade: epochs started without a ledger.
    let old = SessionStore::new(conn.clone(), &settings(75));
    let p = old
        .partitioner()
        .partition_of(&FacilityId::parse("a").unwrap());
    let t = 1_763_900_000_000;
    old.sweep(p, t, 10).await.unwrap();
    // After it: the functions have a ledger, which knows nothing of that epoch...
    let ledger = Arc::new(MemoryPartitionLedger::new());
    let store = SessionStore::new(conn, &settings(75)).with_ledger(ledger.clone());
    let rollup = Rollup::new(
        store.clone(),
        Arc::new(MemoryFacilityStore::new()),
        Arc::new(MemoryQueue::new()),
        RollupSettings::default(),
    )
    .with_ledger(ledger);
    // ...until the rollup tells it.
    assert!(rollup.run(t + S).await.errors.is_empty());
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut store.connection())
        .await
        .unwrap();
    let l = t + 10 * S;
    store
        .apply(p, l, &[heartbeat("s1", "u1", "a", "r", l, false)])
        .await
        .unwrap();
    let off = store
        .apply(p, l + S, &[heartbeat("s1", "u1", "a", "r", l + S, true)])
        .await
        .unwrap();
    assert!(off.flips.is_empty(), "a loss, so held: {:?}", off.flips);
}
