#!/usr/bin/env bash
# The Debian packages spendtrail needs beyond Python: Pango and a font for WeasyPrint, which
# renders PDF statements (docs/reports.md), Chromium, which the web console's browser
# tests drive (tests/test_web_console.py), and docker-compose, which validates compose.yaml
# (tests/test_deploy.py). Installs only what is missing; where apt-get is not
# available or we are not root, says what to install and carries on (PDF statements and the
# tests that use them are the only users; the tests skip, saying why).
set -euo pipefail
packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core chromium
  docker-compose)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # A mirror that cannot be reached is no reason to stop: the tests that need a package skip.
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" \
    || echo "apt-get could not install ${missing[*]}; the tests that need them will skip" >&2
else
  echo "PDF statements, the browser tests and the compose check need these system packages: ${missing[*]}" \
    "(apt-get install them)" >&2
fi
