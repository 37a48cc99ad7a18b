#!/bin/sh
# Side-by-side conv timings: for each V-Net shape, PyTorch (bench/torch_conv.py) then
# libdiffcl (bench_conv) right after it, so both see the same machine load; prints
# bench_conv's rows with the torch/ours ratios (>1: libdiffcl faster).
#   bench/compare_conv.sh BUILD_DIR [extra args for both, e.g. --reps 5 --min]
# Run from the repository root; needs Debian's /usr/bin/python3 with torch.
set -eu
build="${1:?usage: $0 BUILD_DIR [--reps N] [--min] [--threads T]}"
shift
bench="${BENCH_CONV:-$build/bench/bench_conv}" # BENCH_CONV: another bench_conv binary
tags="in1 c16 dn16 c32 dn32 c64 dn64 c128 dn128 c256 up256 up128 up64 up32 out16"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
first=1
for t in $tags; do
    /usr/bin/python3 bench/torch_conv.py --only "$t" --out "$tmp/$t.txt" "$@" > "$tmp/$t.torch.log"
    cat "$tmp/$t.txt" >> "$tmp/all.txt"
    if [ $first = 1 ]; then
        head -2 "$tmp/$t.torch.log" | sed 's/^/# /'
        "$bench" --only "$t" --torch "$tmp/$t.txt" "$@" | grep -v '^total\|^peak'
        first=0
    else
        "$bench" --only "$t" --torch "$tmp/$t.txt" "$@" | sed -n '4p'
    fi
done
