#!/bin/sh
# Suite cli, test cli-formats: RGB PNG data end to end (train --rgb gives a 3-channel model,
# infer reads the images the same way, a resumed run keeps it) and PNG label maps (train and
# eval --label-map on 0/255 masks, the errors for a mask without a map, a class beyond
# --classes, a stray value and a malformed map). Fixtures: tests/reference/gen_formats.py.
set -u
DIFFCL="$1"
FIX=${DIFFCL_FIXTURES:-$(dirname "$0")/../fixtures}/formats
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
expect_err() { # the error output mentions every WORD
    for w in "$@"; do
        if ! grep -qF -- "$w" "$tmp/err"; then
            echo "FAIL: expected the error to mention '$w', got:"; cat "$tmp/err"; fails=$((fails + 1))
            return
        fi
    done
    pass=$((pass + 1))
}
has_channels() { # has_channels MODEL N: the model's configuration takes N input channels
    if ! head -c 20000 "$1" | grep -aq "in_channels[^0-9]*$2[,}]"; then
        echo "FAIL: $1 does not take $2 channel(s)"; fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
}

RUN="--iters 2 --patch 16,16 --n-filters 2 --no-hfm --method supervised --labeled 2 --batch-labeled 2 --classes 2 --threads 1"

# ---- RGB: a 3-channel model, trained and applied to the RGB images (one of them grey)
expect 0 "train --rgb" -- "$DIFFCL" train --data "$FIX/png_rgb" --rgb --out "$tmp/rgb" $RUN
has_channels "$tmp/rgb/model.safetensors" 3
expect 0 "infer with the RGB model" -- "$DIFFCL" infer --model "$tmp/rgb/model.safetensors" \
    --input "$FIX/png_rgb/images" --output "$tmp/pred_rgb" --threads 1
for c in c0 c1 c2 c3; do
    [ -s "$tmp/pred_rgb/$c.png" ] || { echo "FAIL: no prediction $c.png"; fails=$((fails + 1)); }
done
expect 0 "infer one RGB file" -- "$DIFFCL" infer --model "$tmp/rgb/model.safetensors" \
    --input "$FIX/rgba.png" --output "$tmp/rgba_pred.png" --threads 1
# a resumed run rebuilds the 3-channel networks from its checkpoint's options
expect 0 "train --resume of the RGB run" -- "$DIFFCL" train --resume "$tmp/rgb" --iters 3 --threads 1
has_channels "$tmp/rgb/model.safetensors" 3
# without --rgb: one channel (0.1.0), and infer reads the same images as luminance
expect 0 "train without --rgb" -- "$DIFFCL" train --data "$FIX/png_rgb" --out "$tmp/grey" $RUN
has_channels "$tmp/grey/model.safetensors" 1
expect 0 "infer with the 1-channel model" -- "$DIFFCL" infer --model "$tmp/grey/model.safetensors" \
    --input "$FIX/png_rgb/images" --output "$tmp/pred_grey" --threads 1 --quiet

# ---- label maps: 0/255 masks
expect 1 "train on 0/255 masks without a map" -- "$DIFFCL" train --data "$FIX/png_mask" --out "$tmp/m0" $RUN
expect_err "value 255" "--label-map 255:1"
[ ! -e "$tmp/m0" ] || { echo "FAIL: a run that could not start left its folder"; fails=$((fails + 1)); }
expect 0 "train --label-map 255:1" -- "$DIFFCL" train --data "$FIX/png_mask" --label-map 255:1 \
    --out "$tmp/m1" $RUN
expect 1 "train --label-map beyond --classes" -- "$DIFFCL" train --data "$FIX/png_mask" \
    --label-map 255:2 --out "$tmp/m2" $RUN
expect_err "255:2" "class 2" "n_classes is 2"
expect 2 "train --label-map malformed" -- "$DIFFCL" train --data "$FIX/png_mask" --label-map 255=1 \
    --out "$tmp/m3" $RUN
expect_err "--label-map" "255=1"
expect 0 "infer with the mask model" -- "$DIFFCL" infer --model "$tmp/m1/model.safetensors" \
    --input "$FIX/png_mask/images" --output "$tmp/pred_mask" --threads 1 --quiet
expect 0 "eval --label-map 255:1" -- "$DIFFCL" eval --pred "$tmp/pred_mask" --label "$FIX/png_mask/labels" \
    --label-map 255:1 --json "$tmp/m.json"
grep -q '"label_map":[ ]*"255:1"' "$tmp/m.json" && grep -q '"2"' "$tmp/m.json" &&
    { echo "FAIL: eval --label-map: a class 2 in the summary"; fails=$((fails + 1)); }
grep -q "class 1:" "$tmp/out" || { echo "FAIL: eval --label-map: no class 1 summary"; cat "$tmp/out"; fails=$((fails + 1)); }
# a stray value in a reference: the file, the pixel and the value
mkdir -p "$tmp/bp" "$tmp/br"
cp "$FIX/bad_mask.png" "$tmp/bp/x.png"
cp "$FIX/bad_mask.png" "$tmp/br/x.png"
expect 1 "eval with a stray reference value" -- "$DIFFCL" eval --pred "$tmp/bp" --label "$tmp/br" --label-map 255:1
expect_err "br/x.png" "value 7" "row 7, column 2" "255:1"
expect 2 "eval --label-map malformed" -- "$DIFFCL" eval --pred "$tmp/bp" --label "$tmp/br" --label-map 2555:1
expect_err "--label-map"

echo "cli-formats: $pass passed, $fails failed"
[ "$fails" -eq 0 ]
