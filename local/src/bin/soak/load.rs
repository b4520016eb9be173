//! The load: clients with sessions, and one watcher per region.

use super::{FACILITIES, REGIONS};
use futures::{SinkExt, StreamExt};
use presence::auth::Identity;
use presence::ids::{FacilityId, RegionId, UserId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// 10 000 clients with tungstenite's 128 KiB default buffers would need 2.5 GiB.
pub(crate) fn small_buffers() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}
/// Aborts the task when dropped: a client task aborted mid-run takes its reader (and with
/// it the socket) down too.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) open: AtomicUsize,
    pub(crate) reconnects: AtomicU64,
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) fn identity(i: usize) -> Identity {
    let f = i % FACILITIES;
    Identity {
        user: UserId::parse(&format!("soak-user-{i}")).expect("id"),
        facility: FacilityId::parse(&format!("soak-fac-{f}")).expect("id"),
        region: RegionId::parse(&format!("soak-reg-{}", f % REGIONS)).expect("id"),
    }
}

/// One client: connect with its session, heartbeat at its share of the rate, sometimes drop.
pub(crate) async fn client(
    i: usize,
    ws_url: String,
    token: String,
    period: Duration,
    churn_per_s: f64,
    stop: Arc<tokio::sync::Notify>,
    c: Arc<Counters>,
) {
    let mut rng = presence_local::rng::Rng::new(i as u64 + 1);
    let mut roll = move || rng.unit();
    let url = format!("{ws_url}?token={token}&session_id=soak-{i}");
    loop {
        let Ok((ws, _)) =
            tokio_tungstenite::connect_async_with_config(&url, Some(small_buffers()), false)
                .await
                .map_err(|e| {
                    if c.errors.load(Ordering::Relaxed) < 3 {
                        eprintln!("soak: connect failed: {e}");
                    }
                })
        else {
            c.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        c.open.fetch_add(1, Ordering::Relaxed);
        let (mut tx, mut rx) = ws.split();
        let counters = c.clone();
        let reader = AbortOnDrop(tokio::spawn(async move {
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Text(t) = m {
                    if t.contains("\"type\":\"error\"")
                        && counters.errors.fetch_add(1, Ordering::Relaxed) < 3
                    {
                        eprintln!("soak: error frame {t}");
                    }
                }
            }
        }));
        // stagger the first beat over the period
        tokio::time::sleep(period.mul_f64(roll())).await;
        let mut tick = tokio::time::interval(period);
        let drop_chance = churn_per_s * period.as_secs_f64();
        let vanished = loop {
            tokio::select! {
                _ = stop.notified() => {
                    let _ = tx.send(Message::Close(None)).await;
                    drop(reader);
                    c.open.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                _ = tick.tick() => {
                    let frame = format!("{{\"action\":\"heartbeat\",\"session_id\":\"soak-{i}\"}}");
                    if tx.send(Message::text(frame)).await.is_err() {
                        break false;
                    }
                    c.sent.fetch_add(1, Ordering::Relaxed);
                    if roll() < drop_chance {
                        break roll() < 0.5;
                    }
                }
            }
        };
        if !vanished {
            let _ = tx.send(Message::Close(None)).await;
        }
        // A vanishing client just drops its socket: no close frame.
        drop(tx);
        drop(reader);
        c.open.fetch_sub(1, Ordering::Relaxed);
        c.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200 + (roll() * 1000.0) as u64)).await;
    }
}

/// A watcher of one region: the last version seen per facility. It pings every minute, as
/// a page does, so API Gateway's 10-minute idle timeout does not close it; a watcher whose
/// socket ends anyway is counted in `lost`.
pub(crate) async fn watcher(
    ws: Ws,
    seen: Arc<std::sync::Mutex<HashMap<String, u64>>>,
    lost: Arc<AtomicUsize>,
) {
    let (mut tx, mut rx) = ws.split();
    let mut ping = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            m = rx.next() => {
                let Some(Ok(m)) = m else { break };
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else { continue };
                for st in presence::protocol::statuses_in(&v) {
                    let f = st["facility_id"].as_str().unwrap_or_default().to_owned();
                    let version = st["version"].as_u64().unwrap_or(0);
                    let mut seen = seen.lock().expect("seen lock");
                    let e = seen.entry(f).or_default();
                    *e = (*e).max(version);
                }
            }
            _ = ping.tick() => {
                if tx.send(Message::text("{\"action\":\"ping\"}")).await.is_err() {
                    break;
                }
            }
        }
    }
    lost.fetch_add(1, Ordering::Relaxed);
    eprintln!("soak: a watcher's socket ended: flips after this are not seen");
}
