#!/usr/bin/env bash
# Benchmark (not a test; not run in CI): three `skycat serve` replicas on one throwaway
# PostgreSQL, on loopback.
#   a. heartbeat ingest: CLUSTERS clusters of one node with their own cluster tokens (made by the
#      controller's bench_heartbeat_setup example from the protocol crate's types); three wrk
#      processes, one per replica, each posting the heartbeats of its third of the clusters with
#      rising seqs (CONNS connections each, HB_DURATION); then the heartbeats stored are counted
#      (each exactly once: rows = distinct (cluster, node, seq) = 2xx answers).
#   b. POST /optimize (JSON task) with wrk on one replica: PostgreSQL-backed (replica 1), then a
#      fourth `skycat serve` on its own SQLite state, alternately, OPT_ROUNDS rounds each.
#   c. leader failover: SIGKILL the leader, time until another replica's /healthz says
#      "role": "leader" (polled every 20 ms); the killed replica restarts as a follower;
#      FAILOVERS times.
# PostgreSQL runs with its durable defaults (fsync, synchronous_commit on) unless
# PG_FAST=1 (fsync=off, synchronous_commit=off, as the tests' clusters).
#
# Usage: scripts/bench-replicas.sh     (needs wrk, Debian's postgresql: scripts/ci-setup-postgres.sh)
#        SKIP_BUILD=1 HB_DURATION=20s CONNS=32 scripts/bench-replicas.sh
# Targets (issue 15): >= 5,000 heartbeats/s over 3 replicas; /optimize on PostgreSQL within 10%
# of SQLite; failover within --lease-takeover (TAKEOVER, default 15 s).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/skycat-target}"
CLUSTERS=${CLUSTERS:-300}
CONNS=${CONNS:-16}
HB_DURATION=${HB_DURATION:-15s}
OPT_DURATION=${OPT_DURATION:-10s}
OPT_ROUNDS=${OPT_ROUNDS:-2}
OPT_CONNS=${OPT_CONNS:-32}
FAILOVERS=${FAILOVERS:-3}
TAKEOVER=${TAKEOVER:-15}
BASE_PORT=${BASE_PORT:-18300}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL not found: run scripts/ci-setup-postgres.sh" >&2; exit 1; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    nice -n 10 cargo build --release -q -p skycat --bin skycat
    cargo build -q -p skycat-controller --example bench_heartbeat_setup
fi
SKYCAT="${SKYCAT_BIN:-$CARGO_TARGET_DIR/release/skycat}"
SETUP="$CARGO_TARGET_DIR/debug/examples/bench_heartbeat_setup"

WORK=$(mktemp -d /tmp/skycat-bench-replicas.XXXXXX)
chmod 755 "$WORK"
PIDS=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The throwaway cluster (as the `postgres` user when root: initdb refuses root).
PGPORT=$((BASE_PORT + 32))
mkdir -p "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 >/dev/null
PGOPTS="-c listen_addresses=127.0.0.1 -p $PGPORT -k $WORK/pg -c max_connections=200"
[ "${PG_FAST:-0}" = 1 ] && PGOPTS="$PGOPTS -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -o "$PGOPTS" -w start >/dev/null
as_pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres skycat
DB="postgres://postgres@127.0.0.1:$PGPORT/skycat"
psql_q() { "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -d skycat -At -c "$1"; }

# start_replica I [STATE]: `skycat serve` #I on BASE_PORT+I with its own home (the shared key
# copied in), state STATE (default: the PostgreSQL database).
start_replica() {
    local i=$1 state=${2-$DB} home="$WORK/home$1"
    mkdir -p "$home/keys"
    [ -f "$WORK/home1/keys/secret.key" ] && [ "$i" != 1 ] && cp "$WORK/home1/keys/secret.key" "$home/keys/"
    local args=(serve --addr "127.0.0.1:$((BASE_PORT + i))" --lease-takeover "$TAKEOVER")
    [ -n "$state" ] && args+=(--state "$state")
    SKYCAT_HOME="$home" RUST_LOG=warn "$SKYCAT" "${args[@]}" >>"$WORK/replica$i.log" 2>&1 &
    PIDS[$i]=$!
    disown "$!"  # its SIGKILL in c. is the point: no "Killed" notice from the shell
    for _ in $(seq 200); do
        curl -fsS "http://127.0.0.1:$((BASE_PORT + i))/healthz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "replica $i did not start:" >&2; tail -20 "$WORK/replica$i.log" >&2; exit 1
}
role() { curl -fsS --max-time 1 "http://127.0.0.1:$((BASE_PORT + $1))/healthz" 2>/dev/null | grep -o '"role":"[a-z]*"' | cut -d'"' -f4; }

start_replica 1
start_replica 2
start_replica 3
durability="durable defaults"; [ "${PG_FAST:-0}" = 1 ] && durability="fsync off"
echo "== host: $(nproc) cores, $(uname -r); PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') ($durability); 3 replicas, roles: $(role 1) $(role 2) $(role 3)"

# a. Heartbeat ingest.
"$SETUP" "$DB" "$CLUSTERS" "$WORK" 2>/dev/null
cat >"$WORK/hb.lua" <<'LUA'
-- Posts the heartbeats of the clusters whose line number is PART mod PARTS (args: file dir,
-- PART, PARTS), round-robin over them, each cluster's seq rising by one per round.
local clusters, template, n = {}, nil, 0
function init(args)
    local dir, part, parts = args[1], tonumber(args[2]), tonumber(args[3])
    local i = 0
    for line in io.lines(dir .. "/clusters.txt") do
        local name, token = line:match("^(%S+) (%S+)$")
        if i % parts == part then clusters[#clusters + 1] = { name = name, token = token } end
        i = i + 1
    end
    local f = io.open(dir .. "/heartbeat.json"); template = f:read("*a"); f:close()
end
function request()
    local c = clusters[(n % #clusters) + 1]
    local seq = math.floor(n / #clusters) + 1
    n = n + 1
    local body = template:gsub("__CLUSTER__", c.name):gsub("987654321", tostring(seq))
    return wrk.format("POST", "/v1/agents/heartbeat",
        { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. c.token }, body)
end
LUA
echo "== a. heartbeat ingest: $CLUSTERS clusters, 3 x wrk -t1 -c$CONNS -d$HB_DURATION (one per replica)"
WRK_PIDS=()
for i in 1 2 3; do
    wrk -t1 -c"$CONNS" -d"$HB_DURATION" -s "$WORK/hb.lua" "http://127.0.0.1:$((BASE_PORT + i))" -- "$WORK" $((i - 1)) 3 >"$WORK/wrk-hb$i.out" 2>&1 &
    WRK_PIDS+=($!)
done
wait "${WRK_PIDS[@]}"
total_rate=0; total_ok=0
for i in 1 2 3; do
    rate=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk-hb$i.out")
    sent=$(awk '/requests in/ {print $1}' "$WORK/wrk-hb$i.out")
    bad=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk-hb$i.out"); bad=${bad:-0}
    p99=$(awk '/Latency/ && !/Distribution/ {print $2}' "$WORK/wrk-hb$i.out")
    echo "   replica $i: $rate heartbeats/s ($sent sent, $bad non-2xx, mean latency $p99)"
    total_rate=$(awk -v a="$total_rate" -v b="$rate" 'BEGIN {printf "%.0f", a + b}')
    total_ok=$((total_ok + sent - bad))
done
read -r rows distinct < <(psql_q "SELECT count(*), count(DISTINCT (cluster_id, node_id, seq)) FROM heartbeats" | tr '|' ' ')
echo "   total: $total_rate heartbeats/s; stored rows $rows, distinct (cluster, node, seq) $distinct; 2xx answers counted by wrk $total_ok"
echo "   (rows >= answers: requests in flight when wrk stops are stored but not counted)"
# Each replica writes the heartbeats that reach it together in one transaction (its ingest queue).
for i in 1 2 3; do
    curl -fsS "http://127.0.0.1:$((BASE_PORT + i))/metrics" | awk -v r="$i" '
        /^skycat_heartbeats_ingested_total / {n=$2} /^skycat_heartbeat_batches_total / {b=$2}
        END {printf "   replica %s: %d heartbeats in %d transactions (%.1f per transaction)\n", r, n, b, (b ? n / b : 0)}'
done

# b. /optimize: PostgreSQL-backed replica 1 vs a SQLite-backed server, same binary and catalog.
if [ "$OPT_ROUNDS" -gt 0 ]; then
    cat >"$WORK/opt.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind": "task", "resources": {"accelerators": "A100:8"}}'
LUA
    start_replica 4 ""
    echo "== b. POST /optimize, wrk -t2 -c$OPT_CONNS -d$OPT_DURATION, $OPT_ROUNDS rounds each, alternating"
    # opt I LABEL: one wrk run on server I; prints its line, leaves its req/s in $WORK/rate.
    opt() {
        wrk -t2 -c"$OPT_CONNS" -d"$OPT_DURATION" --latency -s "$WORK/opt.lua" "http://127.0.0.1:$((BASE_PORT + $1))/optimize" >"$WORK/wrk-opt.out"
        awk -v l="$2" '/^Requests\/sec/ {r=$2} /^ +99%/ {p=$2} /Non-2xx/ {b=$NF} END {printf "   %-10s %10s req/s  p99 %-8s non-2xx %s\n", l, r, p, b+0}' "$WORK/wrk-opt.out"
        awk '/^Requests\/sec/ {print $2}' "$WORK/wrk-opt.out" >"$WORK/rate"
    }
    pg_sum=0; sq_sum=0
    for _ in $(seq "$OPT_ROUNDS"); do
        opt 1 postgres; pg_sum=$(awk -v a="$pg_sum" -v b="$(cat "$WORK/rate")" 'BEGIN {print a + b}')
        opt 4 sqlite; sq_sum=$(awk -v a="$sq_sum" -v b="$(cat "$WORK/rate")" 'BEGIN {print a + b}')
    done
    awk -v p="$pg_sum" -v s="$sq_sum" -v n="$OPT_ROUNDS" 'BEGIN {printf "   mean: postgres %.0f req/s, sqlite %.0f req/s: postgres/sqlite = %.3f\n", p / n, s / n, p / s}'
    kill "${PIDS[4]}" 2>/dev/null || true; unset 'PIDS[4]'
fi

# c. Failover.
echo "== c. leader failover (SIGKILL), --lease-takeover $TAKEOVER"
for round in $(seq "$FAILOVERS"); do
    leader=""
    for _ in $(seq 400); do
        for i in 1 2 3; do [ "$(role "$i")" = leader ] && leader=$i; done
        [ -n "$leader" ] && break; sleep 0.05
    done
    [ -n "$leader" ] || { echo "no leader" >&2; exit 1; }
    t0=$(date +%s.%N)
    kill -9 "${PIDS[$leader]}"
    new=""
    while [ -z "$new" ]; do
        for i in 1 2 3; do [ "$i" != "$leader" ] && [ "$(role "$i")" = leader ] && new=$i; done
        [ -z "$new" ] && sleep 0.02
        awk -v t="$t0" -v n="$(date +%s.%N)" 'BEGIN {exit !(n - t > 60)}' && { echo "no takeover in 60 s" >&2; exit 1; }
    done
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v o="$leader" -v n="$new" -v r="$round" 'BEGIN {printf "   round %d: replica %d killed, replica %d leads after %.2f s\n", r, o, n, b - a}'
    start_replica "$leader"
done
