//! presence-coldstart: how long each function binary takes from process start to its first
//! `GET /2018-06-01/runtime/invocation/next` (init-to-ready: configuration, the token secret,
//! the Redis connection, the AWS clients and their warm-up calls), and how long its first
//! invocation then takes, against a minimal Lambda Runtime API stand-in.
//!
//! The stand-in also answers the AWS APIs the functions call (`AWS_ENDPOINT_URL` points at
//! it): Secrets Manager returns the development secret, SQS, DynamoDB and the API Gateway
//! management API return empty successes. Redis is a real `redis-server` on a free port.
//!
//! ```sh
//! cargo run -p presence-coldstart --release -- [--runs N] [--bin-dir DIR] [--function NAME]... [--verbose]
//! ```
//!
//! Without `--bin-dir` it first runs `cargo build --release` for the eight functions and uses
//! `$CARGO_TARGET_DIR/release` (or `target/release`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Every function, with the sample event (under `events/<function>/`) of its first invoke.
const FUNCTIONS: [(&str, &str); 8] = [
    ("heartbeat-ingest", "valid.json"),
    ("heartbeat-consumer", "batch.json"),
    ("session-expiry", "schedule.json"),
    ("facility-rollup", "schedule.json"),
    ("ws-connect", "connect.json"),
    ("ws-disconnect", "disconnect.json"),
    ("ws-message", "ping.json"),
    ("ws-push", "batch.json"),
];

/// The development secret the sample tokens are signed with is served by the Secrets Manager
/// stand-in for `JWT_SECRET_ARN`.
use presence::auth::DEV_SECRET;
const SECRET_ID: &str = "presence/jwt-secret";

/// How long a function may take to ask for its first event, and to answer it.
const PHASE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Args {
    bin_dir: Option<PathBuf>,
    runs: usize,
    events: PathBuf,
    only: Vec<String>,
    verbose: bool,
}

const USAGE: &str =
    "usage: presence-coldstart [--runs N] [--bin-dir DIR] [--events DIR] [--function NAME]... [--verbose]

Starts each function binary N times (default 5) against a Lambda Runtime API stand-in and a
local redis-server, and prints init-to-ready (spawn -> first GET .../invocation/next) and the
duration of the first invoke (one sample event from events/<function>/), p50 and max.
Without --bin-dir, builds the functions first (cargo build --release) and uses
$CARGO_TARGET_DIR/release (or target/release). --verbose shows each function's first
response and its last output lines.";

fn parse_args() -> Result<Args, String> {
    let root = workspace_root();
    let mut args = Args {
        bin_dir: None,
        runs: 5,
        events: root.join("events"),
        only: Vec::new(),
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--bin-dir" => args.bin_dir = Some(PathBuf::from(value("--bin-dir")?)),
            "--runs" => {
                args.runs = value("--runs")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a whole number above 0")?;
            }
            "--events" => args.events = PathBuf::from(value("--events")?),
            "--function" => {
                let name = value("--function")?;
                if !FUNCTIONS.iter().any(|(f, _)| *f == name) {
                    return Err(format!("unknown function {name:?}"));
                }
                args.only.push(name);
            }
            "-v" | "--verbose" => args.verbose = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| manifest.to_path_buf())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

// ---------- the Runtime API and AWS stand-in ----------

/// What the stand-in tells the measuring loop.
#[derive(Debug)]
enum Report {
    /// The first `GET .../invocation/next`.
    Ready(Instant),
    /// `POST .../invocation/{id}/response`, with the body.
    Response(Instant, String),
    /// `POST .../invocation/{id}/error`.
    InvokeError(String),
    /// `POST .../init/error`.
    InitError(String),
}

/// The run in progress: where reports go and the event to hand out once.
#[derive(Debug, Default)]
struct Slot {
    reports: Option<mpsc::UnboundedSender<Report>>,
    event: Option<Bytes>,
    request: u64,
}

type Shared = Arc<Mutex<Slot>>;

fn report(slot: &Shared, r: Report) {
    if let Some(tx) = &slot.lock().expect("slot lock").reports {
        let _ = tx.send(r);
    }
}

async fn next(State(slot): State<Shared>) -> Response {
    let handed = {
        let mut s = slot.lock().expect("slot lock");
        let event = s.event.take();
        if let Some(tx) = &s.reports {
            if event.is_some() {
                let _ = tx.send(Report::Ready(Instant::now()));
            }
        }
        s.request += 1;
        event.map(|e| (e, s.request))
    };
    let Some((event, n)) = handed else {
        // Later polls wait until the process is stopped, as Lambda's do between events.
        std::future::pending::<()>().await;
        unreachable!("pending never completes");
    };
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 60_000;
    (
        [
            (
                "lambda-runtime-aws-request-id",
                format!("00000000-0000-4000-8000-{n:012}"),
            ),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:coldstart".into(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
            ),
            (header::CONTENT_TYPE.as_str(), "application/json".into()),
        ],
        event,
    )
        .into_response()
}

async fn invocation_result(State(slot): State<Shared>, uri: Uri, body: Bytes) -> impl IntoResponse {
    let r = if uri.path().ends_with("/error") {
        Report::InvokeError(String::from_utf8_lossy(&body).into_owned())
    } else {
        Report::Response(Instant::now(), String::from_utf8_lossy(&body).into_owned())
    };
    report(&slot, r);
    StatusCode::ACCEPTED
}

async fn init_error(State(slot): State<Shared>, body: Bytes) -> impl IntoResponse {
    report(
        &slot,
        Report::InitError(String::from_utf8_lossy(&body).into_owned()),
    );
    StatusCode::ACCEPTED
}

/// Every other request is an AWS API call: Secrets Manager gets the development secret,
/// `SendMessageBatch` gets every entry accepted, everything else an empty success.
async fn aws(headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = |value: serde_json::Value| {
        (
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            value.to_string(),
        )
            .into_response()
    };
    match target {
        "secretsmanager.GetSecretValue" => json(serde_json::json!({
            "ARN": format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{SECRET_ID}-AbCdEf"),
            "Name": SECRET_ID,
            "SecretString": DEV_SECRET,
            "VersionId": "00000000-0000-4000-8000-000000000001",
        })),
        "AmazonSQS.SendMessageBatch" => {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let ok: Vec<_> = request["Entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    serde_json::json!({
                        "Id": e["Id"], "MessageId": "00000000-0000-4000-8000-000000000002",
                        "MD5OfMessageBody": "d41d8cd98f00b204e9800998ecf8427e",
                    })
                })
                .collect();
            json(serde_json::json!({"Successful": ok, "Failed": []}))
        }
        // Everything else, the API Gateway management API (`@connections`) included.
        _ => json(serde_json::json!({})),
    }
}

async fn serve() -> std::io::Result<(u16, Shared)> {
    let slot: Shared = Arc::default();
    let app = Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            axum::routing::get(next),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            axum::routing::post(invocation_result),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            axum::routing::post(invocation_result),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            axum::routing::post(init_error),
        )
        .fallback(aws)
        .with_state(slot.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("runtime API stand-in stopped: {e}");
        }
    });
    Ok((port, slot))
}

// ---------- processes ----------

/// The last lines a process wrote to stdout and stderr.
type Tail = Arc<Mutex<VecDeque<String>>>;

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, tail: Tail) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut t = tail.lock().expect("tail lock");
            if t.len() == 30 {
                t.pop_front();
            }
            t.push_back(line);
        }
    });
}

/// The project's private `redis-server` (loopback, no persistence, a free port).
async fn start_redis() -> Result<(Child, u16), String> {
    let (child, url) = presence_local::redis_server::spawn()
        .await
        .map_err(|e| e.to_string())?;
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))?;
    Ok((child, port))
}

/// The environment of one function: what Lambda sets, dummy credentials, and the stand-ins.
fn function_env(function: &str, api_port: u16, redis_port: u16) -> Vec<(String, String)> {
    let api = format!("http://127.0.0.1:{api_port}");
    let mut env: Vec<(&str, String)> = vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{api_port}")),
        ("AWS_LAMBDA_FUNCTION_NAME", function.into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/coldstart/{function}"),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "local".into()),
        ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ("AWS_SESSION_TOKEN", "local".into()),
        ("AWS_ENDPOINT_URL", api.clone()),
        ("RUST_LOG", "info".into()),
        ("REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
        (
            "HEARTBEAT_QUEUE_URL",
            format!("{api}/000000000000/heartbeats"),
        ),
        ("PUSH_QUEUE_URL", format!("{api}/000000000000/push")),
        ("FACILITIES_TABLE", "facilities".into()),
        ("CONNECTIONS_TABLE", "connections".into()),
        ("MESSAGES_TABLE", "messages".into()),
        ("WEBSOCKET_ENDPOINT", format!("{api}/live")),
    ];
    // As template.yaml configures them: the verifying functions read the secret from
    // Secrets Manager at cold start; the other WebSocket functions never see a token.
    match function {
        "heartbeat-ingest" | "ws-connect" => env.push(("JWT_SECRET_ARN", SECRET_ID.into())),
        "ws-disconnect" | "ws-message" | "ws-push" => env.push(("JWT_AUTHORIZER", "true".into())),
        _ => {}
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[derive(Debug)]
struct Run {
    init: Duration,
    invoke: Result<Duration, String>,
    /// The first invoke's response and the process's last output (for `--verbose`).
    detail: String,
}

/// Starts `binary` once, measures it, stops it.
async fn run_once(
    binary: &Path,
    env: &[(String, String)],
    event: &Bytes,
    slot: &Shared,
) -> Result<Run, String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut s = slot.lock().expect("slot lock");
        s.reports = Some(tx);
        s.event = Some(event.clone());
    }
    let tail: Tail = Arc::default();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{} could not start: {e}", binary.display()))?;
    collect(child.stdout.take().expect("piped"), tail.clone());
    collect(child.stderr.take().expect("piped"), tail.clone());
    let output = |tail: &Tail| {
        let t = tail.lock().expect("tail lock");
        if t.is_empty() {
            String::new()
        } else {
            format!(
                "\n    its last output:\n      {}",
                t.iter().cloned().collect::<Vec<_>>().join("\n      ")
            )
        }
    };

    let outcome = async {
        let ready = tokio::select! {
            r = rx.recv() => match r {
                Some(Report::Ready(at)) => at,
                Some(Report::InitError(body)) => return Err(format!("init error reported to /runtime/init/error: {body}")),
                other => return Err(format!("unexpected call before the first event: {other:?}")),
            },
            status = child.wait() => return Err(format!(
                "init failed: the process exited ({}) before asking for an event",
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))),
            _ = tokio::time::sleep(PHASE_TIMEOUT) => return Err(format!("init did not finish within {PHASE_TIMEOUT:?}")),
        };
        let init = ready - started;
        let invoke = tokio::select! {
            r = rx.recv() => match r {
                Some(Report::Response(at, body)) => Ok((at - ready, body)),
                Some(Report::InvokeError(body)) => Err(format!("the first invoke failed: {body}")),
                other => Err(format!("unexpected call during the first invoke: {other:?}")),
            },
            status = child.wait() => Err(format!(
                "the process exited ({}) during the first invoke",
                status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))),
            _ = tokio::time::sleep(PHASE_TIMEOUT) => Err(format!("the first invoke did not finish within {PHASE_TIMEOUT:?}")),
        };
        Ok((init, invoke))
    }
    .await;

    let _ = child.start_kill();
    let _ = child.wait().await;
    slot.lock().expect("slot lock").reports = None;
    // Give the output readers a moment to drain before reporting.
    tokio::time::sleep(Duration::from_millis(20)).await;
    match outcome {
        Ok((init, Ok((invoke, body)))) => Ok(Run {
            init,
            invoke: Ok(invoke),
            detail: format!("    response: {body}{}", output(&tail)),
        }),
        Ok((init, Err(e))) => Ok(Run {
            init,
            invoke: Err(format!("{e}{}", output(&tail))),
            detail: String::new(),
        }),
        Err(e) => Err(format!("{e}{}", output(&tail))),
    }
}

fn percentile_50(values: &mut [Duration]) -> Duration {
    values.sort();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn build_functions() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--bins"]);
    for (f, _) in FUNCTIONS {
        cmd.args(["-p", f]);
    }
    eprintln!("building the functions: cargo build --release --bins -p <each function>");
    let status = cmd.status().await.map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build failed ({status})"))
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            build_functions().await?;
            target_dir().join("release")
        }
    };
    let functions: Vec<_> = FUNCTIONS
        .iter()
        .filter(|(f, _)| args.only.is_empty() || args.only.iter().any(|o| o == f))
        .collect();
    for (f, _) in &functions {
        let bin = bin_dir.join(f);
        if !bin.is_file() {
            return Err(format!(
                "{} is missing: build it with `cargo build --release --bins` or pass --bin-dir",
                bin.display()
            ));
        }
    }

    let (mut redis, redis_port) = start_redis().await?;
    let (api_port, slot) = serve().await.map_err(|e| e.to_string())?;
    println!(
        "cold start: {} runs per function, binaries in {}, Runtime API stand-in on 127.0.0.1:{api_port}, redis-server on {redis_port}",
        args.runs,
        bin_dir.display()
    );
    println!(
        "{:<20} {:>11} {:>11} {:>14} {:>14}",
        "function", "init p50", "init max", "1st invoke p50", "1st invoke max"
    );

    let mut all_ok = true;
    let (mut init_sum, mut slowest) = (Duration::ZERO, (Duration::ZERO, ""));
    let wall = Instant::now();
    for (function, sample) in functions {
        let event_path = args.events.join(function).join(sample);
        let event = Bytes::from(
            std::fs::read(&event_path).map_err(|e| format!("{}: {e}", event_path.display()))?,
        );
        let env = function_env(function, api_port, redis_port);
        let (mut inits, mut invokes, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let mut detail = String::new();
        for _ in 0..args.runs {
            match run_once(&bin_dir.join(function), &env, &event, &slot).await {
                Ok(Run {
                    init,
                    invoke,
                    detail: d,
                }) => {
                    if detail.is_empty() {
                        detail = d;
                    }
                    inits.push(init);
                    match invoke {
                        Ok(d) => invokes.push(d),
                        Err(e) => errors.push(e),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let cell = |values: &mut Vec<Duration>, max: bool| {
            if values.is_empty() {
                "-".to_owned()
            } else if max {
                ms(*values.iter().max().expect("not empty"))
            } else {
                ms(percentile_50(values))
            }
        };
        println!(
            "{:<20} {:>11} {:>11} {:>14} {:>14}",
            function,
            cell(&mut inits, false),
            cell(&mut inits, true),
            cell(&mut invokes, false),
            cell(&mut invokes, true),
        );
        if !inits.is_empty() {
            let p50 = percentile_50(&mut inits);
            init_sum += p50;
            if p50 > slowest.0 {
                slowest = (p50, function);
            }
        }
        if args.verbose && !detail.is_empty() {
            println!("{detail}");
        }
        if let Some(first) = errors.first() {
            all_ok = false;
            println!(
                "  {function}: {} of {} runs failed; the first: {first}",
                errors.len(),
                args.runs
            );
        }
    }
    println!(
        "total: init p50 summed over the functions {}, slowest {} ({}), measured in {:.1} s",
        ms(init_sum),
        ms(slowest.0),
        slowest.1,
        wall.elapsed().as_secs_f64()
    );
    let _ = redis.start_kill();
    let _ = redis.wait().await;
    Ok(all_ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}\n");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("presence-coldstart: {e}");
            ExitCode::FAILURE
        }
    }
}
