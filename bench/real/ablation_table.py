"""The ablation table of docs/method.md from finished runs of bench/real/ablation.sh.

    /usr/bin/python3 bench/real/ablation_table.py bench/real/runs/main [ROW ...]
    SEEDS="0 1 2" /usr/bin/python3 bench/real/ablation_table.py ...   # only these seeds

For each row (run folder diffcl-<row>; default: every diffcl-* folder but the defaults) and
the seeds the defaults share with it: test Dice per seed, the mean paired difference to the
defaults and to supervised with its standard error, and the predicted / reference volume;
then the same paired difference on the unlabeled training slices where eval_train.sh wrote
metrics-train.csv. Prints a Markdown table.
"""
import csv
import os
import statistics
import sys


def dice_and_volume(path):
    """(mean Dice, predicted / reference volume) of a metrics CSV, or None if absent."""
    if not os.path.isfile(path):
        return None
    mean, pred, ref = None, 0, 0
    with open(path) as f:
        for row in csv.reader(f):
            if not row or row[0] == "case":
                continue
            if row[0] == "mean":
                mean = float(row[2])
            elif row[0] != "std" and row[8]:
                pred += int(row[8])
                ref += int(row[9])
    return mean, (pred / ref if ref else float("nan"))


def paired(a, b):
    d = [y - x for x, y in zip(a, b)]
    if len(d) < 2:
        return "n/a"
    return "%+.3f (SE %.3f)" % (statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5)


def main():
    root = sys.argv[1]
    rows = sys.argv[2:] or sorted(d[len("diffcl-"):] for d in os.listdir(root)
                                  if d.startswith("diffcl-") and d != "diffcl-default")
    print("| row | seeds | test Dice per seed | mean | vs defaults | vs supervised | volume | "
          "training slices vs defaults |")
    print("|---|---|---|---|---|---|---|---|")
    for row in ["default"] + rows:
        seeds, mine, dflt, sup, vol, tr_mine, tr_dflt = [], [], [], [], [], [], []
        for s in [int(x) for x in os.environ.get("SEEDS", " ".join(map(str, range(10)))).split()]:
            m = dice_and_volume(os.path.join(root, "diffcl-" + row, "seed%d" % s, "metrics.csv"))
            d = dice_and_volume(os.path.join(root, "diffcl-default", "seed%d" % s, "metrics.csv"))
            p = dice_and_volume(os.path.join(root, "supervised", "seed%d" % s, "metrics.csv"))
            if not (m and d and p):
                continue
            seeds.append(s)
            mine.append(m[0])
            dflt.append(d[0])
            sup.append(p[0])
            vol.append(m[1])
            mt = dice_and_volume(os.path.join(root, "diffcl-" + row, "seed%d" % s, "metrics-train.csv"))
            dt = dice_and_volume(os.path.join(root, "diffcl-default", "seed%d" % s, "metrics-train.csv"))
            if mt and dt:
                tr_mine.append(mt[0])
                tr_dflt.append(dt[0])
        if not seeds:
            continue
        print("| %s | %s | %s | %.3f | %s | %s | %.2f | %s |" % (
            row, ",".join(map(str, seeds)), " ".join("%.3f" % x for x in mine), statistics.mean(mine),
            "" if row == "default" else paired(dflt, mine), paired(sup, mine), statistics.mean(vol),
            "" if row == "default" or len(tr_mine) != len(seeds) else paired(tr_dflt, tr_mine)))


if __name__ == "__main__":
    main()
