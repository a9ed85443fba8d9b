#!/usr/bin/env bash
# Installs what the end-to-end tests need: Debian's openssh-server (the test hosts' sshd),
# openssh-client (the system `ssh` that `ssh CLUSTER` tests drive), iproute2 (network namespaces
# + veth pairs) and tmux (interactive `skycat gpunode` sessions). Quick no-op when all are present.
set -euo pipefail
if command -v ip >/dev/null 2>&1 && test -x /usr/sbin/sshd && command -v ssh >/dev/null 2>&1 && command -v tmux >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ci-setup-sshd.sh: must run as root to apt-get install openssh-server openssh-client iproute2 tmux" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends openssh-server openssh-client iproute2 tmux >/dev/null
# The package's postinst may start a system sshd on port 22; the tests don't need it.
if command -v service >/dev/null 2>&1; then service ssh stop >/dev/null 2>&1 || true; fi
test -x /usr/sbin/sshd && command -v ip >/dev/null && command -v tmux >/dev/null
echo "ci-setup-sshd.sh: openssh-server, openssh-client, iproute2 and tmux installed"
