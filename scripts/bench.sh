#!/usr/bin/env bash
# The benchmarks (see BENCHMARKS.md): throughput, rollup scaling, latency, fan-out and cost,
# each against its reference in the same run. Release mode. Arguments go to presence-bench:
#   scripts/bench.sh [--quick] [--only throughput,rollup,latency,fanout,cost] [--out DIR]
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in redis-server redis-benchmark; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench.sh: $tool is missing (apt-get install redis-server redis-tools)" >&2
    exit 1
  fi
done

# The fan-out opens 10 000 WebSocket connections: raise the open-file limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
echo "bench.sh: open-file limit $(ulimit -n)" >&2

exec cargo run --quiet --release -p presence-bench -- "$@"
