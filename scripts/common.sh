# shellcheck shell=bash
# Shared by run-tests.sh, run-demo.sh and .ci/run (sourced, not executed).
# Sets ROOT (the repository root) and provides diffcl_configure.

# shellcheck disable=SC2034  # used by the scripts that source this file
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# diffcl_configure BUILD_DIR [meson options...]
# `meson setup` a new build folder, or reconfigure an existing one with the given options
# (a folder left half-configured by an interrupted run is wiped and set up again).
diffcl_configure() {
    local dir="$1"
    shift
    if [[ -f "$dir/meson-private/coredata.dat" ]]; then
        if ! meson setup --reconfigure "$dir" "$@"; then
            echo "meson reconfigure of $dir failed; wiping and setting up again" >&2
            meson setup --wipe "$dir" "$@"
        fi
    else
        meson setup "$dir" "$@"
    fi
}
