#!/usr/bin/env bash
# The whole test suite: installs what the tests need (moto's server, openssh-server, iproute2 —
# each scripts/ci-setup-*.sh is idempotent), then runs every workspace test.
#
# The cargo target dir defaults to a cache outside the clone (under the system temp dir), so
# repeated runs on one machine reuse the build; a machine without it builds from scratch.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/skycat-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
for setup in scripts/ci-setup-*.sh; do
    [ -e "$setup" ] || continue
    echo "== $setup"
    bash "$setup"
done
echo "== cargo test --workspace (target dir: $CARGO_TARGET_DIR)"
cargo test --workspace --locked "$@"
