#!/usr/bin/env bash
# Set up the machine, build libdiffcl and run the main job: `diffcl demo`, a short
# semi-supervised training run on the built-in synthetic phantom data set.
#
#   ./scripts/run-demo.sh [demo options...]  # extra arguments go to `diffcl demo`
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

exec "$build/tools/diffcl" demo "$@"
