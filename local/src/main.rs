//! `presence-local`: the whole system on one machine, with no AWS account.
//!
//! ```text
//! presence-local [--http-port 3000] [--ws-port 3001]
//! ```
//!
//! Configuration is the same environment variables as in AWS (`SESSION_TTL_SECONDS`, …);
//! see the README. Ctrl-C stops it cleanly.

use presence::config::Env;
use presence_local::stack::{LocalStack, StackOptions};

/// jemalloc gives freed memory back to the system (glibc's per-thread arenas keep what a
/// burst of connections used), so the process's RSS follows what is live.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's own count of live and resident bytes (refreshed by advancing its epoch).
fn heap() -> Option<presence_local::stack::HeapStats> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    Some(presence_local::stack::HeapStats {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().ok()? as u64,
    })
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<StackOptions, String> {
    let mut options = StackOptions::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--http-port" => {
                options.http_port = value("--http-port")?
                    .parse()
                    .map_err(|e| format!("--http-port: {e}"))?
            }
            "--ws-port" => {
                options.ws_port = value("--ws-port")?
                    .parse()
                    .map_err(|e| format!("--ws-port: {e}"))?
            }
            "--web-dir" => options.web_dir = value("--web-dir")?.into(),
            "-h" | "--help" => {
                return Err(
                    "usage: presence-local [--http-port 3000] [--ws-port 3001] [--web-dir web]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    presence::telemetry::init();
    presence::telemetry::print_metrics(false);
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(o) => StackOptions {
            heap: Some(heap),
            ..o
        },
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let stack = match LocalStack::start(&Env::from_process(), options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("presence-local: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", stack.banner());
    // Ctrl-C or SIGTERM: stop cleanly, so the private redis-server stops with the stack.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("presence-local: cannot listen for SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                eprintln!("presence-local: cannot wait for Ctrl-C: {e}");
            }
        }
        _ = term.recv() => {}
    }
    println!("stopping…");
    stack.shutdown().await;
    std::process::ExitCode::SUCCESS
}
