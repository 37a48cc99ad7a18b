#!/usr/bin/env bash
# Score the DS and the CS+DS ensemble of finished Diff-CL runs of bench/real/run.sh, next to
# the CS: `diffcl infer --net ds|ensemble` on each run's final checkpoint (last.safetensors,
# which holds both networks), then `diffcl eval`; prints the summary of each network.
#
#   bench/real/eval_nets.sh [SET] [RUN_NAME]      # default: main, diffcl-default
# Environment: THREADS (2), DIFFCL (the tool, default build/tools/diffcl), RUNS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
set_name="${1:-main}"
name="${2:-diffcl-default}"
runs="${RUNS:-$root/bench/real/runs}"
diffcl="${DIFFCL:-$root/build/tools/diffcl}"
data="$root/bench/real/data/$set_name"
for run in "$runs/$set_name/$name"/seed*/; do
    for net in ds ensemble; do
        [[ -f "$run/metrics-$net.csv" ]] && continue
        "$diffcl" infer --model "$run/last.safetensors" --net "$net" --input "$data/test/images" \
            --output "$run/pred-$net" --threads "${THREADS:-2}" --quiet
        "$diffcl" eval --pred "$run/pred-$net" --label "$data/test/labels" --csv "$run/metrics-$net.csv" \
            --empty diagonal > /dev/null
    done
done
for net in ds ensemble; do
    /usr/bin/python3 "$root/bench/real/summary.py" "$runs/$set_name" "$name" "metrics-$net.csv" | sed "s/^$set_name,/$set_name ($net),/"
done
