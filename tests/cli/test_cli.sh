#!/bin/sh
# Suite cli: the diffcl tool's argument handling (one clear line, non-zero exit) and a
# forward round trip through safetensors files.
set -u
DIFFCL="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass=0

expect() { # expect CODE DESCRIPTION -- command...
    want=$1; what=$2; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: exit $got, wanted $want"; cat "$tmp/err"; fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
}
expect_err_line() { # the error output is one line mentioning WORD
    lines=$(wc -l <"$tmp/err")
    if [ "$lines" -ne 1 ] || ! grep -q "$1" "$tmp/err"; then
        echo "FAIL: expected one error line mentioning '$1', got:"; cat "$tmp/err"; fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
}

expect 0 "--help" -- "$DIFFCL" --help
grep -q "train" "$tmp/out" || { echo "FAIL: --help lists no train"; fails=$((fails + 1)); }
expect 2 "no command" -- "$DIFFCL"
expect 2 "unknown command" -- "$DIFFCL" frobnicate
expect_err_line "unknown command"
# the OpenMP wait policy (tools/diffcl.c): a short spin by default, the user's setting kept
expect 0 "version, default wait" -- env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u DIFFCL_SET_SPINCOUNT "$DIFFCL" version
grep -q "GOMP_SPINCOUNT=10000 (diffcl's default)" "$tmp/out" ||
    { echo "FAIL: no default spin count:"; cat "$tmp/out"; fails=$((fails + 1)); }
expect 0 "version, user's wait" -- env -u GOMP_SPINCOUNT -u DIFFCL_SET_SPINCOUNT OMP_WAIT_POLICY=active "$DIFFCL" version
grep -q "OMP_WAIT_POLICY=active (from the environment)" "$tmp/out" ||
    { echo "FAIL: the user's wait policy was not kept:"; cat "$tmp/out"; fails=$((fails + 1)); }
for cmd in train demo forward; do
    expect 0 "$cmd --help" -- "$DIFFCL" "$cmd" --help
    expect 2 "$cmd unknown option" -- "$DIFFCL" "$cmd" --no-such-option 1
    expect_err_line "no-such-option"
done
grep -q "default" "$tmp/out" 2>/dev/null
"$DIFFCL" train --help | grep -q "(default 0.01)" || { echo "FAIL: train --help lists no defaults"; fails=$((fails + 1)); }
expect 2 "train without --out" -- "$DIFFCL" train --iters 3
expect_err_line "out"
expect 2 "train bad dims" -- "$DIFFCL" train --out "$tmp/r" --dims 4
expect_err_line "dims"
expect 2 "train bad method" -- "$DIFFCL" train --out "$tmp/r" --method magic
expect_err_line "method"
expect 2 "train value missing" -- "$DIFFCL" train --out
expect_err_line "needs a value"
expect 1 "train missing data" -- "$DIFFCL" train --out "$tmp/r" --layout msd --data "$tmp/none" --iters 1
[ ! -e "$tmp/r" ] || { echo "FAIL: a run that could not start left its folder"; fails=$((fails + 1)); }
expect 1 "resume missing run" -- "$DIFFCL" train --resume "$tmp/none"
expect_err_line "none"
expect 2 "demo ddim steps out of range" -- "$DIFFCL" demo --ddim-steps 0
expect_err_line "ddim-steps"
"$DIFFCL" demo --help | grep -q -- "--ddim-steps" || { echo "FAIL: demo --help lists no --ddim-steps"; fails=$((fails + 1)); }
expect 2 "forward missing files" -- "$DIFFCL" forward --weights a
expect_err_line "required"
expect 1 "forward missing weights file" -- "$DIFFCL" forward --weights "$tmp/w.safetensors" \
    --input "$tmp/x.safetensors" --output "$tmp/y.safetensors" --dims 2 --n-filters 4 --threads 1
expect_err_line "w.safetensors"

# infer -> eval as docs/training.md runs them, on the fixtures with a 1-iteration 3-D model
FIX=${DIFFCL_FIXTURES:-$(dirname "$0")/../fixtures}/data
"$DIFFCL" train --out "$tmp/m" --dims 3 --patch 16,16,16 --iters 1 --n-filters 2 --ds-n-filters 2 \
    --no-hfm --method supervised --labeled 2 --phantom-cases 3 --threads 2 >/dev/null 2>&1 ||
    { echo "FAIL: tiny 3-D training run"; fails=$((fails + 1)); }
M="$tmp/m/model.safetensors"
# a folder holding a run is not trained over by a repeated command, unless --overwrite
expect 1 "train into a finished run" -- "$DIFFCL" train --out "$tmp/m" --dims 3 --patch 16,16,16 --iters 1 \
    --n-filters 2 --ds-n-filters 2 --no-hfm --method supervised --labeled 2 --phantom-cases 3 --threads 2
expect_err_line "resume"
expect 0 "train --overwrite" -- "$DIFFCL" train --out "$tmp/m" --overwrite --dims 3 --patch 16,16,16 \
    --iters 1 --n-filters 2 --ds-n-filters 2 --no-hfm --method supervised --labeled 2 --phantom-cases 3 --threads 2
# fine-tuning: a new run (3 classes) from the tiny model; the log lists the skipped head
expect 0 "train --init-weights" -- "$DIFFCL" train --out "$tmp/ft" --init-weights "$M" --classes 3 --dims 3 \
    --patch 16,16,16 --iters 1 --n-filters 2 --ds-n-filters 2 --no-hfm --method supervised --labeled 2 \
    --phantom-cases 3 --threads 2
grep -q "init-weights $M: loaded 203 of the CS's 205 tensors" "$tmp/err" &&
    grep -q "skipped 2, the output head (2 classes in the file, 3 here; .*out_conv.weight: shape \[2,2,1,1,1\] in the file, \[3,2,1,1,1\] here" "$tmp/err" ||
    { echo "FAIL: --init-weights report:"; cat "$tmp/err"; fails=$((fails + 1)); }
expect 2 "train --init-weights with --resume" -- "$DIFFCL" train --resume "$tmp/m" --init-weights "$M"
expect_err_line "init-weights"
expect 1 "train --init-weights missing file" -- "$DIFFCL" train --out "$tmp/r" --init-weights "$tmp/none.safetensors" \
    --dims 3 --patch 16,16,16 --iters 1 --n-filters 2 --no-hfm --method supervised --labeled 2 --phantom-cases 3
grep -q "init-weights: $tmp/none.safetensors: cannot open" "$tmp/err" || { echo "FAIL: no file name:"; cat "$tmp/err"; fails=$((fails + 1)); }
[ ! -e "$tmp/r" ] || { echo "FAIL: a run with missing --init-weights left its folder"; fails=$((fails + 1)); }
# --overwrite with a run that cannot start keeps the old run
expect 1 "train --overwrite that cannot start" -- "$DIFFCL" train --out "$tmp/m" --overwrite --layout msd \
    --data "$tmp/none" --iters 1
[ -f "$tmp/m/last.safetensors" ] || { echo "FAIL: a failed --overwrite lost the old run"; fails=$((fails + 1)); }
expect 2 "train option out of range" -- "$DIFFCL" train --out "$tmp/r" --lr 100
expect_err_line "\\[0, 10\\]"
# --data without --layout detects the layout (here png), and a new run folder gets its parents
expect 0 "train --data without --layout" -- "$DIFFCL" train --data "$FIX/png" --out "$tmp/runs/png" --iters 1 \
    --patch 16,16 --n-filters 2 --ds-n-filters 2 --no-hfm --method supervised --labeled 2 --batch-labeled 2 --classes 3 --threads 2
grep -q "training supervised, png," "$tmp/err" || { echo "FAIL: --data without --layout:"; cat "$tmp/err"; fails=$((fails + 1)); }
# ensembles: two models in one infer, and the same from their saved probabilities
"$DIFFCL" train --data "$FIX/png" --out "$tmp/runs/png2" --iters 2 --seed 7 --patch 16,16 --n-filters 2 \
    --no-hfm --method supervised --labeled 2 --batch-labeled 2 --classes 3 --threads 2 >/dev/null 2>&1 ||
    { echo "FAIL: second png run"; fails=$((fails + 1)); }
P1="$tmp/runs/png/model.safetensors"
P2="$tmp/runs/png2/model.safetensors"
for k in 1 2; do
    eval "P=\$P$k"
    expect 0 "infer --save-probs ($k)" -- "$DIFFCL" infer --model "$P" --input "$FIX/png/images" \
        --output "$tmp/ens/l$k" --save-probs "$tmp/ens/p$k" --threads 1
done
expect 0 "infer with two --model" -- "$DIFFCL" infer --model "$P1" --model "$P2" \
    --input "$FIX/png/images" --output "$tmp/ens/both" --save-probs "$tmp/ens/pboth" --threads 1
grep -q "^\[2/3\] .* s CPU)" "$tmp/out" || { echo "FAIL: infer prints no case count:"; cat "$tmp/out"; fails=$((fails + 1)); }
# on a terminal (script(1) gives one) the progress line shows the next case with an ETA
if command -v script >/dev/null 2>&1; then
    script -qec "'$DIFFCL' infer --model '$P1' --input '$FIX/png/images' --output '$tmp/ens/tty' --threads 1" \
        /dev/null >"$tmp/tty.out" 2>&1
    if grep -q "\[3/3\] slice2  ETA [0-9]*m[0-9][0-9]s" "$tmp/tty.out"; then
        pass=$((pass + 1))
    else
        echo "FAIL: infer on a terminal shows no ETA:"; cat "$tmp/tty.out"; fails=$((fails + 1))
    fi
fi
expect 0 "ensemble of saved probabilities" -- "$DIFFCL" ensemble --input "$tmp/ens/p1" "$tmp/ens/p2" \
    --output "$tmp/ens/mean" --save-probs "$tmp/ens/pmean"
for f in slice0 slice1 slice2; do
    if [ ! -f "$tmp/ens/p1/$f.nii.gz" ] || ! cmp -s "$tmp/ens/both/$f.png" "$tmp/ens/mean/$f.png"; then
        echo "FAIL: ensemble of $f: infer's two-model label and ensemble's differ (or are missing)"
        fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
done
# folds: one splits file for the K runs, each fold validating on its part only
printf 'slice0\nslice1\nslice2\n' >"$tmp/all3.list" # the folder's train.list holds two of them
PNGRUN="--data $FIX/png --train-list $tmp/all3.list --iters 1 --patch 16,16 --n-filters 2 --no-hfm --method supervised --labeled 1 --batch-labeled 2 --classes 3 --threads 1"
for k in 0 1 2; do
    # shellcheck disable=SC2086
    expect 0 "train --folds 3 --fold $k" -- "$DIFFCL" train $PNGRUN --out "$tmp/cv/fold$k" --folds 3 --fold $k
done
if [ "$(cat "$tmp"/cv/fold*/fold*.val.list | sort | tr '\n' ' ')" != "slice0 slice1 slice2 " ] ||
    ! grep -q '"val"' "$tmp/cv/splits.json"; then
    echo "FAIL: the 3 folds' validation lists are not a partition of the cases"; fails=$((fails + 1))
else
    pass=$((pass + 1))
fi
# shellcheck disable=SC2086
expect 1 "train --folds 2 against a 3-fold splits file" -- "$DIFFCL" train $PNGRUN --out "$tmp/cv/x" \
    --folds 2 --fold 0 --splits "$tmp/cv/splits.json"
grep -q "does not hold 2 folds" "$tmp/err" || { echo "FAIL: splits of another K:"; cat "$tmp/err"; fails=$((fails + 1)); }
# eval --splits: the cross-validation summary, one line per fold and one over the folds
mkdir -p "$tmp/cv/pred"
for k in 0 1 2; do
    "$DIFFCL" infer --model "$tmp/cv/fold$k/model.safetensors" --input "$FIX/png/images" \
        --list "$tmp/cv/fold$k/fold$k.val.list" --output "$tmp/cv/pred" --quiet >/dev/null 2>&1
done
expect 0 "eval --splits" -- "$DIFFCL" eval --pred "$tmp/cv/pred" --label "$FIX/png/labels" \
    --splits "$tmp/cv/splits.json"
if [ "$(grep -c '^fold [0-2]: Dice .* over 1 of its 1 validation cases' "$tmp/out")" -ne 3 ] ||
    ! grep -q "^over 3 folds: Dice" "$tmp/out"; then
    echo "FAIL: eval --splits:"; cat "$tmp/out"; fails=$((fails + 1))
else
    pass=$((pass + 1))
fi
expect 2 "train --fold out of range" -- "$DIFFCL" train --out "$tmp/cv/y" --folds 3 --fold 3
expect_err_line "0 <= k"
expect 2 "ensemble of one folder" -- "$DIFFCL" ensemble --input "$tmp/ens/p1" --output "$tmp/ens/x"
expect_err_line "at least 2"
expect 1 "ensemble of folders that differ" -- "$DIFFCL" ensemble --input "$tmp/ens/p1" "$FIX/msd/imagesTr" \
    --output "$tmp/ens/x"
# the folder's own lists: la-h5's train.list (never its test.list), MSD's dataset.json
if "$DIFFCL" train --layout la-h5 --data "$FIX/la" --out "$tmp/runs/la" --dims 3 --patch 16,16,16 --iters 1 \
    --n-filters 2 --no-hfm --method supervised --labeled 2 --batch-labeled 2 --threads 1 \
    >"$tmp/out" 2>"$tmp/err" || ! grep -q "without HDF5" "$tmp/err"; then
    grep -q "training supervised, h5, 2 cases of train.list," "$tmp/err" ||
        { echo "FAIL: la-h5 start line:"; cat "$tmp/err"; fails=$((fails + 1)); }
fi
expect 1 "train --classes against dataset.json" -- "$DIFFCL" train --layout msd --data "$FIX/msd" \
    --out "$tmp/runs/msd3" --classes 3 --dims 3 --patch 16,16,16 --iters 1 --threads 1 \
    --method supervised --labeled 1 --batch-labeled 2 --n-filters 2 --no-hfm
grep -q "dataset.json lists 2 classes" "$tmp/err" || { echo "FAIL: --classes vs dataset.json:"; cat "$tmp/err"; fails=$((fails + 1)); }
expect 2 "eval missing label folder" -- "$DIFFCL" eval --pred "$FIX/eval/pred" --label "$tmp/nosuch"
expect_err_line "'$tmp/nosuch' does not exist"
expect 2 "eval missing pred folder" -- "$DIFFCL" eval --pred "$tmp/nopred/" --label "$FIX/eval/label"
expect_err_line "does not exist"
expect 2 "eval bad --both-empty" -- "$DIFFCL" eval --pred "$FIX/eval/pred" --label "$FIX/eval/label" \
    --both-empty zero
expect_err_line "both-empty"
expect 2 "eval bad --nsd-tol" -- "$DIFFCL" eval --pred "$FIX/eval/pred" --label "$FIX/eval/label" --nsd-tol x
expect_err_line "nsd-tol"
mkdir "$tmp/in"
expect 2 "infer folder into a file" -- "$DIFFCL" infer --model "$M" --input "$tmp/in" --output "$M"
expect_err_line "folder"
expect 1 "infer empty folder" -- "$DIFFCL" infer --model "$M" --input "$tmp/in" --output "$tmp/o"
expect_err_line "mri_norm2.h5"
"$DIFFCL" infer --model "$M" --input "$FIX/msd/imagesTr" --output "$tmp/preds/msd/" --threads 2 \
    >"$tmp/out" 2>"$tmp/err"
if grep -q "without NIfTI" "$tmp/err"; then
    echo "skip: NIfTI infer/eval (built without NIfTI)"
else
    # the output folder and its parents are created; paths print without a double slash
    if [ ! -f "$tmp/preds/msd/la_003.nii.gz" ] || [ ! -f "$tmp/preds/msd/la_007.nii.gz" ] ||
        grep -q "//" "$tmp/out"; then
        echo "FAIL: infer into a new folder:"; cat "$tmp/out" "$tmp/err"; fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
    expect 0 "eval of infer's folder" -- "$DIFFCL" eval --pred "$tmp/preds/msd/" --label "$FIX/msd/labelsTr"
    grep -q "over 2 case" "$tmp/out" || { echo "FAIL: eval did not score 2 cases"; fails=$((fails + 1)); }
    grep -q "^class 1 (left atrium):" "$tmp/out" || { echo "FAIL: eval without dataset.json's class names"; fails=$((fails + 1)); }
    expect 0 "eval --json --nsd-tol --both-empty nan" -- "$DIFFCL" eval --pred "$tmp/preds/msd/" \
        --label "$FIX/msd/labelsTr" --json "$tmp/eval.json" --nsd-tol 1.5 --both-empty nan
    grep -q '"asd_pred_to_ref"' "$tmp/eval.json" && grep -q '"nsd"' "$tmp/eval.json" &&
        grep -q '"foreground_mean"' "$tmp/eval.json" ||
        { echo "FAIL: eval --json:"; cat "$tmp/eval.json"; fails=$((fails + 1)); }
    # multi-channel data end to end: an MSD 4-D file (4 channels) and nnU-Net _000X files (2)
    for set in "msd4d --classes 4" "nnunet"; do
        name=${set%% *}
        # shellcheck disable=SC2086
        expect 0 "train on $name (several channels)" -- "$DIFFCL" train --data "$FIX/$name" \
            --out "$tmp/runs/$name" --dims 3 --patch 16,16,16 --iters 1 --n-filters 2 --no-hfm \
            --method supervised --labeled 1 --batch-labeled 2 --threads 1 ${set#$name}
        expect 0 "infer on $name" -- "$DIFFCL" infer --model "$tmp/runs/$name/model.safetensors" \
            --input "$FIX/$name/imagesTr" --output "$tmp/preds/$name" --threads 1
    done
    # the NIfTI runs carry a preprocessing plan: infer applies it (the prediction has the
    # input's grid), --normalize on top of it is refused, --no-plan leaves it out
    "$DIFFCL" infer --model "$tmp/runs/nnunet/model.safetensors" --input "$FIX/nnunet/imagesTr" \
        --output "$tmp/preds/nnunet_np" --normalize zscore --threads 1 >"$tmp/out" 2>"$tmp/err"
    if [ $? -ne 1 ] || ! grep -q "preprocessing plan" "$tmp/err" || [ -d "$tmp/preds/nnunet_np" ]; then
        echo "FAIL: infer --normalize with a planned model was not refused:"; cat "$tmp/err"
        fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
    expect 0 "infer --no-plan --normalize zscore" -- "$DIFFCL" infer --model \
        "$tmp/runs/nnunet/model.safetensors" --input "$FIX/nnunet/imagesTr" \
        --output "$tmp/preds/nnunet_np" --normalize zscore --no-plan --threads 1
    # --reorient-ras: trained on RAS+ cases, and infer follows the model, writing on the input's grid
    expect 0 "train --reorient-ras" -- "$DIFFCL" train --layout msd --data "$FIX/msd" --out "$tmp/runs/ras" \
        --reorient-ras --dims 3 --patch 16,16,16 --iters 1 --n-filters 2 --no-hfm --method supervised \
        --labeled 1 --batch-labeled 2 --threads 1
    expect 0 "infer with a RAS+ model" -- "$DIFFCL" infer --model "$tmp/runs/ras/model.safetensors" \
        --input "$FIX/msd/imagesTr" --output "$tmp/preds/ras" --threads 1
    expect 0 "eval of the RAS+ model's predictions" -- "$DIFFCL" eval --pred "$tmp/preds/ras" \
        --label "$FIX/msd/labelsTr"
    printf 'la_007\n' >"$tmp/one.list"
    expect 0 "infer --list" -- "$DIFFCL" infer --model "$M" --input "$FIX/msd/imagesTr" \
        --output "$tmp/preds/listed" --list "$tmp/one.list" --threads 1
    if [ -f "$tmp/preds/listed/la_003.nii.gz" ] || [ ! -f "$tmp/preds/listed/la_007.nii.gz" ]; then
        echo "FAIL: infer --list segmented other cases than the listed one"; fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
    printf 'la_999\n' >"$tmp/missing.list"
    expect 1 "infer --list with a case not in the folder" -- "$DIFFCL" infer --model "$M" \
        --input "$FIX/msd/imagesTr" --output "$tmp/preds/x" --list "$tmp/missing.list"
    expect_err_line "la_999"
    printf 'la_007.nii.gz\n' >"$tmp/file.list"
    expect 0 "eval --list of file names" -- "$DIFFCL" eval --pred "$tmp/preds/msd" \
        --label "$FIX/msd/labelsTr" --list "$tmp/file.list"
    grep -q "over 1 case" "$tmp/out" || { echo "FAIL: eval --list scored not 1 case"; fails=$((fails + 1)); }
fi
# an LA folder (<case>/mri_norm2.h5): <output>/<case>.h5, scored against the folder itself
"$DIFFCL" infer --model "$M" --input "$FIX/la" --output "$tmp/preds/la" --threads 2 >"$tmp/out" 2>"$tmp/err"
if grep -q "without HDF5" "$tmp/err"; then
    echo "skip: LA h5 infer/eval (built without HDF5)"
else
    if [ ! -f "$tmp/preds/la/ACASE01.h5" ] || [ ! -f "$tmp/preds/la/ZCASE02.h5" ]; then
        echo "FAIL: infer of an LA folder:"; cat "$tmp/out" "$tmp/err"; fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
    expect 0 "eval against an LA folder" -- "$DIFFCL" eval --pred "$tmp/preds/la" --label "$FIX/la"
    grep -q "over 3 case" "$tmp/out" || { echo "FAIL: eval did not score 3 LA cases"; fails=$((fails + 1)); }
fi

echo "cli: $pass passed, $fails failed"
[ "$fails" -eq 0 ]
