#!/usr/bin/env bash
# Property tests of the HTTP API against its own /openapi.json with schemathesis (not run by CI:
# it needs Python and takes ~1 min). Starts the `bench_serve` example (the real server over a
# synthetic 10k-offer catalog) on loopback, then lets schemathesis generate requests from the
# schema and check that:
#   - no request gets a 5xx                         (not_a_server_error)
#   - every status is one the schema documents      (status_code_conformance)
#   - every Content-Type is the documented one      (content_type_conformance)
#   - every body matches its documented schema      (response_schema_conformance)
# "Schema-valid request rejected" (positive_data_acceptance) is not checked: a schema-valid task
# can still be infeasible (422 by design) or name an accelerator the catalog lacks.
#
# Usage: scripts/schemathesis-serve.sh        (pip install schemathesis; MAX_EXAMPLES=100 by default)
# filter_too_much is suppressed: the optimizer's request schema (AcceleratorsSpec, SizeReq…) is
# rich enough that hypothesis discards many drafts; that is a generation cost, not an API fault.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/skycat-target}
ADDR=${ADDR:-127.0.0.1:18091}
MAX_EXAMPLES=${MAX_EXAMPLES:-100}

command -v st >/dev/null || pip install --quiet schemathesis
cargo build -q -p skycat-server --no-default-features --example bench_serve
BIN="$CARGO_TARGET_DIR/debug/examples/bench_serve"
"$BIN" "$ADDR" 10000 2>/dev/null &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://$ADDR/healthz" >/dev/null && break; sleep 0.1; done

st run "http://$ADDR/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" --generation-deterministic --request-timeout 30 \
    --suppress-health-check=filter_too_much
