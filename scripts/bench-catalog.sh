#!/usr/bin/env bash
# Benchmark (not a test, not in CI): issue 14's command targets on a full all-region catalog,
# skycat beside SkyPilot 0.14.1 in the same run, on the same rows.
#
#  1. builds the release `skycat` and the `synthetic_catalog` example of skycat-catalog;
#  2. writes the full catalog into $OUT/home/catalogs: the shipped rows replicated over synthetic
#     regions up to AWS 51k, GCP 23k and Azure 9k rows (PER_CLOUD), every other cloud as shipped,
#     each Parquet file with its query index;
#  3. times skycat, whole process, on that catalog and on the shipped one: `optimize` of a GPU
#     task (A100:8) and of a CPU-only task (SkyPilot's default: 8+ vCPUs), `show-gpus A100:8`.
#     Time: hyperfine's median of RUNS runs (after 2 warm-ups). Memory: the median peak RSS of 5
#     runs of /usr/bin/time;
#  4. exports the full catalog (`skycat catalog export --format skypilot`; of AWS rows listed twice
#     per zone, the one without a spot price is dropped, as SkyPilot asserts there are none), installs SkyPilot
#     from PyPI into a venv (once; kept in $OUT/venv), and times it on the same tasks: its
#     optimizer in a fresh Python process per run (scripts/skypilot-compare.py once TASK: every
#     catalog cloud enabled, nothing asked of a provider) and its `show-gpus` query
#     (`sky.catalog.list_accelerators`), SKY_RUNS runs each;
#  5. prints one table with the ratios.
#
# Usage: scripts/bench-catalog.sh [OUT]        (default OUT: $TMPDIR/skycat-bench-catalog)
#   RUNS=20 SKY_RUNS=3 SKIP_BUILD=1 SKIP_SKYPILOT=1 PER_CLOUD=aws=51000,gcp=23000,azure=9000
# Needs hyperfine (apt-get install -y hyperfine) and python3 with venv.
# Targets (issue 14): optimize and show-gpus ≤ 30 ms median and ≤ 60 MB peak RSS on the full
# catalog. The serving side (reload time, /optimize req/s on this catalog) is
# `CATALOG_HOME=$OUT/home scripts/bench-serve.sh` (modes A and R).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-${TMPDIR:-/tmp}/skycat-bench-catalog}
RUNS=${RUNS:-20}
SKY_RUNS=${SKY_RUNS:-3}
PER_CLOUD=${PER_CLOUD:-aws=51000,gcp=23000,azure=9000}
SKYPILOT_VERSION=${SKYPILOT_VERSION:-0.14.1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/skycat-target}
command -v hyperfine >/dev/null || { echo "hyperfine not found: apt-get install -y hyperfine" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# 1. Binaries.
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    # One invocation, so that both share one feature resolution (and one build of polars).
    (cd "$ROOT" && cargo build --release -p skycat -p skycat-catalog --bin skycat --example synthetic_catalog \
        --features skycat-catalog/embedded-default >&2)
fi
SKYCAT="$CARGO_TARGET_DIR/release/skycat"
SYNTH="$CARGO_TARGET_DIR/release/examples/synthetic_catalog"

# 2. The full catalog, and an empty home (the shipped catalog).
rm -rf "$OUT/home" "$OUT/shipped-home"
mkdir -p "$OUT/home/catalogs" "$OUT/shipped-home"
"$SYNTH" "$OUT/home/catalogs" --per-cloud "$PER_CLOUD" >&2
cat > "$OUT/gpu.yaml" <<'YAML'
resources:
  accelerators: A100:8
YAML
cat > "$OUT/cpu.yaml" <<'YAML'
resources:
  cpus: 8+
YAML

median_rss_mb() { # CMD...: the median peak RSS of 5 runs, in MB
    local i kb=()
    for i in 1 2 3 4 5; do
        /usr/bin/time -o "$OUT/rss" -f '%M' "$@" >/dev/null 2>&1
        kb+=("$(tail -1 "$OUT/rss")")
    done
    printf '%s\n' "${kb[@]}" | sort -n | sed -n 3p | awk '{printf "%.1f", $1 / 1024}'
}
median_ms() { # JSON of hyperfine: the median in ms
    python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1e3))' "$1"
}
time_cmd() { # LABEL RUNS CMD...: "label median_ms rss_mb"
    local label=$1 runs=$2
    shift 2
    "$@" >/dev/null 2>"$OUT/$label.err" || { echo "$label failed:" >&2; cat "$OUT/$label.err" >&2; exit 1; }
    hyperfine -N --warmup 2 --runs "$runs" --export-json "$OUT/$label.json" "$(printf '%q ' "$@")" >&2
    echo "$label $(median_ms "$OUT/$label.json") $(median_rss_mb "$@")"
}

# 3. skycat.
results=()
for home in home shipped-home; do
    export SKYCAT_HOME="$OUT/$home"
    results+=("$(time_cmd "skycat-optimize-gpu-$home" "$RUNS" "$SKYCAT" optimize "$OUT/gpu.yaml")")
    results+=("$(time_cmd "skycat-optimize-cpu-$home" "$RUNS" "$SKYCAT" optimize "$OUT/cpu.yaml")")
    results+=("$(time_cmd "skycat-show-gpus-$home" "$RUNS" "$SKYCAT" show-gpus A100:8)")
done
export SKYCAT_HOME="$OUT/home"
rows=$("$SKYCAT" catalog info --json | python3 -c 'import json,sys; print(sum(c["rows"] for c in json.load(sys.stdin)))')

# 4. SkyPilot on the same rows.
if [ "${SKIP_SKYPILOT:-0}" != 1 ]; then
    if [ ! -x "$OUT/venv/bin/python" ] || ! "$OUT/venv/bin/python" -c "import sky, sys; sys.exit(sky.__version__ != '$SKYPILOT_VERSION')" 2>/dev/null; then
        python3 -m venv "$OUT/venv"
        "$OUT/venv/bin/pip" install --quiet "skypilot==$SKYPILOT_VERSION"
    fi
    export HOME="$OUT/sky-home" SKYPILOT_DISABLE_USAGE_COLLECTION=1
    CAT="$HOME/.sky/catalogs/v8"
    rm -rf "$HOME"
    mkdir -p "$CAT"
    "$SKYCAT" catalog export --format skypilot "$CAT" >&2
    "$OUT/venv/bin/python" "$ROOT/scripts/skypilot-compare.py" prepare "$CAT"
    # Without this SkyPilot stops on its own assertion (p4de.24xlarge listed twice per AZ in the
    # published AWS catalog, so in every synthetic copy of it too): it then plans to the end.
    "$OUT/venv/bin/python" "$ROOT/scripts/skypilot-compare.py" dedupe "$CAT"
    PY=("$OUT/venv/bin/python" "$ROOT/scripts/skypilot-compare.py")
    results+=("$(time_cmd skypilot-optimize-gpu-home "$SKY_RUNS" "${PY[@]}" once "$OUT/gpu.yaml")")
    results+=("$(time_cmd skypilot-optimize-cpu-home "$SKY_RUNS" "${PY[@]}" once "$OUT/cpu.yaml")")
    results+=("$(time_cmd skypilot-show-gpus-home "$SKY_RUNS" "${PY[@]}" show-gpus A100:8)")
    echo "SkyPilot's answers: $("${PY[@]}" once "$OUT/gpu.yaml" 2>/dev/null | tail -1)" >&2
fi
echo "skycat's answer: $(SKYCAT_HOME="$OUT/home" "$SKYCAT" optimize "$OUT/gpu.yaml" --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["chosen"]; print(c["cloud"], c["instance_type"], c["region"], c.get("zone"), c["hourly_price"])')" >&2

# 5. The table.
python3 - "$rows" "${results[@]}" <<'PY'
import sys
rows, results = sys.argv[1], [r.split() for r in sys.argv[2:]]
by = {label: (float(ms), float(mb)) for label, ms, mb in results}
print(f"full catalog: {rows} rows (shipped: the embedded catalog)\n")
print("| command | catalog | skycat ms (median) | skycat peak RSS MB | SkyPilot ms | SkyPilot MB | time ratio |")
print("|---|---|---|---|---|---|---|")
for cmd in ["optimize-gpu", "optimize-cpu", "show-gpus"]:
    for home, name in [("home", "full"), ("shipped-home", "shipped")]:
        ms, mb = by[f"skycat-{cmd}-{home}"]
        sky = by.get(f"skypilot-{cmd}-{home}")
        sky_cols = f"{sky[0]:.0f} | {sky[1]:.0f} | {sky[0] / ms:.0f}x" if sky else "— | — | —"
        print(f"| {cmd} | {name} | {ms:.1f} | {mb:.1f} | {sky_cols} |")
PY
