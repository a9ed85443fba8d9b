#!/usr/bin/env bash
# Benchmark (not a test): the web dashboard of `skycat serve` in headless chromium on loopback.
#
# Builds the release `bench_dashboard` example of skycat-server (the server's router with the
# real embedded catalog and token auth, as `skycat serve` has it) and prints:
#   * every embedded asset's size, raw and as served gzip and br, and the totals (target: no asset over
#     300 KB compressed);
#   * each page's HTML size, raw and as served gzip and br;
#   * per page, the first load in a fresh tab with the cache off: largest contentful paint, time
#     to first byte and load event, median (min..max) of ROUNDS loads (target: LCP <= 300 ms).
# Needs chromium and chromedriver (scripts/ci-setup-chromium.sh installs them).
#
# Usage: scripts/bench-dashboard.sh              ROUNDS=10 scripts/bench-dashboard.sh
#        PROFILE=dev scripts/bench-dashboard.sh  (a debug build: quicker to build, slower pages)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/skycat-target}
profile=${PROFILE:-release}
command -v chromedriver >/dev/null 2>&1 || { echo "bench-dashboard.sh: chromedriver is not on PATH; run scripts/ci-setup-chromium.sh" >&2; exit 1; }
cargo build --profile "$profile" -p skycat-server --example bench_dashboard
dir=$profile; [ "$profile" = dev ] && dir=debug
"$CARGO_TARGET_DIR/$dir/examples/bench_dashboard" "${ROUNDS:-5}"
