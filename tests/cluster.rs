//! The session engine on a real 3-master Redis Cluster: every script touches one slot (a
//! CROSSSLOT error would fail these calls), partitions spread over the masters.

use presence::config::{RedisSettings, SessionSettings};
use presence::ids::{FacilityId, RegionId};
use presence::protocol::Status;
use presence::sessions::{RedisConnection, SessionStore};
use presence_tests::{RedisServer, heartbeat};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// A port whose cluster bus port (+10000) is free as well.
fn cluster_port(taken: &[u16]) -> u16 {
    for _ in 0..1000 {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            % 20_000
            + 20_000;
        if !taken.contains(&p)
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port pair for a cluster node");
}

struct Cluster {
    _nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
    first: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster() -> Cluster {
    let dir = std::env::temp_dir().join(presence_tests::unique("presence-cluster"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ports = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let port = cluster_port(&ports);
        ports.push(port);
        let conf = dir.join(format!("nodes-{port}.conf"));
        nodes.push(RedisServer::start_on(
            port,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--cluster-node-timeout",
                "2000",
                "--dir",
                dir.to_str().unwrap(),
            ],
        ));
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli is installed (redis-tools)");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let start = Instant::now();
    loop {
        let ok = ports.iter().all(|p| {
            Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                .unwrap_or(false)
        });
        if ok {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "cluster did not become ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster {
        _nodes: nodes,
        dir,
        first: ports[0],
    }
}

#[tokio::test]
async fn the_engine_runs_on_a_three_master_cluster() {
    let cluster = start_cluster();
    let settings = RedisSettings {
        url: format!("redis://127.0.0.1:{}", cluster.first),
        cluster: true,
    };
    let conn = RedisConnection::connect(&settings)
        .await
        .expect("cluster connection");
    let sessions = SessionSettings {
        ttl: Duration::from_secs(75),
        heartbeat_interval: Duration::from_secs(30),
        partitions: 16,
        loss_hold: Duration::ZERO,
        disconnect_grace: Duration::from_secs(10),
    };
    let store = SessionStore::new(conn, &sessions);
    let partitioner = store.partitioner();
    let t = 1_763_900_000_000;

    // 40 facilities over all 16 partitions: new sessions, refreshes, ends
    let facilities: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    let mut by_p = std::collections::BTreeMap::<_, Vec<_>>::new();
    for (i, f) in facilities.iter().enumerate() {
        by_p.entry(partitioner.partition_of(&FacilityId::parse(f).unwrap()))
            .or_default()
            .push(heartbeat(&format!("s{i}"), "u", f, "r1", t, false));
    }
    assert_eq!(by_p.len(), 16, "every partition used");
    let mut flips = 0;
    for (p, hbs) in &by_p {
        flips += store
            .apply(*p, t, hbs)
            .await
            .expect("apply on the cluster")
            .flips
            .len();
    }
    assert_eq!(flips, 40);
    for (i, f) in facilities.iter().enumerate().take(10) {
        let p = partitioner.partition_of(&FacilityId::parse(f).unwrap());
        store
            .apply(
                p,
                t + 1000,
                &[heartbeat(&format!("s{i}"), "u", f, "r1", t + 1000, true)],
            )
            .await
            .unwrap();
    }
    // the rest expire
    let mut expired = 0;
    for p in partitioner.all() {
        expired += store
            .sweep(p, t + 80_000, 100)
            .await
            .expect("sweep on the cluster")
            .claimed
            .len();
    }
    assert_eq!(expired, 30);
    let snapshot = store
        .snapshot(&RegionId::parse("r1").unwrap())
        .await
        .expect("snapshot across the cluster");
    assert_eq!(snapshot.len(), 40);
    assert!(
        snapshot
            .iter()
            .all(|f| f.status == Status::Offline && f.version == 2)
    );

    // the rollup's reads and writes, and acknowledging publication
    let mut journal = 0;
    for p in partitioner.all() {
        let c = store
            .collect(p, 1000, 1000, t + 100_000, i64::MAX)
            .await
            .expect("collect on the cluster");
        journal += c.journal_len;
        let persisted: Vec<_> = c
            .dirty
            .iter()
            .map(|s| (s.status.facility_id.clone(), s.rev))
            .collect();
        store
            .commit(p, c.journal_len, &persisted, t + 200_000, 1000)
            .await
            .expect("commit on the cluster");
        let published: Vec<_> = c
            .stale_unpublished
            .iter()
            .map(|s| (s.status.facility_id.clone(), s.status.version))
            .collect();
        store
            .ack_published(p, &published)
            .await
            .expect("ack on the cluster");
    }
    assert_eq!(
        journal,
        40 * 3,
        "online flip, segment and offline flip per facility"
    );
    assert!(
        store
            .session(
                &FacilityId::parse("f0").unwrap(),
                &presence::ids::SessionId::parse("s0").unwrap()
            )
            .await
            .unwrap()
            .is_none(),
        "old offline sessions dropped"
    );
}
