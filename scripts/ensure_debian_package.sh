#!/usr/bin/env bash
# Installs a Debian package when none of its commands is on PATH (as root), else says how to.
# Usage: ensure_debian_package.sh PACKAGE "WHAT IT IS" "WHAT NEEDS IT" COMMAND [COMMAND...]
set -eu
package=$1 what=$2 purpose=$3
shift 3
for cmd in "$@"; do
    if command -v "$cmd" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $what (apt-get install $package)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
else
    echo "setup: $what ($package) is missing and we are not root;" \
         "install it with 'sudo apt-get install $package' to run $purpose" >&2
fi
