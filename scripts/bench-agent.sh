#!/usr/bin/env bash
# Benchmarks of the node agent (not tests): binary size, RSS idle and with a running job,
# CPU per heartbeat. Prints one line per figure.
#
#   scripts/bench-agent.sh            # release build as the workspace profile defines it
#   SMALL=1 scripts/bench-agent.sh    # also opt-level "z" + LTO + panic=abort, through cargo's
#                                     # documented CARGO_PROFILE_RELEASE_* env overrides (the
#                                     # workspace profiles are not changed)
# Needs: cargo, strip, python3 (a loopback heartbeat receiver).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/skycat-target}"
N="${N:-200}"              # heartbeats for the CPU figure
INTERVAL="${INTERVAL:-0.05}"

work="$(mktemp -d)"
server_pid=""
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p skycat-agent
cp "$CARGO_TARGET_DIR/release/skycat-agent" "$work/skycat-agent"
unstripped=$(stat -c %s "$work/skycat-agent")
strip "$work/skycat-agent"
stripped=$(stat -c %s "$work/skycat-agent")
echo "binary size (release, workspace profile): ${unstripped} bytes unstripped, ${stripped} bytes stripped"

if [ "${SMALL:-0}" = 1 ]; then
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/small" cargo build --release -q -p skycat-agent
  echo "binary size (opt-level z, lto, panic=abort, stripped): $(stat -c %s "$CARGO_TARGET_DIR/small/release/skycat-agent") bytes"
fi

# Loopback heartbeat receiver (answers 200 to every POST).
port_file="$work/port"
python3 - "$port_file" <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
EOF
server_pid=$!
for _ in $(seq 100); do [ -s "$port_file" ] && break; sleep 0.05; done
port=$(cat "$port_file")

dir="$work/state"
mkdir -p "$dir"
cat > "$dir/config.json" <<EOF
{"cluster_name":"bench","node_ips":["127.0.0.1"],"gpus_per_node":1,"price_per_hour":1.5,
 "server_url":"http://127.0.0.1:$port","token":"t","heartbeat_interval_secs":$INTERVAL}
EOF
agent="$work/skycat-agent"
daemon_pid=$("$agent" --json --state-dir "$dir" daemon --detach | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
rss() { awk '/^VmRSS/ {print $2}' "/proc/$daemon_pid/status"; }
sleep 2
echo "RSS idle: $(rss) KiB (VmRSS of the daemon after 2 s)"

seq_of() { "$agent" --json --state-dir "$dir" status | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["heartbeat_acked_seq"])'; }
ticks() { awk '{print $14 + $15}' "/proc/$daemon_pid/stat"; }
hz=$(getconf CLK_TCK)
s0=$(seq_of); t0=$(ticks); w0=$(date +%s.%N)
while [ "$(seq_of)" -lt $((s0 + N)) ]; do sleep 0.2; done
s1=$(seq_of); t1=$(ticks); w1=$(date +%s.%N)
python3 -c "
n=$s1-$s0; cpu=($t1-$t0)/$hz
print(f'CPU per heartbeat: {cpu/n*1000:.3f} ms ({n} heartbeats delivered in {$w1-$w0:.1f} s wall, {cpu:.2f} s CPU utime+stime, interval $INTERVAL s, incl. facts, ledger, outbox, journal fsyncs and the HTTP POST)')"

echo '{"run":"sleep 30","gpus":1}' | "$agent" --state-dir "$dir" submit >/dev/null
sleep 2
echo "RSS with a running job: $(rss) KiB"
"$agent" --state-dir "$dir" cancel 1 >/dev/null
"$agent" --state-dir "$dir" stop >/dev/null
daemon_pid=""
