#!/usr/bin/env bash
# Installs Icarus Verilog (the second simulator) from Debian when it is missing.
set -eu
if command -v iverilog >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Icarus Verilog (apt-get install iverilog)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null
else
    echo "setup: Icarus Verilog (iverilog) is missing and we are not root;" \
         "install it with 'sudo apt-get install iverilog' to run the Icarus tests" >&2
fi
