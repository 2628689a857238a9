#!/usr/bin/env bash
# The Debian packages spendtrail needs beyond Python: Pango and a font for WeasyPrint, which
# renders PDF statements (docs/reports.md). Installs only what is missing; where apt-get is not
# available or we are not root, says what to install and carries on (PDF is the only user).
set -euo pipefail
packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "PDF statements need these system packages: ${missing[*]} (apt-get install them)" >&2
fi
