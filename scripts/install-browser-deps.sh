#!/usr/bin/env bash
# Install what the real-browser tests need: Debian's Chromium (Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` is never used, browser downloads are
# not possible in CI). Playwright's Python package itself comes from pip (the `browser` extra).
# Idempotent; needs root (or sudo) only when chromium is missing.
set -euo pipefail
CHROMIUM="${FLUFFY_NB_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "chromium missing and not root: apt-get install -y chromium (the browser tests will be skipped)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
"$CHROMIUM" --version || true
