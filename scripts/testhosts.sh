#!/usr/bin/env bash
# Test hosts for skycat's SSH tests: network namespaces, each running Debian's openssh-server.
#
#   scripts/testhosts.sh up N      create hosts 1..N (idempotent: an existing host is recreated)
#   scripts/testhosts.sh up-at I IP HIP [PORT]   create host I at address IP (a /32), reached from
#                                  this machine through host-side address HIP (a cloud VM's private
#                                  IP); its sshd listens on PORT (default 22: a cloud that maps a
#                                  public port to the node's 22, as RunPod does, passes that port)
#   scripts/testhosts.sh rm I      remove host I (its address can then be reused)
#   scripts/testhosts.sh down      stop every sshd and delete the namespaces and veth pairs
#   scripts/testhosts.sh status    list the hosts that are up
#
# Host i lives in namespace ${PREFIX}${i} with a veth pair: the host side has 10.231.<NET+i>.1/30,
# the namespace side 10.231.<NET+i>.2/30. The namespace has no default route, so the only traffic
# it can send goes to the host-side address of its own pair (where tests run heartbeat receivers),
# and the host reaches it only through that /30.
#
# Each sshd runs with a generated config and ed25519 host key, accepts root by key only (the test
# key <dir>/id_ed25519, generated once per state dir) and sets HOME to <dir>/hostI/home, so hosts
# that share this machine's filesystem still have separate home directories.
#
# Environment: SKYCAT_TESTHOSTS_DIR (state dir, default /tmp/skycat-testhosts),
# SKYCAT_TESTHOSTS_PREFIX (namespace prefix, default skycat-test-; must start with skycat-test-),
# SKYCAT_TESTHOSTS_NET (offset of the third octet, default 0; hosts use 10.231.<NET+i>.0/30).
# Needs root, iproute2 and openssh-server: see scripts/ci-setup-sshd.sh.
set -euo pipefail

DIR="${SKYCAT_TESTHOSTS_DIR:-/tmp/skycat-testhosts}"
PREFIX="${SKYCAT_TESTHOSTS_PREFIX:-skycat-test-}"
NET="${SKYCAT_TESTHOSTS_NET:-0}"

die() { echo "testhosts.sh: $*" >&2; exit 1; }

case "$PREFIX" in skycat-test-*) ;; *) die "SKYCAT_TESTHOSTS_PREFIX must start with skycat-test- (got $PREFIX)";; esac
case "$NET" in ''|*[!0-9]*) die "SKYCAT_TESTHOSTS_NET must be a number (got $NET)";; esac

need_tools() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces); run scripts/ci-setup-sshd.sh as root first"
    command -v ip >/dev/null 2>&1 || die "iproute2 missing: run scripts/ci-setup-sshd.sh"
    test -x /usr/sbin/sshd || die "openssh-server missing (/usr/sbin/sshd): run scripts/ci-setup-sshd.sh"
    command -v ssh-keygen >/dev/null 2>&1 || die "ssh-keygen missing: run scripts/ci-setup-sshd.sh"
}

# veth names are limited to 15 characters: derive a short stable tag from the prefix.
veth_base() {
    local i=$1 tag
    tag=$(printf '%s' "$PREFIX" | cksum | cut -c1-4)
    echo "sk${tag}x${i}"
}

host_down() {
    local i=$1 ns="${PREFIX}$1" hdir="$DIR/host$1" vb
    vb=$(veth_base "$i")
    if [ -f "$hdir/sshd.pid" ]; then
        local pid
        pid=$(cat "$hdir/sshd.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$hdir/sshd.pid"
    fi
    # Anything else still running inside the namespace (agents, jobs) goes too.
    if ip netns list 2>/dev/null | grep -qw -- "$ns"; then
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    fi
    ip link del "${vb}h" 2>/dev/null || true
}

host_up() {
    local i=$1 octet
    octet=$((NET + i))
    [ "$octet" -le 254 ] || die "host $i: third octet $octet out of range"
    host_up_addr "$i" "10.231.${octet}.2/30" "10.231.${octet}.1/30" "10.231.${octet}.2"
}

# host_up_at I IP HIP: a host at IP/32, routed point-to-point to HIP/32 on this machine.
host_up_at() {
    local i=$1 ip=$2 hip=$3 port=${4:-22}
    case "$ip$hip" in *[!0-9.]*) die "up-at: addresses must be dotted IPv4 (got $ip, $hip)";; esac
    case "$port" in ''|*[!0-9]*) die "up-at: PORT must be a number (got $port)";; esac
    case "$ip" in 10.*) ;; *) die "up-at: $ip is outside 10.0.0.0/8 (test hosts only use private test ranges)";; esac
    host_up_addr "$i" "$ip/32" "$hip/32" "$ip" "$port"
    local vb
    vb=$(veth_base "$i")
    ip -n "${PREFIX}$i" route add "$hip/32" dev "${vb}n"
    ip route add "$ip/32" dev "${vb}h"
}

host_up_addr() {
    local i=$1 ns_cidr=$2 host_cidr=$3 nip=$4 port=${5:-22} ns="${PREFIX}$1" hdir="$DIR/host$1" vb
    vb=$(veth_base "$i")
    local hip=${host_cidr%/*}
    host_down "$i"
    mkdir -p "$hdir/home"
    chmod 700 "$hdir/home"
    rm -f "$hdir/ssh_host_ed25519_key" "$hdir/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "skycat-test-host-$i" -f "$hdir/ssh_host_ed25519_key"

    ip netns add "$ns"
    ip link add "${vb}h" type veth peer name "${vb}n"
    ip link set "${vb}n" netns "$ns"
    ip addr add "$host_cidr" dev "${vb}h"
    ip link set "${vb}h" up
    ip -n "$ns" addr add "$ns_cidr" dev "${vb}n"
    ip -n "$ns" link set "${vb}n" up
    ip -n "$ns" link set lo up

    cat > "$hdir/sshd_config" <<CFG
# generated by scripts/testhosts.sh for test host $i
ListenAddress $nip
Port $port
HostKey $hdir/ssh_host_ed25519_key
PidFile $hdir/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding yes
PrintMotd no
MaxSessions 64
MaxStartups 64:30:128
LogLevel VERBOSE
SetEnv HOME=$hdir/home TMPDIR=$hdir/home SKYCAT_TESTHOST=$i
Subsystem sftp /usr/lib/openssh/sftp-server
CFG
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    : > "$hdir/sshd.log"
    ip netns exec "$ns" /usr/sbin/sshd -f "$hdir/sshd_config" -E "$hdir/sshd.log"
    # sshd daemonizes after binding; wait for its pid file.
    for _ in $(seq 1 100); do [ -s "$hdir/sshd.pid" ] && break; sleep 0.05; done
    [ -s "$hdir/sshd.pid" ] || die "host $i: sshd did not start; see $hdir/sshd.log"
    echo "$ns root@$nip:$port host_side=$hip key=$DIR/id_ed25519 home=$hdir/home"
}

cmd_up() {
    local n=${1:-}
    case "$n" in ''|*[!0-9]*) die "usage: testhosts.sh up N";; esac
    [ "$n" -ge 1 ] || die "N must be at least 1"
    need_tools
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if [ ! -f "$DIR/id_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N '' -C skycat-test-client -f "$DIR/id_ed25519"
    fi
    cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys.tmp"
    chmod 600 "$DIR/authorized_keys.tmp"
    mv "$DIR/authorized_keys.tmp" "$DIR/authorized_keys"
    # Hosts beyond N left by an earlier `up` are removed, so `up N` means exactly N hosts.
    cmd_down_quiet
    for i in $(seq 1 "$n"); do host_up "$i"; done
}

known_indices() {
    {
        ip netns list 2>/dev/null | awk '{print $1}' | while read -r ns; do
            case "$ns" in "$PREFIX"*) echo "${ns#"$PREFIX"}";; esac
        done
        for d in "$DIR"/host*; do [ -d "$d" ] && echo "${d##*/host}"; done
    } | grep -E '^[0-9]+$' | sort -un
}

cmd_down_quiet() {
    local i
    for i in $(known_indices); do host_down "$i"; done
}

cmd_up_at() {
    local i=${1:-} ip=${2:-} hip=${3:-} port=${4:-22}
    case "$i" in ''|*[!0-9]*) die "usage: testhosts.sh up-at I IP HIP";; esac
    [ -n "$ip" ] && [ -n "$hip" ] || die "usage: testhosts.sh up-at I IP HIP"
    need_tools
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if [ ! -f "$DIR/id_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N '' -C skycat-test-client -f "$DIR/id_ed25519"
    fi
    [ -f "$DIR/authorized_keys" ] || cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
    chmod 600 "$DIR/authorized_keys"
    host_up_at "$i" "$ip" "$hip" "$port"
}

cmd_down() {
    need_tools
    cmd_down_quiet
    echo "testhosts.sh: down"
}

cmd_status() {
    local i
    for i in $(known_indices); do
        local pid
        pid=$(cat "$DIR/host$i/sshd.pid" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            echo "${PREFIX}$i up sshd_pid=$pid root@10.231.$((NET + i)).2:22"
        else
            echo "${PREFIX}$i down"
        fi
    done
}

case "${1:-}" in
    up) cmd_up "${2:-}" ;;
    up-at) cmd_up_at "${2:-}" "${3:-}" "${4:-}" "${5:-}" ;;
    rm) case "${2:-}" in ''|*[!0-9]*) die "usage: testhosts.sh rm I";; esac; need_tools; host_down "$2" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) die "usage: testhosts.sh up N | up-at I IP HIP [PORT] | rm I | down | status" ;;
esac
