//! Every benchmark in quick mode (small numbers, a few seconds), so the code paths cannot rot.
//! Only that figures were produced is checked, never timings: those belong to the full run
//! (`scripts/bench.sh`), not to CI.

use presence_bench::{Bench, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_benchmark_runs_in_quick_mode() {
    let out = std::env::temp_dir().join(format!("presence-bench-quick-{}", std::process::id()));
    let options = Options {
        out: out.clone(),
        // The fan-out's clients in a process of their own, as in the full run.
        client_exe: Some(env!("CARGO_BIN_EXE_presence-bench").into()),
        ..Options::quick()
    };
    let report = presence_bench::run(&options).await;
    assert!(
        report.errors.is_empty(),
        "benchmarks failed: {:?} (redis-server and redis-benchmark must be installed: scripts/test.sh does)",
        report.errors
    );
    for bench in Bench::ALL {
        let figures = report.figures_of(bench.name());
        assert!(!figures.is_empty(), "{} produced no figure", bench.name());
        for f in figures {
            // The bill's per-heartbeat counts may rightly be 0 (no DynamoDB read, no queue).
            let zero_ok = bench == Bench::Bill;
            assert!(
                f.value.is_finite() && (f.value > 0.0 || (zero_ok && f.value == 0.0)),
                "{f:?}"
            );
            if let Some(r) = &f.reference {
                assert!(r.value.is_finite() && r.value > 0.0, "{f:?}");
            }
        }
    }
    assert!(report.table().contains("| throughput |"));
    for file in [
        "runs.csv",
        "summary.md",
        "latency.svg",
        "rollup.svg",
        "latency_samples.csv",
        "bill.md",
    ] {
        let text = std::fs::read_to_string(out.join(file)).expect(file);
        assert!(text.len() > 50, "{file} is nearly empty");
    }
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(csv.lines().count() > 10, "{csv}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `docs/deploy.md`'s bill block is the last full run's `bench/results/bill.md`
/// (`cargo run --release -p presence-bench -- --only bill` writes both), so the doc's figures
/// cannot drift from the measurement.
#[test]
fn deploy_md_bill_block_is_the_last_full_run() {
    let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/bill.md");
    let measured = std::fs::read_to_string(&results)
        .unwrap_or_else(|e| panic!("{}: {e} (run the bill benchmark)", results.display()));
    let doc = std::fs::read_to_string(presence_bench::bill::deploy_md()).expect("docs/deploy.md");
    let block = presence_bench::bill::block(&doc).expect("docs/deploy.md has the bill block");
    assert!(
        block == measured,
        "docs/deploy.md's bill block differs from bench/results/bill.md: run `cargo run --release -p presence-bench -- --only bill`"
    );
}
