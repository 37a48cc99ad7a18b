"""Summarise bench/real runs: per-seed test Dice / HD95 of supervised and Diff-CL, mean +- std
(sample std over seeds), and the mean paired difference with its standard error.

Run: /usr/bin/python3 bench/real/summary.py RUNS/<set> [DIFFCL_RUN_NAME [METRICS [SUP_METRICS]]]
(defaults: diffcl-default, metrics.csv, metrics.csv). Each run folder holds seed<k>/<METRICS>
from `diffcl eval --csv` (one row per slice and class). The last line gives each method's
predicted / reference foreground volume over all slices and seeds (1 = no size bias).
"""
import csv
import glob
import math
import os
import sys


def run_means(path):
    """Mean over slices of the per-slice mean over foreground classes: (dice, hd95)."""
    per_case = {}
    n_pred = n_ref = 0
    with open(path) as f:
        for row in csv.DictReader(f):
            if row["case"] in ("mean", "std"):  # eval's summary rows
                continue
            per_case.setdefault(row["case"], []).append((float(row["dice"]), float(row["hd95"])))
            n_pred += int(row["n_pred"])
            n_ref += int(row["n_ref"])
    dice = [sum(d for d, _ in v) / len(v) for v in per_case.values()]
    hd = [sum(h for _, h in v) / len(v) for v in per_case.values()]
    return sum(dice) / len(dice), sum(hd) / len(hd), n_pred, n_ref


def seeds_of(folder, metrics="metrics.csv"):
    out = {}
    for p in glob.glob(os.path.join(folder, "seed*", metrics)):
        out[int(os.path.basename(os.path.dirname(p))[4:])] = run_means(p)
    return out


def mean_std(v):
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    return m, s


def main():
    base = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "diffcl-default"
    metrics = sys.argv[3] if len(sys.argv) > 3 else "metrics.csv"
    sup_metrics = sys.argv[4] if len(sys.argv) > 4 else "metrics.csv"
    sup, dcl = seeds_of(os.path.join(base, "supervised"), sup_metrics), seeds_of(os.path.join(base, name), metrics)
    seeds = sorted(set(sup) & set(dcl))
    print("%s, %s vs supervised (test slices; Dice, HD95 in pixels)" % (os.path.basename(base), name))
    print("| seed | supervised Dice | %s Dice | difference | supervised HD95 | %s HD95 |" % (name, name))
    print("|---|---|---|---|---|---|")
    for s in seeds:
        print("| %d | %.4f | %.4f | %+.4f | %.2f | %.2f |" % (s, sup[s][0], dcl[s][0], dcl[s][0] - sup[s][0],
                                                           sup[s][1], dcl[s][1]))
    if not seeds:
        return
    ms, ss = mean_std([sup[s][0] for s in seeds])
    md, sd = mean_std([dcl[s][0] for s in seeds])
    hs, hss = mean_std([sup[s][1] for s in seeds])
    hd, hds = mean_std([dcl[s][1] for s in seeds])
    diff = [dcl[s][0] - sup[s][0] for s in seeds]
    mdiff, sdiff = mean_std(diff)
    se = sdiff / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    print("| mean +- std (%d seeds) | %.4f +- %.4f | %.4f +- %.4f | %+.4f (SE %.4f) | %.2f +- %.2f | %.2f +- %.2f |"
          % (len(seeds), ms, ss, md, sd, mdiff, se, hs, hss, hd, hds))
    print("worst seed difference %+.4f" % min(diff))
    vol = [sum(r[s][2] for s in seeds) / max(1, sum(r[s][3] for s in seeds)) for r in (sup, dcl)]
    print("predicted / reference volume: supervised %.3f, %s %.3f" % (vol[0], name, vol[1]))


if __name__ == "__main__":
    main()
