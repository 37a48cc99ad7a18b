#!/usr/bin/python3
"""PyTorch side of bench/bench_infer.c: sliding-window inference of one volume.

The benchmark codes' test_single_case (UA-MT / SSL4MIS / MC-Net) written with torch tensors:
a volume smaller than the patch is zero-padded symmetrically; windows start at
min(stride * i, size - patch) for i < ceil((size - patch) / stride) + 1 on every axis; each
window [1, 1, patch] goes through tests/reference/vnet_torch.py's 3-D V-Net (n_filters 16,
batch norm, eval mode, torch.no_grad()), its softmax is added to a score map (times nnU-Net's
Gaussian with --gaussian, as libdiffcl's option) and a count map; score / count, crop, argmax.
One window forward as warm-up, then the median of --reps whole-volume runs; prints
"RESULT key value" lines as bench/torch_vnet.py does. Run with Debian's interpreter:
    /usr/bin/python3 bench/torch_infer.py --volume 144,144,96 --reps 3 --threads 2
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from vnet_torch import VNet  # noqa: E402


sys.path.insert(0, HERE)
from torch_common import add_run_args, report_times, result, rss_mib, sizes, start  # noqa: E402


def gaussian_map(patch):
    """libdiffcl's (nnU-Net's) importance map: sigma = patch / 8, max 1, no zeros."""
    g = [torch.exp(-0.5 * ((torch.arange(p, dtype=torch.float64) - (p - 1) / 2) / (p / 8.0)) ** 2)
         for p in patch]
    w = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
    w = w / w.max()
    w[w <= 0] = w[w > 0].min()
    return w.float()


def sliding_window(net, image, patch, stride, gaussian):
    """image [D, H, W] -> (label [D, H, W], probs [K, D, H, W])."""
    dims = list(image.shape)
    pad = [max(p - s, 0) for p, s in zip(patch, dims)]
    if any(pad):
        image = F.pad(image, (pad[2] // 2, pad[2] - pad[2] // 2, pad[1] // 2, pad[1] - pad[1] // 2,
                              pad[0] // 2, pad[0] - pad[0] // 2))
    size = list(image.shape)
    n = [math.ceil((s - p) / st) + 1 for s, p, st in zip(size, patch, stride)]
    wmap = gaussian_map(patch) if gaussian else None
    score, cnt = None, torch.zeros(size)
    for i in range(n[0]):
        zs = min(stride[0] * i, size[0] - patch[0])
        for j in range(n[1]):
            ys = min(stride[1] * j, size[1] - patch[1])
            for k in range(n[2]):
                xs = min(stride[2] * k, size[2] - patch[2])
                win = image[zs:zs + patch[0], ys:ys + patch[1], xs:xs + patch[2]][None, None]
                y = torch.softmax(net(win), dim=1)[0]
                if score is None:
                    score = torch.zeros((y.shape[0],) + tuple(size))
                sl = (slice(zs, zs + patch[0]), slice(ys, ys + patch[1]), slice(xs, xs + patch[2]))
                if wmap is None:
                    score[(slice(None),) + sl] += y
                    cnt[sl] += 1
                else:
                    score[(slice(None),) + sl] += y * wmap
                    cnt[sl] += wmap
    probs = score / cnt[None]
    lo = [p // 2 for p in pad]
    probs = probs[:, lo[0]:lo[0] + dims[0], lo[1]:lo[1] + dims[1], lo[2]:lo[2] + dims[2]]
    return probs.argmax(0).to(torch.uint8), probs, n[0] * n[1] * n[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--volume", default="144,144,96")
    ap.add_argument("--patch", default="112,112,80")
    ap.add_argument("--stride", default="18,18,4")
    ap.add_argument("--gaussian", action="store_true")
    add_run_args(ap)
    args = ap.parse_args()
    start(args)
    vol, patch, stride = sizes(args.volume), sizes(args.patch), sizes(args.stride)
    net = VNet(n_channels=1, n_classes=2, n_filters=args.n_filters, normalization="batchnorm",
               has_dropout=True, dims=3)
    net.eval()
    image = torch.randn(*vol)
    with torch.no_grad():
        net(torch.zeros(1, 1, *patch))  # warm-up: one window
        rss0 = rss_mib()
        tw, tc = [], []
        fg, nw = float("nan"), 0
        for _ in range(args.reps):
            w0, c0 = time.perf_counter(), time.process_time()
            label, probs, nw = sliding_window(net, image, patch, stride, args.gaussian)
            tw.append((time.perf_counter() - w0) * 1e3)
            tc.append((time.process_time() - c0) * 1e3)
            fg = (label != 0).float().mean().item()
            del label, probs
    report_times(tw, tc, rss0)
    result("windows", nw)
    result("fg_fraction", fg)
    result("threads", torch.get_num_threads())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}", flush=True)


if __name__ == "__main__":
    main()
