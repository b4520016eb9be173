#!/usr/bin/env bash
# Proves the deployment without an AWS account (docs/deploy.md):
#
#   1. builds every function for Lambda (arm64, provided.al2023) with cargo-lambda, each into
#      its own folder, ${CARGO_TARGET_DIR:-target}/lambda/<function>/bootstrap;
#   2. checks each bootstrap is a stripped 64-bit ELF executable for aarch64 (read from its
#      header, `file` is not needed) and at most 8 MiB, and prints their sizes;
#   3. lints template.yaml (cfn-lint, sam validate --lint) and runs `sam build` with the
#      cargo-lambda build method (no Docker), into a build folder outside the source tree,
#      and checks it packaged the same binaries.
#
# Installs what is missing: cargo-lambda (with zig), cfn-lint and the SAM CLI into the venv
# $PRESENCE_VENV (default .venv, the test command's), and the Rust target.
#
#   scripts/check-deploy.sh
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."

FUNCTIONS=(heartbeat-ingest heartbeat-consumer session-expiry facility-rollup
           ws-connect ws-disconnect ws-message ws-push history-read admin-api)
MAX_BYTES=$((8 * 1024 * 1024))
TARGET=aarch64-unknown-linux-gnu

started=$SECONDS
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - started)); }

# One target folder for cargo, cargo-lambda and sam build: an absolute path, so `sam build`
# (which runs cargo-lambda itself) finds and reuses what was just built.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
mkdir -p "$CARGO_TARGET_DIR"
CARGO_TARGET_DIR="$(cd "$CARGO_TARGET_DIR" && pwd)"
LAMBDA_DIR="$CARGO_TARGET_DIR/lambda"
SAM_BUILD_DIR="$CARGO_TARGET_DIR/sam-build"

# No AWS account is used: dummy settings, and no telemetry.
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local SAM_CLI_TELEMETRY=0
unset AWS_PROFILE AWS_ENDPOINT_URL

step "tools"
VENV="${PRESENCE_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/pip" ]; then
  echo "creating $VENV"
  python3 -m venv "$VENV"
fi
wanted=()
[ -x "$VENV/bin/cargo-lambda" ] || wanted+=(cargo-lambda)
[ -x "$VENV/bin/cfn-lint" ] || wanted+=(cfn-lint)
[ -x "$VENV/bin/sam" ] || wanted+=(aws-sam-cli)
if [ ${#wanted[@]} -gt 0 ]; then
  echo "installing ${wanted[*]} into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${wanted[@]}"
fi
export PATH="$VENV/bin:$PATH"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
  echo "adding the Rust target $TARGET"
  rustup target add "$TARGET"
fi
echo "$(cargo lambda --version), $(sam --version), $(cfn-lint --version)"

step "cargo lambda build --release --arm64 (${#FUNCTIONS[@]} functions)"
bins=()
for f in "${FUNCTIONS[@]}"; do bins+=(--bin "$f"); done
cargo lambda build --release --arm64 --lambda-dir "$LAMBDA_DIR" "${bins[@]}"

step "bootstraps"
# Reads the ELF header of each bootstrap: 64-bit little-endian, e_machine 0xB7 (aarch64),
# an executable (ET_EXEC, or ET_DYN with an interpreter: a PIE) with an entry point, no
# symbol table (stripped), at most MAX_BYTES. Prints one line per function.
largest_file="$(mktemp)"
trap 'rm -f "$largest_file"' EXIT
python3 - "$MAX_BYTES" "$LAMBDA_DIR" "$largest_file" "${FUNCTIONS[@]}" <<'PY'
import os, struct, sys

max_bytes, lambda_dir, largest_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
functions = sys.argv[4:]
problems, rows = [], []
for name in functions:
    path = os.path.join(lambda_dir, name, "bootstrap")
    if not os.path.isfile(path):
        problems.append(f"{name}: {path} is missing")
        continue
    with open(path, "rb") as f:
        data = f.read()
    size = len(data)
    why = []
    if data[:4] != b"\x7fELF":
        why.append("not an ELF file")
    else:
        if data[4] != 2 or data[5] != 1:
            why.append("not 64-bit little-endian")
        (e_type, e_machine, _v, e_entry, e_phoff, e_shoff, _fl, _eh, e_phentsize, e_phnum,
         e_shentsize, e_shnum) = struct.unpack_from("<HHIQQQIHHHHH", data, 16)
        if e_machine != 0xB7:
            why.append(f"e_machine is {e_machine:#x}, not 0xb7 (aarch64)")
        interp = any(struct.unpack_from("<I", data, e_phoff + i * e_phentsize)[0] == 3
                     for i in range(e_phnum))
        if not (e_type == 2 or (e_type == 3 and interp)) or e_entry == 0:
            why.append(f"not an executable (e_type {e_type}, entry {e_entry:#x})")
        if any(struct.unpack_from("<I", data, e_shoff + i * e_shentsize + 4)[0] == 2
               for i in range(e_shnum)):
            why.append("not stripped (has .symtab)")
    if not os.access(path, os.X_OK):
        why.append("not executable (mode)")
    if size > max_bytes:
        why.append(f"{size} bytes is over the limit of {max_bytes} (8 MiB)")
    rows.append((name, size, "ok" if not why else "FAIL"))
    problems += [f"{name}: {w}" for w in why]

print(f"{'function':<20} {'bytes':>10} {'MiB':>6}  aarch64 ELF, stripped, <= 8 MiB")
for name, size, verdict in rows:
    print(f"{name:<20} {size:>10} {size / 2**20:>6.2f}  {verdict}")
if problems:
    print("\n".join(["", "bootstrap check failed:"] + ["  " + p for p in problems]), file=sys.stderr)
    sys.exit(1)
largest = max(rows, key=lambda r: r[1])
with open(largest_file, "w") as f:
    f.write(f"{largest[1] / 2**20:.1f} MiB ({largest[0]})")
PY

step "cfn-lint template.yaml"
cfn-lint template.yaml

step "sam validate --lint"
sam validate --lint --region "$AWS_REGION"

step "sam build (cargo-lambda, no Docker) into $SAM_BUILD_DIR"
# sam build runs `cargo lambda build --release --arm64 --bin <name>` for each function in the
# same CARGO_TARGET_DIR: everything is fresh, so it only packages.
sam build --build-dir "$SAM_BUILD_DIR" --region "$AWS_REGION"
python3 - "$SAM_BUILD_DIR" "$LAMBDA_DIR" "${#FUNCTIONS[@]}" <<'PY'
import filecmp, os, re, sys

build_dir, lambda_dir, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Each function's logical id and binary, from template.yaml.
pairs = re.findall(r"\n  (\w+):\n    Type: AWS::Serverless::Function\n    Metadata:\n"
                   r"      BuildMethod: rust-cargolambda\n      BuildProperties:\n"
                   r"        Binary: ([\w-]+)\n", open("template.yaml").read())
problems = []
if len(pairs) != expected:
    problems.append(f"expected {expected} cargo-lambda functions in template.yaml, found {len(pairs)}")
for logical_id, binary in pairs:
    built = os.path.join(build_dir, logical_id, "bootstrap")
    if not os.path.isfile(built):
        problems.append(f"{logical_id}: {built} is missing")
    elif not filecmp.cmp(built, os.path.join(lambda_dir, binary, "bootstrap"), shallow=False):
        problems.append(f"{logical_id}: the packaged bootstrap differs from the {binary} build")
if problems:
    sys.exit("sam build check failed:\n  " + "\n  ".join(problems))
print(f"sam build: {len(pairs)} functions packaged, each the cargo-lambda arm64 build")
PY

echo
echo "deploy check: ${#FUNCTIONS[@]} functions, largest $(cat "$largest_file"), template ok ($((SECONDS - started))s)"
