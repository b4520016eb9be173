//! Cost model: the billable requests one hour of N online users produces, priced, for this
//! design and for the straightforward one (one HTTP request, one SQS message and a share of a
//! consumer invocation per heartbeat, every 30 s, per tab). A pure model: counts follow from
//! the parameters below, prices are list prices.
//!
//! Both designs deliver the same status events to the same WebSocket connections (one per
//! tab), persist the same flips and run the same schedules; the model counts those as
//! **delivery** (identical in both) and compares the **presence** cost — what it costs to know
//! who is online — which is where the designs differ. The whole bill is shown too.

use crate::report::{Figure, On, Report, Target, fmt_num};
use crate::{Options, Outcome, Progress};
use std::fmt::Write as _;

/// List prices, us-east-1, as of 2025 (USD).
pub mod prices {
    /// Lambda, arm64, per GB-second.
    pub const LAMBDA_GB_S: f64 = 0.000_013_333_4;
    /// Lambda, per request.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// API Gateway WebSocket, per message (32 KB units), first billion.
    pub const WS_MESSAGE: f64 = 1.00 / 1e6;
    /// API Gateway WebSocket, per connection-minute.
    pub const WS_CONNECTION_MINUTE: f64 = 0.25 / 1e6;
    /// API Gateway HTTP API, per request (512 KB units), first 300 million.
    pub const HTTP_REQUEST: f64 = 1.00 / 1e6;
    /// SQS standard queue, per request (64 KB chunks).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// DynamoDB on-demand, per write request unit.
    pub const DDB_WRITE: f64 = 1.25 / 1e6;
    /// DynamoDB on-demand, per read request unit.
    pub const DDB_READ: f64 = 0.25 / 1e6;
    /// Lambda memory of every function (`template.yaml`: 256 MB).
    pub const LAMBDA_GB: f64 = 0.25;
}

/// Who is online and how they behave.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    pub users: f64,
    /// Open tabs per online user (each tab has its WebSocket for live status).
    pub tabs_per_user: f64,
    pub users_per_facility: f64,
    pub facilities_per_region: f64,
    /// Status flips per facility per hour.
    pub flips_per_facility_hour: f64,
    /// How long a browser (or tab) stays signed in, hours: sessions start and end at this rate.
    pub session_hours: f64,
}

impl Population {
    pub fn new(users: f64) -> Self {
        Self {
            users,
            tabs_per_user: 1.5,
            users_per_facility: 10.0,
            facilities_per_region: 100.0,
            flips_per_facility_hour: 0.25,
            session_hours: 4.0,
        }
    }

    fn tabs(&self) -> f64 {
        self.users * self.tabs_per_user
    }

    fn facilities(&self) -> f64 {
        self.users / self.users_per_facility
    }

    fn sockets_per_region(&self) -> f64 {
        self.facilities_per_region * self.users_per_facility * self.tabs_per_user
    }

    fn flips(&self) -> f64 {
        self.facilities() * self.flips_per_facility_hour
    }
}

/// How heartbeats travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /v1/heartbeats` through the HTTP API to heartbeat-ingest.
    Http,
    /// A `heartbeat` frame on the tab's WebSocket, to ws-message.
    WebSocket,
}

/// A way of keeping presence.
#[derive(Debug, Clone)]
pub struct Design {
    pub name: String,
    /// One heartbeat stream per tab (false: per browser, the leader tab's).
    pub per_tab: bool,
    pub transport: Transport,
    /// Heartbeat interval told by the server, s (the TTL is 2.5 × this, as 75 / 30).
    pub interval_s: f64,
    /// Sessions are bound to the socket at `$connect` and end at `$disconnect` (no `ended`
    /// request, no heartbeat needed to start).
    pub socket_lifecycle: bool,
    /// ws-message answers each heartbeat frame (`heartbeat {interval_s}`).
    pub ack: bool,
    /// ws-message reads the connection's item (identity), once per connection per instance.
    pub registry_read: bool,
    /// Heartbeats go through the heartbeat queue (false: applied to Redis directly).
    pub queued: bool,
    /// The consumer's `BatchSize` and `MaximumBatchingWindowInSeconds`.
    pub consumer_batch: f64,
    pub batching_window_s: f64,
    /// Billed duration of the function that receives one heartbeat, ms.
    pub ingest_ms: f64,
}

impl Design {
    /// The straightforward design.
    pub fn straightforward() -> Self {
        Self {
            name: "straightforward: HTTP + SQS per heartbeat, per tab, every 30 s".into(),
            per_tab: true,
            transport: Transport::Http,
            interval_s: 30.0,
            socket_lifecycle: false,
            ack: false,
            registry_read: false,
            queued: true,
            consumer_batch: 10.0,
            batching_window_s: 0.0,
            ingest_ms: 6.0,
        }
    }

    /// This design as built: sessions bound to the socket, a backstop heartbeat per browser on
    /// the socket every `interval_s` (ws-message answers it in its route response, reads the
    /// connection item unless its instance has it, and enqueues it), the consumer in batches
    /// of 10 (the template's default: no batching window).
    pub fn this(interval_s: f64) -> Self {
        Self {
            name: format!(
                "this design: socket lifecycle + backstop heartbeat per browser on the socket every {interval_s:.0} s"
            ),
            per_tab: false,
            transport: Transport::WebSocket,
            interval_s,
            socket_lifecycle: true,
            ack: true,
            registry_read: true,
            queued: true,
            // template.yaml's default: no batching window, so batches of up to 10.
            consumer_batch: 10.0,
            batching_window_s: 0.0,
            ingest_ms: 12.0,
        }
    }

    /// What the web client does today: the leader tab posts HTTP heartbeats every 30 s (one
    /// stream per browser), sockets are not bound to sessions.
    pub fn web_client_today() -> Self {
        Self {
            name: "web client today: HTTP heartbeat per browser every 30 s, batches of 500".into(),
            per_tab: false,
            consumer_batch: 500.0,
            batching_window_s: 1.0,
            ..Self::straightforward()
        }
    }

    /// This design with the recommended changes: backstop heartbeats are not answered
    /// (the interval rides on other replies), the identity comes from the `$connect`
    /// authorizer context, and ws-message applies them to Redis directly.
    pub fn this_lean(interval_s: f64) -> Self {
        Self {
            name: format!(
                "this design, lean backstop (no ack, no registry read, no queue) every {interval_s:.0} s"
            ),
            ack: false,
            registry_read: false,
            queued: false,
            ingest_ms: 4.0,
            ..Self::this(interval_s)
        }
    }
}

/// One priced line.
#[derive(Debug, Clone)]
pub struct Line {
    pub item: String,
    /// `presence` or `delivery`.
    pub part: &'static str,
    pub count: f64,
    pub unit: &'static str,
    pub price: f64,
}

impl Line {
    pub fn cost(&self) -> f64 {
        self.count * self.price
    }
}

fn line(item: &str, part: &'static str, count: f64, unit: &'static str, price: f64) -> Line {
    Line {
        item: item.to_owned(),
        part,
        count,
        unit,
        price,
    }
}

fn gb_s(invocations: f64, ms: f64) -> f64 {
    invocations * ms / 1e3 * prices::LAMBDA_GB
}

/// Long polls an SQS event source mapping makes on an idle queue per hour (5 pollers, 20 s).
const IDLE_POLLS_PER_HOUR: f64 = 5.0 * 180.0;

/// The priced lines of one hour of `pop` under `design`.
pub fn hour(pop: &Population, d: &Design) -> Vec<Line> {
    use prices::*;
    let mut v = Vec::new();
    let streams = if d.per_tab { pop.tabs() } else { pop.users };
    let beats = streams * 3600.0 / d.interval_s;
    // Session ends the client must announce (`ended`); with the socket lifecycle they are
    // `$disconnect`, which happens anyway.
    let ends = if d.socket_lifecycle {
        0.0
    } else {
        streams / pop.session_hours
    };
    let requests = beats + ends;
    let p = "presence";
    match d.transport {
        Transport::Http => v.push(line(
            "heartbeat requests (HTTP API)",
            p,
            requests,
            "requests",
            HTTP_REQUEST,
        )),
        Transport::WebSocket => v.push(line(
            "heartbeat frames in (WebSocket messages)",
            p,
            requests,
            "messages",
            WS_MESSAGE,
        )),
    }
    if d.ack {
        v.push(line(
            "heartbeat replies out (WebSocket messages)",
            p,
            beats,
            "messages",
            WS_MESSAGE,
        ));
    }
    let ingest = match d.transport {
        Transport::Http => "heartbeat-ingest",
        Transport::WebSocket => "ws-message",
    };
    v.push(line(
        &format!("{ingest} invocations"),
        p,
        requests,
        "invocations",
        LAMBDA_REQUEST,
    ));
    v.push(line(
        &format!("{ingest} duration ({:.0} ms)", d.ingest_ms),
        p,
        gb_s(requests, d.ingest_ms),
        "GB-s",
        LAMBDA_GB_S,
    ));
    if d.registry_read {
        // Each ws-message instance keeps the connections it has read for their 2-hour life,
        // so a connection's item is read at most once per instance that serves one of its
        // frames: min(its frames in 2 h, the instances busy at once (Little's law)).
        let instances = (requests / 3600.0 * d.ingest_ms / 1e3).ceil().max(1.0);
        let misses_per_2h = (7200.0 / d.interval_s).min(instances);
        v.push(line(
            &format!(
                "connection item read once per connection and instance ({instances:.0} instances; GetItem, 0.5 RRU)"
            ),
            p,
            streams * misses_per_2h / 2.0 * 0.5,
            "RRU",
            DDB_READ,
        ));
    }
    if d.queued {
        v.push(line(
            "heartbeat queue SendMessage",
            p,
            requests,
            "requests",
            SQS_REQUEST,
        ));
        v.push(line(
            "heartbeat queue Receive + DeleteBatch (10 per call) and idle polls",
            p,
            2.0 * (requests / 10.0).ceil() + IDLE_POLLS_PER_HOUR,
            "requests",
            SQS_REQUEST,
        ));
        let rate = requests / 3600.0;
        let batch = if d.batching_window_s > 0.0 {
            d.consumer_batch.min((rate * d.batching_window_s).max(1.0))
        } else {
            d.consumer_batch.min(rate.max(1.0))
        };
        let invocations = requests / batch;
        v.push(line(
            &format!("heartbeat-consumer invocations (batches of {batch:.0})"),
            p,
            invocations,
            "invocations",
            LAMBDA_REQUEST,
        ));
        v.push(line(
            "heartbeat-consumer duration (4 ms + 20 µs per record)",
            p,
            gb_s(invocations, 4.0 + 0.02 * batch),
            "GB-s",
            LAMBDA_GB_S,
        ));
    }
    let sessions = streams / pop.session_hours;
    if d.socket_lifecycle {
        v.push(line(
            "session bound at $connect / ended at $disconnect (+2 ms each)",
            p,
            gb_s(2.0 * pop.tabs() * (0.5 + 1.0 / pop.session_hours), 2.0),
            "GB-s",
            LAMBDA_GB_S,
        ));
    }
    v.push(line(
        "session segments persisted (history item)",
        p,
        sessions,
        "WRU",
        DDB_WRITE,
    ));
    v.push(line(
        "flips persisted (status + GSI + history item)",
        p,
        pop.flips() * 3.0,
        "WRU",
        DDB_WRITE,
    ));
    v.push(line(
        "session-expiry (every minute, sweeping 55 s) + facility-rollup (every minute, 200 ms)",
        p,
        gb_s(60.0, 55_000.0) + gb_s(60.0, 200.0),
        "GB-s",
        LAMBDA_GB_S,
    ));
    v.push(line(
        "schedule invocations",
        p,
        120.0,
        "invocations",
        LAMBDA_REQUEST,
    ));

    // Delivery: identical in both designs.
    let q = "delivery";
    let connects = pop.tabs() * (0.5 + 1.0 / pop.session_hours);
    v.push(line(
        "WebSocket connection-minutes (one socket per tab)",
        q,
        pop.tabs() * 60.0,
        "minutes",
        WS_CONNECTION_MINUTE,
    ));
    v.push(line(
        "ws-connect + ws-disconnect invocations (2 h limit, sign-ins)",
        q,
        2.0 * connects,
        "invocations",
        LAMBDA_REQUEST,
    ));
    v.push(line(
        "ws-connect + ws-disconnect duration (10 ms)",
        q,
        gb_s(2.0 * connects, 10.0),
        "GB-s",
        LAMBDA_GB_S,
    ));
    v.push(line(
        "connection items put + deleted (base + 3 GSIs)",
        q,
        2.0 * connects * 4.0,
        "WRU",
        DDB_WRITE,
    ));
    let sockets = pop.sockets_per_region();
    v.push(line(
        "status events to watching sockets (WebSocket messages)",
        q,
        pop.flips() * sockets,
        "messages",
        WS_MESSAGE,
    ));
    v.push(line(
        "push queue send + receive + delete, idle polls",
        q,
        3.0 * pop.flips() + IDLE_POLLS_PER_HOUR,
        "requests",
        SQS_REQUEST,
    ));
    v.push(line(
        "ws-push invocations",
        q,
        pop.flips(),
        "invocations",
        LAMBDA_REQUEST,
    ));
    v.push(line(
        "ws-push duration (5 ms + 3 ms per post / 64 in flight)",
        q,
        gb_s(pop.flips(), 5.0 + 3.0 * sockets / 64.0),
        "GB-s",
        LAMBDA_GB_S,
    ));
    v.push(line(
        "region connections read per event (by-region query)",
        q,
        pop.flips() * (sockets * 200.0 / 4096.0).ceil() * 0.5,
        "RRU",
        DDB_READ,
    ));
    v
}

/// `(presence, delivery)` dollars.
pub fn totals(lines: &[Line]) -> (f64, f64) {
    let sum = |part: &str| {
        lines
            .iter()
            .filter(|l| l.part == part)
            .map(Line::cost)
            .sum::<f64>()
    };
    (sum("presence"), sum("delivery"))
}

/// The server-set backstop interval of the headline figure, s. API Gateway closes a socket
/// after 10 minutes without a client frame, so a client must send one at least that often;
/// 120 s keeps TTL (2.5 × interval = 300 s) well inside that, and a missed `$disconnect`
/// (the only case the backstop covers) costs at most 5 minutes of a stale "online".
pub const HEADLINE_INTERVAL_S: f64 = 120.0;

fn breakdown(pop: &Population, d: &Design) -> String {
    let lines = hour(pop, d);
    let (presence, delivery) = totals(&lines);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n**{}** — {} users, per hour\n\n| part | item | count | unit price | $ |\n|---|---|---:|---:|---:|",
        d.name,
        fmt_num(pop.users)
    );
    for l in &lines {
        let _ = writeln!(
            s,
            "| {} | {} | {} {} | ${:.3}/M | {:.4} |",
            l.part,
            l.item,
            fmt_num(l.count),
            l.unit,
            l.price * 1e6,
            l.cost()
        );
    }
    let _ = writeln!(
        s,
        "| | **presence** | | | **{presence:.3}** |\n| | **delivery** | | | **{delivery:.3}** |"
    );
    s
}

pub fn run(options: &Options, report: &mut Report, progress: &Progress) -> Outcome {
    let _ = options;
    let b = Design::straightforward();
    for users in [10_000.0, 100_000.0] {
        let pop = Population::new(users);
        let (pb, db) = totals(&hour(&pop, &b));
        let a = Design::this(HEADLINE_INTERVAL_S);
        let (pa, da) = totals(&hour(&pop, &a));
        progress.say(format!(
            "{} users: presence ${pa:.2}/h vs ${pb:.2}/h (ratio {:.3}); with delivery ${:.2}/h vs ${:.2}/h",
            fmt_num(users),
            pa / pb,
            pa + da,
            pb + db
        ));
        let mut fig = Figure::new(
            "cost",
            format!(
                "presence, {} users, backstop every {HEADLINE_INTERVAL_S:.0} s",
                fmt_num(users)
            ),
            pa,
            "$/h",
        )
        .against("straightforward", pb, "$/h");
        if users >= 100_000.0 {
            fig = fig.target(Target::AtMost(On::Ratio, 0.25));
        }
        report.figure(fig);
        if users >= 100_000.0 {
            report.figure(
                Figure::new(
                    "cost",
                    format!("whole bill incl. delivery, {} users", fmt_num(users)),
                    pa + da,
                    "$/h",
                )
                .against("straightforward + same delivery", pb + db, "$/h"),
            );
            let mut sweep = String::from(
                "cost: presence $/h at 100 000 users by backstop interval (TTL 2.5 × interval) — ",
            );
            let mut rows = Vec::new();
            for interval in [30.0, 60.0, 120.0, 240.0, 480.0] {
                let (pa, _) = totals(&hour(&pop, &Design::this(interval)));
                let (pl, _) = totals(&hour(&pop, &Design::this_lean(interval)));
                rows.push(format!(
                    "{interval:.0} s: as built {:.3} (×{:.3}), lean {:.3} (×{:.3})",
                    pa,
                    pa / pb,
                    pl,
                    pl / pb
                ));
                report.run(
                    "cost",
                    format!("this design, backstop every {interval:.0} s, 100k users"),
                    users as u64,
                    3600.0,
                    pa,
                    format!(
                        "rate column: $/h presence; ratio {:.3}; lean {:.3}",
                        pa / pb,
                        pl / pb
                    ),
                );
            }
            let (pw, _) = totals(&hour(&pop, &Design::web_client_today()));
            sweep.push_str(&rows.join("; "));
            sweep.push_str(&format!(
                "; web client today (HTTP per browser, 30 s) {pw:.3} (×{:.3}); straightforward {pb:.3}.",
                pw / pb
            ));
            report.note(sweep);
            report.note(breakdown(&pop, &Design::this(HEADLINE_INTERVAL_S)));
            report.note(breakdown(&pop, &b));
        }
        report.run(
            "cost",
            format!("straightforward, {} users", fmt_num(users)),
            users as u64,
            3600.0,
            pb,
            "rate column: $/h presence",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_messages_cost_less() {
        let pop = Population::new(100_000.0);
        let (b, _) = totals(&hour(&pop, &Design::straightforward()));
        let (a30, _) = totals(&hour(&pop, &Design::this(30.0)));
        let (a120, _) = totals(&hour(&pop, &Design::this(120.0)));
        let (lean, _) = totals(&hour(&pop, &Design::this_lean(120.0)));
        assert!(a120 < a30 && lean < a120 && a120 < b);
        // 150 000 tabs × 120 heartbeats = 18 M HTTP requests.
        let http = hour(&pop, &Design::straightforward())
            .into_iter()
            .find(|l| l.item.starts_with("heartbeat requests"))
            .unwrap();
        assert!((http.count - 18_000_000.0 - 37_500.0).abs() < 1.0);
    }
}
