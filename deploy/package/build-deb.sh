#!/usr/bin/env bash
# Builds the Debian package from an existing build dir: kvd_<version>_<arch>.deb in that dir.
#   deploy/package/build-deb.sh [BUILD_DIR]      (default: build)
# Install it with `apt-get install ./kvd_*.deb` (apt resolves the runtime libraries).
set -euo pipefail
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="$(cd "${1:-$REPO_DIR/build}" && pwd)"
cmake -DCMAKE_INSTALL_PREFIX=/usr "$BUILD_DIR" >/dev/null
cmake --build "$BUILD_DIR" --target kvd kvctl -- -j2
(cd "$BUILD_DIR" && cpack -G DEB >/dev/null)
ls "$BUILD_DIR"/kvd_*.deb
