"""Helpers shared by the PyTorch sides of the benchmarks (bench/torch_*.py).

Each script prints `RESULT <key> <value>` lines that bench_common.h's child runner parses.
"""

import resource
import statistics


def rss_mib():
    """Resident set size of this process now, in MiB (NaN where /proc is missing)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def result(key, v):
    """One result line for the C side."""
    print(f"RESULT {key} {v:.6f}", flush=True)


def report_times(tw, tc, rss0):
    """The timing lines every script prints: median, min and max wall time (ms) of the timed
    runs, median CPU time, RSS before the timed loop and peak RSS (MiB)."""
    result("wall_ms", statistics.median(tw))
    result("wall_min_ms", min(tw))
    result("wall_max_ms", max(tw))
    result("cpu_ms", statistics.median(tc))
    result("rss_before_mib", rss0)
    result("peak_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def add_run_args(ap):
    """The options every network benchmark takes, with the C side's defaults."""
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-filters", type=int, default=16)


def start(args):
    """Thread count and seed, as the C side runs."""
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)


def sizes(s):
    """"112,112,80" or "112x112x80" -> [112, 112, 80]."""
    return [int(v) for v in s.replace("x", ",").split(",")]
