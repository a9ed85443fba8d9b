#!/usr/bin/env bash
# Install moto's server (the AWS EC2 emulator the fetchers' tests start on a loopback port).
# Idempotent: does nothing when `python3 -m moto.server` is already importable.
set -euo pipefail
if python3 -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
  echo "moto[server] already installed ($(python3 -c 'import moto; print(moto.__version__)'))"
  exit 0
fi
if ! command -v python3 >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3 python3-pip >/dev/null
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
fi
# Debian's system Python refuses global installs without --break-system-packages (PEP 668).
python3 -m pip install --quiet 'moto[server]' \
  || python3 -m pip install --quiet --break-system-packages 'moto[server]'
python3 -c 'import moto.server' && echo "moto[server] installed"
