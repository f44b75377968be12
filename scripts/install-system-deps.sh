#!/usr/bin/env bash
# Installs the system packages the tests need, when they are missing: PostgreSQL's server
# (the tests start a throwaway cluster) and Chromium (the page tests drive it with
# Playwright, which cannot download its own browsers here). Debian's packages only.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  missing+=(postgresql)
fi
if ! command -v runuser >/dev/null; then
  missing+=(util-linux)
fi
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  missing+=(chromium fonts-dejavu-core)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts a cluster on install; the tests run their own.
$SUDO service postgresql stop >/dev/null 2>&1 || true
