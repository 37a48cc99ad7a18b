#!/usr/bin/python3
"""PyTorch side of bench/bench_train.c: the supervised 2-D V-Net step at the Diff-CL patch.

The V-Net is tests/reference/vnet_torch.py's (imported by path), 2-D, n_filters 16, batch
norm, has_dropout=True (Dropout2d(0.5), as the trainer's CS). One step: zero_grad, forward on
[batch, 1, H, W], Dice + CE (SSL4MIS's DiceLoss(softmax) on the foreground class: squared
denominators, smooth 1e-5, plus F.cross_entropy), backward, SGD(lr 0.01, momentum 0.9,
Nesterov, weight_decay 3e-5) step: the trainer's optimiser.
Prints "RESULT key value" lines as bench/torch_vnet.py does. Run with Debian's interpreter:
    /usr/bin/python3 bench/torch_train.py --size 224,192 --batch 2 --reps 3 --threads 2
"""
import argparse
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


def dice_ce(logits, y, smooth=1e-5):
    ce = F.cross_entropy(logits, y)
    p = torch.softmax(logits, dim=1)[:, 1]
    g = (y == 1).float()
    inter = (p * g).sum()
    dice = 1 - (2 * inter + smooth) / ((p * p).sum() + (g * g).sum() + smooth)
    return dice + ce


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="224,192")
    ap.add_argument("--batch", type=int, default=2)
    add_run_args(ap)
    args = ap.parse_args()
    start(args)
    size = sizes(args.size)
    assert len(size) == 2

    net = VNet(n_channels=1, n_classes=2, n_filters=args.n_filters, normalization="batchnorm",
               has_dropout=True, dims=2)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=3e-5)
    x = torch.randn(args.batch, 1, *size)
    y = (x[:, 0] > 0.5).long()

    rss0 = rss_mib()
    tw, tc = [], []
    loss = float("nan")
    for r in range(-1, args.reps):
        w0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad()
        out = net(x)
        lv = dice_ce(out, y)
        lv.backward()
        opt.step()
        loss = lv.item()
        if r >= 0:
            tw.append((time.perf_counter() - w0) * 1e3)
            tc.append((time.process_time() - c0) * 1e3)
    report_times(tw, tc, rss0)
    result("threads", torch.get_num_threads())
    result("loss", loss)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)


if __name__ == "__main__":
    main()
