#!/usr/bin/env bash
# Benchmark: parse a 100 MB AWS bulk offer CSV with skycat's parser (polars), report MB/s and
# peak RSS. SkyPilot's pandas parser takes 1.69 s for 100 MB on the 2-core reference machine.
#   scripts/bench-aws-csv.sh [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/skycat-target}"
CSV="${CARGO_TARGET_DIR}/aws-offer-${SIZE_MB}mb.csv"
[ -f "$CSV" ] || python3 scripts/gen-aws-offer-csv.py "$CSV" --size-mb "$SIZE_MB"
# A standalone crate: the release build compiles the parser and polars' CSV path only.
# Same dependency versions as the workspace on the first run (later runs keep the pruned lock).
[ -f fetchers/bench-aws-csv/Cargo.lock ] || cp Cargo.lock fetchers/bench-aws-csv/Cargo.lock
cargo build --release --manifest-path fetchers/bench-aws-csv/Cargo.toml
BIN="${CARGO_TARGET_DIR}/release/skycat-bench-aws-csv"
echo "== with the byte pre-filter (what skycat fetch runs)"
/usr/bin/time -v "$BIN" "$CSV" us-east-1 --repeat 5 2> /tmp/bench-aws-csv.time
grep -E "Maximum resident|Elapsed" /tmp/bench-aws-csv.time
echo "== polars on every row (no pre-filter)"
/usr/bin/time -v "$BIN" "$CSV" us-east-1 --no-prefilter --repeat 3 2> /tmp/bench-aws-csv.time
grep -E "Maximum resident|Elapsed" /tmp/bench-aws-csv.time
