//! The per-group message store (history and recovery): the same contract on the in-memory
//! store and on the DynamoDB adapter (the emulator): seqs without gaps or duplicates under
//! concurrent appends, pages after a seq and of the newest, count and age retention.

use presence::ids::UserId;
use presence::messages::{
    DynamoMessageStore, HistoryPage, MemoryMessageStore, MessageStore, Retention, StoredMessage,
    create_table,
};
use presence_tests::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const T: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

fn retention(max_count: u64) -> Retention {
    Retention {
        max_age: Duration::from_secs(3_600),
        max_count,
    }
}

fn user(u: &str) -> UserId {
    UserId::parse(u).unwrap()
}

fn seqs(p: &HistoryPage) -> Vec<u64> {
    p.messages.iter().map(|m| m.seq).collect()
}

fn empty(complete: bool) -> HistoryPage {
    HistoryPage {
        messages: vec![],
        complete,
        more: false,
    }
}

/// Makes a store with the given retention (a fresh table for DynamoDB).
type Make = Box<dyn Fn(Retention) -> futures::future::BoxFuture<'static, Arc<dyn MessageStore>>>;

fn memory() -> Make {
    Box::new(|r| Box::pin(async move { Arc::new(MemoryMessageStore::new(r)) as _ }))
}

async fn dynamo_table() -> (aws_sdk_dynamodb::Client, String) {
    let Clients { ddb, .. } = Clients::new().await;
    let table = unique("messages");
    create_table(&ddb, &table)
        .await
        .expect("create messages table");
    // Creating it again is fine.
    create_table(&ddb, &table).await.expect("create it again");
    (ddb, table)
}

fn dynamo() -> Make {
    Box::new(|r| {
        Box::pin(async move {
            let (ddb, table) = dynamo_table().await;
            Arc::new(DynamoMessageStore::new(ddb, table, r)) as _
        })
    })
}

async fn append(store: &dyn MessageStore, group: &str, data: Value, ts: i64) -> StoredMessage {
    store
        .append(group, Some(&user("ann")), &data, ts)
        .await
        .unwrap()
}

async fn seqs_and_pages(make: Make) {
    let store = make(retention(1_000)).await;
    let s = store.as_ref();
    let data = json!({"text": "hei på deg ✓", "n": [1, 2.5, null], "deep": {"a": true}});
    let first = s.append("chat:ops", None, &data, T).await.unwrap();
    assert_eq!(
        first,
        StoredMessage {
            seq: 1,
            ts: T,
            from: None,
            data: data.clone()
        }
    );
    for i in 2..=10 {
        let m = append(s, "chat:ops", json!(i), T + i).await;
        assert_eq!(
            (m.seq, m.ts, m.from.as_ref()),
            (i as u64, T + i, Some(&user("ann")))
        );
    }
    assert_eq!(
        append(s, "user:bob", json!("x"), T).await.seq,
        1,
        "per group"
    );

    let p = s.history("chat:ops", None, 100, T + 20).await.unwrap();
    assert_eq!(seqs(&p), (1..=10).collect::<Vec<_>>());
    assert!(p.complete && !p.more);
    assert_eq!(p.messages[0], first);
    assert_eq!(
        serde_json::to_value(&p.messages[0]).unwrap(),
        json!({"seq": 1, "ts": T, "from": null, "data": data})
    );
    assert_eq!(
        serde_json::to_value(&p.messages[4]).unwrap(),
        json!({"seq": 5, "ts": T + 5, "from": "ann", "data": 5})
    );

    let p = s.history("chat:ops", None, 3, T + 20).await.unwrap();
    assert_eq!(seqs(&p), [8, 9, 10]);
    assert!(p.complete && !p.more);

    let p = s.history("chat:ops", Some(0), 4, T + 20).await.unwrap();
    assert_eq!(seqs(&p), [1, 2, 3, 4]);
    assert!(p.complete && p.more);
    let p = s.history("chat:ops", Some(4), 4, T + 20).await.unwrap();
    assert_eq!(seqs(&p), [5, 6, 7, 8]);
    assert!(p.complete && p.more);
    let p = s.history("chat:ops", Some(8), 4, T + 20).await.unwrap();
    assert_eq!(seqs(&p), [9, 10]);
    assert!(p.complete && !p.more);
    let p = s.history("chat:ops", Some(6), 4, T + 20).await.unwrap();
    assert_eq!(seqs(&p), [7, 8, 9, 10]);
    assert!(p.complete && !p.more, "exactly the rest: no more");

    // After the newest (or far beyond it): nothing, complete.
    for after in [10, 11, 1_000_000] {
        let p = s.history("chat:ops", Some(after), 4, T + 20).await.unwrap();
        assert_eq!(p, empty(true), "after {after}");
    }
    // A group without messages.
    assert_eq!(
        s.history("chat:none", None, 10, T).await.unwrap(),
        empty(true)
    );
    assert_eq!(
        s.history("chat:none", Some(0), 10, T).await.unwrap(),
        empty(true)
    );
    assert_eq!(
        s.history("chat:none", Some(5), 10, T).await.unwrap(),
        empty(true)
    );
}

/// 8 tasks append 10 messages each to one group at once, each through its own store (like
/// 8 Lambda containers): seqs 1..=80, no gap, no duplicate. An append that lost its seq to
/// rivals more times than the store retries answers a retryable error; the task tries it
/// again, as a caller may (nothing of the failed append is stored).
async fn concurrent_appends(stores: Vec<Arc<dyn MessageStore>>) -> u32 {
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .enumerate()
        .map(|(t, store)| {
            tokio::spawn(async move {
                let (mut mine, mut gave_up) = (Vec::new(), 0u32);
                for i in 0..10 {
                    let data = json!({"t": t, "i": i});
                    let m = loop {
                        match store.append("chat:busy", None, &data, T + i).await {
                            Ok(m) => break m,
                            Err(e) if e.retryable() && gave_up < 50 => gave_up += 1,
                            Err(e) => panic!("append under contention: {e}"),
                        }
                    };
                    mine.push(m.seq);
                }
                (mine, gave_up)
            })
        })
        .collect();
    let (mut all, mut gave_up) = (Vec::new(), 0);
    for task in tasks {
        let (mine, g) = task.await.unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
        all.extend(mine);
        gave_up += g;
    }
    all.sort_unstable();
    assert_eq!(all, (1..=80).collect::<Vec<u64>>(), "no gap, no duplicate");

    let store = stores[0].as_ref();
    let p = store
        .history("chat:busy", Some(0), 500, T + 20)
        .await
        .unwrap();
    assert_eq!(seqs(&p), (1..=80).collect::<Vec<_>>());
    assert!(p.complete && !p.more);
    // Each stored message is the one its seq was given for, each task's in its order.
    let mut per_task = std::collections::HashMap::<i64, Vec<i64>>::new();
    for m in &p.messages {
        per_task
            .entry(m.data["t"].as_i64().unwrap())
            .or_default()
            .push(m.data["i"].as_i64().unwrap());
    }
    assert_eq!(per_task.len(), 8);
    assert!(per_task.values().all(|v| *v == (0..10).collect::<Vec<_>>()));
    assert_eq!(append(store, "chat:busy", json!(0), T).await.seq, 81);
    gave_up
}

async fn count_retention(make: Make) -> Arc<dyn MessageStore> {
    let store = make(retention(5)).await;
    let s = store.as_ref();
    for i in 1..=12 {
        assert_eq!(append(s, "chat:g", json!(i), T).await.seq, i as u64);
    }
    let p = s.history("chat:g", None, 100, T).await.unwrap();
    assert_eq!(seqs(&p), [8, 9, 10, 11, 12]);
    assert!(!p.complete, "12 sent, 7 dropped");
    let p = s.history("chat:g", None, 5, T).await.unwrap();
    assert_eq!(seqs(&p), [8, 9, 10, 11, 12]);
    assert!(p.complete);
    let p = s.history("chat:g", None, 2, T).await.unwrap();
    assert_eq!(seqs(&p), [11, 12]);
    assert!(p.complete);

    let p = s.history("chat:g", Some(0), 3, T).await.unwrap();
    assert_eq!(seqs(&p), [8, 9, 10]);
    assert!(!p.complete && p.more);
    let p = s.history("chat:g", Some(6), 10, T).await.unwrap();
    assert_eq!(seqs(&p), [8, 9, 10, 11, 12]);
    assert!(!p.complete && !p.more, "7 was dropped");
    let p = s.history("chat:g", Some(7), 10, T).await.unwrap();
    assert_eq!(seqs(&p), [8, 9, 10, 11, 12]);
    assert!(p.complete && !p.more);
    let p = s.history("chat:g", Some(12), 10, T).await.unwrap();
    assert_eq!(p, empty(true));
    store
}

async fn age_retention(make: Make) {
    let store = make(retention(1_000)).await;
    let s = store.as_ref();
    for i in 1..=3 {
        append(s, "chat:old", json!(i), T).await; // kept until T + 1 h
    }
    for i in 4..=5 {
        append(s, "chat:old", json!(i), T + HOUR / 2).await;
    }
    let now = T + HOUR;
    let p = s.history("chat:old", None, 10, now).await.unwrap();
    assert_eq!(seqs(&p), [4, 5]);
    assert!(!p.complete, "1..=3 expired");
    let p = s.history("chat:old", None, 2, now).await.unwrap();
    assert_eq!(seqs(&p), [4, 5]);
    assert!(p.complete);
    let p = s.history("chat:old", Some(0), 1, now).await.unwrap();
    assert_eq!(seqs(&p), [4]);
    assert!(!p.complete && p.more);
    let p = s.history("chat:old", Some(3), 10, now).await.unwrap();
    assert_eq!(seqs(&p), [4, 5]);
    assert!(p.complete && !p.more);
    // Before it expires, the message is there.
    let p = s.history("chat:old", Some(0), 10, now - 1).await.unwrap();
    assert_eq!(seqs(&p), [1, 2, 3, 4, 5]);
    assert!(p.complete);

    // All of it expired: nothing, and incomplete unless nothing was asked for.
    let later = T + HOUR / 2 + HOUR;
    assert_eq!(
        s.history("chat:old", None, 10, later).await.unwrap(),
        empty(false)
    );
    assert_eq!(
        s.history("chat:old", Some(2), 10, later).await.unwrap(),
        empty(false)
    );
    assert_eq!(
        s.history("chat:old", Some(5), 10, later).await.unwrap(),
        empty(true)
    );
    // The seq goes on.
    assert_eq!(append(s, "chat:old", json!(6), later).await.seq, 6);
    let p = s.history("chat:old", Some(0), 10, later).await.unwrap();
    assert_eq!(seqs(&p), [6]);
    assert!(!p.complete && !p.more);
}

/// More expired leftovers than one page: reading `after` an old seq skips them all.
async fn expired_pages(make: Make) {
    let store = make(retention(1_000)).await;
    let s = store.as_ref();
    for i in 1..=30 {
        append(s, "chat:many", json!(i), T).await;
    }
    for i in 31..=33 {
        append(s, "chat:many", json!(i), T + HOUR).await;
    }
    let now = T + HOUR + 1;
    let p = s.history("chat:many", Some(0), 2, now).await.unwrap();
    assert_eq!(seqs(&p), [31, 32]);
    assert!(!p.complete && p.more);
    let p = s.history("chat:many", Some(0), 3, now).await.unwrap();
    assert_eq!(seqs(&p), [31, 32, 33]);
    assert!(!p.complete && !p.more);
}

#[tokio::test]
async fn memory_store_keeps_seqs_and_pages() {
    seqs_and_pages(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_under_concurrent_appends() {
    let store: Arc<dyn MessageStore> = Arc::new(MemoryMessageStore::new(retention(1_000)));
    assert_eq!(concurrent_appends(vec![store; 8]).await, 0);
}

#[tokio::test]
async fn memory_store_retention() {
    count_retention(memory()).await;
    age_retention(memory()).await;
    expired_pages(memory()).await;
}

#[tokio::test]
async fn dynamo_store_keeps_seqs_and_pages() {
    seqs_and_pages(dynamo()).await;
}

/// One store in one process: its appends to a group take turns, so none races another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_under_concurrent_appends_in_one_process() {
    let (ddb, table) = dynamo_table().await;
    let store = DynamoMessageStore::new(ddb, table, retention(1_000));
    let shared: Arc<dyn MessageStore> = Arc::new(store.clone());
    assert_eq!(concurrent_appends(vec![shared; 8]).await, 0);
    assert_eq!(store.lost_races(), 0);
}

/// 8 stores on one table (8 Lambda containers): rival appends move the head under each other,
/// and the append transaction's condition and retry keep the seqs whole.
///
/// On a private emulator that serves one request at a time: the shared one (threaded moto)
/// does not isolate transactions (a cancelled one puts back the tables it touched as they
/// were when it began, undoing what others wrote meanwhile), where DynamoDB does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_stores_racing_across_processes() {
    let emulator = SerialEmulator::start();
    let Clients { ddb, .. } = Clients::at(&emulator.url).await;
    let table = unique("messages");
    create_table(&ddb, &table)
        .await
        .expect("create messages table");
    let stores: Vec<_> = (0..8)
        .map(|_| DynamoMessageStore::new(ddb.clone(), table.clone(), retention(1_000)))
        .collect();
    let gave_up = concurrent_appends(
        stores
            .iter()
            .map(|s| Arc::new(s.clone()) as Arc<dyn MessageStore>)
            .collect(),
    )
    .await;
    let lost: u64 = stores.iter().map(DynamoMessageStore::lost_races).sum();
    assert!(
        lost > 0,
        "8 rival stores never raced: the retry went untested"
    );
    eprintln!("80 appends: {lost} lost races retried, {gave_up} appends gave up and were retried");
}

/// A private moto that serves one request at a time (so each transaction is atomic), stopped
/// when dropped. Runs moto's own WSGI app with the interpreter `moto_server` on `PATH` uses.
struct SerialEmulator {
    child: std::process::Child,
    url: String,
}

impl SerialEmulator {
    fn start() -> Self {
        const SERVE: &str = "import sys\n\
from werkzeug.serving import run_simple\n\
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n\
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)\n";
        let script = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
            .expect("moto_server must be on PATH (the README's test command installs it)");
        let text = std::fs::read_to_string(&script).expect("read moto_server");
        let shebang = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#!"))
            .expect("moto_server starts with #!");
        let mut words = shebang.split_whitespace();
        let interpreter = words.next().expect("an interpreter");
        let port = free_port();
        let child = std::process::Command::new(interpreter)
            .args(words)
            .args(["-c", SERVE, &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto's interpreter");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "serial moto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for SerialEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn dynamo_store_retention() {
    age_retention(dynamo()).await;
    expired_pages(dynamo()).await;
}

/// The items as the layout documents them: the head, the messages left by count retention
/// (the oldest deleted in the same transaction), `data` as JSON text, no `from` when none.
#[tokio::test]
async fn dynamo_store_items() {
    let (ddb, table) = dynamo_table().await;
    let store = DynamoMessageStore::new(ddb.clone(), table.clone(), retention(5));
    count_retention(Box::new(move |_| {
        let store = store.clone();
        Box::pin(async move { Arc::new(store) as _ })
    }))
    .await;
    let items = ddb
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("GROUP#chat:g".into()),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let n = |item: &presence::dynamo::Item, k: &str| -> i64 {
        item[k].as_n().unwrap().parse().unwrap()
    };
    let sks: Vec<i64> = items.iter().map(|i| n(i, "sk")).collect();
    assert_eq!(sks, [0, 8, 9, 10, 11, 12], "head and the newest 5");
    let head = &items[0];
    assert_eq!(n(head, "seq"), 12);
    assert!(!head.contains_key("expires_at"), "the head never expires");
    let last = &items[5];
    assert_eq!(last["data"].as_s().unwrap(), "12");
    assert_eq!(last["from"].as_s().unwrap(), "ann");
    assert_eq!(n(last, "ts"), T);
    assert_eq!(n(last, "expires_at"), T / 1000 + 3_600);

    let store = DynamoMessageStore::new(ddb.clone(), table.clone(), retention(5));
    store
        .append("chat:anon", None, &json!({"a": 1}), T)
        .await
        .unwrap();
    let item = ddb
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("GROUP#chat:anon".into()),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("from"));
    assert_eq!(item["data"].as_s().unwrap(), r#"{"a":1}"#);
}
