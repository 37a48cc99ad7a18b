#!/bin/sh
# Run every libdiffcl benchmark with PyTorch side by side and print one table.
#
#   bench/run-all.sh [BUILD_DIR] [OUT_DIR]
#
# BUILD_DIR: a configured build with the bench programs (default: build). OUT_DIR: where the
# full logs go (default: a new folder under /tmp). Environment:
#   THREADS=2      threads for ours and for torch (OMP/OPENBLAS/MKL_NUM_THREADS are set too)
#   REPS=3         timed runs per measurement (one more, discarded, runs first)
#   FULL=0         1: the issues' full sizes (V-Net 112x112x80, every conv shape at 112x112x80,
#                  both scan lengths); 0: small sizes that finish in a few minutes on 2 cores
#   VNET_SIZE, TRAIN_PATCH, CONV_ONLY   override the sizes (see each program's --help)
#   INFER_VOLUME, INFER_PATCH           bench_infer's volume and window (FULL=1: 144,144,96 and
#                  the LA patch 112,112,80; FULL=0: 80,80,64 and 64,64,48); strides stay LA's 18,18,4
#   TORCH_SCAN=chunked  bench_train's PyTorch Diff-CL / CS scan (chunked, loop or autograd)
#   TRAIN_ROUNDS=3 bench_train runs each 2-D row this many times, alternating, and keeps each
#                  row's median round (a whole process sometimes runs ~25 % slower on shared VMs)
#   PYTHON=/usr/bin/python3             the interpreter with torch (Debian's torch 1.13)
#   SCAN_TORCH=1   0: skip the selective scan's PyTorch reference (minutes on 2 cores)
#   DIFFCL_ALLOC_CACHE=0   measure the library without its block cache (passed on to every child)
# The ratio column is ours / torch in time (below 1: libdiffcl is faster; issue 8's target is
# <= 0.8), except rows with unit "x" (thread speed-ups, higher is better), "MiB" (memory) and
# the train row *_over_OUR_supervised_* (Diff-CL iteration over our supervised one, target <= 3).
# Numbers depend on the load of the machine: the load average is printed before and after.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
out=${2:-$(mktemp -d /tmp/diffcl-bench.XXXXXX)}
mkdir -p "$out"
THREADS=${THREADS:-2}
REPS=${REPS:-3}
FULL=${FULL:-0}
PYTHON=${PYTHON:-/usr/bin/python3}
if [ "$FULL" = 1 ]; then
    VNET_SIZE=${VNET_SIZE:-112,112,80}
    CONV_ONLY=${CONV_ONLY:-}
    INFER_VOLUME=${INFER_VOLUME:-144,144,96}
    INFER_PATCH=${INFER_PATCH:-112,112,80}
    SCAN_QUICK=
else
    VNET_SIZE=${VNET_SIZE:-64,64,48}
    CONV_ONLY=${CONV_ONLY:-c32,dn32,c64,c128,c256,up64}
    INFER_VOLUME=${INFER_VOLUME:-80,80,64}
    INFER_PATCH=${INFER_PATCH:-64,64,48}
    SCAN_QUICK=--quick
fi
# the scan's PyTorch anchor (a Python loop over tokens with autograd) takes minutes; SCAN_TORCH=0 skips it
SCAN_TORCH=${SCAN_TORCH:-1}
[ "$SCAN_TORCH" = 0 ] && SCAN_QUICK="$SCAN_QUICK --no-torch"
TRAIN_PATCH=${TRAIN_PATCH:-224,192}
TORCH_SCAN=${TORCH_SCAN:-chunked}
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
export DIFFCL_BENCH_DIR="$here"
bin="$build/bench"
for p in bench_conv bench_scan bench_vnet bench_train bench_infer; do
    [ -x "$bin/$p" ] || echo "run-all: $bin/$p not built (skipped)" >&2
done

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo "machine: ${cpu:-unknown}, $(nproc) cores; threads $THREADS, reps $REPS, FULL=$FULL, block cache ${DIFFCL_ALLOC_CACHE:-1}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "logs: $out"

only_arg=
[ -n "$CONV_ONLY" ] && only_arg="--only $CONV_ONLY"
if [ -x "$bin/bench_conv" ]; then
    echo "== conv" >&2
    # shellcheck disable=SC2086
    "$PYTHON" "$here/torch_conv.py" --reps "$REPS" --threads "$THREADS" $only_arg \
        --out "$out/torch_conv.txt" > "$out/torch_conv.log" 2>&1
    # shellcheck disable=SC2086
    "$bin/bench_conv" --reps "$REPS" --threads "$THREADS" $only_arg > "$out/conv.log" 2>&1
fi
if [ -x "$bin/bench_scan" ]; then
    echo "== scan" >&2
    # shellcheck disable=SC2086
    "$bin/bench_scan" --threads "$THREADS" --reps "$REPS" --python "$PYTHON" $SCAN_QUICK \
        > "$out/scan.log" 2>&1
fi
if [ -x "$bin/bench_vnet" ]; then
    echo "== vnet" >&2
    "$bin/bench_vnet" --size "$VNET_SIZE" --reps "$REPS" --threads "$THREADS" --scaling \
        --python "$PYTHON" > "$out/vnet.log" 2>&1
fi
if [ -x "$bin/bench_train" ]; then
    echo "== train" >&2
    "$bin/bench_train" --patch "$TRAIN_PATCH" --reps "$REPS" --threads "$THREADS" \
        --rounds "${TRAIN_ROUNDS:-3}" --python "$PYTHON" --torch-scan "$TORCH_SCAN" \
        > "$out/train.log" 2>&1
fi
if [ -x "$bin/bench_infer" ]; then
    echo "== infer" >&2
    "$bin/bench_infer" --volume "$INFER_VOLUME" --patch "$INFER_PATCH" --stride 18,18,4 \
        --reps "$REPS" --threads "$THREADS" --python "$PYTHON" > "$out/infer.log" 2>&1
fi

# one table: bench item ours torch unit ours/torch
{
    # conv: ours from bench_conv's rows (tag ch k fwd GF dX GF dW GF ...), torch from --out
    if [ -s "$out/conv.log" ] && [ -s "$out/torch_conv.txt" ]; then
        awk 'NR == FNR { t[$1] = $2 " " $3 " " $4; next }
             ($1 in t) && NF >= 9 && $4 + 0 > 0 {
                 split(t[$1], r, " ")
                 printf "conv %s_fwd %s %s ms\n", $1, $4, r[1]
                 printf "conv %s_dX %s %s ms\n", $1, $6, r[2]
                 printf "conv %s_dW %s %s ms\n", $1, $8, r[3]
             }' "$out/torch_conv.txt" "$out/conv.log"
        sed -n 's/^sgemm 2048^3: \([0-9.]*\) GFLOP.*/conv sgemm_peak \1 nan GFLOP\/s/p' "$out/conv.log"
    fi
    # scan, by section: "selective scan" rows "L impl fwd fwdbwd ..." (impl diffcl / torch /
    # torch-ref), "FFT split" rows "impl fwd fwdbwd", "HF-Mamba module" rows (ours only)
    if [ -s "$out/scan.log" ]; then
        awk '/^selective scan/ { sec = "scan"; next }
             /^FFT split/ { sec = "fft"; next }
             /^HF-Mamba module/ { sec = "hfm"; next }
             sec == "scan" && $2 == "diffcl" && NF >= 4 { of[$1] = $3; ob[$1] = $4 }
             sec == "scan" && $2 ~ /^torch/ && NF >= 4 { tf[$1] = $3; tb[$1] = $4 }
             sec == "fft" && $1 == "diffcl" && NF == 3 { ff = $2; fb = $3 }
             sec == "fft" && $1 == "torch.fft" && NF == 3 { gf = $2; gb = $3 }
             sec == "hfm" && $1 == "diffcl" && NF == 3 { hf = $2; hb = $3 }
             END {
                 for (L in of) {
                     printf "scan fwd_L%s %s %s ms\n", L, of[L], (L in tf) ? tf[L] : "nan"
                     printf "scan fwdbwd_L%s %s %s ms\n", L, ob[L], (L in tb) ? tb[L] : "nan"
                 }
                 if (ff != "") {
                     printf "scan fft_split_fwd %s %s ms\n", ff, gf == "" ? "nan" : gf
                     printf "scan fft_filter_fwdbwd %s %s ms\n", fb, gb == "" ? "nan" : gb
                 }
                 if (hf != "") {
                     printf "scan hf_mamba_fwd %s nan ms\n", hf
                     printf "scan hf_mamba_fwdbwd %s nan ms\n", hb
                 }
             }' "$out/scan.log"
    fi
    for f in vnet train infer; do
        [ -s "$out/$f.log" ] && sed -n 's/^SUMMARY //p' "$out/$f.log"
    done
} > "$out/summary.txt"

echo
printf '%-6s %-40s %11s %11s %-7s %10s\n' bench item ours torch unit ours/torch
awk '{ r = ($3 + 0 > 0 && $4 + 0 > 0 && $4 != "nan") ? sprintf("%.2f", $3 / $4) : "-"
       printf "%-6s %-40s %11s %11s %-7s %10s\n", $1, $2, $3, $4, $5, r }' "$out/summary.txt"
echo "(row *_over_OUR_*: the torch column holds our own supervised iteration, the ratio is issue 7's"
echo " Diff-CL / supervised cost, target <= 3; rows in x: thread speed-ups 1 -> $THREADS, higher is better;"
echo " train *_vs_torch_diffcl_* / *_vs_torch_cs_step_*: against bench/torch_diffcl.py, scan $TORCH_SCAN;"
echo " infer: sliding window over 1x$(echo "$INFER_VOLUME" | tr , x), windows $(echo "$INFER_PATCH" | tr , x) at the LA strides 18,18,4)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
for f in conv scan vnet train infer; do
    [ -s "$out/$f.log" ] || continue
    if grep -qiE 'failed|error|usage:' "$out/$f.log"; then
        echo "run-all: $f reported an error, see $out/$f.log" >&2
    fi
done
exit 0
