//! Per-key rate limits (token buckets), in the memory of one function instance.
//!
//! Each Lambda instance enforces them for the requests it serves; API Gateway's stage
//! throttling bounds the total. That is enough to stop one misbehaving tab or socket from
//! flooding the queue: a browser's requests mostly land on warm instances, and the limits
//! are far above what a well-behaved client sends (one heartbeat per interval). Time is an
//! argument, so tests control it.

use std::collections::HashMap;
use std::sync::Mutex;

/// A token bucket per key: `burst` requests at once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    /// Keys kept at most; the least recently used half is forgotten beyond it (a forgotten
    /// key starts with a full bucket, which only errs towards allowing).
    max_keys: usize,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl RateLimiter {
    pub fn new(burst: u32, per_second: f64) -> Self {
        Self {
            burst: f64::from(burst),
            per_second,
            max_keys: 50_000,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Drops `key`'s bucket (its connection has gone).
    pub fn forget(&self, key: &str) {
        self.buckets.lock().expect("rate limiter lock").remove(key);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("rate limiter lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes one token for `key` at `now_ms`; false when the bucket is empty.
    pub fn allow(&self, key: &str, now_ms: i64) -> bool {
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            let mut by_age: Vec<(i64, String)> =
                buckets.iter().map(|(k, (_, t))| (*t, k.clone())).collect();
            by_age.sort_unstable();
            for (_, k) in by_age.into_iter().take(self.max_keys / 2) {
                buckets.remove(&k);
            }
        }
        let (tokens, last) = buckets
            .entry(key.to_owned())
            .or_insert((self.burst, now_ms));
        let elapsed_s = (now_ms - *last).max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed_s * self.per_second).min(self.burst);
        *last = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let l = RateLimiter::new(3, 1.0);
        assert!((0..3).all(|_| l.allow("a", 0)));
        assert!(!l.allow("a", 0));
        assert!(l.allow("b", 0), "keys are independent");
        assert!(!l.allow("a", 500));
        assert!(l.allow("a", 1_000));
        assert!(!l.allow("a", 1_000));
    }

    #[test]
    fn forgotten_keys_free_their_bucket() {
        let l = RateLimiter::new(1, 0.0);
        assert!(l.allow("a", 0));
        assert!(!l.allow("a", 0));
        l.forget("a");
        assert!(l.is_empty());
        assert!(l.allow("a", 0), "a new bucket");
    }

    #[test]
    fn bounded_memory() {
        let mut l = RateLimiter::new(1, 1.0);
        l.max_keys = 10;
        for i in 0..100 {
            assert!(l.allow(&format!("k{i}"), i));
        }
        assert!(l.buckets.lock().unwrap().len() <= 10);
    }
}
