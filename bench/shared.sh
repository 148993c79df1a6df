#!/usr/bin/env bash
# Throughput of the shared backend (PostgreSQL + Garage S3), one node and three nodes, next
# to the embedded backend on the same machine, with the same mesh-bench workloads. Starts
# its own throwaway PostgreSQL and Garage (scripts/services.sh). Writes one JSON line per
# run to bench/results/shared.jsonl (or $OUT_DIR) and a table to stdout.
#
#   bash bench/shared.sh              # 15 s per workload
#   DURATION=3 bash bench/shared.sh   # quick look
#
# Three nodes on one small machine share its cores with PostgreSQL, Garage and the load
# generator: the figures show the cost of the shared store, not the scaling of a cluster
# whose nodes have machines of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT_DIR:-$root/bench/results}
DURATION=${DURATION:-15}
CONC=${CONC:-32}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
# shellcheck source=../scripts/services.sh
source scripts/services.sh
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}" 2>/dev/null || true
  services_stop
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked -p openspine -p mesh-bench
bin=$root/target/release/openspine
bench=$root/target/release/mesh-bench
services_start
"$bench" fixtures --pairs "$CONC" --out-dir "$work/fixtures" >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 300); do
    curl -fs "$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2; return 1
}
start_node() { # extra args...; sets node_url (not a subshell: the pid must reach pids)
  local port; port=$(free_port)
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data-$port" \
    --mailboxes "$work/fixtures/mailboxes.jsonl" --workflows "$work/fixtures/workflows.jsonl" \
    --shared-key TestKey --rate-limit 0 "$@" >"$work/node-$port.log" 2>&1 &
  pids+=("$!")
  node_url=http://127.0.0.1:$port
  wait_ready "$node_url"
}
stop_nodes() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}

results=$out/shared.jsonl
: >"$results"
run_set() { # label urls...
  local label=$1; shift
  local n=$# url_args=()
  for u in "$@"; do url_args+=(--url "$u"); done
  for spec in "round-trip 1K" "round-trip 100K" "send 1K"; do
    set -- $spec
    RUST_BACKTRACE=0 "$bench" run --label "$label" "${url_args[@]}" --workload "$1" --size "$2" \
      --concurrency "$CONC" --pairs "$CONC" --duration "$DURATION" 2>/dev/null |
      python3 -c '
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
p99 = max((o.get("p99_ms") or 0) for o in r.get("ops", {}).values()) if r.get("ops") else None
print(json.dumps({"backend": sys.argv[1], "nodes": int(sys.argv[2]), "workload": r["workload"],
                  "size": r["message_size"], "msgs_per_s": round(r["messages_per_s"], 1),
                  "calls_per_s": round(r["api_calls_per_s"], 1), "worst_p99_ms": p99,
                  "errors": r["errors"], "lost": r["lost"], "corrupt": r["corrupt"]}))
' "$label" "$n" >>"$results"
    tail -1 "$results"
  done
}

echo "== embedded (SQLite + files), 1 node"
start_node
run_set embedded "$node_url"
stop_nodes

db=$(pg_createdb bench_$RANDOM)
shared=(--database-url "$db" --blob-url "$OPENSPINE_TEST_BLOB_URL/bench-$RANDOM"
        --s3-endpoint "$OPENSPINE_TEST_S3_ENDPOINT" --s3-region "$OPENSPINE_TEST_S3_REGION")
echo "== PostgreSQL + S3, 1 node"
start_node "${shared[@]}"
run_set postgres-s3 "$node_url"
stop_nodes
echo "== PostgreSQL + S3, 3 nodes"
urls=()
for _ in 1 2 3; do start_node "${shared[@]}"; urls+=("$node_url"); done
run_set postgres-s3 "${urls[@]}"
stop_nodes
echo "results: $results"
