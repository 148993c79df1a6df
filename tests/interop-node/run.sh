#!/usr/bin/env bash
# The Node interop suite: the NHS npm client nhs-mesh-client against openspine, over plain
# HTTP and then over mutual TLS. Installs Node/npm with apt-get only if `node` is absent,
# then `npm ci`. Prints `node interop: N passed, M failed` last; exits non-zero on any failure.
#
#   OPENSPINE_BIN=target/release/openspine bash tests/interop-node/run.sh
#   NODE_INTEROP_MODES=plain bash tests/interop-node/run.sh     # one mode only (plain, mtls)
set -uo pipefail

if [ -z "${OPENSPINE_BIN:-}" ]; then
  echo "OPENSPINE_BIN must name the openspine binary" >&2
  echo "node interop: 0 passed, 1 failed"
  exit 1
fi
if ! bin=$(realpath -e "$OPENSPINE_BIN"); then
  echo "OPENSPINE_BIN=$OPENSPINE_BIN does not exist" >&2
  echo "node interop: 0 passed, 1 failed"
  exit 1
fi
cd "$(dirname "$0")" || exit 1

if ! command -v node >/dev/null; then
  echo "node not found: installing Debian's nodejs and npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q nodejs npm || {
    echo "node interop: 0 passed, 1 failed"; exit 1; }
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ] || [ "$major" -gt 21 ]; then
  # nhs-mesh-client imports JSON with `assert { type: "json" }`, which Node 22 dropped; before
  # Node 19 http.globalAgent does not keep connections alive, which the refusal tests rely on.
  echo "warning: node $(node --version): the suite expects Node 20 or 21" >&2
fi

if ! npm ci --no-audit --no-fund --loglevel=error; then
  echo "npm ci failed" >&2
  echo "node interop: 0 passed, 1 failed"
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0
failed=0
for mode in ${NODE_INTEROP_MODES:-plain mtls}; do
  mtls=0; [ "$mode" = mtls ] && mtls=1
  printf '\n---- nhs-mesh-client against openspine (%s) ----\n' "$mode"
  OPENSPINE_BIN="$bin" OPENSPINE_MTLS=$mtls \
    node --test --test-reporter=spec interop.test.mjs 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(grep -Eo '^ℹ pass [0-9]+' "$log" | tail -1 | awk '{print $3+0}')
  f=$(grep -Eo '^ℹ fail [0-9]+' "$log" | tail -1 | awk '{print $3+0}')
  p=${p:-0}; f=${f:-0}
  # A run that failed without counting a failure (the process died) still counts as one.
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
done

echo
echo "node interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
