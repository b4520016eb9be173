//! Availability over a range, and what the reads behind it cost.

use super::*;

/// Availability over a range, computed from the status at its start and its flips in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    range: Range,
    /// The status since `at`; `None` (unknown: no flip kept before) counts as offline.
    current: Option<Status>,
    at: i64,
    online_ms: i64,
    /// When the current offline stretch began, if the facility is offline.
    offline_since: Option<i64>,
    longest_offline_ms: i64,
    flips: u64,
}

/// The availability answer's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AvailabilityReport {
    /// Share of the range spent online, 0..=1.
    pub online_share: f64,
    /// Flips with `since_ms` in the range.
    pub flips: u64,
    /// The longest stretch offline (or unknown) within the range.
    pub longest_offline_ms: i64,
}

impl Availability {
    /// Starts at `range.from_ms` with the status then (`None`: unknown, counted offline).
    pub fn new(range: Range, at_start: Option<Status>) -> Self {
        let offline = at_start != Some(Status::Online);
        Self {
            range,
            current: at_start,
            at: range.from_ms,
            online_ms: 0,
            offline_since: offline.then_some(range.from_ms),
            longest_offline_ms: 0,
            flips: 0,
        }
    }

    /// The next flip (oldest first) with `since_ms` in the range.
    pub fn flip(&mut self, since_ms: i64, status: Status) {
        let t = since_ms.clamp(self.at, self.range.to_ms);
        self.advance(t);
        self.flips += 1;
        match (status, self.offline_since) {
            (Status::Online, Some(start)) => {
                self.longest_offline_ms = self.longest_offline_ms.max(t - start);
                self.offline_since = None;
            }
            (Status::Offline, None) => self.offline_since = Some(t),
            _ => {}
        }
        self.current = Some(status);
    }

    fn advance(&mut self, t: i64) {
        if self.current == Some(Status::Online) {
            self.online_ms += t - self.at;
        }
        self.at = t;
    }

    pub fn finish(mut self) -> AvailabilityReport {
        let end = self.range.to_ms;
        self.advance(end);
        if let Some(start) = self.offline_since {
            self.longest_offline_ms = self.longest_offline_ms.max(end - start);
        }
        let span = (end - self.range.from_ms).max(1) as f64;
        AvailabilityReport {
            online_share: (self.online_ms as f64 / span).clamp(0.0, 1.0),
            flips: self.flips,
            longest_offline_ms: self.longest_offline_ms,
        }
    }
}

/// On-demand read request units of eventually consistent `Query` pages that returned
/// `page_bytes` bytes each: every page is rounded up to 4 KB blocks, half a unit each.
pub fn query_read_units(page_bytes: impl IntoIterator<Item = usize>) -> f64 {
    page_bytes
        .into_iter()
        .map(|b| b.div_ceil(READ_UNIT_BYTES).max(1) as f64 / 2.0)
        .sum()
}
