#!/usr/bin/python3
"""PyTorch anchor for bench/bench_conv.c: the V-Net convolution shapes at batch 2,
112x112x80, with torch.set_num_threads(2). Prints the same table (median ms and GFLOP/s of
forward, input-grad and weight-grad), so the two runs can be set side by side.

Run with Debian's interpreter:
    /usr/bin/python3 bench/torch_conv.py [--reps N] [--only TAG,...] [--out FILE] [--cpu] [--min]
--out writes "tag fwd_ms dx_ms dw_ms" lines that `bench_conv --torch FILE` prints ratios
against.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

# tag, Cin, Cout, spatial (D,H,W) of the input, kernel, stride, padding, transposed
# (same table as bench/bench_conv.c; no bias in either)
SHAPES = [
    ("in1", 1, 16, (112, 112, 80), 3, 1, 1, False),
    ("c16", 16, 16, (112, 112, 80), 3, 1, 1, False),
    ("dn16", 16, 32, (112, 112, 80), 2, 2, 0, False),
    ("c32", 32, 32, (56, 56, 40), 3, 1, 1, False),
    ("dn32", 32, 64, (56, 56, 40), 2, 2, 0, False),
    ("c64", 64, 64, (28, 28, 20), 3, 1, 1, False),
    ("dn64", 64, 128, (28, 28, 20), 2, 2, 0, False),
    ("c128", 128, 128, (14, 14, 10), 3, 1, 1, False),
    ("dn128", 128, 256, (14, 14, 10), 2, 2, 0, False),
    ("c256", 256, 256, (7, 7, 5), 3, 1, 1, False),
    ("up256", 256, 128, (7, 7, 5), 2, 2, 0, True),
    ("up128", 128, 64, (14, 14, 10), 2, 2, 0, True),
    ("up64", 64, 32, (28, 28, 20), 2, 2, 0, True),
    ("up32", 32, 16, (56, 56, 40), 2, 2, 0, True),
    ("out16", 16, 2, (112, 112, 80), 1, 1, 0, False),
]
BATCH = 2


CLOCK = time.perf_counter
USE_MIN = False


def median_ms(fn, reps, warm=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        ts.append((CLOCK() - t0) * 1e3)
    return min(ts) if USE_MIN else statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated tags")
    ap.add_argument("--out", default="", help="write 'tag fwd dx dw' (ms) lines here")
    ap.add_argument("--cpu", action="store_true",
                    help="time with the process CPU clock (steadier on a shared machine)")
    ap.add_argument("--min", action="store_true", help="report the fastest run, not the median")
    args = ap.parse_args()
    global CLOCK, USE_MIN
    if args.cpu:
        CLOCK = time.process_time
    USE_MIN = args.min
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = median_ms(lambda: torch.mm(a, b), 3)
    peak = 2.0 * n ** 3 / (t * 1e-3) / 1e9
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{'cpu' if args.cpu else 'wall'} clock, {'min' if args.min else 'median'} of {args.reps}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}")
    print(f"sgemm 2048^3 (torch.mm): {t:8.2f} ms  {peak:7.1f} GFLOP/s")
    print(f"{'shape':<20} {'fwd ms':>9} {'GF/s':>6} {'dX ms':>9} {'GF/s':>6} {'dW ms':>9} {'GF/s':>6}")
    only = [t for t in args.only.split(",") if t]
    shapes = [sh for sh in SHAPES if not only or sh[0] in only]
    lines = []
    for name, ci, co, sp, k, s, p, tr in shapes:
        x = torch.randn(BATCH, ci, *sp)
        if tr:
            w = torch.randn(ci, co, k, k, k) * 0.05
            fwd = lambda: F.conv_transpose3d(x, w, None, s, p)
            vox = BATCH * sp[0] * sp[1] * sp[2]
        else:
            w = torch.randn(co, ci, k, k, k) * 0.05
            fwd = lambda: F.conv3d(x, w, None, s, p)
            y = fwd()
            vox = y.numel() // co
        y = fwd()
        gy = torch.randn_like(y)
        flop = 2.0 * ci * co * k ** 3 * vox

        def bwd(mask):
            return torch.ops.aten.convolution_backward(
                gy, x, w, None, [s] * 3, [p] * 3, [1] * 3, tr, [0] * 3, 1, mask)

        with torch.no_grad():
            tf = median_ms(fwd, args.reps)
            tx = median_ms(lambda: bwd([True, False, False]), args.reps)
            tw = median_ms(lambda: bwd([False, True, False]), args.reps)
        gf = lambda ms: flop / (ms * 1e-3) / 1e9
        desc = f"{name} {ci}->{co} {'T' if tr else 'k'}{k}s{s}"
        print(f"{desc:<20} {tf:9.2f} {gf(tf):6.1f} {tx:9.2f} {gf(tx):6.1f} {tw:9.2f} {gf(tw):6.1f}",
              flush=True)
        lines.append(f"{name} {tf:.4f} {tx:.4f} {tw:.4f}\n")
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(lines)


if __name__ == "__main__":
    main()
