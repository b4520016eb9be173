//! Logs and metrics.
//!
//! Logs go through `tracing`; in Lambda they are JSON lines (CloudWatch adds the time).
//! Metrics are CloudWatch embedded-metric-format (EMF) lines on stdout: Lambda forwards them
//! to CloudWatch Logs, which turns them into metrics with no API call on the hot path. The
//! alarms in `template.yaml` watch these metrics.

use serde_json::json;

/// Installs the global subscriber once; `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if in_lambda {
        builder.json().without_time().with_ansi(false).try_init()
    } else {
        builder.try_init()
    };
}

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Presence";

/// A metric unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

static METRICS_ON_STDOUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns printing of metric lines on or off (the local stack turns them off: there is no
/// CloudWatch to read them, and they would drown its log).
pub fn print_metrics(on: bool) {
    METRICS_ON_STDOUT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// One EMF line for `function` with the given metrics; returns it (tests) after printing it.
pub fn emit_metrics(function: &str, now_ms: i64, metrics: &[(&str, Unit, f64)]) -> String {
    let mut doc = json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()})).collect::<Vec<_>>(),
            }]
        },
        "Function": function,
    });
    for (name, _, value) in metrics {
        doc[*name] = json!(value);
    }
    let line = doc.to_string();
    if METRICS_ON_STDOUT.load(std::sync::atomic::Ordering::Relaxed) {
        println!("{line}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_its_metrics() {
        let line = emit_metrics(
            "session-expiry",
            1,
            &[("ExpiryLatenessMaxMs", Unit::Milliseconds, 250.0)],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ExpiryLatenessMaxMs"], 250.0);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "ExpiryLatenessMaxMs"
        );
        assert_eq!(v["Function"], "session-expiry");
    }
}
