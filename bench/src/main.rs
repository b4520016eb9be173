//! `presence-bench [--quick] [--only throughput,rollup,latency,fanout,storm,vanish,bill] [--out DIR]`
//!
//! Progress goes to stderr; the summary table to stdout; `runs.csv`, `summary.md` and the SVG
//! charts to `--out` (default `bench/results`, or `bench/results/quick` with `--quick`).

use presence_bench::{Bench, Options, default_out};
use std::collections::BTreeSet;

const USAGE: &str = "usage: presence-bench [--quick] [--only throughput,rollup,latency,fanout,storm,vanish,bill] [--out DIR]";

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut quick = false;
    let mut only: Option<BTreeSet<Bench>> = None;
    let mut out = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let mut set = BTreeSet::new();
                for b in value()?.split(',').filter(|s| !s.trim().is_empty()) {
                    set.insert(Bench::parse(b).ok_or(format!("unknown benchmark {b:?}"))?);
                }
                only = Some(set);
            }
            "--out" => out = Some(value()?.into()),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Options {
        quick,
        only: only.unwrap_or_else(|| Bench::ALL.into_iter().collect()),
        out: out.unwrap_or_else(|| default_out(quick)),
        client_exe: std::env::current_exe().ok(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The fan-out's WebSocket clients run in a child process started with this argument.
    if args.first().map(String::as_str) == Some(presence_bench::fanout::CLIENT_ARG) {
        presence_bench::raise_nofile_limit();
        let code = runtime.block_on(presence_bench::fanout::client_main(&args[1..]));
        std::process::exit(code);
    }
    // `--redraw DIR`: draw latency.svg again from DIR/latency_samples.csv (chart changes
    // without a new run).
    if args.first().map(String::as_str) == Some("--redraw") {
        let dir = std::path::PathBuf::from(
            args.get(1)
                .cloned()
                .unwrap_or_else(|| default_out(false).display().to_string()),
        );
        let drawn = std::fs::read_to_string(dir.join("latency_samples.csv")).and_then(|csv| {
            std::fs::write(
                dir.join("latency.svg"),
                presence_bench::svg::latency_chart_from_csv(&csv),
            )
        });
        if let Err(e) = drawn {
            eprintln!("cannot redraw in {}: {e}", dir.display());
            std::process::exit(1);
        }
        return;
    }
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let report = runtime.block_on(presence_bench::run(&options));
    println!("{}", report.summary());
    eprintln!("results written to {}", options.out.display());
    if !report.errors.is_empty() {
        std::process::exit(1);
    }
}
