#!/usr/bin/env bash
# Score finished runs of bench/real/run.sh on their set's *unlabeled training slices*: the
# training-side check used to choose options (docs/method.md). These slices' images are read
# in training (as unlabeled data) but their labels never are; the test slices are not touched.
# Writes seed<k>/metrics-train.csv next to each run's metrics.csv and prints the summary.
#
#   bench/real/eval_train.sh [SET] [RUN_NAME ...]   # default: main-dev, supervised diffcl-default
# Environment: THREADS (2), DIFFCL (the tool, default build/tools/diffcl), RUNS, NET (cs; ds or
# ensemble score that network of Diff-CL runs from last.safetensors, into metrics-train-NET.csv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
set_name="${1:-main-dev}"
shift || true
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(supervised diffcl-default)
runs="${RUNS:-$root/bench/real/runs}"
diffcl="${DIFFCL:-$root/build/tools/diffcl}"
data="$root/bench/real/data/$set_name"
net="${NET:-cs}"
model=model.safetensors suffix=""
[[ "$net" == cs ]] || { model=last.safetensors; suffix="-$net"; }
# the unlabeled training slices, from the split the set was made with
side="$(mktemp -d)"
trap 'rm -rf "$side"' EXIT
mkdir -p "$side/images" "$side/labels"
for z in $(sed -n 's/^unlabeled \[\(.*\)\]/\1/p' "$data/split.txt" | tr -d ','); do
    f="$(printf 'z%03d.png' "$z")"
    ln -s "$data/train/images/$f" "$side/images/$f"
    ln -s "$data/train/labels/$f" "$side/labels/$f"
done
for name in "${names[@]}"; do
    for run in "$runs/$set_name/$name"/seed*/; do
        [[ "$net" != cs && "$name" == supervised ]] && continue
        [[ -f "$run/$model" && ! -f "$run/metrics-train$suffix.csv" ]] || continue
        "$diffcl" infer --model "$run/$model" --net "$net" --input "$side/images" \
            --output "$run/pred-train$suffix" --threads "${THREADS:-2}" --quiet
        "$diffcl" eval --pred "$run/pred-train$suffix" --label "$side/labels" \
            --csv "$run/metrics-train$suffix.csv" --empty diagonal > /dev/null
    done
done
for name in "${names[@]}"; do
    [[ "$name" == supervised ]] && continue
    /usr/bin/python3 "$root/bench/real/summary.py" "$runs/$set_name" "$name" "metrics-train$suffix.csv" \
        metrics-train.csv | sed "s/test slices/unlabeled training slices/; s/^$set_name,/$set_name ($net),/"
done
