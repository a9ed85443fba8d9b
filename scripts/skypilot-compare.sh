#!/usr/bin/env bash
# skycat's placements against SkyPilot 0.14.1's own optimizer, offline, on the same catalog.
# Not in CI (it installs SkyPilot from PyPI and takes about 50 minutes on 2 cores).
#
#   scripts/skypilot-compare.sh SKYPILOT_CHECKOUT [OUT_DIR]
#
# SKYPILOT_CHECKOUT: a checkout of github.com/skypilot-org/skypilot (its llm/ and examples/ folders
# hold the published example tasks; nothing of it is copied into this repository).
# OUT_DIR (default $TMPDIR/skypilot-compare): the venv, a fake $HOME whose ~/.sky/catalogs/v8 holds
# the catalog skycat exports, results.jsonl (one line per comparison) and report.md.
#
# Environment: SKYCAT_BIN (default: cargo build --release -p skycat), PYTHON (default python3),
# SKYPILOT_VERSION (default 0.14.1), CLOUDS (default: every cloud SkyPilot has a catalog for),
# LIMIT (tasks, default all).
#
# Each task is planned as written ("any") and pinned to each cloud (`infra: CLOUD` replacing the
# task's own placement). SkyPilot runs in-process with every catalog cloud marked enabled, so it
# dials nothing; skycat runs `skycat optimize --json` with an empty SKYCAT_HOME (no SSH pools) and,
# for "any", blocks the clouds SkyPilot has no catalog for (ovhcloud, scaleway, simplepod).
# report.md gives counts and every difference grouped by its reason (skypilot-compare.py's
# REASONS / reason()); `skypilot-compare.py recheck-duplicates results.jsonl CATALOG` re-asks
# SkyPilot the rows it crashed on, with the duplicate catalog rows merged.
# Differences and their reasons: docs/skypilot-compare.md.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
SKY_SRC=$(cd "$1" && pwd)
OUT=${2:-${TMPDIR:-/tmp}/skypilot-compare}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
VERSION=${SKYPILOT_VERSION:-0.14.1}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

examples=()
for d in llm examples; do
    [ -d "$SKY_SRC/$d" ] && examples+=("$SKY_SRC/$d")
done
if [ ${#examples[@]} -eq 0 ]; then
    echo "$SKY_SRC has neither llm/ nor examples/" >&2
    exit 2
fi

# 1. SkyPilot from PyPI, in its own venv.
if [ ! -x "$OUT/venv/bin/python" ] || ! "$OUT/venv/bin/python" -c "import sky, sys; sys.exit(sky.__version__ != '$VERSION')" 2>/dev/null; then
    "$PY" -m venv "$OUT/venv"
    "$OUT/venv/bin/pip" install --quiet "skypilot==$VERSION"
fi

# 2. skycat.
if [ -n "${SKYCAT_BIN:-}" ]; then
    SKYCAT=$SKYCAT_BIN
else
    (cd "$ROOT" && cargo build --release -p skycat >&2)
    SKYCAT=${CARGO_TARGET_DIR:-$ROOT/target}/release/skycat
fi

# 3. The same catalog for both: skycat's, exported in SkyPilot's layout. SkyPilot 0.14.1 reads
# catalogs/v8 (the v7 columns skycat writes are what it reads), plus common/ files derived from it.
export HOME="$OUT/home"
CAT="$HOME/.sky/catalogs/v8"
rm -rf "$HOME"
mkdir -p "$CAT"
SKYCAT_HOME="$OUT/skycat-home" "$SKYCAT" catalog export --format skypilot "$CAT" >&2
"$OUT/venv/bin/python" "$ROOT/scripts/skypilot-compare.py" prepare "$CAT"
mkdir -p "$OUT/skycat-home"
export SKYCAT_HOME="$OUT/skycat-home"
# No usage reports, no API server: SkyPilot's optimizer runs as a library.
export SKYPILOT_DISABLE_USAGE_COLLECTION=1

# 4. Both optimizers on every example task.
args=(--examples "${examples[@]}" --skycat "$SKYCAT" --out "$OUT/results.jsonl")
[ -n "${CLOUDS:-}" ] && args+=(--clouds "$CLOUDS")
[ -n "${LIMIT:-}" ] && args+=(--limit "$LIMIT")
"$OUT/venv/bin/python" "$ROOT/scripts/skypilot-compare.py" "${args[@]}" 2> "$OUT/run.log" | tail -20
# The report's classifier reads the exported catalog (vCPUs, memory, regions, zones of each type).
"$OUT/venv/bin/python" "$ROOT/scripts/skypilot-compare.py" report "$OUT/results.jsonl" "$CAT" > "$OUT/report.md"
echo "report: $OUT/report.md (differences with reasons: docs/skypilot-compare.md)"
