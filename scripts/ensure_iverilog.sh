#!/usr/bin/env bash
# Installs Icarus Verilog (the second simulator) from Debian when it is missing.
exec bash "$(dirname "$0")/ensure_debian_package.sh" iverilog "Icarus Verilog" "the Icarus tests" iverilog
