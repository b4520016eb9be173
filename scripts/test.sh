#!/usr/bin/env bash
# The test command (README): installs what is missing on a fresh machine, then runs every
# test — unit, Redis, AWS-emulator and sample-event tests.
#
#   scripts/test.sh            # everything
#   scripts/test.sh engine     # extra arguments go to `cargo test` (here: one test target)
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: a real redis-server for the session engine tests.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PyPI, in a venv: moto serves SQS and DynamoDB locally.
VENV="${PRESENCE_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "installing moto into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==5.2.1"
fi
if [ ! -x "$VENV/bin/sam" ] || [ ! -x "$VENV/bin/cfn-lint" ]; then
  echo "installing cfn-lint and aws-sam-cli into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check cfn-lint aws-sam-cli
fi
export PATH="$VENV/bin:$PATH"

# npm: playwright-core drives Debian's Chromium (it never downloads a browser of its own);
# axe-core checks accessibility, ajv and yaml the API descriptions. `npm ls` fails when
# anything package-lock.json names is missing, so a checkout that is behind installs again.
if ! (cd tests/e2e && npm ls --silent >/dev/null 2>&1); then
  echo "installing the end-to-end tests' npm packages"
  (cd tests/e2e && npm ci --no-audit --no-fund --silent)
fi

# Dummy AWS settings so no test can reach a real account.
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
unset AWS_PROFILE AWS_ENDPOINT_URL

# Deployability: every function cross-built for arm64 with cargo-lambda (aarch64, ≤ 8 MiB
# stripped), cfn-lint, sam validate --lint and sam build of template.yaml.
export PRESENCE_VENV="$VENV"
scripts/check-deploy.sh

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"

# The README's own commands as written: scripts/run.sh, and scripts/invoke.sh for every
# function (one line per check, "# pass N" / "# fail M" counted below; a failure stops here).
scripts/readme-check.sh 2>&1 | tee -a "$log"

# The browser side: the client's pure logic in Node, then the dashboard in headless Chromium
# against the local stack.
cargo build --quiet -p presence-local
export PRESENCE_LOCAL_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/presence-local"
node --test web/test/ 2>&1 | tee -a "$log"
# The client's TypeScript declarations, checked by the TypeScript compiler.
(cd web && { npm ls --silent >/dev/null 2>&1 || npm ci --no-audit --no-fund --silent; } &&
  npx --no-install tsc --noEmit -p tsconfig.json) 2>&1 | tee -a "$log"
echo "# pass 1 (the client's TypeScript declarations typecheck)" | tee -a "$log"
(cd tests/e2e && node --test --test-concurrency=1 .) 2>&1 | tee -a "$log"

# One closing line for the whole run (cargo prints one per test binary, the last often empty).
awk '/^test result:/ { p += $4; f += $6 } /^# pass / { p += $3 } /^# fail / { f += $3 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

