#!/usr/bin/env bash
# Run the whole system locally (README): installs redis-server if missing, builds and starts
# the local stack, and prints the dashboard's URL. Ctrl-C stops it.
#
#   scripts/run.sh                          # ports 3000 (HTTP) and 3001 (WebSocket)
#   scripts/run.sh --http-port 8080 --ws-port 8081
#   SESSION_TTL_SECONDS=10 HEARTBEAT_INTERVAL_SECONDS=4 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null; then
  echo "installing redis-server"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
command -v cargo >/dev/null || { echo "run.sh: cargo not found: install Rust 1.85 or newer (rustup)" >&2; exit 1; }
# The package has two binaries (the stack and the soak command): name the stack.
exec cargo run --quiet -p presence-local --bin presence-local -- "$@"
