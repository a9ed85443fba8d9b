#!/usr/bin/env bash
# Installs what the dashboard's browser tests (server/tests/dashboard_browser.rs) need:
#   * Debian's chromium and chromium-driver (the headless browser and its WebDriver server,
#     driven from Rust with fantoccini);
#   * axe-core from npm (the accessibility checker the tests inject into each page), into a
#     fixed cache dir: $SKYCAT_AXE_DIR, default /var/cache/skycat-ci/axe-core
#     (the file the tests read is $SKYCAT_AXE_DIR/node_modules/axe-core/axe.min.js).
# Idempotent: each piece is skipped when it is already there.
set -euo pipefail
axe_dir=${SKYCAT_AXE_DIR:-/var/cache/skycat-ci/axe-core}

apt_updated=
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "ci-setup-chromium.sh: must run as root to apt-get install $*" >&2
    exit 1
  fi
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium already installed ($(chromium --version 2>/dev/null | head -1))"
else
  # fonts-liberation: metric-compatible fonts, so that screenshots have readable text.
  apt_install chromium chromium-driver fonts-liberation
  command -v chromedriver >/dev/null 2>&1 || { echo "chromium-driver installed but chromedriver is not on PATH" >&2; exit 1; }
  echo "chromium installed ($(chromium --version 2>/dev/null | head -1))"
fi

if [ -s "$axe_dir/node_modules/axe-core/axe.min.js" ]; then
  echo "axe-core already installed in $axe_dir"
else
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  mkdir -p "$axe_dir"
  npm install --prefix "$axe_dir" --silent --no-fund --no-audit --no-save axe-core@4 >/dev/null
  test -s "$axe_dir/node_modules/axe-core/axe.min.js" || { echo "axe-core installed but axe.min.js is missing in $axe_dir" >&2; exit 1; }
  echo "axe-core installed in $axe_dir"
fi
