//! The session engine against a real redis-server.

use presence::ids::{FacilityId, SessionId};
use presence::protocol::QueueMessage;
use presence::protocol::Status;
use presence::sessions::{JournalEntry, Outcome, SessionStore};
use presence_tests::{RedisServer, facility_status, heartbeat, session_record, store};

const T0: i64 = 1_763_900_000_000;
const TTL: i64 = 75_000;

fn fac(f: &str) -> FacilityId {
    FacilityId::parse(f).unwrap()
}

fn sid(s: &str) -> SessionId {
    SessionId::parse(s).unwrap()
}

/// A heartbeat in region r1 (these tests need no other).
fn hb(session: &str, user: &str, facility: &str, at_ms: i64, ended: bool) -> QueueMessage {
    heartbeat(session, user, facility, "r1", at_ms, ended)
}

async fn apply(
    store: &SessionStore,
    now: i64,
    hbs: &[QueueMessage],
) -> presence::sessions::Applied {
    let p = store.partitioner().partition_of(&hbs[0].facility_id);
    store.apply(p, now, hbs).await.unwrap()
}

/// One heartbeat, received when it was sent.
async fn apply_one(store: &SessionStore, hb: QueueMessage) -> presence::sessions::Applied {
    apply(store, hb.at_ms, &[hb]).await
}

/// One heartbeat, received `delay_ms` after it was sent.
async fn apply_late(
    store: &SessionStore,
    delay_ms: i64,
    hb: QueueMessage,
) -> presence::sessions::Applied {
    apply(store, hb.at_ms + delay_ms, &[hb]).await
}

#[tokio::test]
async fn new_session_refresh_and_out_of_order() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;

    let a = apply_one(&store, hb("s1", "u1", "f1", T0, false)).await;
    assert_eq!(a.outcomes, [Outcome::New]);
    assert_eq!(a.flips.len(), 1);
    assert_eq!(a.flips[0].status, Status::Online);
    assert_eq!(a.flips[0].version, 1);
    assert_eq!(a.flips[0].since_ms, T0);
    let s = session_record(&store, "f1", "s1").await.unwrap();
    assert_eq!(
        (
            s.user_id.as_str(),
            s.region.as_str(),
            s.started_ms,
            s.last_ms,
            s.deadline_ms,
            s.offline_ms
        ),
        ("u1", "r1", T0, T0, T0 + TTL, None)
    );

    // refresh moves the deadline forward; an older heartbeat and a duplicate change nothing
    let a = apply(
        &store,
        T0 + 30_000,
        &[
            hb("s1", "u1", "f1", T0 + 30_000, false),
            hb("s1", "u1", "f1", T0 + 30_000, false),
        ],
    )
    .await;
    assert_eq!(a.outcomes, [Outcome::Refreshed, Outcome::Old]);
    assert!(a.flips.is_empty());
    let a = apply_late(&store, 21_000, hb("s1", "u1", "f1", T0 + 10_000, false)).await;
    assert_eq!(a.outcomes, [Outcome::Old]);
    let s = session_record(&store, "f1", "s1").await.unwrap();
    assert_eq!((s.last_ms, s.deadline_ms), (T0 + 30_000, T0 + 30_000 + TTL));

    // a batch given out of order is applied in receive-time order
    let a = apply(
        &store,
        T0 + 61_000,
        &[
            hb("s1", "u1", "f1", T0 + 60_000, false),
            hb("s1", "u1", "f1", T0 + 45_000, false),
        ],
    )
    .await;
    assert_eq!(a.outcomes, [Outcome::Refreshed, Outcome::Refreshed]);
    let s = session_record(&store, "f1", "s1").await.unwrap();
    assert_eq!(s.deadline_ms, T0 + 60_000 + TTL);
}

#[tokio::test]
async fn ended_session_goes_offline_and_restarts_a_new_segment() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    apply_one(&store, hb("s1", "u1", "f1", T0, false)).await;

    let a = apply_one(&store, hb("s1", "u1", "f1", T0 + 5_000, true)).await;
    assert_eq!(a.outcomes, [Outcome::Ended]);
    assert_eq!(a.flips.len(), 1);
    assert_eq!(
        (
            a.flips[0].status,
            a.flips[0].since_ms,
            a.flips[0].version,
            a.flips[0].online_sessions
        ),
        (Status::Offline, T0 + 5_000, 2, 0)
    );
    let s = session_record(&store, "f1", "s1").await.unwrap();
    assert_eq!(s.offline_ms, Some(T0 + 5_000));

    // a delayed heartbeat from before the end changes nothing
    let a = apply_late(&store, 2_000, hb("s1", "u1", "f1", T0 + 4_000, false)).await;
    assert_eq!(a.outcomes, [Outcome::Old]);

    // a later heartbeat starts a new online segment; the finished one is journaled
    let a = apply_one(&store, hb("s1", "u1", "f1", T0 + 20_000, false)).await;
    assert_eq!(a.outcomes, [Outcome::Restarted]);
    assert_eq!((a.flips[0].status, a.flips[0].version), (Status::Online, 3));
    let s = session_record(&store, "f1", "s1").await.unwrap();
    assert_eq!((s.started_ms, s.offline_ms), (T0 + 20_000, None));

    let p = store.partitioner().partition_of(&fac("f1"));
    let c = store.collect(p, 100, 100, 0, i64::MAX).await.unwrap();
    let segments: Vec<_> = c
        .journal
        .iter()
        .filter_map(|e| match e {
            JournalEntry::Segment(s) => Some((s.start_ms, s.end_ms, s.reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(segments, [(T0, T0 + 5_000, "ended")]);
    let versions: Vec<_> = c
        .journal
        .iter()
        .filter_map(|e| match e {
            JournalEntry::Flip(f) => Some((f.version, f.status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        versions,
        [
            (1, Status::Online),
            (2, Status::Offline),
            (3, Status::Online)
        ]
    );
}

#[tokio::test]
async fn facility_flips_only_on_first_and_last_session() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let a = apply(
        &store,
        T0,
        &[
            hb("s1", "u1", "f1", T0, false),
            hb("s2", "u2", "f1", T0 + 1, false),
        ],
    )
    .await;
    assert_eq!(a.flips.len(), 1, "one flip for two sessions");
    assert_eq!(
        facility_status(&store, "f1").await.unwrap().online_sessions,
        2
    );

    let a = apply_one(&store, hb("s1", "u1", "f1", T0 + 10, true)).await;
    assert!(a.flips.is_empty(), "still one session online");
    let a = apply_one(&store, hb("s2", "u2", "f1", T0 + 20, true)).await;
    assert_eq!(a.flips.len(), 1);
    let f = facility_status(&store, "f1").await.unwrap();
    assert_eq!(
        (f.status, f.version, f.online_sessions, f.since_ms),
        (Status::Offline, 2, 0, T0 + 20)
    );
}

#[tokio::test]
async fn late_unknown_and_conflicting_heartbeats_change_nothing() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    // deadline already passed when applied
    let a = apply_late(&store, TTL + 1, hb("s1", "u1", "f1", T0, false)).await;
    assert_eq!(a.outcomes, [Outcome::TooLate]);
    assert!(session_record(&store, "f1", "s1").await.is_none());

    // an end for an unknown session is remembered, so the delayed start cannot revive it
    let a = apply_one(&store, hb("s2", "u1", "f1", T0 + 10, true)).await;
    assert_eq!(a.outcomes, [Outcome::EndedUnknown]);
    let a = apply_late(&store, 6, hb("s2", "u1", "f1", T0 + 5, false)).await;
    assert_eq!(a.outcomes, [Outcome::Old]);
    assert!(
        facility_status(&store, "f1").await.is_none(),
        "facility never went online"
    );

    // another user cannot refresh or end someone's session
    apply_one(&store, hb("s3", "u1", "f1", T0 + 20, false)).await;
    let a = apply_one(&store, hb("s3", "intruder", "f1", T0 + 21, true)).await;
    assert_eq!(a.outcomes, [Outcome::Conflict]);
    assert_eq!(
        session_record(&store, "f1", "s3").await.unwrap().offline_ms,
        None
    );
}

#[tokio::test]
async fn sweep_claims_due_sessions_at_their_deadline_once() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 1).await;
    apply(
        &store,
        T0,
        &[
            hb("s1", "u1", "f1", T0, false),
            hb("s2", "u2", "f2", T0 + 1_000, false),
        ],
    )
    .await;
    let p = store.partitioner().partition_of(&fac("f1"));

    let none = store.sweep(p, T0 + TTL, 100).await.unwrap();
    assert!(
        none.claimed.is_empty(),
        "a deadline equal to now has not passed"
    );
    assert_eq!(none.next_deadline_ms, Some(T0 + TTL));

    // two sweepers at once: each session is claimed exactly once
    let (x, y) = tokio::join!(
        store.sweep(p, T0 + TTL + 500, 100),
        store.sweep(p, T0 + TTL + 500, 100)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.claimed.len() + y.claimed.len(), 1);
    let claimed = if x.claimed.is_empty() { &y } else { &x };
    assert_eq!(claimed.claimed, [("f1/s1".to_owned(), T0 + TTL)]);
    assert_eq!(claimed.flips.len(), 1);
    assert_eq!(
        (claimed.flips[0].status, claimed.flips[0].since_ms),
        (Status::Offline, T0 + TTL)
    );
    let s = session_record(&store, "f1", "s1").await.unwrap();
    assert_eq!(
        s.offline_ms,
        Some(T0 + TTL),
        "offline at the deadline, not when swept"
    );
    assert_eq!(claimed.next_deadline_ms, Some(T0 + 1_000 + TTL));
}

#[tokio::test]
async fn a_lapsed_session_refreshed_before_the_sweep_gets_a_new_segment() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 1).await;
    apply_one(&store, hb("s1", "u1", "f1", T0, false)).await;
    let a = apply_late(&store, 1_000, hb("s1", "u1", "f1", T0 + TTL + 2_000, false)).await;
    assert_eq!(a.outcomes, [Outcome::Restarted]);
    let statuses: Vec<_> = a.flips.iter().map(|f| (f.status, f.since_ms)).collect();
    assert_eq!(
        statuses,
        [
            (Status::Offline, T0 + TTL),
            (Status::Online, T0 + TTL + 2_000)
        ]
    );
}

#[tokio::test]
async fn one_script_call_per_partition_per_batch() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 4).await;
    let partitioner = store.partitioner();
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.push(hb(
            &format!("s{i}"),
            &format!("u{i}"),
            &format!("f{}", i % 20),
            T0 + i,
            false,
        ));
    }
    let mut by_p = std::collections::BTreeMap::<_, Vec<_>>::new();
    for h in batch {
        by_p.entry(partitioner.partition_of(&h.facility_id))
            .or_default()
            .push(h);
    }
    // Each partition's epoch starts once (one more script call, then never again).
    for p in partitioner.all() {
        store.sweep(p, T0, 10).await.unwrap();
    }
    let mut conn = store.connection();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    for (p, hbs) in &by_p {
        let a = store.apply(*p, T0 + 300, hbs).await.unwrap();
        assert!(a.outcomes.iter().all(|o| *o == Outcome::New));
    }
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let stat = |cmd: &str, field: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split(&format!("{field}=")).nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // The first call of a script loads it (EVALSHA answers NOSCRIPT, SCRIPT LOAD, EVALSHA again).
    assert_eq!(
        stat("evalsha", "calls") - stat("evalsha", "failed_calls"),
        by_p.len() as u64,
        "{info}"
    );
    assert!(stat("evalsha", "failed_calls") <= 1, "{info}");
    let online: u64 = {
        let mut n = 0;
        for i in 0..20 {
            n += store
                .facility(&fac(&format!("f{i}")))
                .await
                .unwrap()
                .unwrap()
                .online_sessions;
        }
        n
    };
    assert_eq!(online, 200);
}

#[tokio::test]
async fn rollup_collect_and_commit_forget_only_what_was_persisted() {
    let redis = RedisServer::start();
    let store = store(&redis, 75, 1).await;
    let p = store.partitioner().partition_of(&fac("f1"));
    apply_one(&store, hb("s1", "u1", "f1", T0, false)).await;
    apply_one(&store, hb("s1", "u1", "f1", T0 + 1_000, true)).await;

    let c = store
        .collect(p, 100, 100, T0 + 10_000, i64::MAX)
        .await
        .unwrap();
    assert_eq!(c.journal_len, 3, "online flip, segment, offline flip");
    assert_eq!(c.dirty.len(), 1);
    assert_eq!(
        c.stale_unpublished.len(),
        1,
        "the flips were never acknowledged"
    );
    let rev = c.dirty[0].rev;

    // a change after the read keeps the facility dirty
    apply_one(&store, hb("s2", "u2", "f1", T0 + 2_000, false)).await;
    let (cleaned, dropped) = store
        .commit(p, c.journal_len, &[(fac("f1"), rev)], T0 + 1_000 + 1, 100)
        .await
        .unwrap();
    assert_eq!(cleaned, 0);
    assert_eq!(dropped, 1, "s1 ended before the cut-off and is deleted");
    assert!(session_record(&store, "f1", "s1").await.is_none());
    let c2 = store.collect(p, 100, 100, 0, i64::MAX).await.unwrap();
    assert_eq!(c2.journal_len, 1, "only the new online flip remains");
    assert_eq!(c2.dirty.len(), 1);

    // acknowledging publication of an older version keeps the newer flip owed
    let n = store.ack_published(p, &[(fac("f1"), 2)]).await.unwrap();
    assert_eq!(n, 0);
    let n = store.ack_published(p, &[(fac("f1"), 3)]).await.unwrap();
    assert_eq!(n, 1);
    assert!(
        store
            .collect(p, 100, 100, T0 + 10_000, i64::MAX)
            .await
            .unwrap()
            .stale_unpublished
            .is_empty()
    );
}

/// What the engine holds for a session and its facility, to compare runs.
async fn snapshot(store: &SessionStore, sessions: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (f, s) in sessions {
        let rec = store.session(&fac(f), &sid(s)).await.unwrap();
        out.push(format!(
            "{f}/{s}: {:?}",
            rec.map(|r| (r.started_ms, r.last_ms, r.deadline_ms, r.offline_ms))
        ));
        out.push(format!("{f}: {:?}", store.facility(&fac(f)).await.unwrap()));
    }
    out
}

#[tokio::test]
async fn duplicates_and_reordering_give_the_same_final_state() {
    // Two facilities in different partitions.
    let (a, b) = (RedisServer::start(), RedisServer::start());
    let (ordered, shuffled) = (store(&a, 75, 4).await, store(&b, 75, 4).await);
    assert_ne!(
        ordered.partitioner().partition_of(&fac("f1")),
        ordered.partitioner().partition_of(&fac("f2"))
    );
    let beats = [
        hb("s1", "u1", "f1", T0, false),
        hb("s2", "u2", "f2", T0 + 100, false),
        hb("s1", "u1", "f1", T0 + 30_000, false),
        hb("s2", "u2", "f2", T0 + 30_100, false),
        hb("s1", "u1", "f1", T0 + 60_000, false),
        hb("s2", "u2", "f2", T0 + 60_100, true),
    ];
    for h in &beats {
        apply_one(&ordered, h.clone()).await;
    }
    // at-least-once and out of order: every refresh duplicated, later ones delivered first,
    // each delivery its own batch
    let now = T0 + 61_000;
    for i in [0, 1, 4, 2, 2, 5, 3, 4, 3, 5, 1, 0] {
        apply(&shuffled, now, std::slice::from_ref(&beats[i])).await;
    }
    let sessions = [("f1", "s1"), ("f2", "s2")];
    assert_eq!(
        snapshot(&ordered, &sessions).await,
        snapshot(&shuffled, &sessions).await
    );
}

/// The session a socket carries (`socket.lua`): a close lingers it for the grace, unless
/// another socket took it over or a heartbeat newer than the close arrived; the sweeper then
/// takes it offline at the shortened deadline.
#[tokio::test]
async fn a_closed_socket_lingers_its_session_unless_another_carries_it() {
    use presence::sessions::SocketOp;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 1).await;
    let linger = SocketOp::Linger { grace_ms: 10_000 };
    let beat = |at| hb("s1", "u1", "f1", at, false);

    let (_, o, flips) = store
        .apply_socket(&beat(T0), SocketOp::Bind, "conn-a", T0)
        .await
        .unwrap();
    assert_eq!((o, flips.len()), (Outcome::New, 1));
    // another tab's socket takes it over; the first socket's close changes nothing
    let (_, o, _) = store
        .apply_socket(&beat(T0 + 1_000), SocketOp::Bind, "conn-b", T0 + 1_000)
        .await
        .unwrap();
    assert_eq!(o, Outcome::Refreshed);
    let (_, o, _) = store
        .apply_socket(&beat(T0 + 2_000), linger, "conn-a", T0 + 2_000)
        .await
        .unwrap();
    assert_eq!(o, Outcome::Kept);
    assert!(
        store
            .sweep(
                store.partitioner().partition_of(&fac("f1")),
                T0 + 20_000,
                100
            )
            .await
            .unwrap()
            .claimed
            .is_empty()
    );

    // a heartbeat newer than the close (over HTTP, say) keeps it too
    apply_one(&store, beat(T0 + 3_000)).await;
    let (_, o, _) = store
        .apply_socket(&beat(T0 + 2_500), linger, "conn-b", T0 + 3_100)
        .await
        .unwrap();
    assert_eq!(o, Outcome::Kept);

    // the carrying socket closes: the deadline moves in to the close + the grace
    let (_, o, _) = store
        .apply_socket(&beat(T0 + 4_000), linger, "conn-b", T0 + 4_000)
        .await
        .unwrap();
    assert_eq!(o, Outcome::Lingering);
    let p = store.partitioner().partition_of(&fac("f1"));
    assert!(
        store
            .sweep(p, T0 + 13_999, 100)
            .await
            .unwrap()
            .claimed
            .is_empty()
    );
    let swept = store.sweep(p, T0 + 14_001, 100).await.unwrap();
    assert_eq!(swept.claimed.len(), 1);
    assert_eq!(
        swept.flips[0].since_ms,
        T0 + 14_000,
        "offline at the close + the grace"
    );
}

/// ws-push's per-region outbox: the first offer of a quiet region sends at once; offers within
/// the window wait for one sender; an entry is taken once, and again only after the lease
/// when its sender never said done; a newer version replaces an older one.
#[tokio::test]
async fn the_status_outbox_sends_each_status_once() {
    use presence::sessions::outbox::OutboxRole;
    use std::time::Duration;
    let redis = RedisServer::start();
    let store = store(&redis, 75, 1).await;
    let region = presence::ids::RegionId::parse("r1").unwrap();
    let window = Duration::from_millis(300);
    let status = |f: &str, v: u64| presence::protocol::FacilityStatus {
        facility_id: fac(f),
        region: region.clone(),
        status: Status::Online,
        since_ms: T0,
        version: v,
        online_sessions: 1,
    };

    let OutboxRole::Send(first) = store
        .outbox_offer(&region, window, &[status("f1", 1)], T0)
        .await
        .unwrap()
    else {
        panic!("a quiet region sends at once")
    };
    assert_eq!(first.len(), 1);
    // within the window: one sender waits, the rest are queued
    let role = store
        .outbox_offer(&region, window, &[status("f2", 1)], T0 + 10)
        .await
        .unwrap();
    assert!(matches!(role, OutboxRole::Wait(_)), "{role:?}");
    let role = store
        .outbox_offer(
            &region,
            window,
            &[status("f3", 1), status("f2", 2)],
            T0 + 20,
        )
        .await
        .unwrap();
    assert_eq!(role, OutboxRole::Queued);
    tokio::time::sleep(window).await;
    // f1 is still being sent by the first sender (no done yet): not taken twice
    let taken = store.outbox_take(&region, window, T0 + 400).await.unwrap();
    let mut got: Vec<_> = taken
        .iter()
        .map(|p| (p.status.facility_id.to_string(), p.status.version))
        .collect();
    got.sort();
    assert_eq!(got, [("f2".to_owned(), 2), ("f3".to_owned(), 1)]);
    store.outbox_done(&region, &taken).await.unwrap();
    // the first sender died without done: after the lease, its entry is taken again
    tokio::time::sleep(window).await;
    let OutboxRole::Send(again) = store
        .outbox_offer(&region, window, &[], T0 + 31_000)
        .await
        .unwrap()
    else {
        panic!("the window is over")
    };
    assert_eq!(
        again
            .iter()
            .map(|p| p.status.facility_id.to_string())
            .collect::<Vec<_>>(),
        ["f1"]
    );
    store.outbox_done(&region, &again).await.unwrap();
    tokio::time::sleep(window).await;
    let OutboxRole::Send(none) = store
        .outbox_offer(&region, window, &[], T0 + 62_000)
        .await
        .unwrap()
    else {
        panic!("the window is over")
    };
    assert!(none.is_empty(), "{none:?}");
}
