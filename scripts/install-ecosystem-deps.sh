#!/usr/bin/env bash
# Debian packages the ecosystem checks need: headless Chromium (driven by selenium through
# chromium-driver) opens the built docs site
# (tests/integration/test_ecosystem.py). Quick when present; apt runs only for missing packages.
set -euo pipefail
PACKAGES=(chromium chromium-driver fonts-dejavu-core)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-ecosystem-deps: all packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-ecosystem-deps: missing packages (${missing[*]}); run as root or install them" >&2
  exit 1
fi
echo "install-ecosystem-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
