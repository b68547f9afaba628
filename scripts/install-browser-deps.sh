#!/usr/bin/env bash
# Install what the real-browser tests need: Debian's Chromium (Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` is never used, browser downloads are
# not possible in CI). Playwright's Python package itself comes from pip (the `browser` extra).
# When run as root it also makes sure Debian's own python3 can make a venv: the `make lab` test
# runs `make lab` as a normal user from a fresh copy, and root's Python (pyenv under /root, for
# example) is not readable by a normal user.
# Idempotent; needs root (or sudo) only when something is missing.
set -euo pipefail
CHROMIUM="${FLUFFY_NB_CHROMIUM:-/usr/bin/chromium}"
MISSING=()
if [ -x "$CHROMIUM" ]; then
    echo "chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
else
    MISSING+=(chromium fonts-dejavu-core)
fi
if [ "$(id -u)" = "0" ] && ! /usr/bin/python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    MISSING+=(python3 python3-venv)
fi
if [ ${#MISSING[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "${MISSING[*]} missing and not root: apt-get install -y ${MISSING[*]} (the browser tests will be skipped)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${MISSING[@]}"
"$CHROMIUM" --version || true
