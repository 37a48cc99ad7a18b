#!/usr/bin/env bash
# Throughput on a shared machine (issue 23; docs/performance.md, "Shared machines and
# containers"): the 2-D training iteration and 3-D sliding-window inference, ours and PyTorch's,
# in four conditions, with the slowdown against running alone:
#   alone      nothing else running;
#   busy1      one competing single-threaded busy process (a shell loop);
#   busy2      two of them;
#   pair       two copies of the same workload side by side (total throughput: the sum of the
#              two rates over the rate alone; 1.0 = no loss).
#
#   bench/contention.sh [BUILD_DIR]          # default build
# Environment: THREADS (ours: the library's default, the usable CPUs following the load;
# PyTorch: the number of CPUs; a number fixes both), ITERS (150, training iterations; the median excludes the first 20),
# INFER_VOLUME (80,80,64), INFER_PATCH (64,64,48), REPS (3, inference runs per measurement),
# TORCH (1; 0 skips PyTorch), PYTHON (/usr/bin/python3). Any OMP_* / GOMP_* variable set by the
# caller reaches both sides, and DIFFCL_ADAPT_THREADS=0 turns our adaptation off.
# Run it on an otherwise idle machine: it makes its own competition.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../build}"
threads="${THREADS:-}"
torch_threads="${THREADS:-$(nproc)}"
iters="${ITERS:-150}"
volume="${INFER_VOLUME:-80,80,64}"
patch="${INFER_PATCH:-64,64,48}"
reps="${REPS:-3}"
python="${PYTHON:-/usr/bin/python3}"
work="$(mktemp -d /tmp/diffcl-contention.XXXXXX)"
busy_pids=()
cleanup() {
    [[ ${#busy_pids[@]} -gt 0 ]] && kill "${busy_pids[@]}" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# Each workload prints one number: milliseconds per unit of work (iteration or volume).
train_ours() { # $1: a tag that keeps parallel copies apart
    "$build/tools/diffcl" train --layout phantom --dims 2 --iters "$iters" --method supervised \
        --threads "${threads:-0}" --out "$work/train-$1" --overwrite > /dev/null 2>&1 || return 1
    # log.csv's seconds column: the median time per iteration after the first 20 (allocation
    # warm-up; the median, because single iterations of a shared VM jump by 50 %)
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") c = i; next }
             NR > 21 { print 1000 * $c }' "$work/train-$1/log.csv" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.2f\n", v[int((NR + 1) / 2)] }'
}
train_torch() {
    "$python" "$here/torch_train.py" --size 96,96 --batch 2 --reps 20 --threads "$torch_threads" |
        awk '$1 == "RESULT" && $2 == "wall_ms" { print $3 }'
}
infer_ours() {
    "$build/bench/bench_infer" --child --volume "$volume" --patch "$patch" --reps "$reps" \
        --threads "${threads:-0}" | awk '$1 == "RESULT" && $2 == "wall_ms" { print $3 }'
}
infer_torch() {
    "$python" "$here/torch_infer.py" --volume "$volume" --patch "$patch" --reps "$reps" \
        --threads "$torch_threads" | awk '$1 == "RESULT" && $2 == "wall_ms" { print $3 }'
}

busy_start() {
    for ((k = 0; k < $1; k++)); do
        (while :; do :; done) &
        busy_pids+=($!)
    done
}
busy_stop() {
    [[ ${#busy_pids[@]} -gt 0 ]] && kill "${busy_pids[@]}" 2>/dev/null
    wait "${busy_pids[@]}" 2>/dev/null
    busy_pids=()
}

row() { # name function
    local name="$1" fn="$2" alone b1 b2 p1 p2 pair
    alone="$($fn a)"
    busy_start 1; b1="$($fn b)"; busy_stop
    busy_start 2; b2="$($fn c)"; busy_stop
    $fn p > "$work/p1" & local pid=$!
    p2="$($fn q)"; wait "$pid"; p1="$(cat "$work/p1")"
    pair="$(awk -v a="$alone" -v x="$p1" -v y="$p2" 'BEGIN { printf "%.2f", (a / x + a / y) }')"
    printf "| %s | %.1f | %.1f (%.2fx) | %.1f (%.2fx) | %s |\n" "$name" "$alone" "$b1" \
        "$(awk -v a="$alone" -v b="$b1" 'BEGIN { print b / a }')" "$b2" \
        "$(awk -v a="$alone" -v b="$b2" 'BEGIN { print b / a }')" "$pair"
}

echo "contention: $(nproc) CPUs, threads: ours ${threads:-default}, PyTorch $torch_threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
env | grep -E '^(OMP_|GOMP_|DIFFCL_ADAPT)' | sed 's/^/  env /'
echo "load average before: $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| workload | alone (ms) | 1 busy process | 2 busy processes | two side by side: total throughput |"
echo "|---|---|---|---|---|"
row "2-D training iteration, libdiffcl" train_ours
[[ "${TORCH:-1}" == 1 ]] && row "2-D training iteration, PyTorch" train_torch
row "3-D sliding window ${volume}, libdiffcl" infer_ours
[[ "${TORCH:-1}" == 1 ]] && row "3-D sliding window ${volume}, PyTorch" infer_torch
echo
echo "load average after: $(cut -d' ' -f1 /proc/loadavg)"
