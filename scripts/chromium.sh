#!/usr/bin/env bash
# Debian's Chromium and its WebDriver for the console's browser tests (tests/browser/), installed
# from the distribution's packages if missing, as scripts/postgres.sh does for PostgreSQL.
# `eval "$(scripts/chromium.sh)"` exports MLC_CHROMIUM and MLC_CHROMEDRIVER.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing Chromium from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" = "0" ] || SUDO="sudo"
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq chromium chromium-driver >&2
fi
echo "export MLC_CHROMIUM=$(command -v chromium)"
echo "export MLC_CHROMEDRIVER=$(command -v chromedriver)"
