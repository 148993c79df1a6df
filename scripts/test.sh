#!/usr/bin/env bash
# The whole test suite, from a fresh clone: lint, Rust tests (unit, the backend suite on
# real SQLite files and on a real PostgreSQL + Garage S3, HTTP integration), the Python
# mesh-client interop suite (plain, mutual TLS, and on PostgreSQL + S3), the NHS npm client
# nhs-mesh-client (plain and mutual TLS), the NHS sandbox's own
# packaged test suite over HTTP, the kill -9 crash
# test, the 1 GiB memory test, the three-node cluster test (kill -9 and rolling restart),
# the PostgreSQL outage test, the lifecycle test (kill -9 mid-sweep, two nodes sweeping),
# the admin test (the operator's CLI and ops listener: embedded, two nodes on PostgreSQL + S3,
# mutual TLS), the full-disk test (a tmpfs it mounts), a short run of the side-by-side benchmark so it cannot rot,
# and a minute of fuzzing per parser. It installs and starts what it needs: a Python venv in
# .venv, a throwaway PostgreSQL and Garage (scripts/services.sh), the sandbox in target/.
#
#   bash scripts/test.sh            # everything
#   QUICK=1 bash scripts/test.sh    # skip the crash, memory, cluster, outage, lifecycle, admin, disk, benchmark and fuzz runs
set -uo pipefail
cd "$(dirname "$0")/.."

log_dir=$(mktemp -d)
passed=0
failed=0
failures=()

step() { printf '\n==== %s ====\n' "$*"; }

# Adds the counts a cargo test run printed ("test result: ok. N passed; M failed").
count_cargo() {
  local p f
  p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$1" | awk '{s+=$4} END {print s+0}')
  f=$(grep -Eo '[0-9]+ failed;' "$1" | awk '{s+=$1} END {print s+0}')
  passed=$((passed + p)); failed=$((failed + f))
}

run() { # name, command...
  local name=$1; shift
  step "$name"
  if "$@"; then return 0; fi
  failures+=("$name"); return 1
}

need_python() {
  local py=${PYTHON:-python3}
  command -v "$py" >/dev/null || { echo "python3 is required for the interop and system tests" >&2; return 1; }
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv || return 1
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt \
    -r tests/frontdoor/requirements.txt -r tests/events/requirements.txt
}

run "cargo fmt --check" cargo fmt --all -- --check || failed=$((failed + 1))
run "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings || failed=$((failed + 1))

# A throwaway PostgreSQL, S3 and NATS JetStream server for the shared-backend and events
# tests; stopped on exit.
# shellcheck source=services.sh
source scripts/services.sh
trap 'services_stop' EXIT
shared=0
if run "services: throwaway PostgreSQL, Garage S3 and NATS JetStream" services_start; then
  shared=1
else
  failed=$((failed + 1))
fi
# The backend suite must run on PostgreSQL + S3 too: their absence is a failure, not a skip.
export OPENSPINE_REQUIRE_SHARED_BACKEND=1

step "cargo test"
cargo test --workspace --locked 2>&1 | tee "$log_dir/cargo-test.log"
cargo_rc=${PIPESTATUS[0]}
count_cargo "$log_dir/cargo-test.log"
if [ "$cargo_rc" -ne 0 ]; then
  failures+=("cargo test")
  grep -q 'test result' "$log_dir/cargo-test.log" || failed=$((failed + 1))
fi

step "release build"
if ! cargo build --release --locked -p openspine; then
  failures+=("release build"); failed=$((failed + 1))
fi
bin=$PWD/target/release/openspine

if [ -x "$bin" ] && run "python venv" need_python; then
  for mode in plain mtls postgres-s3; do
    step "interop: mesh-client against openspine ($mode)"
    mtls=0; [ "$mode" = mtls ] && mtls=1
    backend=()
    if [ "$mode" = postgres-s3 ]; then
      if [ "$shared" -ne 1 ] || ! db=$(pg_createdb "interop_$RANDOM$RANDOM"); then
        failures+=("interop $mode: no PostgreSQL"); failed=$((failed + 1)); continue
      fi
      backend=(OPENSPINE_DATABASE_URL="$db" OPENSPINE_BLOB_URL="$OPENSPINE_TEST_BLOB_URL/interop-$RANDOM"
               OPENSPINE_S3_ENDPOINT="$OPENSPINE_TEST_S3_ENDPOINT" OPENSPINE_S3_REGION="$OPENSPINE_TEST_S3_REGION")
    fi
    env "${backend[@]}" OPENSPINE_BIN="$bin" OPENSPINE_MTLS=$mtls .venv/bin/python -m pytest -q tests/interop 2>&1 | tee "$log_dir/pytest-$mode.log"
    py_rc=${PIPESTATUS[0]}
    p=$(grep -Eo '[0-9]+ passed' "$log_dir/pytest-$mode.log" | tail -1 | awk '{print $1+0}')
    f=$(grep -Eo '[0-9]+ (failed|error)' "$log_dir/pytest-$mode.log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$py_rc" -ne 0 ]; then
      failures+=("interop $mode"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))
    fi
  done

  # The front door with the libraries an NHS integrator uses: PyJWT minting RS512 client
  # assertions and ID tokens, JWKS served on loopback, requests for the token endpoint.
  step "front door: PyJWT + requests against openspine"
  OPENSPINE_BIN="$bin" .venv/bin/python -m pytest -q tests/frontdoor 2>&1 | tee "$log_dir/pytest-frontdoor.log"
  fd_rc=${PIPESTATUS[0]}
  p=$(grep -Eo '[0-9]+ passed' "$log_dir/pytest-frontdoor.log" | tail -1 | awk '{print $1+0}')
  f=$(grep -Eo '[0-9]+ (failed|error)' "$log_dir/pytest-frontdoor.log" | awk '{s+=$1} END {print s+0}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ "$fd_rc" -ne 0 ]; then
    failures+=("front door"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))
  fi

  # The events service end to end: tokens minted with PyJWT, deliveries downloaded with the
  # NHS mesh-client, consumed from the JetStream server above, received by a webhook.
  step "events: publish, subscribe and deliver (mesh-client, nats-py, webhook)"
  OPENSPINE_BIN="$bin" .venv/bin/python -m pytest -q tests/events 2>&1 | tee "$log_dir/pytest-events.log"
  ev_rc=${PIPESTATUS[0]}
  p=$(grep -Eo '[0-9]+ passed' "$log_dir/pytest-events.log" | tail -1 | awk '{print $1+0}')
  f=$(grep -Eo '[0-9]+ (failed|error)' "$log_dir/pytest-events.log" | awk '{s+=$1} END {print s+0}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ "$ev_rc" -ne 0 ]; then
    failures+=("events"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))
  fi

  # The NHS sandbox's own packaged test suite, over HTTP against `openspine serve --demo --sandbox`.
  step "sandbox suite: mesh-sandbox's own tests against openspine"
  .venv/bin/python -u tests/sandbox_suite/run.py --bin "$bin" 2>&1 | tee "$log_dir/sandbox-suite.log"
  sbx_rc=${PIPESTATUS[0]}
  p=$(grep -Eo 'sandbox suite: [0-9]+ passed' "$log_dir/sandbox-suite.log" | tail -1 | awk '{print $3+0}')
  f=$(grep -Eo '[0-9]+ failed, [0-9]+ not run' "$log_dir/sandbox-suite.log" | tail -1 | awk '{print $1+0}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ "$sbx_rc" -ne 0 ]; then
    failures+=("sandbox suite"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))
  fi

  if [ -z "${QUICK:-}" ]; then
    if run "crash test: kill -9 cycles" .venv/bin/python tests/system/crash_test.py --bin "$bin" --cycles "${CRASH_CYCLES:-12}"; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
    if run "events crash test: kill -9 while publishing and delivering" .venv/bin/python tests/system/events_crash_test.py --bin "$bin" --cycles "${EVENTS_CRASH_CYCLES:-8}"; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
    if run "memory test: 1 GiB in 20 MiB chunks" .venv/bin/python tests/system/memory_test.py --bin "$bin" --size-mib 1024 --chunk-mib 20 --limit-mib 128; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
    for scenario in chaos outage; do
      if [ "$shared" -eq 1 ] && db=$(pg_createdb "cluster_${scenario}_$RANDOM"); then
        if run "cluster test: 3 nodes, $scenario" .venv/bin/python tests/system/cluster_test.py \
            --bin "$bin" --scenario "$scenario" --database-url "$db" \
            --blob-url "$OPENSPINE_TEST_BLOB_URL/cluster-$scenario-$RANDOM" \
            --s3-endpoint "$OPENSPINE_TEST_S3_ENDPOINT" --s3-region "$OPENSPINE_TEST_S3_REGION" \
            --pg-stop "bash scripts/services.sh pg_stop" --pg-start "bash scripts/services.sh pg_start" \
            --duration "${CLUSTER_SECONDS:-40}"; then
          passed=$((passed + 1)); else failed=$((failed + 1)); fi
      else
        failures+=("cluster test $scenario: no PostgreSQL"); failed=$((failed + 1))
      fi
    done
    # Expiry under kill -9 (embedded, then PostgreSQL + S3) and two nodes sweeping at once.
    if run "lifecycle test: kill -9 mid-sweep, embedded store" \
        .venv/bin/python tests/system/lifecycle_test.py --bin "$bin" --scenario kill; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
    for scenario in kill race; do
      if [ "$shared" -eq 1 ] && db=$(pg_createdb "lifecycle_${scenario}_$RANDOM"); then
        if run "lifecycle test: $scenario, PostgreSQL + S3" .venv/bin/python tests/system/lifecycle_test.py \
            --bin "$bin" --scenario "$scenario" --database-url "$db" \
            --blob-url "$OPENSPINE_TEST_BLOB_URL/lifecycle-$scenario-$RANDOM" \
            --s3-endpoint "$OPENSPINE_TEST_S3_ENDPOINT" --s3-region "$OPENSPINE_TEST_S3_REGION"; then
          passed=$((passed + 1)); else failed=$((failed + 1)); fi
      else
        failures+=("lifecycle test $scenario: no PostgreSQL"); failed=$((failed + 1))
      fi
    done
    # The operator's tools: `openspine admin` and the ops listener (embedded store, two nodes
    # on PostgreSQL + S3, a mutual-TLS MESH port).
    for scenario in sqlite postgres mtls; do
      backend=()
      if [ "$scenario" = postgres ]; then
        if [ "$shared" -ne 1 ] || ! db=$(pg_createdb "admin_$RANDOM$RANDOM"); then
          failures+=("admin test $scenario: no PostgreSQL"); failed=$((failed + 1)); continue
        fi
        backend=(--database-url "$db" --blob-url "$OPENSPINE_TEST_BLOB_URL/admin-$RANDOM"
                 --s3-endpoint "$OPENSPINE_TEST_S3_ENDPOINT" --s3-region "$OPENSPINE_TEST_S3_REGION")
      fi
      if run "admin test: $scenario" .venv/bin/python tests/system/admin_test.py \
          --bin "$bin" --scenario "$scenario" "${backend[@]}"; then
        passed=$((passed + 1)); else failed=$((failed + 1)); fi
    done
    # A full disk: a small tmpfs the test mounts (root, or passwordless sudo), filled
    # beside the store.
    if run "disk full test: reads and acknowledgements on a full tmpfs" \
        .venv/bin/python tests/system/disk_full_test.py --bin "$bin"; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
    # The benchmark's quick mode writes to a scratch directory, not bench/results.
    if run "benchmark quick mode: openspine vs mesh-sandbox" env QUICK=1 OUT_DIR="$log_dir/bench" bash bench/compare.sh; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
  fi
else
  failures+=("python setup"); failed=$((failed + 1))
fi

# The NHS npm client (nhs-mesh-client) against openspine, over plain HTTP and mutual TLS.
if [ -x "$bin" ]; then
  step "interop: nhs-mesh-client (npm) against openspine"
  OPENSPINE_BIN="$bin" bash tests/interop-node/run.sh 2>&1 | tee "$log_dir/node-interop.log"
  node_rc=${PIPESTATUS[0]}
  line=$(grep -E '^node interop: [0-9]+ passed, [0-9]+ failed$' "$log_dir/node-interop.log" | tail -1)
  p=$(awk '{print $3+0}' <<<"$line"); f=$(awk '{print $5+0}' <<<"$line")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ "$node_rc" -ne 0 ]; then
    failures+=("node interop"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))
  fi
fi

if [ -z "${QUICK:-}" ]; then
  # Coverage-guided fuzzing of the parsers (cargo-fuzz, stable toolchain, no sanitizer).
  if run "fuzz: ${FUZZ_SECONDS:-60} s per target" bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"; then
    passed=$((passed + 1)); else failed=$((failed + 1)); fi
fi

rm -rf "$log_dir"
echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed steps: ${failures[*]}"
fi
echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
