#!/usr/bin/env bash
# Benchmark: time from `skycat launch` to the job running on an already reachable SSH host.
#
#   scripts/bench-launch.sh [ROUNDS]      (root; needs scripts/ci-setup-sshd.sh)
#
# One netns test host (scripts/testhosts.sh) with sshd up; for each round: a fresh cluster
# (`skycat launch` uploads and starts the agent, then submits the job), then a relaunch on the
# UP cluster (agent reused). "Running" is when the job's first command runs on the node: the job
# writes `date +%s.%N` into the host's home, which this machine can read (netns hosts share the
# filesystem). Uses the debug build unless PROFILE=release.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${1:-3}
PROFILE=${PROFILE:-debug}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
flag=""; [ "$PROFILE" = release ] && flag="--release"
(cd "$ROOT" && cargo build -q $flag -p skycat -p skycat-agent)
SKYCAT="$TARGET/$PROFILE/skycat"
export SKYCAT_AGENT_BIN="$TARGET/$PROFILE/skycat-agent"

export SKYCAT_TESTHOSTS_DIR=$(mktemp -d /tmp/skycat-bench-hosts.XXXXXX)
export SKYCAT_TESTHOSTS_PREFIX=skycat-test-bench-
export SKYCAT_TESTHOSTS_NET=200
export SKYCAT_HOME=$(mktemp -d /tmp/skycat-bench-home.XXXXXX)
cleanup() {
    "$SKYCAT" down bench >/dev/null 2>&1 || true
    bash "$ROOT/scripts/testhosts.sh" down >/dev/null 2>&1 || true
    rm -rf "$SKYCAT_TESTHOSTS_DIR" "$SKYCAT_HOME"
}
trap cleanup EXIT
bash "$ROOT/scripts/testhosts.sh" up 1 >/dev/null
HOSTHOME="$SKYCAT_TESTHOSTS_DIR/host1/home"
cat > "$SKYCAT_HOME/ssh_node_pools.yaml" <<YAML
bench:
  hosts: [10.231.201.2]
  user: root
  identity_file: $SKYCAT_TESTHOSTS_DIR/id_ed25519
YAML
cat > "$SKYCAT_HOME/task.yaml" <<'YAML'
name: bench
setup: echo setup
run: |
  date +%s.%N > "$HOME/job-started.$SKYCAT_JOB_ID"
  sleep 600
YAML

now() { date +%s.%N; }
wait_started() { # job id, t0
    local f="$HOSTHOME/job-started.$1"
    for _ in $(seq 1 600); do [ -s "$f" ] && break; sleep 0.01; done
    [ -s "$f" ] || { echo "job $1 never started" >&2; exit 1; }
    awk -v a="$(cat "$f")" -v b="$2" 'BEGIN { printf "%.3f", a - b }'
}
echo "agent binary: $(stat -c %s "$SKYCAT_AGENT_BIN") bytes ($PROFILE)"
for r in $(seq 1 "$ROUNDS"); do
    t0=$(now)
    "$SKYCAT" launch -c bench "$SKYCAT_HOME/task.yaml" --infra ssh/bench >/dev/null 2>&1
    t1=$(now)
    fresh=$(wait_started 1 "$t0")
    cmd=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
    t0=$(now)
    "$SKYCAT" launch -c bench "$SKYCAT_HOME/task.yaml" --infra ssh/bench >/dev/null 2>&1
    relaunch=$(wait_started 2 "$t0")
    printf 'round %d: fresh cluster (upload+start agent) launch->running %ss (launch cmd %ss); relaunch on UP cluster %ss\n' \
        "$r" "$fresh" "$cmd" "$relaunch"
    "$SKYCAT" down bench >/dev/null 2>&1
    rm -f "$HOSTHOME"/job-started.*
done
