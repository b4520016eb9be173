#!/usr/bin/env bash
# Runs the README's commands as a newcomer would, so none of them can break silently (part
# of the test command, scripts/test.sh):
#
#   1. `scripts/run.sh --http-port P --ws-port Q` on free ports: it prints its banner, serves
#      /dev/config, the dashboard on / and a token on /dev/token?user=nurse-ann, and stops
#      (with its private redis-server) when its process group gets SIGTERM, as on Ctrl-C;
#   2. every `scripts/invoke.sh FUNCTION EVENT_FILE` line written in README.md;
#   3. `scripts/invoke.sh F events/F/<first sample event>` for every function under functions/;
#   4. the soak command, for a few seconds with a few sockets (the README's run lasts 10 minutes).
#
# Prints one line per check ("ok - ..." or "not ok - ..." with the log's tail) and closes with
# "# pass N" and "# fail M" (scripts/test.sh counts them); exits 1 when a check failed.
#
#   scripts/readme-check.sh
#   READMECHECK_START_SECONDS=900   how long run.sh may take to build and start (default 900)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

pass=0 fail=0
work="$(mktemp -d)"
run_pgid=""
cleanup() {
  if [ -n "$run_pgid" ]; then stop_group KILL "$run_pgid"; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ok() { echo "ok - $*"; pass=$((pass + 1)); }
not_ok() { # not_ok MESSAGE [LOG]
  echo "not ok - $1"
  if [ -n "${2:-}" ] && [ -s "$2" ]; then tail -n 30 "$2" | sed 's/^/    | /'; fi
  fail=$((fail + 1))
}
free_ports() { # free_ports N: N free loopback ports
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}
# fetch URL: prints the HTTP status (0 when nothing answers) on the first line, then the body.
fetch() { # (stderr dropped: a reader that stops after the status closes the pipe early)
  python3 - "$1" 2>/dev/null <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status)
        sys.stdout.write(r.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# The group of a leader started with setsid (until setsid ran, only the leader is there).
group_alive() { kill -0 -- "-$1" 2>/dev/null || kill -0 "$1" 2>/dev/null; }
stop_group() { kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null; } # stop_group SIGNAL PGID

# ---------- 1. scripts/run.sh ----------
read -r http ws < <(free_ports 2)
base="http://127.0.0.1:$http"
log="$work/run.log"
# In its own process group, as in a terminal, with no Redis or emulator from the caller.
setsid env -u REDIS_URL -u AWS_ENDPOINT_URL scripts/run.sh --http-port "$http" --ws-port "$ws" \
  >"$log" 2>&1 </dev/null &
run_pgid=$!
started=$SECONDS
up=0
while [ $((SECONDS - started)) -lt "${READMECHECK_START_SECONDS:-900}" ]; do
  group_alive "$run_pgid" || break
  if grep -q "Presence local stack ready" "$log" &&
    [ "$(fetch "$base/dev/config" | head -n 1)" = 200 ]; then
    up=1
    break
  fi
  sleep 0.5
done
if [ $up = 1 ]; then
  ok "scripts/run.sh --http-port $http --ws-port $ws: banner printed, /dev/config 200 ($((SECONDS - started)) s)"
  if grep -q "dashboard: *$base/" "$log"; then
    ok "run.sh banner names the dashboard $base/"
  else
    not_ok "run.sh banner does not name the dashboard $base/" "$log"
  fi
  fetch "$base/" >"$work/index"
  if [ "$(head -n 1 "$work/index")" = 200 ] && grep -q "<title>Presence</title>" "$work/index"; then
    ok "run.sh serves the dashboard on /"
  else
    not_ok "run.sh does not serve the dashboard on / (status $(head -n 1 "$work/index"))" "$work/index"
  fi
  fetch "$base/dev/token?user=nurse-ann" >"$work/token"
  if [ "$(head -n 1 "$work/token")" = 200 ] &&
    tail -n +2 "$work/token" | python3 -c '
import json, re, sys
token = json.load(sys.stdin)["token"]
sys.exit(0 if re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token) else 1)' 2>/dev/null; then
    ok "run.sh signs a token on /dev/token?user=nurse-ann"
  else
    not_ok "run.sh gives no token on /dev/token?user=nurse-ann (status $(head -n 1 "$work/token"))" "$work/token"
  fi
  redis_port="$(sed -n 's|^ *redis: *redis://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log" | head -n 1)"

  # Stop it as Ctrl-C would (the signal goes to the whole process group).
  stop_group TERM "$run_pgid"
  for _ in $(seq 150); do group_alive "$run_pgid" || break; sleep 0.1; done
  if group_alive "$run_pgid"; then
    not_ok "run.sh still running 15 s after SIGTERM" "$log"
    stop_group KILL "$run_pgid"
  elif port_open "$http" || port_open "$ws" || { [ -n "$redis_port" ] && port_open "$redis_port"; }; then
    not_ok "run.sh stopped but a port of its stack (HTTP $http, WebSocket $ws, redis ${redis_port:-?}) still answers" "$log"
  else
    ok "run.sh stops on SIGTERM with everything it started"
  fi
else
  if group_alive "$run_pgid"; then
    not_ok "scripts/run.sh: no banner and /dev/config 200 within ${READMECHECK_START_SECONDS:-900} s" "$log"
  else
    not_ok "scripts/run.sh exited before its stack was up" "$log"
  fi
  stop_group KILL "$run_pgid"
fi
run_pgid=""

# ---------- 2. and 3. scripts/invoke.sh ----------
invoke() { # invoke FUNCTION EVENT_FILE [FUNCTION EVENT_FILE ...]
  local started=$SECONDS out="$work/invoke.out" err="$work/invoke.err" rc=0
  scripts/invoke.sh "$@" >"$out" 2>"$err" </dev/null || rc=$?
  if [ $rc != 0 ]; then
    not_ok "scripts/invoke.sh $*: failed (exit status $rc)" "$err"
  elif [ "$(grep -c . "$out")" = $(($# / 2)) ] && python3 -c '
import json, sys
for line in open(sys.argv[1]):
    json.loads(line)' "$out" 2>/dev/null; then
    ok "scripts/invoke.sh $*: answered in $((SECONDS - started)) s: $(head -n 1 "$out" | cut -c 1-90)"
  else
    not_ok "scripts/invoke.sh $*: not one JSON response per event" "$out"
  fi
}

# The literal invoke commands of README.md's code blocks, continued lines joined (lines with
# shell variables are loops, covered by the sweep below).
readme_invokes=0
while read -r -a command; do
  readme_invokes=$((readme_invokes + 1))
  invoke "${command[@]:1}"
done < <(awk '/^[[:space:]]*```/ { code = !code; next }
              !code { next }
              { line = (cont ? line " " : "") $0; cont = sub(/\\$/, "", line) }
              cont { next }
              { sub(/[[:space:]]+#.*/, "", line) }
              line ~ /^[[:space:]]*scripts\/invoke\.sh / && line !~ /[$]/ { print line }' README.md)
if [ $readme_invokes = 0 ]; then
  not_ok "README.md shows no scripts/invoke.sh command"
fi

for dir in functions/*/; do
  fn="$(basename "$dir")"
  [ -f "$dir/Cargo.toml" ] || continue
  event="$(find "events/$fn" -maxdepth 1 -name '*.json' 2>/dev/null | LC_ALL=C sort | head -n 1)"
  if [ -z "$event" ]; then
    not_ok "events/$fn/ holds no sample event for $fn"
  else
    invoke "$fn" "$event"
  fi
done

# The soak command as the README writes it, shortened to seconds (debug build, which the
# test command has built already; it must still connect, heartbeat and leave nothing behind).
soak_log="$work/soak.log"
if timeout 600 cargo run --quiet -p presence-local --bin presence-soak -- \
     --minutes 0.15 --sockets 40 --rate 40 --churn 0.05 >"$soak_log" 2>&1 \
   && grep -Eq '^ *client errors +0$' "$soak_log" \
   && grep -Eq '^ *flips lost +0 ' "$soak_log" \
   && grep -Eq '^ *connections left +0 ' "$soak_log"; then
  ok "the soak command runs: $(grep -E -m1 '^ *heartbeats applied' "$soak_log" | tr -s ' ')"
else
  not_ok "the soak command failed" "$soak_log"
fi

echo "# pass $pass"
echo "# fail $fail"
[ $fail = 0 ]
