//! Identifiers and timestamps in the formats API Gateway uses.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;

/// A fresh id shaped like API Gateway's connection and request ids: 11 random bytes in base64,
/// i.e. 16 characters ending in `=` (e.g. `L0SM9cOFvHcCIhw=`).
///
/// The randomness comes from `RandomState`, whose keys are seeded from the OS once per thread and
/// differ for every instance; the counter and the clock make two calls differ even if they did
/// not. The URL-safe alphabet keeps ids usable unescaped in `@connections/{id}` paths.
pub(crate) fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let state = RandomState::new();
    let high = state.hash_one((count, nanos, 1u8)).to_le_bytes();
    let low = state.hash_one((count, nanos, 2u8)).to_le_bytes();
    let mut bytes = [0u8; 11];
    bytes[..8].copy_from_slice(&high);
    bytes[8..].copy_from_slice(&low[..3]);
    URL_SAFE.encode(bytes)
}

/// Milliseconds since the Unix epoch, the unit of `connectedAt` and `requestTimeEpoch`.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2024-02-09T18:23:28.941Z`: the date-time strings of the management API's `GetConnection`
/// (the SDK parses them as RFC 3339 date-times).
pub(crate) fn format_iso8601(epoch_ms: i64) -> String {
    let t = UtcTime::from_epoch_ms(epoch_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

/// `09/Feb/2024:18:23:28 +0000`: the `requestTime` format of API Gateway events.
pub(crate) fn format_request_time(epoch_ms: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = UtcTime::from_epoch_ms(epoch_ms);
    let month = MONTHS
        .get(t.month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        t.day, month, t.year, t.hour, t.minute, t.second
    )
}

/// A broken-down UTC time; enough calendar arithmetic to avoid a date-time dependency.
struct UtcTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

impl UtcTime {
    fn from_epoch_ms(epoch_ms: i64) -> Self {
        let days = epoch_ms.div_euclid(86_400_000);
        let ms_of_day = epoch_ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        // `ms_of_day` is in 0..86_400_000, so every part below fits in a u32.
        let ms_of_day = u32::try_from(ms_of_day).unwrap_or(0);
        Self {
            year,
            month,
            day,
            hour: ms_of_day / 3_600_000,
            minute: ms_of_day / 60_000 % 60,
            second: ms_of_day / 1000 % 60,
            millis: ms_of_day % 1000,
        }
    }
}

/// Proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_api_gateway_fixture() {
        // From aws_lambda_events' example-apigw-websocket-request-disconnect-route.json.
        assert_eq!(
            format_request_time(1_707_503_008_941),
            "09/Feb/2024:18:23:28 +0000"
        );
        assert_eq!(
            format_iso8601(1_707_503_008_941),
            "2024-02-09T18:23:28.941Z"
        );
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            format_iso8601(1_735_689_599_999),
            "2024-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn ids_look_like_connection_ids() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.ends_with('='));
        assert!(
            a[..15]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
