#!/usr/bin/env bash
# Run the numeric suites under every BLAS core and convolution kernel family that a user's
# machine may pick, so that no tolerance holds on one CPU only (docs/testing.md, "The matrix").
#
#   ./scripts/test-matrix.sh [BUILD_DIR]      # default: build (already compiled)
#
# OPENBLAS_CORETYPE: unset (OpenBLAS picks for this CPU), SkylakeX (AVX-512), Haswell (AVX2),
# Zen; each with DIFFCL_CONV_KERNEL unset (AVX-512 convolutions where the CPU has them) and
# =blas (cblas_sgemm). SkylakeX needs AVX-512 and is skipped, with a message, on a CPU without
# it. Every test log starts with the OpenBLAS core and the convolution path it ran.
set -euo pipefail
build="${1:-build}"
suites=(tensor autograd fft layer scan mamba loss optim vnet diffusion)
cores=(unset SkylakeX Haswell Zen)
kernels=(default blas)
failed=()
for core in "${cores[@]}"; do
    if [[ "$core" == SkylakeX ]] && ! grep -qw avx512f /proc/cpuinfo; then
        echo "matrix: OPENBLAS_CORETYPE=SkylakeX skipped: this CPU has no AVX-512"
        continue
    fi
    for kernel in "${kernels[@]}"; do
        envs=(env -u OPENBLAS_CORETYPE -u DIFFCL_CONV_KERNEL)
        [[ "$core" != unset ]] && envs+=("OPENBLAS_CORETYPE=$core")
        [[ "$kernel" != default ]] && envs+=("DIFFCL_CONV_KERNEL=$kernel")
        echo "==== matrix: OPENBLAS_CORETYPE=$core DIFFCL_CONV_KERNEL=$kernel"
        args=()
        for s in "${suites[@]}"; do args+=(--suite "$s"); done
        if ! "${envs[@]}" meson test -C "$build" --no-rebuild --print-errorlogs "${args[@]}"; then
            failed+=("OPENBLAS_CORETYPE=$core DIFFCL_CONV_KERNEL=$kernel")
        fi
        grep -m1 -h "^kernels:" "$build/meson-logs/testlog.txt" || true
    done
done
if ((${#failed[@]})); then
    printf 'matrix: FAILED under %s\n' "${failed[@]}"
    exit 1
fi
echo "matrix: every combination passed"
