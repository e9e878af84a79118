#!/usr/bin/env bash
# Runs the whole test suite (unit, simulation, end-to-end against real etcd) from ./build.
# Ends with ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
ctest --test-dir build --output-on-failure -j2 --timeout 900
