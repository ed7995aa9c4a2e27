#!/usr/bin/env bash
# Installs Chromium from Debian when it is missing: the report test loads accel report's page in it, headless.
exec bash "$(dirname "$0")/ensure_debian_package.sh" chromium "Chromium" "the HTML report test in a browser" \
    chromium chromium-browser
