#!/usr/bin/env bash
# The whole test suite, from a fresh clone: lint, Rust tests (unit, store on real SQLite
# files, HTTP integration), the Python mesh-client interop suite, the kill -9 crash test
# and the 1 GiB memory test, then a short run of the side-by-side benchmark so it cannot
# rot. It installs what it needs (a Python venv in .venv, the sandbox's in target/).
#
#   bash scripts/test.sh            # everything
#   QUICK=1 bash scripts/test.sh    # skip the crash, memory and benchmark runs
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
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
}

run "cargo fmt --check" cargo fmt --all -- --check || failed=$((failed + 1))
run "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings || failed=$((failed + 1))

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
  for mode in plain mtls; do
    step "interop: mesh-client against openspine ($mode)"
    mtls=0; [ "$mode" = mtls ] && mtls=1
    OPENSPINE_BIN=$bin OPENSPINE_MTLS=$mtls .venv/bin/python -m pytest -q tests/interop 2>&1 | tee "$log_dir/pytest-$mode.log"
    py_rc=${PIPESTATUS[0]}
    p=$(grep -Eo '[0-9]+ passed' "$log_dir/pytest-$mode.log" | tail -1 | awk '{print $1+0}')
    f=$(grep -Eo '[0-9]+ (failed|error)' "$log_dir/pytest-$mode.log" | awk '{s+=$1} END {print s+0}')
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$py_rc" -ne 0 ]; then
      failures+=("interop $mode"); [ "${f:-0}" -gt 0 ] || failed=$((failed + 1))
    fi
  done

  if [ -z "${QUICK:-}" ]; then
    if run "crash test: kill -9 cycles" .venv/bin/python tests/system/crash_test.py --bin "$bin" --cycles "${CRASH_CYCLES:-12}"; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
    if run "memory test: 1 GiB in 20 MiB chunks" .venv/bin/python tests/system/memory_test.py --bin "$bin" --size-mib 1024 --chunk-mib 20 --limit-mib 128; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
    # The benchmark's quick mode writes to a scratch directory, not bench/results.
    if run "benchmark quick mode: openspine vs mesh-sandbox" env QUICK=1 OUT_DIR="$log_dir/bench" bash bench/compare.sh; then
      passed=$((passed + 1)); else failed=$((failed + 1)); fi
  fi
else
  failures+=("python setup"); failed=$((failed + 1))
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
