#!/usr/bin/env bash
# Install what libdiffcl needs on Debian 12 (bookworm) and select the OpenMP OpenBLAS.
#
#   ./scripts/setup.sh          # installs only what is missing; quick when nothing is
#
# Idempotent: one dpkg-query decides; apt-get runs (update once, then install) only when a
# package is missing. Uses sudo when not root. Environment:
#   DIFFCL_SKIP_SETUP=1   do nothing (a machine prepared by other means)
set -euo pipefail

if [[ -n "${DIFFCL_SKIP_SETUP:-}" ]]; then
    exit 0
fi

PACKAGES=(
    # build
    meson ninja-build pkg-config gcc g++
    # libraries linked by libdiffcl and its tests
    libopenblas-dev libopenblas0-openmp libfftw3-dev libpng-dev check libcjson-dev
    libhdf5-dev libnifti2-dev zlib1g-dev
    # PyTorch reference generators (tests/reference/*.py, run with /usr/bin/python3)
    python3-torch python3-numpy python3-scipy python3-h5py python3-nibabel python3-pil
    # ABI checks and memory debugging
    abigail-tools valgrind
)

log() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v dpkg-query >/dev/null 2>&1; then
    log "not a Debian system (no dpkg-query): install the equivalents of"
    log "  ${PACKAGES[*]}"
    log "by hand, then run the build; continuing without installing anything"
    exit 0
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

as_root() {
    if [[ "$(id -u)" -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        log "need root (or sudo) to run: $*"
        return 1
    fi
    "${SUDO[@]}" "$@"
}

# --- packages --------------------------------------------------------------------------
installed="$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" 2>/dev/null |
             awk '$2 == "installed" { print $1 }' || true)"
missing=()
for p in "${PACKAGES[@]}"; do
    if ! grep -qxF "$p" <<<"$installed"; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- one OpenMP pool for BLAS and our kernels -----------------------------------------
# Debian's default libopenblas.so.0 is the pthread build, whose thread pool spins against
# libgomp's; the OpenMP build shares libgomp's pool with our `#pragma omp` kernels.
multiarch="$(gcc -print-multiarch 2>/dev/null || true)"
multiarch="${multiarch:-x86_64-linux-gnu}"
libdir="/usr/lib/${multiarch}"

select_alternative() { # name wanted-path
    local name="$1" want="$2" current
    [[ -e "$want" ]] || return 0
    # Only when the alternative group exists and lists the wanted path.
    if ! update-alternatives --list "$name" 2>/dev/null | grep -qxF "$want"; then
        return 0
    fi
    current="$(update-alternatives --query "$name" 2>/dev/null | awk '/^Value:/ { print $2 }')"
    if [[ "$current" != "$want" ]]; then
        log "update-alternatives --set $name $want"
        # A preference for speed, not a requirement: warn and go on when it cannot be set.
        as_root update-alternatives --set "$name" "$want" >/dev/null ||
            log "warning: could not select $want (BLAS and OpenMP may oversubscribe the cores)"
    fi
}

if command -v update-alternatives >/dev/null 2>&1; then
    select_alternative "libopenblas.so.0-${multiarch}" "${libdir}/openblas-openmp/libopenblas.so.0"
    select_alternative "libblas.so.3-${multiarch}" "${libdir}/openblas-openmp/libblas.so.3"
    select_alternative "liblapack.so.3-${multiarch}" "${libdir}/openblas-openmp/liblapack.so.3"
fi
