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

echo "cli: $pass passed, $fails failed"
[ "$fails" -eq 0 ]
