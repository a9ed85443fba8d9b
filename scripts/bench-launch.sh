#!/usr/bin/env bash
# Benchmark: time from `skycat launch` to the job running, on an SSH pool host, on AWS, on Lambda
# Cloud and on RunPod
# (moto's server or the loopback emulators + a network-namespace host at each instance's IP; the boot wait is
# reported apart). See cli/benches/launch.rs.
#
#   scripts/bench-launch.sh [ROUNDS]      (root; needs scripts/ci-setup-sshd.sh and ci-setup-moto.sh)
#
# Builds with the dev profile (the test build's artifacts are reused); PROFILE=release for an
# optimized skycat and agent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export SKYCAT_BENCH_ROUNDS=${1:-3}
PROFILE=${PROFILE:-dev}
cd "$ROOT"
cargo bench --workspace --profile "$PROFILE" --bench launch
