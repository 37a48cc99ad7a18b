#!/usr/bin/env bash
# Set up the machine, build libdiffcl and run its unit tests.
#
#   ./scripts/run-tests.sh                   # every suite
#   ./scripts/run-tests.sh --suite tensor    # extra arguments go to `meson test`
#
# Environment: DIFFCL_BUILD_DIR (default: build), DIFFCL_SKIP_SETUP=1 (skip apt/alternatives).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

./scripts/setup.sh
build="${DIFFCL_BUILD_DIR:-build}"
diffcl_configure "$build"
meson compile -C "$build"
meson test -C "$build" --print-errorlogs "$@"
