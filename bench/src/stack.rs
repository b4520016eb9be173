//! The local stack as the latency, storm and vanish benchmarks start it: in-process, on free
//! ports, with the schedules of a quiet deployment and no data-loss hold.

use crate::BenchError;
use presence::config::Env;
use presence_local::stack::{LocalStack, StackOptions};

/// Starts a local stack with `settings` on top of the benchmarks' defaults: 16 partitions, the
/// sweeper's schedule every 30 s and the rollup's every 60 s, and `LOSS_HOLD_SECONDS=0` (a new
/// Redis would otherwise hold offline flips for one TTL, as after a data loss).
pub async fn start(settings: &[(&str, String)]) -> Result<LocalStack, BenchError> {
    let mut pairs: Vec<(String, String)> = [
        ("EXPIRY_SCHEDULE_SECONDS", "30"),
        ("ROLLUP_SCHEDULE_SECONDS", "60"),
        ("PARTITIONS", "16"),
        ("LOSS_HOLD_SECONDS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in settings {
        pairs.retain(|(name, _)| name != k);
        pairs.push(((*k).to_owned(), v.clone()));
    }
    let options = StackOptions {
        http_port: 0,
        ws_port: 0,
        ..StackOptions::default()
    };
    Ok(LocalStack::start(&Env::from_pairs(pairs), options).await?)
}
