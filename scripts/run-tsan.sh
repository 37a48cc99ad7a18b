#!/usr/bin/env bash
# ThreadSanitizer build and run (docs/testing.md, "Concurrency"). Not part of CI: the build alone
# takes longer than CI's budget for it on 2 cores.
#
#   ./scripts/run-tsan.sh                        # the threaded suites (list below)
#   ./scripts/run-tsan.sh concurrency            # one test; other arguments go to `meson test`
#
# Why it is set up this way:
# - clang-14 with its own OpenMP runtime (libomp, Debian's libomp-14-dev) and its TSan tool
#   Archer (libarcher.so), which tells TSan what OpenMP's barriers and locks order. Under GCC's
#   libgomp, TSan sees none of that and reports every parallel region.
# - libopenblas (Debian's OpenMP build, selected by scripts/setup.sh) and libfftw3f_omp are
#   linked against libgomp.so.1: a folder in LD_LIBRARY_PATH maps that name to libomp (which
#   implements libgomp's ABI), so that one OpenMP runtime runs everything.
# - ignore_noninstrumented_modules=1: libomp itself is not instrumented; without it TSan reports
#   libomp's own memory reuse (memset / free inside __kmp_*), which Archer's start-up message
#   asks for too. Our code, the tests and every access made from them stay checked.
# - CK_FORK=no: Archer crashes in Check's forked test processes.
#
# Environment: DIFFCL_TSAN_BUILD_DIR (default build-tsan), DIFFCL_SKIP_SETUP as usual.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

build="${DIFFCL_TSAN_BUILD_DIR:-build-tsan}"
command -v clang-14 >/dev/null || { echo "run-tsan: clang-14 is not installed" >&2; exit 2; }
CC=clang-14 diffcl_configure "$build" -Db_sanitize=thread -Db_lundef=false -Dbench=false \
    -Dexamples=false -Dtest_scale=4
meson compile -C "$build"

libomp="$(ldd "$build/lib/libdiffcl.so" | awk '$1 == "libomp.so.5" { print $3 }')"
[[ -n "$libomp" ]] || { echo "run-tsan: libdiffcl.so is not linked with libomp (libomp-14-dev?)" >&2; exit 2; }
archer="$(dirname "$libomp")/libarcher.so"
[[ -f "$archer" ]] || { echo "run-tsan: $archer not found (libomp-14-dev)" >&2; exit 2; }
libdir="$(mktemp -d)"
trap 'rm -rf "$libdir"' EXIT
ln -s "$libomp" "$libdir/libgomp.so.1"

export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_TOOL_LIBRARIES="$archer"
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 ignore_noninstrumented_modules=1 exitcode=66"
export CK_FORK=no DIFFCL_SKIP_INSTALL_TEST=1
if [[ $# -eq 0 ]]; then
    # every suite of the library's own code; abi, python, cli, examples and fuzz load the
    # library into programs built without TSan (python, the installed-library test) or test the
    # tool's text, not threads
    set -- --suite core --suite tensor --suite autograd --suite layer --suite fft --suite scan \
        --suite mamba --suite loss --suite optim --suite data --suite metrics --suite io \
        --suite vnet --suite diffusion --suite train
fi
meson test -C "$build" --no-rebuild --print-errorlogs --timeout-multiplier 10 "$@"
