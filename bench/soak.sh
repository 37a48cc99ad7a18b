#!/usr/bin/env bash
# Soak: does a long 2-D Diff-CL run hold its memory flat? (issue 22; docs/testing.md)
#
#   bench/soak.sh [ITERS] [BUILD]        # default 5000 iterations, build/
#
# Trains Diff-CL on the 2-D phantom (every loss term on, validation and checkpoints every
# ITERS/20 iterations, so the first of each, which allocate their buffers once, come before
# the baseline at iteration 500) and samples the process's RSS (VmRSS, and its RssAnon and
# RssFile parts) twice a second next to the iteration in log.csv. It prints the RSS at
# iteration 500, the largest RSS after it, and the growth between them; the target is
# < 5 %. Memory, not time, is measured, so other work on the machine does not spoil it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
iters="${1:-5000}"
build="${2:-$root/build}"
out="$(mktemp -d /tmp/diffcl-soak-XXXXXX)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
"$build/tools/diffcl" train --out "$out/run" --dims 2 --patch 64,64 --n-filters 8 --ds-n-filters 8 \
    --iters "$iters" --val-list 2 --val-every $((iters / 20)) --threads 2 --labeled 4 \
    --phantom-cases 12 >"$out/train.log" 2>&1 &
pid=$!
rss_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status" 2>/dev/null || true; }
echo "iteration,vmrss_kb,rssanon_kb,rssfile_kb" >"$out/rss.csv"
while kill -0 "$pid" 2>/dev/null; do
    it=$(tail -n 1 "$out/run/log.csv" 2>/dev/null | cut -d, -f1) || it=""
    [[ "$it" =~ ^[0-9]+$ ]] && echo "$it,$(rss_kb VmRSS),$(rss_kb RssAnon),$(rss_kb RssFile)" >>"$out/rss.csv"
    sleep 0.5
done
wait "$pid" || { echo "soak: training failed"; cat "$out/train.log"; exit 1; }
/usr/bin/python3 - "$out/rss.csv" "$iters" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["vmrss_kb"]]
iters = int(sys.argv[2])
start = next((r for r in rows if int(r["iteration"]) >= 500), None)
if start is None:
    sys.exit("soak: no RSS sample at or after iteration 500 (run more iterations)")
after = [r for r in rows if int(r["iteration"]) >= int(start["iteration"])]
peak = max(after, key=lambda r: int(r["vmrss_kb"]))
growth = 100.0 * (int(peak["vmrss_kb"]) - int(start["vmrss_kb"])) / int(start["vmrss_kb"])
print("soak: %d iterations, %d samples" % (iters, len(rows)))
print("  RSS at iteration %s: %.1f MiB (anon %.1f, file %.1f)" % (
    start["iteration"], int(start["vmrss_kb"]) / 1024, int(start["rssanon_kb"]) / 1024,
    int(start["rssfile_kb"]) / 1024))
print("  largest RSS after it: %.1f MiB at iteration %s (anon %.1f, file %.1f)" % (
    int(peak["vmrss_kb"]) / 1024, peak["iteration"], int(peak["rssanon_kb"]) / 1024,
    int(peak["rssfile_kb"]) / 1024))
print("  growth %.2f %% (target < 5 %%): %s" % (growth, "PASS" if growth < 5 else "FAIL"))
sys.exit(0 if growth < 5 else 1)
PY
