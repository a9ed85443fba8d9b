#!/usr/bin/env bash
# Rebuilds catalog-data/ (the default catalog embedded in `skycat`) from the real SkyPilot catalog
# excerpts in ../shared/reference-prices/. Deterministic: the same input gives the same files.
#   scripts/build-default-catalog.sh [REFERENCE_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
reference=${1:-$root/../shared/reference-prices}
# The reference excerpts record no date; this is the day they were converted (see catalog-data/README.md).
as_of=${SKYCAT_CATALOG_AS_OF:-2026-11-28T00:00:00Z}
cd "$root"
cargo run --quiet -p skycat-catalog --bin build-default-catalog -- "$reference" "$root/catalog-data" "$as_of"
