#!/usr/bin/env bash
# The ablation of docs/method.md: Diff-CL at the defaults with one factor removed at a time,
# on the main benchmark (3 seeds by default), next to the default runs of bench/real/run.sh.
#
#   bench/real/ablation.sh [SET] [SEEDS]      # default: main, "0 1 2"; about 35 min a row
#
# Rows (run-folder tag: the one option that differs from the defaults):
#   no-cps      --cps agreement            (0.1.0's L^c_p: only where CS and DS agree)
#   plain       --cps plain                (CPS without confidence weighting)
#   train-mode  --ds-pseudo-train-mode     (DS pseudo labels in training mode)
#   no-views    --no-weak-strong           (pseudo labels from the strong view)
#   uniform-cl  --no-contrast-balance      (contrastive voxels drawn uniformly)
#   v010        all of the above but plain (the 0.1.0 configuration)
# A finished row is not run again (bench/real/run.sh keeps metrics.csv).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
set_name="${1:-main}"
seeds="${2:-0 1 2}"
rows=(
    "no-cps|--cps agreement"
    "plain|--cps plain"
    "train-mode|--ds-pseudo-train-mode"
    "no-views|--no-weak-strong"
    "uniform-cl|--no-contrast-balance"
    "v010|--cps agreement --ds-pseudo-train-mode --no-contrast-balance --no-weak-strong"
)
"$here/run.sh" "$set_name" "$seeds" > /dev/null # supervised and the defaults
for row in "${rows[@]}"; do
    METHODS=diffcl TAG="${row%%|*}" EXTRA="${row#*|}" "$here/run.sh" "$set_name" "$seeds" | tail -n 4
done
