#!/usr/bin/env bash
# Installs Debian's PostgreSQL server (initdb, pg_ctl, postgres, psql under
# /usr/lib/postgresql/<version>/bin): the state-store and replica tests start throwaway clusters
# with it (testkit/src/postgres.rs). The package's own cluster is not needed and is stopped.
# Idempotent: a quick no-op when the binaries are present.
set -euo pipefail
have() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; }
if have && id postgres >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ci-setup-postgres.sh: must run as root to apt-get install postgresql" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package starts a cluster on port 5432 where an init system runs; the tests start their own.
if command -v service >/dev/null 2>&1; then service postgresql stop >/dev/null 2>&1 || true; fi
have && id postgres >/dev/null
echo "ci-setup-postgres.sh: postgresql installed ($(ls -d /usr/lib/postgresql/*/ | xargs -n1 basename | tr '\n' ' '))"
