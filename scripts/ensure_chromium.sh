#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium for the viewer's real-browser test
# (tests/test_viewer_browser.py; playwright drives it and never downloads a browser).
#
# Installs it with apt-get when it is missing and we may: as root, or with passwordless sudo.
# Never fails the build: when it cannot or may not install, it prints one line saying why and
# exits 0, and the browser test skips with its reason. Silent when chromium is already there.
# Set BEVLIB_NO_CHROMIUM_INSTALL=1 to never install.
set -u

CHROMIUM=/usr/bin/chromium
say() { echo "ensure_chromium: $*"; }

[ -x "$CHROMIUM" ] && exit 0
if [ -n "${BEVLIB_NO_CHROMIUM_INSTALL:-}" ]; then
  say "$CHROMIUM missing, not installed (BEVLIB_NO_CHROMIUM_INSTALL is set): the browser test will skip"; exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "$CHROMIUM missing and there is no apt-get (not Debian/Ubuntu): the browser test will skip"; exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  SUDO="sudo -n"   # -n: never prompt for a password in the middle of `make test`
else
  say "$CHROMIUM missing; install it with 'sudo apt-get install -y chromium' (needs root): the browser test will skip"
  exit 0
fi

LOG="$(mktemp "${TMPDIR:-/tmp}/ensure_chromium.XXXXXX.log")"
if $SUDO apt-get update -qq >"$LOG" 2>&1 \
   && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$LOG" 2>&1 \
   && [ -x "$CHROMIUM" ]; then
  say "installed Debian's chromium at $CHROMIUM"
  rm -f "$LOG"
else
  say "apt-get could not install chromium (log: $LOG): the browser test will skip"
fi
exit 0
