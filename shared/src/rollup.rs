//! facility-rollup, the session monitor: persist what changed, repair what the fast path
//! missed, and forget old offline sessions.
//!
//! Per partition it reads the journal and the dirty facilities (one script call), writes
//! them to DynamoDB, re-publishes flips left unpublished past a grace period (the fast path
//! died between Redis and the queue), then trims what it persisted and deletes offline
//! sessions older than one TTL (one more script call). Its cost follows the number of
//! changes since the last run, not the number of sessions.

use crate::facilities::FacilityStore;
use crate::flips::publish_flips;
use crate::ids::FacilityId;
use crate::ledger::PartitionLedger;
use crate::protocol::{Delivery, FacilityStatus, PushMessage, Target};
use crate::queue::PushPublisher;
use crate::sessions::{FacilityState, Partition, SessionStore, StoreError};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rollup limits and timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupSettings {
    /// Journal entries and dirty facilities read per script call.
    pub batch: usize,
    /// A flip still unpublished this long after it happened is re-published.
    pub republish_after: Duration,
    /// Partitions rolled up at once.
    pub partition_concurrency: usize,
    /// Facility status writes in flight at once.
    pub write_concurrency: usize,
    /// Rounds per partition per run, so one huge backlog cannot starve the others.
    pub max_rounds: usize,
}

impl Default for RollupSettings {
    fn default() -> Self {
        Self {
            batch: 2000,
            republish_after: Duration::from_secs(5),
            partition_concurrency: 4,
            write_concurrency: 16,
            max_rounds: 20,
        }
    }
}

/// A rollup failure of one partition.
#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error("partition {partition}: {source}")]
    Store { partition: u16, source: StoreError },
    #[error("partition {partition}: {message}")]
    Persist { partition: u16, message: String },
}

/// What a rollup run did.
#[derive(Debug, Default)]
pub struct RollupReport {
    pub history_entries: usize,
    pub statuses_written: usize,
    /// Status writes skipped because a newer version was already stored.
    pub statuses_stale: usize,
    pub republished: usize,
    pub sessions_dropped: u64,
    pub errors: Vec<RollupError>,
    /// Partitions whose data was lost and that still need reconciling.
    pub needs_reconcile: Vec<Partition>,
    /// `resync` events queued (one per run that reconciled after a data loss).
    pub resyncs: usize,
}

impl RollupReport {
    /// Adds one partition's report to this total.
    fn add(&mut self, r: RollupReport) {
        self.history_entries += r.history_entries;
        self.statuses_written += r.statuses_written;
        self.statuses_stale += r.statuses_stale;
        self.republished += r.republished;
        self.sessions_dropped += r.sessions_dropped;
        self.resyncs += r.resyncs;
        self.errors.extend(r.errors);
        self.needs_reconcile.extend(r.needs_reconcile);
    }
}

/// The rollup service.
#[derive(Clone)]
pub struct Rollup {
    store: SessionStore,
    facilities: Arc<dyn FacilityStore>,
    publisher: Arc<dyn PushPublisher>,
    settings: RollupSettings,
    /// Told of the epochs Redis holds, so one started before the ledger existed is known.
    ledger: Option<Arc<dyn PartitionLedger>>,
    /// Partitions whose epoch this instance has told the ledger of already.
    recorded: Arc<Mutex<HashSet<u16>>>,
}

impl std::fmt::Debug for Rollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollup")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Rollup {
    pub fn new(
        store: SessionStore,
        facilities: Arc<dyn FacilityStore>,
        publisher: Arc<dyn PushPublisher>,
        settings: RollupSettings,
    ) -> Self {
        Self {
            store,
            facilities,
            publisher,
            settings,
            ledger: None,
            recorded: Arc::default(),
        }
    }

    /// Tells `ledger`, once per partition and instance, of the epochs Redis holds: a
    /// deployment that predates the ledger then has its next data loss taken for one.
    pub fn with_ledger(mut self, ledger: Arc<dyn PartitionLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    async fn record_epoch(&self, p: Partition, now_ms: i64) {
        let Some(ledger) = &self.ledger else { return };
        if self.recorded.lock().expect("recorded lock").contains(&p.0) {
            return;
        }
        match ledger.record_existing(p, now_ms).await {
            Ok(()) => {
                self.recorded.lock().expect("recorded lock").insert(p.0);
            }
            Err(e) => {
                tracing::warn!(partition = p.0, error = %e, "epoch not recorded in the ledger; next run retries")
            }
        }
    }

    /// One run over every partition at `now_ms`.
    pub async fn run(&self, now_ms: i64) -> RollupReport {
        let reports: Vec<RollupReport> = futures::stream::iter(self.store.partitioner().all())
            .map(|p| self.run_partition(p, now_ms))
            .buffer_unordered(self.settings.partition_concurrency)
            .collect()
            .await;
        let mut total = RollupReport::default();
        for r in reports {
            total.add(r);
        }
        if !total.needs_reconcile.is_empty() {
            let partitions = std::mem::take(&mut total.needs_reconcile);
            self.reconcile(&partitions, now_ms, &mut total).await;
        }
        total
    }

    /// The facilities whose stored status is ahead of Redis's (a newer version, or the same
    /// version with another status), with the stored version.
    async fn versions_behind(
        &self,
        refused: &[FacilityStatus],
    ) -> Result<Vec<(FacilityId, u64)>, String> {
        let mut floors = Vec::new();
        for f in refused {
            if let Some(stored) = self
                .facilities
                .status(&f.facility_id)
                .await
                .map_err(|e| e.to_string())?
            {
                if stored.version > f.version
                    || (stored.version == f.version && stored.status != f.status)
                {
                    floors.push((f.facility_id.clone(), stored.version));
                }
            }
        }
        Ok(floors)
    }

    /// After a data loss, once the hold is over: every client is told to take a fresh
    /// snapshot (`resync`: flips that were shown but never persisted are in neither Redis nor
    /// DynamoDB, so no event would ever correct them), then the facilities DynamoDB holds as
    /// online that Redis no longer knows flip offline. One Query per partition on its status
    /// items, only then. A resync that could not be queued leaves the partitions for the
    /// next run.
    async fn reconcile(&self, partitions: &[Partition], now_ms: i64, report: &mut RollupReport) {
        let resync = PushMessage::Deliver(Delivery {
            to: Target::All,
            data: serde_json::json!({"type": "resync", "reason": "data_loss"}),
            except: None,
        });
        if let Err(e) = self.publisher.publish(std::slice::from_ref(&resync)).await {
            report.errors.push(RollupError::Persist {
                partition: partitions[0].0,
                message: format!("resync not queued: {e}"),
            });
            return;
        }
        report.resyncs += 1;
        for p in partitions {
            let online = match self.facilities.online_in(*p).await {
                Ok(list) => list,
                Err(e) => {
                    report.errors.push(RollupError::Persist {
                        partition: p.0,
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            match self.store.reconcile(*p, now_ms, &online).await {
                Ok(flips) => {
                    if !flips.is_empty() {
                        tracing::warn!(
                            partition = p.0,
                            facilities = flips.len(),
                            "facilities lost with Redis's data flipped offline"
                        );
                    }
                    let flips: Vec<_> = flips.into_iter().map(|f| (*p, f)).collect();
                    report.republished +=
                        publish_flips(&self.store, self.publisher.as_ref(), &flips).await;
                }
                Err(source) => report.errors.push(RollupError::Store {
                    partition: p.0,
                    source,
                }),
            }
        }
    }

    async fn run_partition(&self, p: Partition, now_ms: i64) -> RollupReport {
        let mut report = RollupReport::default();
        let store_err = |source| RollupError::Store {
            partition: p.0,
            source,
        };
        let republish_before = now_ms - self.settings.republish_after.as_millis() as i64;
        let drop_before = now_ms - self.store.ttl_ms();
        for round in 0..self.settings.max_rounds {
            let collected = match self
                .store
                .collect(
                    p,
                    self.settings.batch,
                    self.settings.batch,
                    republish_before,
                    now_ms,
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    report.errors.push(store_err(e));
                    return report;
                }
            };
            if round == 0 && collected.needs_reconcile {
                report.needs_reconcile.push(p);
            }
            if round == 0 && collected.has_epoch {
                self.record_epoch(p, now_ms).await;
            }

            // History first: if it fails, the journal stays for the next run.
            let mut journal_len = collected.journal_len;
            if !collected.journal.is_empty() {
                match self
                    .facilities
                    .append_history(&collected.journal, now_ms)
                    .await
                {
                    Ok(()) => report.history_entries += collected.journal.len(),
                    Err(e) => {
                        report.errors.push(RollupError::Persist {
                            partition: p.0,
                            message: e.to_string(),
                        });
                        journal_len = 0;
                    }
                }
            }

            let facilities = &self.facilities;
            let writes: Vec<(FacilityState, Result<bool, String>)> =
                futures::stream::iter(collected.dirty.clone())
                    .map(|state| async move {
                        let r = facilities
                            .put_status(p, &state, now_ms)
                            .await
                            .map_err(|e| e.to_string());
                        (state, r)
                    })
                    .buffer_unordered(self.settings.write_concurrency)
                    .collect()
                    .await;
            let mut persisted = Vec::with_capacity(writes.len());
            let mut behind = Vec::new();
            for (state, result) in writes {
                match result {
                    Ok(written) => {
                        if written {
                            report.statuses_written += 1;
                        } else {
                            report.statuses_stale += 1;
                            behind.push(state.status.clone());
                        }
                        persisted.push((state.status.facility_id, state.rev));
                    }
                    Err(message) => report.errors.push(RollupError::Persist {
                        partition: p.0,
                        message,
                    }),
                }
            }

            // A refused write usually means a concurrent rollup got there first. If what is
            // stored is newer than Redis, though, Redis lost its data and restarted its
            // versions: re-issue the current status above the stored version.
            if !behind.is_empty() {
                match self.versions_behind(&behind).await {
                    Ok(floors) if !floors.is_empty() => {
                        match self.store.reseed(p, now_ms, &floors).await {
                            Ok(flips) => {
                                tracing::warn!(
                                    partition = p.0,
                                    facilities = flips.len(),
                                    "versions re-seeded above DynamoDB's"
                                );
                                let flips: Vec<_> = flips.into_iter().map(|f| (p, f)).collect();
                                report.republished +=
                                    publish_flips(&self.store, self.publisher.as_ref(), &flips)
                                        .await;
                            }
                            Err(e) => report.errors.push(store_err(e)),
                        }
                    }
                    Ok(_) => {}
                    Err(message) => report.errors.push(RollupError::Persist {
                        partition: p.0,
                        message,
                    }),
                }
            }

            if round == 0 && !collected.stale_unpublished.is_empty() {
                let flips: Vec<_> = collected
                    .stale_unpublished
                    .iter()
                    .map(|s| (p, s.status.clone()))
                    .collect();
                tracing::warn!(
                    partition = p.0,
                    flips = flips.len(),
                    "re-publishing flips the fast path missed"
                );
                report.republished +=
                    publish_flips(&self.store, self.publisher.as_ref(), &flips).await;
            }

            match self
                .store
                .commit(p, journal_len, &persisted, drop_before, self.settings.batch)
                .await
            {
                Ok((_, dropped)) => report.sessions_dropped += dropped,
                Err(e) => {
                    report.errors.push(store_err(e));
                    return report;
                }
            }
            let more = collected.journal_len == self.settings.batch
                || collected.dirty.len() == self.settings.batch;
            if !more || !report.errors.is_empty() {
                break;
            }
        }
        report
    }
}
