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
            assert!(f.value.is_finite() && f.value > 0.0, "{f:?}");
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
    ] {
        let text = std::fs::read_to_string(out.join(file)).expect(file);
        assert!(text.len() > 50, "{file} is nearly empty");
    }
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(csv.lines().count() > 10, "{csv}");
    let _ = std::fs::remove_dir_all(&out);
}
