#!/usr/bin/env bash
# Side-by-side benchmark: OpenSpine (embedded store) and the NHS MESH sandbox from PyPI
# (`mesh-sandbox`, uvicorn, STORE_MODE=file: its durable mode), the same workloads against
# each, in one run, on loopback. Writes bench/results/latest.{json,md,png}; then the events
# service's benchmark beside it (bench/events_bench.py, bench/results/events-latest.json).
#
#   bash bench/compare.sh           # full run (about 3 minutes)
#   QUICK=1 bash bench/compare.sh   # a few seconds per workload (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT_DIR:-$root/bench/results}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${QUICK:-}" ]; then
  DURATION=${DURATION:-2}; CONC=${CONC:-8}; BIG=${BIG:-64M}; BIG_CHUNK=${BIG_CHUNK:-16M}; YARD_MIB=64
else
  DURATION=${DURATION:-15}; CONC=${CONC:-64}; BIG=${BIG:-1G}; BIG_CHUNK=${BIG_CHUNK:-20M}; YARD_MIB=1024
fi
PAIRS=$CONC

echo "== build"
cargo build --release --locked -p openspine -p mesh-bench
os_bin=$root/target/release/openspine
bench=$root/target/release/mesh-bench

# The chart needs a TrueType font.
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && command -v apt-get >/dev/null; then
  echo "== installing fonts-dejavu-core for the chart"
  (apt-get install -y -q fonts-dejavu-core >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q fonts-dejavu-core >/dev/null; })
fi

# The sandbox gets its own venv: its fixture files are replaced with the bench mailboxes.
venv=$root/target/bench-venv
if [ ! -x "$venv/bin/uvicorn" ] || ! "$venv/bin/python" -c 'import jwt, mesh_client' 2>/dev/null; then
  echo "== python venv for mesh-sandbox and the events benchmark"
  ${PYTHON:-python3} -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "$(grep -i '^mesh-sandbox' tests/interop/requirements.txt)" "$(grep -i '^uvicorn' tests/interop/requirements.txt)" \
    -r tests/events/requirements.txt
fi

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mib() { awk '/^'"$2"':/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
wait_ready() { # url path timeout-seconds -> prints ms waited
  "$venv/bin/python" - "$1$2" "$3" <<'PY'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2]); t = time.monotonic()
while time.monotonic() - t < limit:
    try:
        if urllib.request.urlopen(url, timeout=1).status == 200:
            print(round((time.monotonic() - t) * 1000, 1)); sys.exit(0)
    except Exception:
        time.sleep(0.002)
sys.exit("not ready: " + url)
PY
}

echo "== fixtures: $PAIRS sender/recipient pairs"
"$bench" fixtures --pairs "$PAIRS" --out-dir "$work/fixtures"
sbx_data=$("$venv/bin/python" -c 'import mesh_sandbox, os; print(os.path.join(os.path.dirname(mesh_sandbox.__file__), "store", "data"))')
cp "$work/fixtures/mailboxes.jsonl" "$work/fixtures/workflows.jsonl" "$sbx_data/"

echo "== starting openspine"
os_port=$(free_port)
"$os_bin" serve --listen "127.0.0.1:$os_port" --data-dir "$work/openspine" \
  --mailboxes "$work/fixtures/mailboxes.jsonl" --workflows "$work/fixtures/workflows.jsonl" \
  --shared-key TestKey --rate-limit 0 > "$work/openspine.log" 2>&1 &
os_pid=$!; pids+=("$os_pid")
start_ms=$(wait_ready "http://127.0.0.1:$os_port" /readyz 30)
sleep 1
idle_rss=$(rss_mib "$os_pid" VmRSS)
echo "   ready in ${start_ms} ms, idle RSS ${idle_rss} MiB"

echo "== starting mesh-sandbox"
sbx_port=$(free_port)
mkdir -p "$work/sandbox"
SHARED_KEY=TestKey STORE_MODE=file AUTH_MODE=full MAILBOXES_DATA_DIR="$work/sandbox" \
  "$venv/bin/uvicorn" mesh_sandbox.api:app --host 127.0.0.1 --port "$sbx_port" --log-level warning \
  > "$work/sandbox.log" 2>&1 &
pids+=("$!")
wait_ready "http://127.0.0.1:$sbx_port" /messageexchange/_ping 60 >/dev/null

echo "== yardsticks"
"$bench" yardstick --dir "$work/yardstick" --mib "$YARD_MIB" > "$work/yardstick-disk.json"
cat "$work/yardstick-disk.json"

runs=$work/runs.jsonl
: > "$runs"
ours_failed=0
run() { # label url workload size concurrency [extra args]
  local label=$1 url=$2 workload=$3 size=$4 conc=$5; shift 5
  echo "== $label: $workload $size, concurrency $conc"
  # mesh-bench exits non-zero when a message is lost or corrupted, after printing its
  # result line. That is recorded for the sandbox; for OpenSpine it fails the run.
  if ! RUST_BACKTRACE=0 "$bench" run --label "$label" --url "$url" --workload "$workload" --size "$size" \
    --concurrency "$conc" --pairs "$PAIRS" --duration "$DURATION" "$@" >> "$runs"; then
    echo "   $label: messages lost or corrupted, or the run failed"
    if [ "$label" = openspine ]; then ours_failed=1; fi
  fi
}
for target in "openspine http://127.0.0.1:$os_port" "mesh-sandbox http://127.0.0.1:$sbx_port"; do
  set -- $target
  run "$1" "$2" round-trip 1K "$CONC"
  run "$1" "$2" round-trip 100K "$CONC"
  run "$1" "$2" send 1K "$CONC"
  run "$1" "$2" chunked "$BIG" 1 --chunk-size "$BIG_CHUNK" --count 1
done
peak_rss=$(rss_mib "$os_pid" VmHWM)
echo "   openspine peak RSS ${peak_rss} MiB"

"$venv/bin/python" - "$work/yardstick-disk.json" "$work/yardstick.json" <<PY
import json, sys
y = json.load(open(sys.argv[1]))
y.update({"openspine_start_to_ready_ms": $start_ms, "openspine_idle_rss_mib": $idle_rss,
          "openspine_peak_rss_mib": $peak_rss, "quick": bool("${QUICK:-}")})
json.dump(y, open(sys.argv[2], "w"))
PY
"$bench" report --runs "$runs" --yardstick "$work/yardstick.json" --out-dir "$out"
echo "== wrote $out/latest.json, latest.md, latest.png"

# The events service beside MESH: 1,000 subscriptions into MESH mailboxes, on the same
# machine in the same run (its own server and data directory).
echo "== events: publish and delivery into MESH mailboxes, 1,000 subscriptions"
if [ -n "${QUICK:-}" ]; then events_args=(--events 600 --steady-events 300 --rate 100); else events_args=(); fi
if ! "$venv/bin/python" bench/events_bench.py --bin "$os_bin" --out "$out/events-latest.json" "${events_args[@]}"; then
  echo "   events: lost or duplicated deliveries, or the run failed"
  ours_failed=1
fi
if [ "$ours_failed" -ne 0 ]; then
  echo "OpenSpine lost or corrupted messages, or a run against it failed" >&2
  exit 1
fi
