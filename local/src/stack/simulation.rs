//! Simulated users (`/dev/simulation`): flips to watch without opening a second browser.

use super::billing::{Function, Meter};
use super::directory::DirRegion;
use super::http::{AppState, json_error};
use crate::rng::Rng;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use presence::auth::Identity;
use presence::ids::{RegionId, SessionId, UserId};
use presence::ingest::Ingest;
use presence::protocol::{HeartbeatBody, HeartbeatState};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub(super) struct SimulationRequest {
    region: RegionId,
    #[serde(default = "default_sim_users")]
    users: usize,
}

fn default_sim_users() -> usize {
    5
}

#[derive(Debug, Deserialize)]
pub(super) struct RegionQuery {
    region: Option<String>,
}

pub(super) async fn simulation_status(State(state): State<Arc<AppState>>) -> Response {
    let sims = state.simulations.lock().expect("simulations lock");
    let regions: HashMap<String, usize> =
        sims.iter().map(|(r, (n, _))| (r.to_string(), *n)).collect();
    axum::Json(serde_json::json!({ "regions": regions })).into_response()
}

pub(super) async fn simulation_start(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Response {
    let req: SimulationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("expected {{\"region\", \"users\"}}: {e}"),
            );
        }
    };
    if !(1..=200).contains(&req.users) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "users must be 1-200",
        );
    }
    let Some(region) = state
        .directory
        .regions
        .iter()
        .find(|r| r.id == req.region)
        .cloned()
    else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown region {}", req.region),
        );
    };
    let task = tokio::spawn(simulate(
        state.ingest.clone(),
        state.meter.clone(),
        region,
        req.users,
        state.interval,
    ));
    let mut sims = state.simulations.lock().expect("simulations lock");
    if let Some((_, old)) = sims.insert(req.region.clone(), (req.users, task)) {
        old.abort();
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "region": req.region, "users": req.users })),
    )
        .into_response()
}

pub(super) async fn simulation_stop(
    State(state): State<Arc<AppState>>,
    Query(q): Query<RegionQuery>,
) -> Response {
    let mut sims = state.simulations.lock().expect("simulations lock");
    let stopped: Vec<RegionId> = match q.region.as_deref().map(RegionId::parse) {
        Some(Ok(r)) => sims
            .remove(&r)
            .map(|(_, t)| {
                t.abort();
                r
            })
            .into_iter()
            .collect(),
        Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        None => sims
            .drain()
            .map(|(r, (_, t))| {
                t.abort();
                r
            })
            .collect(),
    };
    axum::Json(serde_json::json!({ "stopped": stopped })).into_response()
}

/// One heartbeat of a simulated user: in AWS a `POST /v1/heartbeats`, so billed as one HTTP
/// API request and one heartbeat-ingest invocation (the handler's parsing is skipped here).
async fn beat(ingest: &Ingest, meter: &Meter, identity: &Identity, body: HeartbeatBody) {
    meter.http_request();
    let enqueue = ingest.enqueue(identity, body, presence::now_ms());
    let _ = meter.invoke(Function::HeartbeatIngest, enqueue).await;
}

/// Simulated users of a region: each goes online at a random facility for a while
/// (heartbeating at the interval), then ends its session, rests, and starts again.
async fn simulate(
    ingest: Ingest,
    meter: Arc<Meter>,
    region: DirRegion,
    users: usize,
    interval: Duration,
) {
    let tasks: Vec<_> = (0..users)
        .map(|i| {
            let ingest = ingest.clone();
            let meter = meter.clone();
            let region = region.clone();
            tokio::spawn(async move {
                // Simulated users need variety, not security: a new seed per user and run.
                let mut dice = Rng::new(presence::now_ms() as u64 ^ (i as u64 + 1));
                let user = UserId::parse(&format!("sim-{}-{i}", region.id)).expect("valid id");
                let mut round = 0u32;
                loop {
                    tokio::time::sleep(Duration::from_millis(1000 + dice.below(6000))).await;
                    let facility =
                        &region.facilities[dice.below(region.facilities.len() as u64) as usize];
                    let identity = Identity {
                        user: user.clone(),
                        facility: facility.id.clone(),
                        region: region.id.clone(),
                    };
                    round += 1;
                    let session = SessionId::parse(&format!("sim-{i}-{round}")).expect("valid id");
                    let beats = 1 + dice.below(4);
                    for _ in 0..beats {
                        let body = HeartbeatBody {
                            session_id: session.clone(),
                            state: HeartbeatState::Active,
                        };
                        beat(&ingest, &meter, &identity, body).await;
                        tokio::time::sleep(interval.min(Duration::from_secs(5))).await;
                    }
                    let body = HeartbeatBody {
                        session_id: session,
                        state: HeartbeatState::Ended,
                    };
                    beat(&ingest, &meter, &identity, body).await;
                }
            })
        })
        .collect();
    // Aborting this task aborts the users with it.
    struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _guard = AbortAll(tasks);
    std::future::pending::<()>().await;
}
