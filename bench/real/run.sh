#!/usr/bin/env bash
# The real-MRI development benchmark (issue 15; docs/method.md): supervised and Diff-CL at the
# trainer's defaults on the INIA19 slices built by make_inia19.py, scored on the test slices.
#
#   bench/real/run.sh [SET] [SEEDS]           # default: main, "0 1 2"
#   ITERS=1500 bench/real/run.sh main "0 1 2 3 4"
#   EXTRA="--cps plain" TAG=plain bench/real/run.sh secondary 0   # one factor changed
#
# No validation set: the final model.safetensors is evaluated. Test Dice and HD95 (pixels)
# are computed per slice and averaged per run (HD95 of an empty prediction: the image
# diagonal); the summary prints each seed, mean +- std
# (sample std), and the mean paired difference Diff-CL - supervised with its standard error.
# Environment: ITERS (default 1500), THREADS (2), EXTRA (extra `diffcl train` options for
# Diff-CL only), TAG (run-folder suffix), METHODS ("supervised diffcl"), RUNS (bench/real/runs),
# DIFFCL (the tool, default build/tools/diffcl).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
set_name="${1:-main}"
seeds="${2:-0 1 2}"
iters="${ITERS:-1500}"
threads="${THREADS:-2}"
tag="${TAG:-default}"
runs="${RUNS:-$root/bench/real/runs}"
diffcl="${DIFFCL:-$root/build/tools/diffcl}"
data="$root/bench/real/data/$set_name"
[[ -d "$data" ]] || /usr/bin/python3 "$root/bench/real/make_inia19.py" "$root/bench/real/data"
for seed in $seeds; do
    for method in ${METHODS:-supervised diffcl}; do
        name="$method"
        [[ "$method" == diffcl ]] && name="diffcl-$tag"
        out="$runs/$set_name/$name/seed$seed"
        if [[ ! -f "$out/metrics.csv" ]]; then
            mkdir -p "$(dirname "$out")"
            extra=()
            [[ "$method" == diffcl ]] && read -r -a extra <<< "${EXTRA:-}"
            "$diffcl" train --layout png --data "$data/train" --labeled-list "$data/labeled.list" \
                --method "$method" --iters "$iters" --seed "$seed" --threads "$threads" \
                --out "$out" --overwrite "${extra[@]}" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
            "$diffcl" infer --model "$out/model.safetensors" --input "$data/test/images" \
                --output "$out/pred" --threads "$threads" --quiet
            "$diffcl" eval --pred "$out/pred" --label "$data/test/labels" --csv "$out/metrics.csv" --empty diagonal > /dev/null
        fi
        echo "$set_name $name seed $seed: done"
    done
done
/usr/bin/python3 "$root/bench/real/summary.py" "$runs/$set_name" "diffcl-$tag"
