#!/usr/bin/env bash
# Benchmark (not a test): /optimize throughput and latency percentiles with wrk on loopback.
#
# Builds the release `bench_serve` example of skycat-server (server + optimizer + catalog schema
# only, no polars: minutes instead of the whole `skycat` binary), serves a synthetic catalog of
# OFFERS offers (default 100k) with SERVER_THREADS tokio workers (default 2), and drives it with
# wrk (WRK_THREADS threads, CONNS connections, DURATION) for:
#   1. POST /optimize, JSON task  {"kind":"task","resources":{"accelerators":"A100:8"}}
#   2. POST /optimize, SkyPilot task YAML (text/yaml), CPU-only task (8 vCPUs / 32 GiB default)
#   3. GET /healthz (the floor: HTTP + routing + metrics middleware only)
# Prints wrk's summary with the latency distribution (p50/p75/p90/p99) for each.
#
# Usage: scripts/bench-serve.sh            (needs wrk: apt-get install -y wrk)
#        OFFERS=10000 DURATION=20s CONNS=64 SKIP_BUILD=1 scripts/bench-serve.sh
# Target (issue 4): >= 10k req/s on 2 cores. Note that wrk shares the 2 cores with the server.
set -euo pipefail
cd "$(dirname "$0")/.."

OFFERS=${OFFERS:-100000}
SERVER_THREADS=${SERVER_THREADS:-2}
WRK_THREADS=${WRK_THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-15s}
ADDR=${ADDR:-127.0.0.1:18090}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/skycat-target}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

# SKIP_BUILD=1 reuses the binary already built (cargo waits for the shared target dir's lock).
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release -p skycat-server --no-default-features --example bench_serve
fi
BIN="$CARGO_TARGET_DIR/release/examples/bench_serve"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

BENCH_SERVER_THREADS=$SERVER_THREADS "$BIN" "$ADDR" "$OFFERS" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -sf "http://$ADDR/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
cat "$WORK/server.log"

cat >"$WORK/json.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind": "task", "resources": {"accelerators": "A100:8"}}'
EOF
cat >"$WORK/yaml.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/yaml"
wrk.body = "name: cpu-job\nresources:\n  cpus: 8+\nrun: echo hi\n"
EOF

# Sanity: both bodies plan successfully.
curl -sf -X POST -H 'Content-Type: application/json' \
    --data '{"kind": "task", "resources": {"accelerators": "A100:8"}}' "http://$ADDR/optimize" \
    | head -c 300; echo
curl -sf -X POST -H 'Content-Type: text/yaml' \
    --data-binary $'name: cpu-job\nresources:\n  cpus: 8+\nrun: echo hi\n' "http://$ADDR/optimize" \
    | head -c 300; echo

echo "== host: $(nproc) cores; server $SERVER_THREADS workers; wrk -t$WRK_THREADS -c$CONNS -d$DURATION; $OFFERS offers"
echo "== POST /optimize (JSON task, A100:8)"
wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/json.lua" "http://$ADDR/optimize"
echo "== POST /optimize (YAML task, CPU-only)"
wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/yaml.lua" "http://$ADDR/optimize"
echo "== GET /healthz"
wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "http://$ADDR/healthz"
echo "== server's own view (/metrics, /optimize 200s)"
curl -sf "http://$ADDR/metrics" | grep -E 'skycat_http_requests_total\{method="POST",route="/optimize"' || true
