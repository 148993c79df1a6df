#!/usr/bin/env bash
# Short fuzz run of every target in fuzz/ (the parsers that face the network), for CI and
# by hand: `scripts/fuzz.sh [SECONDS]` (default 60 per target).
#
# Uses `--sanitizer none`, which works on stable Rust. Each target starts from its seeds
# (fuzz/seeds/<target>, committed) plus whatever corpus earlier runs left in
# fuzz/corpus/<target> (not committed). Writes target/fuzz-summary.json and prints one
# line per target; exits non-zero when any target crashed or broke a property, and the
# crash's artifact path (fuzz/artifacts/<target>/…) is printed. Turn the artifact into a
# regression test, then delete it.
#
# Environment: FUZZ_TARGETS="a b" runs only those targets. CARGO_BUILD_JOBS is honoured
# (set it to 1 on a small machine).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS]  (whole seconds per target, at least 1)" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing; installing it" >&2
    cargo install cargo-fuzz --locked
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
logs="$root/target/fuzz-logs"
summary="$root/target/fuzz-summary.json"
mkdir -p "$logs"

# The fuzz workspace has its own lock file, and a run must not rewrite it (a tracked file
# changed by the test command). A lock that no longer matches the crates it builds is an
# error to fix by hand: `(cd fuzz && cargo metadata --format-version 1 >/dev/null)`, then
# commit fuzz/Cargo.lock. With the lock current, the build below changes nothing.
if ! (cd fuzz && cargo fetch --locked >/dev/null); then
    echo "fuzz/Cargo.lock is out of date with the crates it builds: update and commit it" >&2
    exit 1
fi

# One build for all targets, so its time is not charged to the first target's run.
cargo fuzz build --sanitizer none

entries=()
failed=0
for t in $targets; do
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    if [ -d "fuzz/seeds/$t" ]; then
        cp -n "fuzz/seeds/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    log="$logs/$t.log"
    status=0
    cargo fuzz run --sanitizer none "$t" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?

    # libFuzzer ends a clean run with "Done N runs in S second(s)"; a crash leaves a
    # "Test unit written to <path>" line instead, and its last "#N" status line.
    runs="$(sed -n 's/^Done \([0-9][0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)"
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
    fi
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)"
    fi
    runs="${runs:-0}"
    took="$(sed -n 's/^Done [0-9]* runs in \([0-9][0-9]*\) second.*/\1/p' "$log" | tail -n 1)"
    took="${took:-$seconds}"
    artifacts="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")"
    crashes=0
    if [ -n "$artifacts" ]; then
        crashes="$(printf '%s\n' "$artifacts" | wc -l | tr -d ' ')"
    elif [ "$status" -ne 0 ]; then
        # It failed without writing an input (a build error, say): count it as a crash.
        crashes=1
    fi

    if [ "$crashes" -ne 0 ]; then
        failed=1
        echo "fuzz: $t: FAILED after $runs runs (exit $status); log: $log"
        grep -m 5 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | sed 's/^/    /' || true
        if [ -n "$artifacts" ]; then
            printf '%s\n' "$artifacts" | sed 's/^/    artifact: /'
            printf '%s\n' "$artifacts" | sed "s|^|    reproduce: cargo fuzz run --sanitizer none $t |"
        fi
    else
        echo "fuzz: $t: ok, $runs runs in ${took}s, 0 crashes"
    fi
    first_artifact="$(printf '%s\n' "$artifacts" | head -n 1)"
    first_artifact="${first_artifact//\\/\\\\}"
    first_artifact="${first_artifact//\"/\\\"}"
    entries+=("{\"name\":\"$t\",\"runs\":$runs,\"seconds\":$took,\"crashes\":$crashes,\"artifact\":$([ -n "$first_artifact" ] && echo "\"$first_artifact\"" || echo null)}")
done

joined="$(IFS=,; echo "${entries[*]}")"
echo "{\"targets\":[$joined]}" >"$summary"
echo "fuzz: summary written to ${summary#"$root"/}"
exit "$failed"
