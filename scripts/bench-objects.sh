#!/usr/bin/env bash
# Benchmark (not a test): SkyPilot `mode: COPY` of 1 GiB in 64 files from moto's S3 on loopback
# to a local folder, with `skycat-agent objects copy` and with `rclone copy` on the same data in
# the same run; prints seconds and MB/s for each and checks both copies byte for byte.
#
#   bash scripts/bench-objects.sh              # 64 files x 16 MiB, 16 concurrent downloads each
#   FILES=16 SIZE_MIB=8 JOBS=8 ROUNDS=2 bash scripts/bench-objects.sh
#
# Needs moto (scripts/ci-setup-moto.sh) and rclone (scripts/ci-setup-storage.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/skycat-target}
FILES=${FILES:-64}
SIZE_MIB=${SIZE_MIB:-16}
JOBS=${JOBS:-16}
ROUNDS=${ROUNDS:-1}

command -v rclone >/dev/null || { echo "rclone is missing: run scripts/ci-setup-storage.sh" >&2; exit 1; }
python3 -c 'import moto.server' 2>/dev/null || { echo "moto is missing: run scripts/ci-setup-moto.sh" >&2; exit 1; }
cargo build --release -q -p skycat-agent
agent=$CARGO_TARGET_DIR/release/skycat-agent

work=$(mktemp -d "${TMPDIR:-/tmp}/skycat-bench-objects.XXXXXX")
moto_pid=
cleanup() {
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null && wait "$moto_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
endpoint=http://127.0.0.1:$port

# The same remote for rclone, configured through its environment (no config file).
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$endpoint \
  RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=testing RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=testing \
  RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE=true RCLONE_CONFIG_MOTO_REGION=us-east-1

echo "== data: $FILES files x $SIZE_MIB MiB (random) into s3://bench/data on moto ($endpoint)"
mkdir -p "$work/src/nested"
for i in $(seq 1 "$FILES"); do
  d="$work/src"; [ $((i % 4)) -eq 0 ] && d="$work/src/nested"
  head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$d/part-$(printf %03d "$i").bin"
done
rclone mkdir --config /dev/null moto:bench
rclone copy --config /dev/null --transfers "$JOBS" "$work/src" moto:bench/data
total=$((FILES * SIZE_MIB * 1024 * 1024))

creds="AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_ENDPOINT_URL=$endpoint
AWS_REGION=us-east-1"

now() { date +%s.%N; }
# report LABEL START END BYTES
report() { python3 -c "import sys; s=float(sys.argv[3])-float(sys.argv[2]); print(f'{sys.argv[1]:<34} {s:8.2f} s {int(sys.argv[4])/1e6/s:9.1f} MB/s')" "$@"; }

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round: copy $((total / 1024 / 1024)) MiB to a local folder, $JOBS concurrent downloads"
  rm -rf "$work/a" "$work/b"
  t0=$(now)
  printf '%s\n' "$creds" | "$agent" objects copy s3://bench/data "$work/a" --env-stdin --jobs "$JOBS" >"$work/agent.out"
  t1=$(now)
  rclone copy --config /dev/null --transfers "$JOBS" --checkers "$JOBS" moto:bench/data "$work/b"
  t2=$(now)
  diff -r -q "$work/src" "$work/a" >/dev/null || { echo "skycat-agent's copy differs from the source" >&2; exit 1; }
  diff -r -q "$work/src" "$work/b" >/dev/null || { echo "rclone's copy differs from the source" >&2; exit 1; }
  echo "   agent: $(cat "$work/agent.out")"
  report "skycat-agent objects copy" "$t0" "$t1" "$total"
  report "rclone copy ($(rclone version | head -1 | awk '{print $2}'))" "$t1" "$t2" "$total"
done
