//! session-expiry, the Redis expiry handler: claim sessions whose deadline passed.
//!
//! Claims are atomic per partition, so any number of sweepers may run at once. With a sweep
//! window the function keeps sweeping, waking at the next deadline (no more than once a
//! second), so offline is detected within about a second rather than once a minute.

use crate::flips::publish_flips;
use crate::protocol::{MemberPresence, PushMessage};
use crate::queue::PushPublisher;
use crate::sessions::{SessionStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Sessions claimed per script call; a partition with more due is swept again at once.
pub const CLAIM_LIMIT: usize = 1000;
/// The shortest pause between sweeps in a window.
pub const MIN_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause: new sessions can appear with early deadlines (a heartbeat that waited
/// in the queue), so the sweeper never sleeps blind for long.
pub const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What sweeping did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepReport {
    pub sweeps: usize,
    pub claimed: usize,
    pub flips: usize,
    pub published: usize,
    /// How late each claim was (now − deadline), ms.
    pub lateness_ms: Vec<i64>,
    /// Partitions whose sweep failed at least once.
    pub errors: usize,
    /// The earliest pending deadline after the last sweep.
    pub next_deadline_ms: Option<i64>,
    /// Chat members whose grace ended, handed to ws-push for `member.offline`.
    pub members_gone: usize,
}

impl SweepReport {
    pub fn max_lateness_ms(&self) -> i64 {
        self.lateness_ms.iter().copied().max().unwrap_or(0)
    }

    pub fn mean_lateness_ms(&self) -> f64 {
        if self.lateness_ms.is_empty() {
            0.0
        } else {
            self.lateness_ms.iter().sum::<i64>() as f64 / self.lateness_ms.len() as f64
        }
    }
}

/// The sweeper service.
#[derive(Clone)]
pub struct Sweeper {
    store: SessionStore,
    publisher: Arc<dyn PushPublisher>,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("store", &self.store)
            .finish()
    }
}

impl Sweeper {
    pub fn new(store: SessionStore, publisher: Arc<dyn PushPublisher>) -> Self {
        Self { store, publisher }
    }

    /// One sweep of every partition at `now_ms`, partitions concurrently.
    pub async fn sweep_once(&self, now_ms: i64) -> SweepReport {
        let store = &self.store;
        let results =
            futures::future::join_all(self.store.partitioner().all().map(|p| async move {
                let mut claimed = Vec::new();
                let mut flips = Vec::new();
                loop {
                    let swept = store.sweep(p, now_ms, CLAIM_LIMIT).await?;
                    let full = swept.claimed.len() == CLAIM_LIMIT;
                    claimed.extend(swept.claimed);
                    flips.extend(swept.flips.into_iter().map(|f| (p, f)));
                    if !full {
                        return Ok::<_, StoreError>((claimed, flips, swept.next_deadline_ms));
                    }
                }
            }))
            .await;

        let mut report = SweepReport {
            sweeps: 1,
            ..SweepReport::default()
        };
        let mut flips = Vec::new();
        for result in results {
            match result {
                Ok((claimed, f, next)) => {
                    report.claimed += claimed.len();
                    report
                        .lateness_ms
                        .extend(claimed.iter().map(|(_, deadline)| now_ms - deadline));
                    flips.extend(f);
                    report.next_deadline_ms = match (report.next_deadline_ms, next) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Err(e) => {
                    tracing::error!(error = %e, "sweep of a partition failed");
                    report.errors += 1;
                }
            }
        }
        report.flips = flips.len();
        report.published = publish_flips(&self.store, self.publisher.as_ref(), &flips).await;
        report.members_gone = self.members_gone(now_ms).await;
        report
    }

    /// Claims the chat members whose disconnect grace ended and publishes `member.presence` (offline) for
    /// each (ws-push announces them). A failed publish is logged: the member is then not
    /// announced offline (their next connect announces online again).
    async fn members_gone(&self, now_ms: i64) -> usize {
        let users = match self.store.members_due(now_ms, CLAIM_LIMIT).await {
            Ok(users) => users,
            Err(e) => {
                tracing::error!(error = %e, "claiming gone members failed");
                return 0;
            }
        };
        if users.is_empty() {
            return 0;
        }
        let messages: Vec<PushMessage> = users
            .into_iter()
            .map(|user| {
                PushMessage::Member(MemberPresence {
                    user,
                    online: false,
                })
            })
            .collect();
        match self.publisher.publish(&messages).await {
            Ok(()) => messages.len(),
            Err(e) => {
                tracing::error!(error = %e, "member.presence not published");
                messages.len() - e.failed.len()
            }
        }
    }

    /// Sweeps now and then again at each next deadline until `window` has passed. `clock`
    /// gives the current time in ms; pauses use tokio's clock, so tests can control both.
    pub async fn run(
        &self,
        clock: &(dyn Fn() -> i64 + Send + Sync),
        window: Duration,
    ) -> SweepReport {
        let started = tokio::time::Instant::now();
        let mut total = SweepReport::default();
        loop {
            let report = self.sweep_once(clock()).await;
            total.sweeps += report.sweeps;
            total.claimed += report.claimed;
            total.flips += report.flips;
            total.published += report.published;
            total.members_gone += report.members_gone;
            total.errors += report.errors;
            total.lateness_ms.extend(report.lateness_ms);
            total.next_deadline_ms = report.next_deadline_ms;

            let elapsed = started.elapsed();
            if elapsed >= window {
                return total;
            }
            let until_next = match report.next_deadline_ms {
                // Sweeps claim deadlines strictly before `now`: wake just after the deadline.
                Some(next) => Duration::from_millis((next - clock() + 1).max(0) as u64),
                None => MAX_PAUSE,
            };
            let pause = until_next.clamp(MIN_PAUSE, MAX_PAUSE).min(window - elapsed);
            tokio::time::sleep(pause).await;
        }
    }
}
