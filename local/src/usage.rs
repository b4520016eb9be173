//! What the WebSocket API meters, the way API Gateway bills a WebSocket API: messages in
//! 32 KB units both ways, connection minutes, and `@connections` calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// API Gateway meters WebSocket messages in 32 KB increments (a 40 KB message is 2).
pub const MESSAGE_UNIT_BYTES: usize = 32 * 1024;

/// Billed messages for one message of `bytes` bytes: at least one.
pub fn message_units(bytes: usize) -> u64 {
    bytes.div_ceil(MESSAGE_UNIT_BYTES).max(1) as u64
}

/// What the API metered since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebSocketUsage {
    /// Messages in 32 KB units: every data message received from a client (whatever its
    /// route) and every one sent to a client (route responses and successful
    /// `PostToConnection`s). Not: the handshake, `$disconnect`, control frames (ping, pong,
    /// close).
    pub messages: u64,
    /// Open time of every connection, closed ones and open ones up to now, in milliseconds:
    /// from `$connect` until the connection starts closing.
    pub connection_ms: u64,
    /// `@connections` requests (`POST`, `GET`, `DELETE`), whatever their answer.
    pub management_calls: u64,
}

impl WebSocketUsage {
    /// [`connection_ms`](Self::connection_ms) in minutes, as API Gateway bills them.
    pub fn connection_minutes(&self) -> f64 {
        self.connection_ms as f64 / 60_000.0
    }
}

/// The API's counters; clones share them. Read with [`usage`](Self::usage).
#[derive(Debug, Clone, Default)]
pub struct WebSocketMeter(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    messages: AtomicU64,
    management_calls: AtomicU64,
    connections: Mutex<OpenTime>,
}

/// Connection time without walking the connections: the open ones' count and the sum of
/// their start times give their time so far at any instant.
#[derive(Debug, Default)]
struct OpenTime {
    open: i128,
    connected_at_sum: i128,
    closed_ms: i128,
}

impl WebSocketMeter {
    /// The counters now; open connections count up to `now_ms`.
    pub fn usage_at(&self, now_ms: i64) -> WebSocketUsage {
        let connection_ms = {
            let t = self
                .0
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            t.closed_ms + t.open * i128::from(now_ms) - t.connected_at_sum
        };
        WebSocketUsage {
            messages: self.0.messages.load(Ordering::Relaxed),
            connection_ms: u64::try_from(connection_ms.max(0)).unwrap_or(u64::MAX),
            management_calls: self.0.management_calls.load(Ordering::Relaxed),
        }
    }

    /// The counters now.
    pub fn usage(&self) -> WebSocketUsage {
        self.usage_at(crate::ids::now_ms())
    }

    /// One data message of `bytes` bytes, either way.
    pub(crate) fn message(&self, bytes: usize) {
        self.0
            .messages
            .fetch_add(message_units(bytes), Ordering::Relaxed);
    }

    pub(crate) fn management_call(&self) {
        self.0.management_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection accepted by `$connect` at `connected_at_ms`.
    pub(crate) fn opened(&self, connected_at_ms: i64) {
        let mut t = self
            .0
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        t.open += 1;
        t.connected_at_sum += i128::from(connected_at_ms);
    }

    /// A connection [`opened`](Self::opened) at `connected_at_ms` closes at `now_ms`.
    pub(crate) fn closed(&self, connected_at_ms: i64, now_ms: i64) {
        let mut t = self
            .0
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        t.open -= 1;
        t.connected_at_sum -= i128::from(connected_at_ms);
        t.closed_ms += i128::from(now_ms.saturating_sub(connected_at_ms).max(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_metered_in_32_kb_units() {
        assert_eq!(message_units(0), 1);
        assert_eq!(message_units(1), 1);
        assert_eq!(message_units(32 * 1024), 1);
        assert_eq!(message_units(32 * 1024 + 1), 2);
        assert_eq!(message_units(40_000), 2);
        assert_eq!(message_units(128 * 1024), 4);
    }

    #[test]
    fn connection_time_counts_closed_and_open_connections() {
        let meter = WebSocketMeter::default();
        meter.opened(1_000);
        meter.opened(2_000);
        assert_eq!(meter.usage_at(3_000).connection_ms, 2_000 + 1_000);
        meter.closed(1_000, 4_000);
        assert_eq!(meter.usage_at(5_000).connection_ms, 3_000 + 3_000);
        meter.closed(2_000, 5_000);
        assert_eq!(meter.usage_at(60_000).connection_ms, 6_000);
        assert!((meter.usage_at(60_000).connection_minutes() - 0.1).abs() < 1e-9);
    }
}
