#!/usr/bin/env bash
# Install the Debian packages Reunite needs at runtime.
#
#   fonts-noto-cjk        Noto Sans CJK SC: Chinese flyers (no tofu boxes)
#   libharfbuzz-subset0   WeasyPrint subsets fonts with HarfBuzz; without it a
#                         Chinese flyer takes ~10 s (fontTools on a huge font)
#   libpango-1.0-0, libpangoft2-1.0-0
#                         text layout libraries WeasyPrint loads through cffi
#   fonts-dejavu-core     a Latin fallback font
#   fontconfig            fc-cache / fc-match (font discovery)
#   libgl1, libglib2.0-0  opencv-python (pulled in by insightface) needs them at import
#
# With --test (as `make test` calls it), also what only the tests need:
#
#   chromium              the browser tests/test_sandbox_browser.py drives with Playwright
#                         (Playwright cannot download its own browsers here)
#
# Idempotent: exits quickly when everything is already installed.
set -euo pipefail

PACKAGES=(
  fonts-noto-cjk
  fonts-dejavu-core
  fontconfig
  libharfbuzz-subset0
  libpango-1.0-0
  libpangoft2-1.0-0
  libgl1
  libglib2.0-0
)
if [ "${1:-}" = "--test" ]; then
  PACKAGES+=(chromium)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  # Like `dpkg -s`, but also rejects packages removed with their config files left
  # behind (status "deinstall ok config-files"), for which `dpkg -s` still succeeds.
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: all packages already installed"
  exit 0
fi

echo "system-deps: missing: ${missing[*]}"

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo)
else
  echo "system-deps: not root and no passwordless sudo. Run as root (or: sudo $0):" >&2
  echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

# Wait for the dpkg lock instead of failing when another apt run is in progress.
LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
"${SUDO[@]}" apt-get "${LOCK_WAIT[@]}" update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get "${LOCK_WAIT[@]}" install -y --no-install-recommends "${missing[@]}"

# Build the fontconfig cache now, so the first CJK render is not the slow one.
if command -v fc-cache >/dev/null 2>&1; then
  fc-cache -f >/dev/null 2>&1 || true
fi
echo "system-deps: done"
