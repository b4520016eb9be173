//! Ports with two implementations pass the same contract: the DynamoDB adapters (on the
//! local emulator, through the real SDK) and the in-memory ones the local stack uses.

use presence::facilities::{DynamoFacilityStore, FacilityStore, MemoryFacilityStore};
use presence::hub::registry::{
    Connection, ConnectionRegistry, DynamoConnectionRegistry, MemoryConnectionRegistry,
};
use presence::ids::{FacilityId, RegionId, SessionId, UserId};
use presence::ledger::{DynamoPartitionLedger, EpochStart, MemoryPartitionLedger, PartitionLedger};
use presence::port::PortError;
use presence::protocol::{FacilityStatus, Status};
use presence::sessions::{FacilityState, JournalEntry, Partition, Segment};
use presence_tests::*;
use std::time::Duration;

fn uid(u: &str) -> UserId {
    UserId::parse(u).unwrap()
}

fn conn(id: &str, user: &str, facility: &str, region: &str) -> Connection {
    Connection {
        id: id.into(),
        user: uid(user),
        facility: FacilityId::parse(facility).unwrap(),
        region: RegionId::parse(region).unwrap(),
        session_id: Some(SessionId::parse("tab").unwrap()),
        connected_ms: 1_763_900_000_000,
        hidden: false,
        grant: Default::default(),
    }
}

async fn registry_contract(r: &dyn ConnectionRegistry) {
    r.register(&conn("c1", "ann", "icu", "north"))
        .await
        .unwrap();
    r.register(&conn("c2", "ann", "icu", "north"))
        .await
        .unwrap();
    r.register(&conn("c3", "bo", "er", "north")).await.unwrap();
    r.register(&conn("c4", "cy", "depot", "south"))
        .await
        .unwrap();
    assert_eq!(
        r.get("c1").await.unwrap(),
        Some(conn("c1", "ann", "icu", "north"))
    );
    let mut ann = r.user_connections(&uid("ann")).await.unwrap();
    ann.sort();
    assert_eq!(ann, ["c1", "c2"]);
    let mut north: Vec<_> = r
        .region_connections(&RegionId::parse("north").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    north.sort();
    assert_eq!(north, ["c1", "c2", "c3"]);
    // Every connection (for resync after a data loss), never a membership.
    r.join(&uid("ann"), "chat:night", 1).await.unwrap();
    let mut all = r.all_connections().await.unwrap();
    all.sort();
    assert_eq!(all, ["c1", "c2", "c3", "c4"]);
    r.leave(&uid("ann"), "chat:night").await.unwrap();
    assert_eq!(
        r.facility_connections(&FacilityId::parse("er").unwrap())
            .await
            .unwrap(),
        [("c3".to_owned(), uid("bo"))]
    );

    assert!(r.join(&uid("ann"), "chat:x", 1).await.unwrap());
    assert!(
        !r.join(&uid("ann"), "chat:x", 2).await.unwrap(),
        "joining twice is one membership"
    );
    assert!(r.join(&uid("bo"), "chat:x", 3).await.unwrap());
    let mut members = r.members("chat:x").await.unwrap();
    members.sort();
    assert_eq!(members, [uid("ann"), uid("bo")]);
    assert!(r.is_member(&uid("ann"), "chat:x").await.unwrap());
    assert!(!r.is_member(&uid("cy"), "chat:x").await.unwrap());

    // memberships belong to the user: removing connections keeps them
    assert_eq!(
        r.remove("c1").await.unwrap().map(|c| c.id),
        Some("c1".to_owned())
    );
    assert_eq!(r.remove("c1").await.unwrap(), None, "idempotent");
    assert_eq!(r.get("c1").await.unwrap(), None);
    assert_eq!(r.user_connections(&uid("ann")).await.unwrap(), ["c2"]);
    assert!(r.is_member(&uid("ann"), "chat:x").await.unwrap());

    assert!(r.leave(&uid("ann"), "chat:x").await.unwrap());
    assert!(!r.leave(&uid("ann"), "chat:x").await.unwrap());
    assert_eq!(r.members("chat:x").await.unwrap(), [uid("bo")]);
    assert!(r.members("chat:none").await.unwrap().is_empty());
}

#[tokio::test]
async fn connection_registries_agree() {
    registry_contract(&MemoryConnectionRegistry::new()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = unique("connections");
    create_table(&ddb, "ConnectionsTable", &table).await;
    registry_contract(&DynamoConnectionRegistry::new(ddb, table)).await;
}

fn status(f: &str, status: Status, since: i64, version: u64, n: u64) -> FacilityStatus {
    FacilityStatus {
        facility_id: FacilityId::parse(f).unwrap(),
        region: RegionId::parse("north").unwrap(),
        status,
        since_ms: since,
        version,
        online_sessions: n,
    }
}

const P1: Partition = Partition(1);
const P2: Partition = Partition(2);

async fn facility_contract(s: &dyn FacilityStore) {
    let t = presence::now_ms();
    let f1 = FacilityId::parse("icu").unwrap();
    let v1 = FacilityState {
        status: status("icu", Status::Online, t, 1, 1),
        rev: 2,
    };
    assert!(s.put_status(P1, &v1, t).await.unwrap());
    let v1_more = FacilityState {
        status: status("icu", Status::Online, t, 1, 2),
        rev: 3,
    };
    assert!(
        s.put_status(P1, &v1_more, t).await.unwrap(),
        "same version, newer count"
    );
    assert!(
        !s.put_status(P1, &v1, t).await.unwrap(),
        "an older rev never wins"
    );
    let v2 = FacilityState {
        status: status("icu", Status::Offline, t + 10, 2, 0),
        rev: 5,
    };
    assert!(s.put_status(P1, &v2, t).await.unwrap());
    assert!(
        !s.put_status(P1, &v1_more, t).await.unwrap(),
        "an older version never wins"
    );
    assert_eq!(s.status(&f1).await.unwrap(), Some(v2.status.clone()));
    s.put_status(
        P2,
        &FacilityState {
            status: status("er", Status::Online, t, 1, 1),
            rev: 1,
        },
        t,
    )
    .await
    .unwrap();
    // The reconcile's bounded read: the online status items of one partition only.
    let online = |p| async move {
        let list = s.online_in(p).await.unwrap();
        list.into_iter()
            .map(|f| f.facility_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(online(P2).await, ["er"]);
    assert!(online(P1).await.is_empty(), "icu is offline now");
    assert!(online(Partition(3)).await.is_empty());
    let mut region: Vec<_> = s
        .region(&RegionId::parse("north").unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.facility_id.to_string())
        .collect();
    region.sort();
    assert_eq!(region, ["er", "icu"]);

    let seg = |session: &str, start: i64, end: i64| {
        JournalEntry::Segment(Segment {
            session_id: SessionId::parse(session).unwrap(),
            user_id: uid("ann"),
            facility_id: f1.clone(),
            region: RegionId::parse("north").unwrap(),
            start_ms: start,
            end_ms: end,
            reason: "ended".into(),
        })
    };
    // a segment spanning three hours is found in the middle one
    let entries = [
        JournalEntry::Flip(v1.status.clone()),
        JournalEntry::Flip(v2.status.clone()),
        seg("s1", t, t + 10),
        seg("s2", t - 3 * 3_600_000, t - 60_000),
    ];
    s.append_history(&entries, t).await.unwrap();
    s.append_history(&entries, t).await.unwrap();
    let flips: Vec<_> = s
        .flips(&f1, t - 1, t + 100)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.version)
        .collect();
    assert_eq!(flips, [1, 2]);
    // Pages of flips and the flip before a time (the history read API's reads).
    let versions =
        |p: &presence::facilities::FlipPage| p.flips.iter().map(|f| f.version).collect::<Vec<_>>();
    let page = s.flips_page(&f1, t - 1, t + 100, None, 1).await.unwrap();
    assert_eq!(versions(&page), [1]);
    let next = page
        .next
        .expect("a full page says where the next one starts");
    assert_eq!(
        next,
        presence::facilities::FlipKey {
            since_ms: t,
            version: 1
        }
    );
    let page = s
        .flips_page(&f1, t - 1, t + 100, Some(next), 1)
        .await
        .unwrap();
    assert_eq!(versions(&page), [2]);
    if let Some(after) = page.next {
        let rest = s
            .flips_page(&f1, t - 1, t + 100, Some(after), 1)
            .await
            .unwrap();
        assert_eq!(
            (rest.flips.len(), rest.next),
            (0, None),
            "nothing after the last flip"
        );
    }
    let all = s.flips_page(&f1, t - 1, t + 100, None, 10).await.unwrap();
    assert_eq!((versions(&all), all.next), (vec![1, 2], None));
    let first = s.flips_page(&f1, t, t + 9, None, 10).await.unwrap();
    assert_eq!(versions(&first), [1], "to_ms is inclusive, from_ms too");
    let before = |x: i64| {
        let s = &s;
        let f1 = &f1;
        async move { s.flip_before(f1, x).await.unwrap().map(|f| f.version) }
    };
    assert_eq!(before(t).await, None, "strictly before");
    assert_eq!(before(t + 10).await, Some(1));
    assert_eq!(before(t + 11).await, Some(2));
    let at = |x: i64| {
        let s = &s;
        let f1 = &f1;
        async move {
            let mut v: Vec<String> = s
                .online_at(f1, x)
                .await
                .unwrap()
                .into_iter()
                .map(|g| g.session_id.to_string())
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(at(t + 5).await, ["s1"]);
    assert_eq!(at(t - 2 * 3_600_000).await, ["s2"]);
    assert!(at(t + 20).await.is_empty());
}

#[tokio::test]
async fn facility_stores_agree() {
    facility_contract(&MemoryFacilityStore::new()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = unique("facilities");
    create_table(&ddb, "FacilitiesTable", &table).await;
    facility_contract(&DynamoFacilityStore::new(
        ddb,
        table,
        Duration::from_secs(86_400),
    ))
    .await;
}

async fn ledger_contract(ledger: &dyn PartitionLedger) {
    let t = presence::now_ms();
    assert_eq!(ledger.begin_epoch(P1, t).await.unwrap(), EpochStart::First);
    assert_eq!(ledger.begin_epoch(P2, t).await.unwrap(), EpochStart::First);
    assert_eq!(
        ledger.begin_epoch(P1, t + 1).await.unwrap(),
        EpochStart::AfterLoss,
        "a partition's second epoch follows a loss"
    );
    assert_eq!(
        ledger.begin_epoch(P1, t + 2).await.unwrap(),
        EpochStart::AfterLoss
    );
    // An epoch Redis held before the ledger existed: recorded, the next one follows a loss;
    // recording again changes nothing.
    let p3 = Partition(3);
    ledger.record_existing(p3, t).await.unwrap();
    ledger.record_existing(p3, t).await.unwrap();
    assert_eq!(
        ledger.begin_epoch(p3, t + 1).await.unwrap(),
        EpochStart::AfterLoss
    );
    ledger.record_existing(P2, t).await.unwrap();
    assert_eq!(
        ledger.begin_epoch(P2, t + 3).await.unwrap(),
        EpochStart::AfterLoss
    );
}

#[tokio::test]
async fn partition_ledgers_agree() {
    ledger_contract(&MemoryPartitionLedger::new()).await;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = unique("facilities");
    create_table(&ddb, "FacilitiesTable", &table).await;
    ledger_contract(&DynamoPartitionLedger::new(ddb, table)).await;
}

#[tokio::test]
async fn sdk_failures_say_whether_a_retry_can_help() {
    let ddb = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    // A table that does not exist: refused for good, not worth retrying.
    let missing = DynamoPartitionLedger::new(ddb, unique("no-such-table"));
    let e = missing.begin_epoch(P1, 0).await.unwrap_err();
    assert!(matches!(e, PortError::Refused(_)), "{e:?}");
    assert!(!e.retryable());
    // Nothing listens: unavailable, worth retrying.
    let sdk = presence::aws::local_sdk_config(&format!("http://127.0.0.1:{}", free_port())).await;
    let down = DynamoPartitionLedger::new(aws_sdk_dynamodb::Client::new(&sdk), "t");
    let e = down.begin_epoch(P1, 0).await.unwrap_err();
    assert!(matches!(e, PortError::Unavailable(_)), "{e:?}");
    assert!(e.retryable());
}
