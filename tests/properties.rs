//! Property test: random interleavings of heartbeats, duplicates, reorderings, ends and
//! sweeps give the same final Redis state, and the same last published version per
//! facility, as the sequential reference model (`presence::sessions::model`).

use presence::ids::{FacilityId, SessionId};
use presence::protocol::QueueMessage;
use presence::sessions::SessionStore;
use presence::sessions::model::ModelEngine;
use presence_tests::{RedisServer, heartbeat, store};
use proptest::prelude::*;
use std::collections::BTreeMap;

const T0: i64 = 1_763_900_000_000;
const TTL_S: u64 = 20;
const FACILITIES: [&str; 3] = ["f0", "f1", "f2"];
/// Sessions with their fixed user and facility; s5 reuses s0's id at another facility, and
/// "mallory" sometimes claims s1 (conflicts).
const SESSIONS: [(&str, &str, usize); 6] = [
    ("s0", "u0", 0),
    ("s1", "u1", 0),
    ("s2", "u2", 1),
    ("s3", "u3", 1),
    ("s4", "u4", 2),
    ("s0", "u5", 2),
];

#[derive(Debug, Clone)]
enum Op {
    /// Time passes, then a batch arrives (each beat: session index, delay before now, ended, duplicate).
    Batch {
        advance_ms: i64,
        beats: Vec<(usize, i64, bool, bool)>,
        intruder: bool,
    },
    /// Time passes, then a sweep runs.
    Sweep { advance_ms: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    // Coarse times (whole half-seconds) make equal timestamps, the edge cases, common.
    let beat = (
        0..SESSIONS.len(),
        (0i64..60).prop_map(|d| d * 500),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.2),
    );
    prop_oneof![
        4 => ((0i64..30).prop_map(|a| a * 500), prop::collection::vec(beat, 1..6), prop::bool::weighted(0.05))
            .prop_map(|(advance_ms, beats, intruder)| Op::Batch { advance_ms, beats, intruder }),
        1 => (0i64..50).prop_map(|a| Op::Sweep { advance_ms: a * 500 }),
    ]
}

async fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let redis = RedisServer::start();
    let store: SessionStore = store(&redis, TTL_S, 2).await;
    let mut model = ModelEngine::new(TTL_S as i64 * 1000);
    let mut published: BTreeMap<String, u64> = BTreeMap::new();
    let mut model_published: BTreeMap<String, u64> = BTreeMap::new();
    let mut now = T0;
    let mut sent: Vec<QueueMessage> = Vec::new();
    for op in ops {
        match op {
            Op::Batch {
                advance_ms,
                beats,
                intruder,
            } => {
                now += advance_ms;
                let mut batch = Vec::new();
                for (i, delay, ended, dup) in beats {
                    if *dup && !sent.is_empty() {
                        // a redelivery of an earlier message
                        batch.push(sent[(*delay as usize) % sent.len()].clone());
                        continue;
                    }
                    let (sid, user, f) = SESSIONS[*i];
                    let user = if *intruder && sid == "s1" {
                        "mallory"
                    } else {
                        user
                    };
                    let h = heartbeat(sid, user, FACILITIES[f], "r1", now - delay, *ended);
                    sent.push(h.clone());
                    batch.push(h);
                }
                let (_, model_flips) = model.apply(now, &batch);
                let mut by_partition: BTreeMap<_, Vec<QueueMessage>> = BTreeMap::new();
                for h in batch {
                    by_partition
                        .entry(store.partitioner().partition_of(&h.facility_id))
                        .or_default()
                        .push(h);
                }
                for (p, hbs) in by_partition {
                    let applied = store
                        .apply(p, now, &hbs)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    for f in applied.flips {
                        published.insert(f.facility_id.to_string(), f.version);
                    }
                }
                for f in model_flips {
                    model_published.insert(f.facility_id.to_string(), f.version);
                }
            }
            Op::Sweep { advance_ms } => {
                now += advance_ms;
                for p in store.partitioner().all() {
                    let swept = store
                        .sweep(p, now, 1000)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    for f in swept.flips {
                        published.insert(f.facility_id.to_string(), f.version);
                    }
                }
                for f in model.sweep(now) {
                    model_published.insert(f.facility_id.to_string(), f.version);
                }
            }
        }
    }
    prop_assert_eq!(
        &published,
        &model_published,
        "last published version per facility"
    );
    for ((fac, sess), expected) in &model.sessions {
        let got = store
            .session(fac, sess)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = got.map(|r| {
            (
                r.user_id,
                r.started_ms,
                r.last_ms,
                r.deadline_ms,
                r.offline_ms,
            )
        });
        let want = Some((
            expected.user.to_string(),
            expected.started_ms,
            expected.last_ms,
            expected.deadline_ms,
            expected.offline_ms,
        ));
        prop_assert_eq!(got, want, "session {}/{}", fac, sess);
    }
    for f in FACILITIES {
        let fac = FacilityId::parse(f).unwrap();
        let got = store
            .facility(&fac)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = model.facilities.get(&fac).filter(|m| m.status.is_some());
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                prop_assert_eq!(Some(g.status), w.status, "status of {}", f);
                prop_assert_eq!(
                    (g.since_ms, g.version, g.online_sessions),
                    (w.since_ms, w.version, w.live.len() as u64),
                    "facility {}",
                    f
                );
            }
            (g, w) => prop_assert!(false, "facility {}: redis {:?}, model {:?}", f, g, w),
        }
    }
    // no session id is live in Redis that the model does not hold live
    for (fac, m) in &model.facilities {
        for s in &m.live {
            let rec = store
                .session(fac, &SessionId::parse(s.as_str()).unwrap())
                .await
                .unwrap()
                .unwrap();
            prop_assert_eq!(rec.offline_ms, None);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn redis_engine_matches_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(&ops))?;
    }
}
