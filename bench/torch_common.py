"""Helpers shared by the PyTorch sides of the benchmarks (bench/torch_*.py).

Each script prints `RESULT <key> <value>` lines that bench_common.h's child runner parses.
"""


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
