#!/usr/bin/env bash
# Invoke one function with one sample event (README), the way Lambda runs it, on this machine:
#
#   scripts/invoke.sh FUNCTION EVENT_FILE [FUNCTION EVENT_FILE ...]
#   scripts/invoke.sh heartbeat-ingest events/heartbeat-ingest/valid.json
#   scripts/invoke.sh ws-connect events/ws-connect/connect.json ws-message events/ws-message/join.json
#
# It starts everything a function may need and stops it again when it ends (also on Ctrl-C):
#   - a private redis-server on a free loopback port, without persistence;
#   - the AWS emulator (moto) on a free loopback port, with the SQS queues and the DynamoDB
#     tables of template.yaml (key schemas, attributes, indexes, redrive policies read from
#     the template), which also serves the API Gateway management API (`@connections`);
#   - `cargo lambda watch` (the Lambda runtime emulator) on a free loopback port.
# Then it builds the function, runs `cargo lambda invoke FUNCTION --data-file EVENT_FILE`
# with every variable the functions read (REDIS_URL, the queue URLs, the table names,
# WEBSOCKET_ENDPOINT, AWS_ENDPOINT_URL, dummy AWS credentials, the development JWT_SECRET the
# sample tokens are signed with, RUST_LOG), prints the function's log on stderr and its
# response on stdout. More pairs are invoked in order against the same Redis, queues and
# tables (a ws-message event finds the connection a ws-connect event registered before it).
#
# Exit status: 0 when the function answered (an error response it gives on purpose, such as
# 401 for a bad token, is an answer), non-zero when an invocation failed (the function did
# not start, returned an error or timed out) or something it needs could not be started.
#
# Installs what is missing: redis-server (apt), moto and cargo-lambda (pip, into the venv
# $PRESENCE_VENV, default .venv, the test command's). Builds into $CARGO_TARGET_DIR when set.
# INVOKE_TIMEOUT_SECONDS (default 300) bounds each invocation, the build excluded.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true

usage() {
  echo "usage: scripts/invoke.sh FUNCTION EVENT_FILE [FUNCTION EVENT_FILE ...]" >&2
  echo "  e.g. scripts/invoke.sh heartbeat-ingest events/heartbeat-ingest/valid.json" >&2
}
die() { echo "invoke.sh: $*" >&2; exit 2; }

case "${1:-}" in -h | --help) usage; exit 0 ;; esac
if [ $# -lt 2 ] || [ $(($# % 2)) != 0 ]; then usage; exit 2; fi

# The event files, relative to where the caller stands (resolved before moving to the root).
fns=() events=() names=()
while [ $# -gt 0 ]; do
  [ -e "$2" ] || die "event file not found: $2"
  [ -f "$2" ] && [ -r "$2" ] || die "not a readable file: $2"
  fns+=("$1")
  events+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")")
  names+=("$2")
  shift 2
done

cd "$(dirname "$0")/.."
root="$PWD"

functions=()
for d in functions/*/; do
  [ -f "$d/Cargo.toml" ] && functions+=("$(basename "$d")")
done
for fn in "${fns[@]}"; do
  case " ${functions[*]} " in
    *" $fn "*) ;;
    *)
      echo "invoke.sh: unknown function: $fn" >&2
      echo "functions: ${functions[*]}" >&2
      exit 2
      ;;
  esac
done
for i in "${!events[@]}"; do
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "${events[$i]}" 2>/dev/null ||
    die "not a JSON document: ${names[$i]}"
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v redis-server >/dev/null; then
  echo "installing redis-server" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
command -v cargo >/dev/null || die "cargo not found: install Rust 1.85 or newer (rustup)"

# PyPI, in the test command's venv: moto (the AWS emulator) and cargo-lambda.
VENV="${PRESENCE_VENV:-$root/.venv}"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "installing moto into $VENV" >&2
  if [ ! -x "$VENV/bin/pip" ]; then
    if ! python3 -c 'import ensurepip' 2>/dev/null; then # Debian splits it off
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==5.2.1"
fi
if [ ! -x "$VENV/bin/cargo-lambda" ]; then
  echo "installing cargo-lambda into $VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check cargo-lambda
fi
export PATH="$VENV/bin:$PATH"

# Everything started below is in its own process group (setsid), stopped on exit.
work="$(mktemp -d)"
groups=()
invoke=""
cleanup() {
  local rc=$? pg
  trap - EXIT INT TERM
  [ -z "$invoke" ] || kill "$invoke" 2>/dev/null || true
  # (a leader that has not run setsid yet is alone: signal it by its pid)
  for pg in "${groups[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || kill -TERM "$pg" 2>/dev/null || true; done
  for pg in "${groups[@]}"; do
    for _ in $(seq 50); do kill -0 -- "-$pg" 2>/dev/null || kill -0 "$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null || kill -KILL "$pg" 2>/dev/null || true
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start() { # start LOG COMMAND...: in the background, in a new process group
  local log="$1"
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  groups+=("$!")
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
fail_with_log() { # fail_with_log LOG MESSAGE
  echo "invoke.sh: $2" >&2
  tail -n 40 "$1" | sed 's/^/  | /' >&2
  exit 1
}

read -r redis_port moto_port lambda_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

start "$work/redis.log" redis-server --bind 127.0.0.1 --port "$redis_port" --save "" \
  --appendonly no --dir "$work"
start "$work/moto.log" moto_server -H 127.0.0.1 -p "$moto_port"

# Build each function exactly as `cargo lambda watch` runs it (from the workspace root, by
# binary name: the same features), so the invocation starts it without compiling again.
built=" "
for fn in "${fns[@]}"; do
  case "$built" in *" $fn "*) continue ;; esac
  echo "building $fn" >&2
  cargo build --quiet --bin "$fn"
  built+="$fn "
done

wait_port() { # wait_port PORT LOG NAME: until it accepts connections (at most 60 s)
  local _
  for _ in $(seq 600); do port_open "$1" && return 0; sleep 0.1; done
  fail_with_log "$2" "$3 did not start"
}
wait_port "$redis_port" "$work/redis.log" redis-server
wait_port "$moto_port" "$work/moto.log" "the AWS emulator (moto_server)"

# AWS settings: the emulator only, never a real account.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE JWT_SECRET_ARN JWT_PUBLIC_KEY
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local

# The queues and tables of template.yaml, created in the emulator; prints their variables.
"$VENV/bin/python" - "$root/template.yaml" >"$work/resources.env" 2>"$work/resources.err" <<'PY' ||
import re, shlex, sys, time
import boto3, yaml

class CfnLoader(yaml.SafeLoader):
    """Loads CloudFormation YAML: short-form tags (!Ref, !GetAtt, !Sub, !If, ...) are kept as
    {"!Tag": value}."""

def tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"!" + suffix: value}

CfnLoader.add_multi_constructor("!", tagged)
resources = yaml.load(open(sys.argv[1]), Loader=CfnLoader)["Resources"]

def words(logical_id):  # "HeartbeatDeadLetterQueue" -> ["heartbeat", "dead", "letter", "queue"]
    return [w.lower() for w in re.findall(r"[A-Z][a-z0-9]*", logical_id)]

def arn_of(value):  # {"!GetAtt": "X.Arn"} or {"Fn::GetAtt": ["X", "Arn"]} -> "X"
    att = value.get("!GetAtt") or value.get("Fn::GetAtt")
    return (att.split(".")[0] if isinstance(att, str) else att[0]) if att else None

sqs = boto3.client("sqs")
ddb = boto3.client("dynamodb")
for attempt in range(50):  # the emulator listens: give it a moment to answer
    try:
        sqs.list_queues()
        break
    except Exception:
        if attempt == 49:
            raise
        time.sleep(0.2)

exports = {}

# Queues: dead-letter queues first, so a redrive policy can name its target's ARN.
queues = {k: r.get("Properties") or {} for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
arns = {}
for logical_id in sorted(queues, key=lambda k: "RedrivePolicy" in queues[k]):
    props = queues[logical_id]
    attributes = {k: str(props[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
    if "RedrivePolicy" in props:
        policy = props["RedrivePolicy"]
        attributes["RedrivePolicy"] = '{"deadLetterTargetArn": "%s", "maxReceiveCount": %d}' % (
            arns[arn_of(policy["deadLetterTargetArn"])], int(policy["maxReceiveCount"]))
    url = sqs.create_queue(QueueName="-".join(words(logical_id)), Attributes=attributes)["QueueUrl"]
    arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    exports["_".join(words(logical_id)).upper() + "_URL"] = url  # HeartbeatQueue -> HEARTBEAT_QUEUE_URL

# Tables: named after their logical id (ConnectionsTable -> "connections", CONNECTIONS_TABLE).
for logical_id, r in resources.items():
    if r["Type"] != "AWS::DynamoDB::Table":
        continue
    props = r["Properties"]
    name = "-".join(w for w in words(logical_id) if w != "table")
    create = {k: props[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes",
                                    "LocalSecondaryIndexes", "BillingMode", "ProvisionedThroughput")
              if k in props}
    ddb.create_table(TableName=name, **create)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "AttributeName": ttl["AttributeName"], "Enabled": True})
    exports["_".join(words(logical_id)).upper()] = name

for k, v in exports.items():
    print(f"export {k}={shlex.quote(v)}")
PY
  { tail -n 20 "$work/moto.log" >>"$work/resources.err"
    fail_with_log "$work/resources.err" "could not create the queues and tables of template.yaml in the emulator"; }
# shellcheck disable=SC1091
. "$work/resources.env"
for v in HEARTBEAT_QUEUE_URL PUSH_QUEUE_URL FACILITIES_TABLE CONNECTIONS_TABLE MESSAGES_TABLE; do
  [ -n "${!v:-}" ] || die "template.yaml no longer declares the resource behind $v"
done

export REDIS_URL="redis://127.0.0.1:$redis_port"
export WEBSOCKET_ENDPOINT="$AWS_ENDPOINT_URL" # moto serves the management API (@connections)
export JWT_SECRET=presence-local-development-secret # signs the sample events' tokens
export RUST_LOG="${RUST_LOG:-info}"

start "$work/watch.log" cargo lambda watch --ignore-changes --quiet \
  --invoke-address 127.0.0.1 --invoke-port "$lambda_port"
wait_port "$lambda_port" "$work/watch.log" "cargo lambda watch"

# One invocation; `cargo lambda invoke` waits forever when the function dies before
# answering, so the runtime emulator's log is watched meanwhile.
failed=0
invoke_one() { # invoke_one FUNCTION EVENT
  local fn="$1" event="$2" from outcome="" rc=0 deadline
  from=$(($(wc -l <"$work/watch.log") + 1))
  echo "── $fn ${event#"$root/"}" >&2
  cargo lambda invoke "$fn" --invoke-address 127.0.0.1 --invoke-port "$lambda_port" \
    --data-file "$event" >"$work/response" 2>"$work/invoke.err" &
  invoke=$!
  deadline=$((SECONDS + ${INVOKE_TIMEOUT_SECONDS:-300}))
  while kill -0 "$invoke" 2>/dev/null; do
    if tail -n "+$from" "$work/watch.log" | grep -q "command exited"; then
      outcome="the function exited before answering"
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      outcome="no answer within ${INVOKE_TIMEOUT_SECONDS:-300} s"
      break
    fi
    sleep 0.2
  done
  if [ -n "$outcome" ]; then
    kill "$invoke" 2>/dev/null || true
    wait "$invoke" 2>/dev/null || true
  else
    wait "$invoke" || rc=$?
    [ $rc = 0 ] || outcome="cargo lambda invoke failed (exit status $rc)"
  fi
  invoke=""
  # The function's own log (what CloudWatch would show), without the emulator's lines.
  tail -n "+$from" "$work/watch.log" |
    grep -v -e '^ *INFO ' -e '^ *WARN ' -e '^ *ERROR ' | sed 's/^/  log: /' >&2 || true
  if [ -n "$outcome" ]; then
    echo "invoke.sh: $fn: $outcome" >&2
    sed 's/^/  | /' "$work/invoke.err" >&2
    tail -n "+$from" "$work/watch.log" | grep -e '^ *WARN ' -e '^ *ERROR ' | sed 's/^/  | /' >&2 || true
    failed=$((failed + 1))
    return 0
  fi
  cat "$work/response"
  [ "$(tail -c1 "$work/response")" = "" ] || echo
}

for i in "${!fns[@]}"; do
  invoke_one "${fns[$i]}" "${events[$i]}"
done
[ $failed = 0 ] || exit 1
