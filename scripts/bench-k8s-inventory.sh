#!/usr/bin/env bash
# Benchmark: Kubernetes offers and free counts for 1,000 nodes and 10,000 pods on the API-server
# emulation (see testkit/benches/k8s_inventory.rs). Release build; PROFILE=dev reuses the test build.
#
#   scripts/bench-k8s-inventory.sh [ROUNDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export SKYCAT_BENCH_ROUNDS=${1:-10}
cd "$ROOT"
cargo bench -p skycat-testkit --profile "${PROFILE:-release}" --bench k8s_inventory
