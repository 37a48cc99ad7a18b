#!/usr/bin/env bash
# The ablation of docs/method.md: Diff-CL at the defaults with one factor removed at a time,
# on the main benchmark (3 seeds by default), next to the default runs of bench/real/run.sh.
#
#   bench/real/ablation.sh [SET] [SEEDS]      # default: main, "0 1 2"; about 35 min a row
#
# Rows, most telling first (run-folder tag: the one option that differs from the defaults):
#   mu2-0       --mu2 0                    (the CS learns nothing from unlabeled data; the DS
#                                           still does, and the batches are unchanged)
#   no-cps      --cps agreement            (0.1.0's L^c_p: only where CS and DS agree)
#   train-mode  --ds-pseudo-train-mode     (DS pseudo labels in training mode)
#   no-views    --no-weak-strong           (pseudo labels from the strong view)
#   plain       --cps plain                (CPS without confidence weighting)
#   uniform-cl  --no-contrast-balance      (contrastive voxels drawn uniformly)
#   v010        all of the above but plain (the 0.1.0 configuration)
# A finished row is not run again (bench/real/run.sh keeps metrics.csv).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
set_name="${1:-main}"
seeds="${2:-0 1 2}"
rows=(
    "mu2-0|--mu2 0"
    "no-cps|--cps agreement"
    "train-mode|--ds-pseudo-train-mode"
    "no-views|--no-weak-strong"
    "plain|--cps plain"
    "uniform-cl|--no-contrast-balance"
    "v010|--cps agreement --ds-pseudo-train-mode --no-contrast-balance --no-weak-strong"
)
"$here/run.sh" "$set_name" "$seeds" > /dev/null # supervised and the defaults
for row in "${rows[@]}"; do
    METHODS=diffcl TAG="${row%%|*}" EXTRA="${row#*|}" "$here/run.sh" "$set_name" "$seeds" | tail -n 4
done
