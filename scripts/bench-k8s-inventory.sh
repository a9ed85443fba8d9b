#!/usr/bin/env bash
# Benchmark: Kubernetes offers and free counts for 1,000 nodes and 10,000 pods on the API-server
# emulation (see controller/benches/k8s_inventory.rs). Release build.
#
#   scripts/bench-k8s-inventory.sh [ROUNDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export SKYCAT_BENCH_ROUNDS=${1:-10}
cd "$ROOT"
cargo bench --workspace --bench k8s_inventory
